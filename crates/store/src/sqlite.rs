//! SQLite, in WAL mode: one file shared by the CLI and long-running enforcers. Writers take the
//! database lock up front (`BEGIN IMMEDIATE`) and wait for each other with a busy timeout.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use apiwall_model::world::{Key, Record, Write};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{Snapshot, Store, StoreError};

/// How long a writer waits for another process's transaction before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    rg TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (kind, rg, name)
) WITHOUT ROWID;
";

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // Creating the schema is a write: take the lock so concurrent first opens serialize.
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-written state: SQLite rolls back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_revision(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v as u64)
}

fn read_all(conn: &Connection) -> rusqlite::Result<Vec<Record>> {
    let mut stmt =
        conn.prepare_cached("SELECT kind, rg, name, body FROM resources ORDER BY kind, rg, name")?;
    let rows = stmt.query_map([], row_to_record)?;
    rows.collect()
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        kind: r.get(0)?,
        key: Key {
            rg: r.get(1)?,
            name: r.get(2)?,
        },
        body: r.get(3)?,
    })
}

impl Store for SqliteStore {
    fn revision(&self) -> Result<u64, StoreError> {
        read_revision(&self.conn()).map_err(|e| self.err(e))
    }

    fn get(&self, kind: &str, rg: &str, name: &str) -> Result<Option<Record>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT kind, rg, name, body FROM resources WHERE kind = ?1 AND rg = ?2 AND name = ?3")
            .map_err(|e| self.err(e))?;
        stmt.query_row(
            params![kind, rg.to_ascii_lowercase(), name.to_ascii_lowercase()],
            row_to_record,
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    fn list(&self, kind: &str, rg: Option<&str>) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn();
        let run = || -> rusqlite::Result<Vec<Record>> {
            match rg {
                Some(rg) => {
                    let mut stmt = conn.prepare_cached(
                        "SELECT kind, rg, name, body FROM resources WHERE kind = ?1 AND rg = ?2 ORDER BY rg, name",
                    )?;
                    let rows =
                        stmt.query_map(params![kind, rg.to_ascii_lowercase()], row_to_record)?;
                    rows.collect()
                }
                None => {
                    let mut stmt = conn.prepare_cached(
                        "SELECT kind, rg, name, body FROM resources WHERE kind = ?1 ORDER BY rg, name",
                    )?;
                    let rows = stmt.query_map(params![kind], row_to_record)?;
                    rows.collect()
                }
            }
        };
        run().map_err(|e| self.err(e))
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut conn = self.conn();
        // A read transaction, so the records and the revision belong together.
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let revision = read_revision(&tx).map_err(|e| self.err(e))?;
        let records = read_all(&tx).map_err(|e| self.err(e))?;
        Ok(Snapshot { revision, records })
    }

    fn transact<T, E>(
        &self,
        f: impl FnOnce(&Snapshot) -> Result<(T, Vec<Write>), E>,
    ) -> Result<(T, u64), E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let snapshot = Snapshot {
            revision: read_revision(&tx).map_err(|e| self.err(e))?,
            records: read_all(&tx).map_err(|e| self.err(e))?,
        };
        // On error `tx` drops and rolls back.
        let (value, writes) = f(&snapshot)?;
        if writes.is_empty() {
            return Ok((value, snapshot.revision));
        }
        let revision = snapshot.revision + 1;
        let apply = || -> rusqlite::Result<()> {
            let mut put = tx.prepare_cached(
                "INSERT INTO resources (kind, rg, name, body, revision) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, rg, name) DO UPDATE SET body = excluded.body, revision = excluded.revision",
            )?;
            let mut del = tx.prepare_cached(
                "DELETE FROM resources WHERE kind = ?1 AND rg = ?2 AND name = ?3",
            )?;
            for w in &writes {
                match &w.body {
                    Some(body) => {
                        put.execute(params![w.kind, w.key.rg, w.key.name, body, revision as i64])?
                    }
                    None => del.execute(params![w.kind, w.key.rg, w.key.name])?,
                };
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'revision'",
                params![revision as i64],
            )?;
            Ok(())
        };
        apply().map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        tracing::debug!(revision, writes = writes.len(), "committed");
        Ok((value, revision))
    }
}

#[cfg(test)]
mod tests;
