//! apiwall's gate: the userspace TCP front of a cluster's API server.
//!
//! The gate admits a connection only when the cluster's authorized IP ranges hold its source,
//! and relays admitted connections to the upstream untouched (TLS passes through).
//!
//! Contracts:
//! - **Fail closed.** Until a policy has loaded, and while the cluster does not exist, nothing is
//!   admitted. A revision that fails to load leaves the last good policy in force.
//! - **Decide at accept.** The decision uses the peer address before any byte is read. Only a
//!   trusted proxy's connection is read first, for its PROXY v1/v2 header, within a bounded time
//!   and size; the header's source address then decides.
//! - **Follow the store.** A thread polls the store revision and swaps a newly compiled policy in
//!   whole (one generation number per swap). Every open connection re-checks its source on each
//!   swap and is closed when it is no longer admitted.
//! - **Drain.** On shutdown the gate stops accepting, waits for open connections up to a bound,
//!   then closes the rest.

#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod config;
mod conn;
mod error;
mod gate;
mod metrics;
mod proxy;
mod source;
mod splice;

pub use config::{ConfigError, GateConfig, Relay};
pub use error::{GateError, Side};
pub use gate::{Gate, GateHandle};
pub use metrics::DenyReason;
pub use source::{PolicySource, PolicyState, SourceError, StoreSource};

/// Raises this process's open-file limit to its hard limit and returns it: each relayed
/// connection holds six descriptors (two sockets, two pipes), more than the usual soft limit of
/// 1024 allows for thousands of connections.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
