//! A cluster's authorized IP ranges as an nftables set in front of the API host's port.
//!
//! The table (`inet apiwall_gate_<cluster>`) has one input-hook chain. Every TCP packet to the
//! API port is checked against the interval sets, not just the first one: a range removed by an
//! update stops established connections from it at once, and replies (output) are untouched.
//! The semantics are AKS's, as `ApiServerAccess` has them: no ranges (or an empty list) admits
//! everyone; `0.0.0.0/32` alone admits only the load balancer's outbound IP; with outbound type
//! `loadBalancer` that IP is always admitted.

use std::fmt::Write as _;
use std::net::IpAddr;

use apiwall_model::{Cidr, ManagedCluster, OutboundType, World};

use crate::intervals::{Addresses, Family};
use crate::ruleset::{FAMILY, Ruleset, Sets, identifier, quote};

/// What the API gate enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGate {
    /// The nft table name; [`ApiGate::for_cluster`] makes it `apiwall_gate_<cluster>`.
    pub table: String,
    /// For comments and the log prefix.
    pub cluster: String,
    /// `apiServerAccessProfile.authorizedIpRanges`; `None` or empty: unrestricted.
    pub ranges: Option<Vec<Cidr>>,
    pub outbound_type: OutboundType,
    /// The address of the load balancer's `effectiveOutboundIPs[0]`.
    pub lb_outbound_ip: Option<IpAddr>,
    /// The API server's TCP port: 443.
    pub port: u16,
    /// Denial log lines per second (burst: twice that).
    pub log_per_second: u32,
}

impl ApiGate {
    /// The gate of `cluster`, resolving its load balancer's outbound IP in `world`.
    pub fn for_cluster(world: &World, cluster: &ManagedCluster) -> Self {
        let lb = cluster
            .network_profile
            .load_balancer_profile
            .as_ref()
            .and_then(|lb| lb.effective_outbound_ips.first())
            .and_then(|r| world.public_ip_by_id(&r.id))
            .map(|p| p.ip_address);
        Self {
            table: format!("apiwall_gate_{}", identifier(&cluster.name)),
            cluster: cluster.name.clone(),
            ranges: cluster
                .api_server_access_profile
                .authorized_ip_ranges
                .clone(),
            outbound_type: cluster.network_profile.outbound_type,
            lb_outbound_ip: lb,
            port: 443,
            log_per_second: 10,
        }
    }

    /// Whether the rendered gate lets a client seen as `ip` reach the port (the answer of
    /// `ApiServerAccess::check`, through the merged intervals the sets hold).
    pub fn admits(&self, ip: IpAddr) -> bool {
        let Some((ranges, lb)) = self.admitted() else {
            return true;
        };
        let all = Addresses::from_cidrs(&ranges);
        let (f, x) = match ip {
            IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (Family::V6, u128::from(a)),
        };
        lb == Some(ip) || all.family(f).iter().any(|&(lo, hi)| lo <= x && x <= hi)
    }

    /// The admitted prefixes and the admitted load-balancer IP; `None`: unrestricted.
    fn admitted(&self) -> Option<(Vec<Cidr>, Option<IpAddr>)> {
        let ranges = self.ranges.as_deref().filter(|r| !r.is_empty())?;
        // Only a load balancer's outbound IP is admitted by itself (AKS behaviour).
        let lb = self
            .lb_outbound_ip
            .filter(|_| self.outbound_type == OutboundType::LoadBalancer);
        let lb_only = ranges.len() == 1 && ranges[0].to_string() == apiwall_model::net::LB_ONLY;
        if lb_only {
            return Some((vec![], lb));
        }
        Some((ranges.to_vec(), lb))
    }
}

/// Compiles the API gate to its nftables table. Pure.
pub fn render_api_gate(gate: &ApiGate) -> Ruleset {
    let port = gate.port;
    let mut sets = Sets::default();
    let mut rules = String::new();
    let header;
    match gate.admitted() {
        None => {
            header = format!(
                "apiwall API gate of cluster {}: unrestricted, every source reaches tcp port {port}",
                gate.cluster
            );
            let _ = writeln!(
                rules,
                "\t\ttcp dport {port} counter accept comment \"unrestricted: no authorized ranges\""
            );
        }
        Some((ranges, lb)) => {
            header = format!(
                "apiwall API gate of cluster {}: authorized ranges {}{} reach tcp port {port}",
                gate.cluster,
                ranges.len(),
                lb.map_or(String::new(), |ip| format!(" and {ip}"))
            );
            let all = Addresses::from_cidrs(&ranges);
            for f in Family::BOTH {
                let elems: Vec<String> = all.family(f).iter().map(|&x| f.element(x)).collect();
                if elems.is_empty() {
                    continue;
                }
                // A named set even for one element, so that it can be listed by name.
                let operand = sets.named(&format!("authorized{}", f.suffix()), f.set_type(), elems);
                let _ = writeln!(
                    rules,
                    "\t\ttcp dport {port} {} saddr {operand} counter accept comment \"authorized range\"",
                    f.keyword()
                );
            }
            if let Some(ip) = lb {
                let k = if ip.is_ipv4() { "ip" } else { "ip6" };
                let _ = writeln!(
                    rules,
                    "\t\ttcp dport {port} {k} saddr {ip} counter accept comment \"load balancer outbound IP\""
                );
            }
            let rate = gate.log_per_second.max(1);
            let _ = writeln!(
                rules,
                "\t\ttcp dport {port} limit rate {rate}/second burst {} packets log prefix \"apiwall gate {} deny: \" level info\n\
                 \t\ttcp dport {port} counter drop comment \"not in the authorized ranges\"",
                rate * 2,
                quote(&gate.cluster, 80),
            );
        }
    }
    let mut def = String::new();
    let _ = writeln!(def, "table {FAMILY} {} {{", gate.table);
    def.push_str(&sets.into_text());
    let _ = write!(
        def,
        "\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n{rules}\t}}\n}}\n"
    );
    Ruleset {
        table: gate.table.clone(),
        definition: def,
        header: vec![header],
        generation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiwall_policy::ApiServerAccess;
    use apiwall_policy::fixture::{Rng, WorldBuilder};
    use std::net::Ipv4Addr;

    /// The gate admits exactly what the userspace `ApiServerAccess` admits.
    #[test]
    fn admits_what_api_server_access_admits() {
        let mut rng = Rng::new(7);
        let w = WorldBuilder::new().cluster("rg", "c", 1).build();
        let c = w.clusters.values().next().unwrap();
        for case in 0..200 {
            let mut gate = ApiGate::for_cluster(&w, c);
            gate.outbound_type = if case % 2 == 0 {
                OutboundType::LoadBalancer
            } else {
                OutboundType::UserDefinedRouting
            };
            let n = rng.below(5) as usize;
            let mut ranges: Vec<Cidr> = (0..n)
                .map(|_| {
                    let len = 8 + rng.below(25) as u8;
                    let a = Ipv4Addr::new(10, rng.below(4) as u8, rng.below(4) as u8, 0);
                    Cidr(ipnet::IpNet::V4(
                        ipnet::Ipv4Net::new(a, len).unwrap().trunc(),
                    ))
                })
                .collect();
            if case % 7 == 0 {
                ranges = vec!["0.0.0.0/32".parse().unwrap()];
            }
            gate.ranges = (case % 11 != 0).then_some(ranges);
            let access = ApiServerAccess::new(
                gate.ranges.as_deref(),
                gate.outbound_type,
                gate.lb_outbound_ip,
            );
            let mut probes: Vec<IpAddr> = (0..50)
                .map(|_| {
                    IpAddr::V4(Ipv4Addr::new(
                        10,
                        rng.below(5) as u8,
                        rng.below(5) as u8,
                        rng.below(256) as u8,
                    ))
                })
                .collect();
            probes.extend(gate.lb_outbound_ip);
            for ip in probes {
                assert_eq!(
                    gate.admits(ip),
                    access.check(ip).admitted(),
                    "case {case}: {ip} with {:?}",
                    gate.ranges
                );
            }
        }
    }
}
