//! `trace(flow)`: the path of one flow through routes, firewall, SNAT and the API server, hop by
//! hop, with the rule that decided each hop, the address the destination sees, and for a denial
//! the component that blocked it and a concrete fix.

use std::fmt;
use std::net::IpAddr;

use apiwall_model::{Cidr, NextHopType, Protocol, resources::Action};
use serde::Serialize;

use crate::authorized::{AccessDecision, host_cidr};
use crate::firewall::SnatDecision;
use crate::policy::{Appliance, ClusterPolicy, FirewallPolicy, Policy};
use crate::routes::{NextHop, SYSTEM_ROUTE};

/// The port the API server serves on.
pub const API_SERVER_PORT: u16 = 443;

/// One flow to trace. With `src_vm`, the flow leaves that node (by name or id) and `src` is
/// replaced by the node's address; without, it comes from `src` on the internet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    pub src: IpAddr,
    pub src_vm: Option<String>,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub protocol: Protocol,
}

impl Flow {
    /// A flow leaving a node.
    pub fn from_vm(vm: &str, dst: IpAddr, dst_port: u16, protocol: Protocol) -> Self {
        Self {
            src: IpAddr::from([0, 0, 0, 0]),
            src_vm: Some(vm.to_string()),
            dst,
            dst_port,
            protocol,
        }
    }

    /// A flow from an internet address.
    pub fn from_ip(src: IpAddr, dst: IpAddr, dst_port: u16, protocol: Protocol) -> Self {
        Self {
            src,
            src_vm: None,
            dst,
            dst_port,
            protocol,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Allow,
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "Allow",
            Verdict::Deny => "Deny",
        })
    }
}

/// The component a hop passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Component {
    /// The flow's origin (an unknown VM blocks here).
    Source,
    Route,
    Firewall,
    Snat,
    ApiServer,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::Source => "source",
            Component::Route => "route",
            Component::Firewall => "firewall",
            Component::Snat => "snat",
            Component::ApiServer => "apiServer",
        })
    }
}

/// What a hop did with the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HopDecision {
    /// Passed on to the next component.
    Forward,
    Allow,
    Deny,
    /// The source address was rewritten (`translatedTo`).
    Snat,
    /// The source address was kept.
    NoSnat,
}

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    pub component: Component,
    /// The deciding resource's id, or "System Route".
    pub resource: String,
    /// The route, firewall, public IP or cluster name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_prefix: Option<Cidr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop_type: Option<NextHopType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop_ip_address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translated_to: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessDecision>,
    pub decision: HopDecision,
    /// One readable sentence.
    pub detail: String,
}

impl Hop {
    fn new(component: Component, resource: &str, decision: HopDecision, detail: String) -> Self {
        Self {
            component,
            resource: resource.to_string(),
            name: None,
            address_prefix: None,
            next_hop_type: None,
            next_hop_ip_address: None,
            collection: None,
            priority: None,
            rule: None,
            translated_to: None,
            access: None,
            decision,
            detail,
        }
    }

    /// The rule's name as `test-ip-flow` reports it.
    pub fn rule_name(&self) -> String {
        match self.component {
            Component::Firewall => self.rule.clone().unwrap_or_else(|| "DefaultDeny".into()),
            Component::Route => self.name.clone().unwrap_or_else(|| SYSTEM_ROUTE.into()),
            Component::ApiServer => match self.access {
                Some(AccessDecision::Range { range }) => format!("AuthorizedIpRange_{range}"),
                Some(AccessDecision::LoadBalancerOutbound { .. }) => {
                    "LoadBalancerOutboundIp".into()
                }
                Some(AccessDecision::Unrestricted) => "AuthorizedIpRangesDisabled".into(),
                _ => "NotInAuthorizedIpRanges".into(),
            },
            Component::Snat | Component::Source => self.resource.clone(),
        }
    }
}

/// The result of `trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub verdict: Verdict,
    /// The address the flow leaves from (the node's, for a flow from a VM).
    pub source: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_vm: Option<String>,
    pub destination: IpAddr,
    pub destination_port: u16,
    pub protocol: Protocol,
    /// The source address the destination sees, if the flow gets there.
    pub seen_as: Option<IpAddr>,
    pub hops: Vec<Hop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Component>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Trace {
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    fn deny(&mut self, by: Component, reason: String, fix: String) {
        self.verdict = Verdict::Deny;
        self.blocked_by = Some(by);
        self.reason = Some(reason);
        self.fix = Some(fix);
    }

    /// `network watcher test-ip-flow`'s answer: the blocking rule on a denial, else the firewall
    /// rule that let the flow through (or the last hop's rule when no firewall is crossed).
    pub fn ip_flow(&self) -> IpFlow {
        let hop = match self.verdict {
            Verdict::Deny => self
                .hops
                .iter()
                .rev()
                .find(|h| Some(h.component) == self.blocked_by),
            Verdict::Allow => self
                .hops
                .iter()
                .find(|h| h.component == Component::Firewall)
                .or_else(|| self.hops.last()),
        };
        IpFlow {
            access: match self.verdict {
                Verdict::Allow => Action::Allow,
                Verdict::Deny => Action::Deny,
            },
            rule_name: hop.map(Hop::rule_name).unwrap_or_default(),
        }
    }
}

/// `network watcher test-ip-flow`'s output, in az's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpFlow {
    pub access: Action,
    pub rule_name: String,
}

/// Who the destination sees, for the fix text.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Client,
    Node,
    Firewall(&'a FirewallPolicy),
    LoadBalancer(&'a ClusterPolicy),
}

impl Origin<'_> {
    fn describe(&self) -> String {
        match self {
            Origin::Client => "the client's own address".into(),
            Origin::Node => "the node's own address".into(),
            Origin::Firewall(fw) => format!("the public IP of firewall {}", fw.name),
            Origin::LoadBalancer(c) => {
                format!("the load-balancer outbound IP of cluster {}", c.name)
            }
        }
    }
}

fn proto_port(protocol: Protocol, port: u16) -> String {
    match protocol {
        Protocol::Icmp => "ICMP".into(),
        p => format!("{p} {port}"),
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

// === impl Policy: trace ===

impl Policy {
    /// Follows `flow` hop by hop. Never fails: an unknown VM or a dangling reference is a
    /// denial that says so.
    pub fn trace(&self, flow: &Flow) -> Trace {
        let mut t = Trace {
            verdict: Verdict::Allow,
            source: flow.src,
            source_vm: flow.src_vm.clone(),
            destination: flow.dst,
            destination_port: flow.dst_port,
            protocol: flow.protocol,
            seen_as: None,
            hops: Vec::new(),
            blocked_by: None,
            reason: None,
            fix: None,
        };
        match &flow.src_vm {
            Some(vm) => self.trace_from_node(vm, flow, &mut t),
            None => self.trace_from_internet(flow, &mut t),
        }
        t
    }

    /// `network watcher test-ip-flow`: access and the deciding rule, firewall included.
    pub fn test_ip_flow(&self, flow: &Flow) -> IpFlow {
        self.trace(flow).ip_flow()
    }

    fn trace_from_internet(&self, flow: &Flow, t: &mut Trace) {
        if self.by_api_address.contains_key(&flow.dst) || !is_private(flow.dst) {
            t.hops.push(Hop::new(
                Component::Route,
                "Internet",
                HopDecision::Forward,
                format!("from the internet straight to {}", flow.dst),
            ));
            self.arrive(flow, flow.src, Origin::Client, t);
        } else {
            t.hops.push(Hop::new(
                Component::Route,
                "Internet",
                HopDecision::Deny,
                format!(
                    "{} is a private address, not reachable from the internet",
                    flow.dst
                ),
            ));
            t.deny(
                Component::Route,
                format!(
                    "{} is a private address, not reachable from the internet",
                    flow.dst
                ),
                "trace from a node inside the vnet with --vm".into(),
            );
        }
    }

    fn trace_from_node(&self, vm: &str, flow: &Flow, t: &mut Trace) {
        let Some(ni) = self.node_index(vm) else {
            t.hops.push(Hop::new(
                Component::Source,
                vm,
                HopDecision::Deny,
                format!("no VM named {vm}"),
            ));
            t.deny(
                Component::Source,
                format!("no VM named {vm}"),
                "name a node as listed by `apiwall vm list`".into(),
            );
            return;
        };
        let node = &self.nodes[ni];
        let src = node.ip;
        t.source = src;
        let cluster = node.cluster.map(|c| &self.clusters[c]);
        let Some(subnet) = node.subnet.as_ref().and_then(|s| self.subnets.get(s)) else {
            let reason = format!(
                "node {} has no subnet: its cluster's vnetSubnetId names none",
                node.name
            );
            t.hops.push(Hop::new(
                Component::Route,
                &node.id,
                HopDecision::Deny,
                reason.clone(),
            ));
            t.deny(
                Component::Route,
                reason,
                "recreate the cluster's subnet".into(),
            );
            return;
        };
        let Some(route) = subnet.routes.lookup(flow.dst) else {
            let reason = format!("subnet {} has no route to {}", subnet.name, flow.dst);
            t.hops.push(Hop::new(
                Component::Route,
                SYSTEM_ROUTE,
                HopDecision::Deny,
                reason.clone(),
            ));
            t.deny(
                Component::Route,
                reason,
                format!("add a route for {}", host_cidr(flow.dst)),
            );
            return;
        };
        let mut hop = route_hop(route, flow.dst);
        let table_hint = match &subnet.route_table_id {
            Some(id) => format!("route table {}", apiwall_model::ids::last_segment(id)),
            None => format!("a route table associated to subnet {}", subnet.name),
        };
        match route.next_hop_type {
            NextHopType::VnetLocal => {
                t.hops.push(hop);
                self.arrive(flow, src, Origin::Node, t);
            }
            NextHopType::Internet => {
                t.hops.push(hop);
                match cluster {
                    Some(c) if c.outbound_type == apiwall_model::OutboundType::LoadBalancer => {
                        match c.lb_outbound_ip {
                            Some(lb) => {
                                let mut h = Hop::new(
                                    Component::Snat,
                                    c.lb_outbound_ip_id.as_deref().unwrap_or(&c.id),
                                    HopDecision::Snat,
                                    format!(
                                        "leaves through the load balancer of cluster {}, as {lb}",
                                        c.name
                                    ),
                                );
                                h.translated_to = Some(lb);
                                t.hops.push(h);
                                self.arrive(flow, lb, Origin::LoadBalancer(c), t);
                            }
                            None => {
                                let reason = format!(
                                    "cluster {} has outbound type loadBalancer but its load balancer has no outbound IP",
                                    c.name
                                );
                                t.deny(
                                    Component::Snat,
                                    reason,
                                    format!("give cluster {} an outbound public IP", c.name),
                                );
                            }
                        }
                    }
                    Some(c) => {
                        let reason = format!(
                            "cluster {} has outbound type userDefinedRouting, so its nodes have no egress of their own, and {} sends {} to Internet",
                            c.name,
                            route.describe(),
                            flow.dst
                        );
                        let fix = match self.firewall_in_vnet(&subnet.vnet) {
                            Some(fw) => format!(
                                "add a route for {} (or 0.0.0.0/0) with next hop VirtualAppliance {} (firewall {}) to {table_hint}",
                                host_cidr(flow.dst),
                                fw.private_ip.map(|i| i.to_string()).unwrap_or_default(),
                                fw.name
                            ),
                            None => format!(
                                "create a firewall and add a route for {} with next hop VirtualAppliance and its private IP to {table_hint}",
                                host_cidr(flow.dst)
                            ),
                        };
                        t.deny(Component::Route, reason, fix);
                    }
                    None => self.arrive(flow, src, Origin::Node, t),
                }
            }
            NextHopType::None => {
                hop.decision = HopDecision::Deny;
                t.hops.push(hop);
                let reason = format!(
                    "{} drops traffic to {} (next hop None)",
                    route.describe(),
                    flow.dst
                );
                let fix = if route.is_system() {
                    format!(
                        "add a route for {} with the next hop it should take to {table_hint}",
                        host_cidr(flow.dst)
                    )
                } else {
                    format!(
                        "delete or change route {} in {table_hint}",
                        route.route_name.as_deref().unwrap_or_default()
                    )
                };
                t.deny(Component::Route, reason, fix);
            }
            NextHopType::VirtualNetworkGateway => {
                hop.decision = HopDecision::Deny;
                t.hops.push(hop);
                t.deny(
                    Component::Route,
                    format!(
                        "{} sends {} to a virtual network gateway, and there is none: unreachable",
                        route.describe(),
                        flow.dst
                    ),
                    format!(
                        "change the next hop of route {} to VirtualAppliance or Internet",
                        route.route_name.as_deref().unwrap_or(SYSTEM_ROUTE)
                    ),
                );
            }
            NextHopType::VirtualAppliance => {
                let hop_ip = route.next_hop_ip_address;
                let appliance =
                    hop_ip.and_then(|ip| self.appliances.get(&(subnet.vnet.clone(), ip)));
                match appliance {
                    Some(Appliance::Firewall(i)) => {
                        t.hops.push(hop);
                        self.through_firewall(&self.firewalls[*i], src, flow, t);
                    }
                    Some(Appliance::Node(j)) => {
                        hop.detail = format!("{} to node {}", hop.detail, self.nodes[*j].name);
                        t.hops.push(hop);
                        self.arrive(flow, src, Origin::Node, t);
                    }
                    None => {
                        hop.decision = HopDecision::Deny;
                        t.hops.push(hop);
                        let at = hop_ip
                            .map(|i| i.to_string())
                            .unwrap_or_else(|| "(no address)".into());
                        let reason = format!(
                            "{} sends {} to VirtualAppliance {at}, which is not a firewall: no firewall in this vnet has that private IP",
                            route.describe(),
                            flow.dst
                        );
                        let fix = match self.firewall_in_vnet(&subnet.vnet) {
                            Some(fw) => format!(
                                "set the next hop IP of route {} to {}, the private IP of firewall {}",
                                route.route_name.as_deref().unwrap_or_default(),
                                fw.private_ip.map(|i| i.to_string()).unwrap_or_default(),
                                fw.name
                            ),
                            None => format!(
                                "create a firewall with an ip-config in this vnet and point route {} at its private IP",
                                route.route_name.as_deref().unwrap_or_default()
                            ),
                        };
                        t.deny(Component::Route, reason, fix);
                    }
                }
            }
        }
    }

    fn firewall_in_vnet(&self, vnet: &str) -> Option<&FirewallPolicy> {
        self.appliances
            .iter()
            .filter_map(|((v, _), a)| match a {
                Appliance::Firewall(i) if v == vnet => Some(*i),
                _ => None,
            })
            .min()
            .map(|i| &self.firewalls[i])
    }

    fn through_firewall(&self, fw: &FirewallPolicy, src: IpAddr, flow: &Flow, t: &mut Trace) {
        let what = proto_port(flow.protocol, flow.dst_port);
        let m = fw
            .classifier
            .classify(src, flow.dst, flow.dst_port, flow.protocol);
        let mut hop = Hop::new(
            Component::Firewall,
            &fw.id,
            HopDecision::Allow,
            String::new(),
        );
        hop.name = Some(fw.name.clone());
        match m {
            Some(r) => {
                hop.collection = Some(r.collection.clone());
                hop.priority = Some(r.priority);
                hop.rule = Some(r.rule.clone());
                hop.detail = format!(
                    "{what} request from {src} to {}. Action: {}. Rule Collection: {}. Rule: {}",
                    flow.dst, r.action, r.collection, r.rule
                );
                if r.action == Action::Deny {
                    hop.decision = HopDecision::Deny;
                    t.hops.push(hop);
                    t.deny(
                        Component::Firewall,
                        format!(
                            "rule {} of collection {} (priority {}, Deny) on firewall {} denies {what} from {src} to {}",
                            r.rule, r.collection, r.priority, fw.name, flow.dst
                        ),
                        format!(
                            "add a network rule allowing {what} from {src} to {} to firewall {}, in a collection with a priority below {}",
                            flow.dst, fw.name, r.priority
                        ),
                    );
                    return;
                }
                t.hops.push(hop);
            }
            None => {
                hop.decision = HopDecision::Deny;
                hop.detail = format!(
                    "{what} request from {src} to {}. Action: Deny. Reason: No rule matched. Proceeding with default action",
                    flow.dst
                );
                t.hops.push(hop);
                t.deny(
                    Component::Firewall,
                    format!(
                        "no network rule of firewall {} matches {what} from {src} to {}: default deny",
                        fw.name, flow.dst
                    ),
                    format!(
                        "add a network rule allowing {what} from {src} to {} to firewall {}",
                        flow.dst, fw.name
                    ),
                );
                return;
            }
        }
        let mut hop = Hop::new(Component::Snat, &fw.id, HopDecision::NoSnat, String::new());
        hop.name = Some(fw.name.clone());
        match fw.snat.decide(flow.dst) {
            SnatDecision::Translate { to } => {
                hop.decision = HopDecision::Snat;
                hop.translated_to = Some(to);
                hop.detail = format!(
                    "source {src} translated to {to}, the public IP of firewall {}",
                    fw.name
                );
                t.hops.push(hop);
                self.arrive(flow, to, Origin::Firewall(fw), t);
            }
            SnatDecision::Keep { range } => {
                hop.address_prefix = Some(range);
                hop.detail = format!(
                    "not translated: {} lies in the firewall's private range {range}",
                    flow.dst
                );
                t.hops.push(hop);
                self.arrive(flow, src, Origin::Node, t);
            }
            SnatDecision::NoPublicIp => {
                hop.decision = HopDecision::Deny;
                hop.detail = format!("firewall {} has no public IP to translate to", fw.name);
                t.hops.push(hop);
                t.deny(
                    Component::Snat,
                    format!(
                        "firewall {} has no public IP, so traffic to {} cannot be SNATed",
                        fw.name, flow.dst
                    ),
                    format!(
                        "bind a public IP to firewall {} with `network firewall ip-config create`",
                        fw.name
                    ),
                );
            }
        }
    }

    /// At the destination: the API server applies its authorized ranges to `seen_as`.
    fn arrive(&self, flow: &Flow, seen_as: IpAddr, origin: Origin<'_>, t: &mut Trace) {
        t.seen_as = Some(seen_as);
        let Some(&ci) = self.by_api_address.get(&flow.dst) else {
            return;
        };
        let c = &self.clusters[ci];
        let mut hop = Hop::new(
            Component::ApiServer,
            &c.id,
            HopDecision::Allow,
            String::new(),
        );
        hop.name = Some(c.name.clone());
        let tcp = matches!(flow.protocol, Protocol::Tcp | Protocol::Any);
        if !tcp || flow.dst_port != API_SERVER_PORT {
            hop.decision = HopDecision::Deny;
            hop.detail = format!(
                "the API server of cluster {} serves TCP {API_SERVER_PORT} only",
                c.name
            );
            t.hops.push(hop);
            t.deny(
                Component::ApiServer,
                format!(
                    "nothing serves {} at {}: the API server of cluster {} serves TCP {API_SERVER_PORT} only",
                    proto_port(flow.protocol, flow.dst_port),
                    flow.dst,
                    c.name
                ),
                format!("connect to TCP {API_SERVER_PORT}"),
            );
            return;
        }
        let d = c.access.check(seen_as);
        hop.access = Some(d);
        hop.detail = match d {
            AccessDecision::Unrestricted => format!(
                "cluster {} has no authorized IP ranges: {seen_as} admitted",
                c.name
            ),
            AccessDecision::Range { range } => {
                hop.address_prefix = Some(range);
                format!("{seen_as} admitted by authorized range {range}")
            }
            AccessDecision::LoadBalancerOutbound { ip } => format!(
                "{ip} admitted: the load-balancer outbound IP of cluster {} is always authorized",
                c.name
            ),
            AccessDecision::NoMatch => format!(
                "{seen_as} is not in the authorized IP ranges of cluster {}",
                c.name
            ),
        };
        if d.admitted() {
            t.hops.push(hop);
            return;
        }
        hop.decision = HopDecision::Deny;
        t.hops.push(hop);
        t.deny(
            Component::ApiServer,
            format!(
                "the API server of cluster {} sees the client as {seen_as} ({}), which is not in --api-server-authorized-ip-ranges",
                c.name,
                origin.describe()
            ),
            format!(
                "add {}, {}, to --api-server-authorized-ip-ranges of cluster {}",
                host_cidr(seen_as),
                origin.describe(),
                c.name
            ),
        );
    }
}

fn route_hop(route: &NextHop, dst: IpAddr) -> Hop {
    let mut h = Hop::new(
        Component::Route,
        route.route_table_label(),
        HopDecision::Forward,
        match route.next_hop_ip_address {
            Some(ip) => format!(
                "{} sends {dst} to {} {ip}",
                route.describe(),
                route.next_hop_type
            ),
            None => format!(
                "{} sends {dst} to {}",
                route.describe(),
                route.next_hop_type
            ),
        },
    );
    h.name = route.route_name.clone();
    h.address_prefix = Some(route.address_prefix);
    h.next_hop_type = Some(route.next_hop_type);
    h.next_hop_ip_address = route.next_hop_ip_address;
    h
}
