//! The service: every operation an operator can run, behind one trait.
//!
//! A mutating call runs as one store transaction: load the whole `World`, apply the operation
//! to a copy (pure code in `ops`), check the result (including the lockout check), and write
//! back only what differs. A failed call writes nothing. Reads go straight to the store.

mod error;
mod ops;
mod read;
mod request;
mod watcher;

use apiwall_model::world::{CorruptRecord, World};
use apiwall_store::Store;
use serde_json::Value;

pub use error::{ApiError, ErrorKind};
pub use request::*;

/// The operations of apiwall. The CLI speaks only to this trait; a remote client can implement
/// it over HTTP, since requests and answers are plain serde values.
pub trait Api {
    /// Runs one request. Answers are az-shaped JSON (`Value::Null` prints nothing).
    /// `force` applies a change even if the lockout check refuses it.
    fn call(&self, request: Request, force: bool) -> Result<Value, ApiError>;

    /// The store's current revision.
    fn revision(&self) -> Result<u64, ApiError>;
}

/// The service in-process, over a store.
pub struct LocalApi<S> {
    store: S,
}

impl<S: Store> LocalApi<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The whole model as of the latest revision.
    pub fn world(&self) -> Result<(World, u64), ApiError> {
        let snap = self.store.snapshot()?;
        let world = World::from_records(&snap.records).map_err(corrupt)?;
        Ok((world, snap.revision))
    }

    fn mutate(&self, request: Request, force: bool) -> Result<Value, ApiError> {
        let (value, revision) = self.store.transact(|snap| {
            let before = World::from_records(&snap.records).map_err(corrupt)?;
            let mut after = before.clone();
            let value = ops::apply(&mut after, request)?;
            if !force {
                ops::check_lockout(&before, &after)?;
            }
            let writes = after.diff(&before);
            Ok::<_, ApiError>((value, writes))
        })?;
        tracing::debug!(revision, "applied");
        Ok(value)
    }
}

/// A resource as az prints it.
pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("resources always serialize")
}

fn corrupt(e: CorruptRecord) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl<S: Store> Api for LocalApi<S> {
    fn call(&self, request: Request, force: bool) -> Result<Value, ApiError> {
        if matches!(
            request,
            Request::NextHop { .. } | Request::IpFlow(_) | Request::Trace(_)
        ) {
            watcher::run(&self.world()?.0, request)
        } else if request.is_read() {
            read::run(&self.store, request)
        } else {
            self.mutate(request, force)
        }
    }

    fn revision(&self) -> Result<u64, ApiError> {
        Ok(self.store.revision()?)
    }
}
