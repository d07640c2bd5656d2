//! apiwall's policy layer: one store revision compiled into immutable, fast structures.
//!
//! - [`AuthorizedSet`]: IPv4 and IPv6 longest-prefix match, and [`ApiServerAccess`], the AKS
//!   semantics of a cluster's authorized IP ranges;
//! - [`SubnetRoutes`]: the effective routes of a subnet;
//! - [`Classifier`] and [`Snat`]: a firewall's network rules and its SNAT decision;
//! - [`Policy`]: all of it for one revision, with [`Policy::trace`] and [`lockout`].
//!
//! Pure: no I/O, no async. The enforcers' hot paths call into this crate.

#![forbid(unsafe_code)]

pub mod authorized;
pub mod firewall;
pub mod fixture;
pub mod lockout;
mod lpm;
pub mod policy;
pub mod routes;
pub mod trace;

use std::net::IpAddr;

pub use authorized::{AccessDecision, ApiServerAccess, AuthorizedSet};
pub use firewall::{Classifier, RuleMatch, Snat, SnatDecision};
pub use lockout::{Lockout, lockout};
pub use policy::{ClusterPolicy, FirewallPolicy, NodePolicy, Policy};
pub use routes::{NextHop, SYSTEM_ROUTE, ShowNextHop, SubnetRoutes};
pub use trace::{Component, Flow, Hop, HopDecision, IpFlow, Trace, Verdict};

/// Why an analysis question has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("no VM named '{0}'")]
    UnknownVm(String),
    #[error("VM '{0}' has no subnet: its cluster's vnetSubnetId names no existing subnet")]
    NoSubnet(String),
    #[error("VM '{vm}' has no route to {dst}")]
    NoRoute { vm: String, dst: IpAddr },
}
