//! apiwall's kernel enforcers: compilers from the model to nftables rulesets and kernel routes,
//! and thin executors that apply their output.
//!
//! The compilers are pure functions, tested with golden files:
//! - [`render`]: one firewall's network rule collections, SNAT and default deny as one nftables
//!   table ([`Ruleset`]);
//! - [`render_api_gate`]: a cluster's authorized IP ranges as an nftables set in front of the API
//!   host's port 443;
//! - [`render_routes`]: a subnet's effective routes as a policy-routing table ([`RoutePlan`]).
//!
//! The executors ([`exec`]) run `nft` and `ip`, optionally inside a named network namespace, and
//! replace a whole table in one transaction. [`netns`] creates namespaces and runs code inside
//! them on a dedicated thread (never on an async runtime's worker).
//!
//! No CLI parsing here; the executors are blocking (call them from `spawn_blocking` under tokio).

#![forbid(unsafe_code)]

pub mod exec;
pub mod firewall;
pub mod gate;
mod intervals;
pub mod netns;
pub mod routes;
pub mod ruleset;

pub use exec::{
    RuleCounter, apply_routes, apply_ruleset, check_nft, check_ruleset, list_table, remove_routes,
    remove_table, rule_counters,
};
pub use firewall::{
    DEFAULT_DENY_PREFIX, FirewallSpec, LOG_GROUP, Mode, RenderOptions, log_prefix, render,
};
pub use gate::{ApiGate, render_api_gate};
pub use netns::{Netns, in_netns};
pub use routes::{KernelRoute, RouteKind, RoutePlan, RoutingTarget, Selector, render_routes};
pub use ruleset::Ruleset;

/// A failure to run or apply something in the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "could not run {program}: {source} (is it installed? nftables and iproute2 are needed)"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("unexpected output from `{command}`: {detail}")]
    Output { command: String, detail: String },
    #[error("network namespace {name}: {detail}")]
    Netns { name: String, detail: String },
}
