//! The store keeps every resource as a JSON body under `(kind, rg, name)`, and a store-wide
//! revision that every committed change increments once. Readers see whole revisions; a writer
//! holds the store for the length of one transaction, so two processes can write at once safely.
//!
//! A transaction that writes nothing does not bump the revision: a no-op command changes nothing.

use apiwall_model::world::{Record, Write};

mod sqlite;

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the store directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// All records of one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub records: Vec<Record>,
}

/// A revisioned resource store. `transact` runs `f` on the current snapshot while holding the
/// write lock, then writes what `f` returns as one new revision.
pub trait Store: Send + Sync {
    /// The latest committed revision. Cheap: watchers poll it.
    fn revision(&self) -> Result<u64, StoreError>;

    /// One record, or `None`.
    fn get(&self, kind: &str, rg: &str, name: &str) -> Result<Option<Record>, StoreError>;

    /// Records of a kind, in key order; only those of resource group `rg` if given.
    fn list(&self, kind: &str, rg: Option<&str>) -> Result<Vec<Record>, StoreError>;

    /// Every record, as of one revision.
    fn snapshot(&self) -> Result<Snapshot, StoreError>;

    /// Runs `f` on the current snapshot under the write lock and commits its writes as one
    /// revision. If `f` fails, nothing is written. Returns `f`'s value and the revision after.
    fn transact<T, E>(
        &self,
        f: impl FnOnce(&Snapshot) -> Result<(T, Vec<Write>), E>,
    ) -> Result<(T, u64), E>
    where
        E: From<StoreError>;
}
