//! A subnet's effective routes compiled to a policy-routing table on the router that serves it.
//!
//! Traffic that the router receives from the subnet (selected by a `ip rule`, by input interface
//! or by source prefix) is looked up in the subnet's own table, which holds every effective route
//! (system routes and the route table's user routes):
//! - `VirtualAppliance` → `via` the next hop;
//! - `None` → `blackhole` (dropped);
//! - `VirtualNetworkGateway` → `unreachable` (the lab has no gateway);
//! - `Internet` and `VnetLocal` → `throw`: the lookup goes on with the router's next rules (its
//!   main table, which holds its connected routes and its default route to the internet).
//!
//! On an equal prefix the user route replaces the system route, as in the userspace
//! `SubnetRoutes`; otherwise the kernel's longest-prefix match decides, as Azure's does.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use apiwall_model::{Cidr, NextHopType};
use apiwall_policy::SubnetRoutes;

/// Which packets use the subnet's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Packets received on this interface (the router's leg in the subnet).
    Iif(String),
    /// Packets from this prefix (the subnet's address prefix).
    From(Cidr),
}

/// Where the routes of one subnet go on the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTarget {
    /// The subnet's name, for comments.
    pub subnet: String,
    /// The kernel routing table id, 1 to 252 or above 255 (not `main`, `local` or `default`).
    pub table: u32,
    pub selector: Selector,
    /// The `ip rule` priority, below the main table's 32766.
    pub rule_priority: u32,
}

/// What a kernel route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Via(IpAddr),
    Blackhole,
    Unreachable,
    /// Continue with the router's next policy rules.
    Throw,
}

/// One route of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: Cidr,
    pub kind: RouteKind,
    /// `route NAME (NextHopType)` or `system NextHopType`.
    pub comment: String,
}

impl KernelRoute {
    /// The `ip -batch` line that installs it.
    pub fn replace_line(&self, table: u32) -> String {
        let p = self.prefix;
        let what = match self.kind {
            RouteKind::Via(hop) => format!("{p} via {hop}"),
            RouteKind::Blackhole => format!("blackhole {p}"),
            RouteKind::Unreachable => format!("unreachable {p}"),
            RouteKind::Throw => format!("throw {p}"),
        };
        format!("route replace {what} table {table}")
    }
}

/// The policy-routing table of one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    pub target: RoutingTarget,
    /// One route per prefix, in prefix order.
    pub routes: Vec<KernelRoute>,
}

impl RoutePlan {
    /// The `ip rule` arguments selecting the table, one per family in use: `["from 10.240.0.0/16
    /// lookup 100 priority 1000"]`, or for an interface, both families.
    pub fn rules(&self) -> Vec<(Family, String)> {
        let t = &self.target;
        let tail = format!("lookup {} priority {}", t.table, t.rule_priority);
        match &t.selector {
            Selector::From(c) => {
                let f = if c.net().addr().is_ipv4() {
                    Family::Inet
                } else {
                    Family::Inet6
                };
                vec![(f, format!("from {c} {tail}"))]
            }
            Selector::Iif(dev) => vec![
                (Family::Inet, format!("iif {dev} {tail}")),
                (Family::Inet6, format!("iif {dev} {tail}")),
            ],
        }
    }

    /// The routes as `ip -batch` input (`route replace …` lines with `#` comments).
    pub fn to_batch(&self) -> String {
        let mut s = String::new();
        let t = &self.target;
        let _ = writeln!(
            s,
            "# apiwall routes of subnet {}: table {}, {} routes",
            t.subnet,
            t.table,
            self.routes.len()
        );
        for (f, r) in self.rules() {
            let _ = writeln!(s, "# selected by: ip -family {f} rule add {r}");
        }
        for r in &self.routes {
            let _ = writeln!(s, "{} # {}", r.replace_line(t.table), r.comment);
        }
        s
    }
}

impl fmt::Display for RoutePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_batch())
    }
}

/// An `ip -family` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        })
    }
}

/// Compiles a subnet's effective routes to its policy-routing table. Pure.
pub fn render_routes(routes: &SubnetRoutes, target: &RoutingTarget) -> RoutePlan {
    // Later entries (user routes) replace earlier ones (system routes) of the same prefix.
    let mut by_prefix: BTreeMap<(bool, u128, u8), KernelRoute> = BTreeMap::new();
    for r in routes.routes() {
        let kind = match r.next_hop_type {
            NextHopType::VirtualAppliance => match r.next_hop_ip_address {
                Some(hop) => RouteKind::Via(hop),
                // Never valid in the model; dropping is what Azure does with a broken hop.
                None => RouteKind::Blackhole,
            },
            NextHopType::None => RouteKind::Blackhole,
            NextHopType::VirtualNetworkGateway => RouteKind::Unreachable,
            NextHopType::Internet | NextHopType::VnetLocal => RouteKind::Throw,
        };
        let comment = match &r.route_name {
            Some(n) => format!("route {} ({})", sanitize(n), r.next_hop_type),
            None => format!("system {}", r.next_hop_type),
        };
        let net = r.address_prefix.net();
        let key = match net.network() {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), net.prefix_len()),
            IpAddr::V6(a) => (true, u128::from(a), net.prefix_len()),
        };
        by_prefix.insert(
            key,
            KernelRoute {
                prefix: r.address_prefix,
                kind,
                comment,
            },
        );
    }
    RoutePlan {
        target: target.clone(),
        routes: by_prefix.into_values().collect(),
    }
}

/// A route name inside an `ip -batch` comment: no `#` or line breaks.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
