//! Lockout protection: would a change cut a cluster's nodes off from their own API server?
//!
//! For every node, the check traces node → its cluster's `apiServerAddress` on TCP 443 under the
//! policy before and after the change. A node admitted before and denied after is locked out.
//! Nodes that were already cut off, and nodes the change creates, are not the change's doing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use apiwall_model::Protocol;
use serde::Serialize;

use crate::policy::Policy;
use crate::trace::{API_SERVER_PORT, Component, Flow};

/// Nodes of one cluster that a change would lock out, for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lockout {
    pub cluster: String,
    pub cluster_id: String,
    pub resource_group: String,
    pub api_server_address: IpAddr,
    /// Node names, sorted.
    pub nodes: Vec<String>,
    /// The source address the API server would see from them, if their traffic gets there.
    pub seen_as: Option<IpAddr>,
    pub blocked_by: Component,
    pub reason: String,
    pub fix: String,
}

/// How many node names the message spells out.
const NAMED_NODES: usize = 5;

impl fmt::Display for Lockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nodes.len();
        let mut names = self
            .nodes
            .iter()
            .take(NAMED_NODES)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if n > NAMED_NODES {
            names.push_str(&format!(" and {} more", n - NAMED_NODES));
        }
        write!(
            f,
            "This change would cut {n} node{} of cluster {} ({names}) off from their API server {}:{API_SERVER_PORT}",
            if n == 1 { "" } else { "s" },
            self.cluster,
            self.api_server_address,
        )?;
        if let Some(ip) = self.seen_as {
            write!(f, ", which would see them as {ip}")?;
        }
        write!(
            f,
            ". Blocked by the {}: {}. To fix it, {}; or re-run with --force to apply the change anyway.",
            match self.blocked_by {
                Component::Source => "source",
                Component::Route => "routes",
                Component::Firewall => "firewall",
                Component::Snat => "SNAT",
                Component::ApiServer => "API server's authorized IP ranges",
            },
            self.reason,
            self.fix
        )
    }
}

/// A node's flow to its cluster's API server, if it has a cluster.
fn api_flow(p: &Policy, node: &crate::policy::NodePolicy) -> Option<Flow> {
    let c = p.cluster_of(node)?;
    Some(Flow::from_vm(
        &node.id,
        c.api_server_address,
        API_SERVER_PORT,
        Protocol::Tcp,
    ))
}

/// The nodes that reach their API server under `before` and not under `after`, grouped by
/// cluster and by what blocks them.
pub fn lockout(before: &Policy, after: &Policy) -> Vec<Lockout> {
    let mut groups: BTreeMap<(String, Option<IpAddr>, String), Lockout> = BTreeMap::new();
    for node in &after.nodes {
        let Some(flow_after) = api_flow(after, node) else {
            continue;
        };
        let Some(old) = before.node(&node.id) else {
            continue;
        };
        let Some(flow_before) = api_flow(before, old) else {
            continue;
        };
        if !before.trace(&flow_before).allowed() {
            continue;
        }
        let t = after.trace(&flow_after);
        if t.allowed() {
            continue;
        }
        let c = after.cluster_of(node).expect("api_flow found the cluster");
        let mut fix = t.fix.clone().unwrap_or_default();
        let mut reason = t.reason.clone().unwrap_or_default();
        // A rule for the nodes' whole subnet fixes them all at once.
        if let Some(prefix) = after.subnet_prefix(node) {
            let (one, all) = (format!("from {} ", node.ip), format!("from {prefix} "));
            fix = fix.replace(&one, &all);
            reason = reason.replace(&one, &all);
        }
        groups
            .entry((c.id.to_ascii_lowercase(), t.seen_as, fix.clone()))
            .or_insert_with(|| Lockout {
                cluster: c.name.clone(),
                cluster_id: c.id.clone(),
                resource_group: c.resource_group.clone(),
                api_server_address: c.api_server_address,
                nodes: Vec::new(),
                seen_as: t.seen_as,
                blocked_by: t.blocked_by.unwrap_or(Component::ApiServer),
                reason,
                fix,
            })
            .nodes
            .push(node.name.clone());
    }
    let mut out: Vec<Lockout> = groups.into_values().collect();
    for l in &mut out {
        l.nodes.sort();
    }
    out
}
