//! A firewall's network rule collections compiled to one nftables table.
//!
//! The table (`inet apiwall_<firewall>`) holds:
//! - chain `forward` (hook forward): the fast path for flows this policy already admitted, the
//!   classification of every other packet, then the default deny with a rate-limited log;
//! - chains `classify` and `classify_reply`: one nft rule per firewall rule (more when a rule mixes
//!   families or ported and port-less protocols), in evaluation order (collections by priority,
//!   then rules as stored): the first match wins. Address and port lists of two or more entries
//!   are interval sets; each rule has a counter and a comment `collection/rule`;
//! - chain `postrouting` (hook nat): SNAT to the public IP, except to the private ranges.
//!
//! # State, and dropping sessions a change denies
//!
//! The firewall is stateful, and a policy change that denies a flow drops its established
//! sessions (Azure's behaviour). Both come from one mechanism, a mark-based re-check rather than a
//! conntrack flush (nft 1.0.6 cannot delete conntrack entries, and the `conntrack` tool is not
//! always installed):
//! - every ruleset has a *generation*, a hash of its rules, never 0;
//! - an Allow verdict stamps the generation on the connection (`ct mark set`);
//! - a packet of an established or related connection whose mark equals the generation is
//!   accepted at once: replies and later packets of admitted flows cost one comparison;
//! - any other packet (a new flow, or one admitted under an older generation) is classified
//!   again: original-direction packets by `classify`, reply packets by `classify_reply`, which
//!   holds the same rules with sources and destinations (and ports) mirrored. A flow the new
//!   rules still allow is stamped with the new generation; one they deny is dropped, both ways.
//!
//! So counters count classifications (first packets, and re-checks after a change), not every
//! packet of a flow. The table owns the connection mark of its namespace: one firewall per
//! namespace.
//!
//! Protocols: `TCP` and `UDP` match their destination ports; `ICMP` (ICMP and ICMPv6) ignores
//! ports, as the userspace classifier does; `Any` is TCP and UDP with the ports plus ICMP, or
//! every protocol when the ports are `*`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use apiwall_model::resources::Action;
use apiwall_model::{Cidr, Firewall, NetworkRuleCollection, Protocol, World};

use crate::intervals::{Addresses, Family, port_element, ports};
use crate::ruleset::{COMMENT_MAX, FAMILY, Ruleset, Sets, fnv1a, identifier, quote};

/// Everything the firewall compiler needs about one firewall.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallSpec {
    /// The firewall's name, for comments and the log prefix.
    pub name: String,
    /// The nft table name; [`FirewallSpec::new`] makes it `apiwall_<name>`.
    pub table: String,
    pub collections: Vec<NetworkRuleCollection>,
    /// `ipConfigurations[0].privateIpAddress`, for the header only.
    pub private_ip: Option<IpAddr>,
    /// The address SNAT translates to; `None`: no SNAT.
    pub public_ip: Option<IpAddr>,
    /// Destinations never SNATed: `Firewall::snat_private_ranges()`. `0.0.0.0/0` means never
    /// SNAT IPv4, `255.255.255.255/32` means always SNAT (it is dropped from the list).
    pub snat_private_ranges: Vec<Cidr>,
}

impl FirewallSpec {
    /// The spec of `fw`, with `public_ip` the address of its first ip-config's public IP.
    pub fn new(fw: &Firewall, public_ip: Option<IpAddr>) -> Self {
        Self {
            name: fw.name.clone(),
            table: format!("apiwall_{}", identifier(&fw.name)),
            collections: fw.network_rule_collections.clone(),
            private_ip: fw.ip_configurations.first().map(|c| c.private_ip_address),
            public_ip,
            snat_private_ranges: fw.snat_private_ranges(),
        }
    }

    /// The spec of `fw`, resolving its public IP in `world`.
    pub fn from_world(world: &World, fw: &Firewall) -> Self {
        let public = fw
            .ip_configurations
            .first()
            .and_then(|c| world.public_ip_by_id(&c.public_ip_address.id))
            .map(|p| p.ip_address);
        Self::new(fw, public)
    }
}

/// How rules become nft rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Address and port lists as interval sets: one nft rule per firewall rule (per family and
    /// protocol group).
    #[default]
    Sets,
    /// No sets: one nft rule per protocol × source × destination × port entry. Only for the
    /// benchmark that compares it with [`Mode::Sets`]; it grows as the product of the lists.
    Naive,
}

/// Options of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    pub mode: Mode,
    /// Default-deny log lines per second (burst: twice that).
    pub log_per_second: u32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Sets,
            log_per_second: 10,
        }
    }
}

/// Stands for the generation until the rules are hashed.
const GEN: &str = "@GENERATION@";

/// A group of protocols that match the same way.
struct L4 {
    /// nft `meta l4proto` names; empty: every protocol.
    protos: Vec<&'static str>,
    /// Whether the destination ports apply.
    ported: bool,
}

fn l4_groups(protocols: &[Protocol], ports_any: bool) -> Vec<L4> {
    let set: BTreeSet<Protocol> = protocols.iter().copied().collect();
    let any = set.contains(&Protocol::Any);
    let mut ported = Vec::new();
    if any || set.contains(&Protocol::Tcp) {
        ported.push("tcp");
    }
    if any || set.contains(&Protocol::Udp) {
        ported.push("udp");
    }
    let icmp = any || set.contains(&Protocol::Icmp);
    let icmp_names = ["icmp", "ipv6-icmp"];
    if ports_any {
        if any {
            return vec![L4 {
                protos: vec![],
                ported: false,
            }];
        }
        let mut protos = ported;
        if icmp {
            protos.extend(icmp_names);
        }
        return if protos.is_empty() {
            vec![]
        } else {
            vec![L4 {
                protos,
                ported: false,
            }]
        };
    }
    let mut out = Vec::new();
    if !ported.is_empty() {
        out.push(L4 {
            protos: ported,
            ported: true,
        });
    }
    if icmp {
        out.push(L4 {
            protos: icmp_names.to_vec(),
            ported: false,
        });
    }
    out
}

fn l4_match(protos: &[&str]) -> Option<String> {
    match protos {
        [] => None,
        [p] => Some(format!("meta l4proto {p}")),
        ps => Some(format!("meta l4proto {{ {} }}", ps.join(", "))),
    }
}

/// One nft rule's matches, before it is written for a direction.
struct Line {
    family: Option<Family>,
    src: Option<String>,
    dst: Option<String>,
    l4: Option<String>,
    ports: Option<String>,
}

impl Line {
    /// The rule's text for original-direction packets, or mirrored for replies.
    fn write(&self, reply: bool, verdict: &str, comment: &str) -> String {
        let mut parts = Vec::with_capacity(6);
        let (s_dir, d_dir, p_dir) = if reply {
            ("daddr", "saddr", "sport")
        } else {
            ("saddr", "daddr", "dport")
        };
        if let Some(f) = self.family {
            let k = f.keyword();
            if let Some(s) = &self.src {
                parts.push(format!("{k} {s_dir} {s}"));
            }
            if let Some(d) = &self.dst {
                parts.push(format!("{k} {d_dir} {d}"));
            }
            if self.src.is_none() && self.dst.is_none() {
                parts.push(format!("meta nfproto {}", nfproto(f)));
            }
        }
        if let Some(l) = &self.l4 {
            parts.push(l.clone());
        }
        if let Some(p) = &self.ports {
            parts.push(format!("th {p_dir} {p}"));
        }
        parts.push(verdict.to_string());
        parts.push(format!("comment \"{comment}\""));
        format!("\t\t{}\n", parts.join(" "))
    }
}

fn nfproto(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// Collections by priority (stored order on a tie), then rules as stored: the order the
/// userspace classifier evaluates them in.
fn ordered(
    cols: &[NetworkRuleCollection],
) -> Vec<(&NetworkRuleCollection, &apiwall_model::NetworkRule)> {
    let mut cols: Vec<_> = cols.iter().collect();
    cols.sort_by_key(|c| c.priority);
    cols.into_iter()
        .flat_map(|c| c.rules.iter().map(move |r| (c, r)))
        .collect()
}

/// Compiles one firewall to its nftables table. Pure.
pub fn render(spec: &FirewallSpec, opts: &RenderOptions) -> Ruleset {
    let mut sets = Sets::default();
    let mut lines: Vec<(Line, &'static str, String)> = Vec::new();
    let rules = ordered(&spec.collections);
    for (i, (col, rule)) in rules.iter().enumerate() {
        let comment = quote(&format!("{}/{}", col.name, rule.name), COMMENT_MAX);
        let verdict = match col.action.kind {
            Action::Allow => "counter ct mark set @GENERATION@ accept",
            Action::Deny => "counter drop",
        };
        let src = Addresses::from_entries(&rule.source_addresses);
        let dst = Addresses::from_entries(&rule.destination_addresses);
        let port_list = ports(&rule.destination_ports);
        let groups = l4_groups(&rule.protocols, port_list.is_none());
        let families: Vec<Option<Family>> = if src.any && dst.any {
            vec![None]
        } else {
            Family::BOTH
                .into_iter()
                .filter(|&f| {
                    (src.any || !src.family(f).is_empty()) && (dst.any || !dst.family(f).is_empty())
                })
                .map(Some)
                .collect()
        };
        let side = |a: &Addresses, f: Option<Family>| -> Vec<Option<String>> {
            match f {
                Some(f) if !a.any => a.family(f).iter().map(|&x| Some(f.element(x))).collect(),
                _ => vec![None],
            }
        };
        let port_elems: Vec<String> = port_list
            .iter()
            .flatten()
            .map(|&p| port_element(p))
            .collect();
        for fam in families {
            match opts.mode {
                Mode::Sets => {
                    let mut operand = |a: &Addresses, what: &str| -> Option<String> {
                        let f = fam?;
                        if a.any {
                            return None;
                        }
                        let elems = a.family(f).iter().map(|&x| f.element(x)).collect();
                        Some(sets.operand(
                            &format!("r{i}_{what}{}", f.suffix()),
                            f.set_type(),
                            elems,
                        ))
                    };
                    let s = operand(&src, "src");
                    let d = operand(&dst, "dst");
                    for g in &groups {
                        let p = g.ported.then(|| {
                            sets.operand(&format!("r{i}_ports"), "inet_service", port_elems.clone())
                        });
                        lines.push((
                            Line {
                                family: fam,
                                src: s.clone(),
                                dst: d.clone(),
                                l4: l4_match(&g.protos),
                                ports: p,
                            },
                            verdict,
                            comment.clone(),
                        ));
                    }
                }
                Mode::Naive => {
                    for s in side(&src, fam) {
                        for d in side(&dst, fam) {
                            for g in &groups {
                                let protos: Vec<Vec<&str>> = if g.protos.is_empty() {
                                    vec![vec![]]
                                } else {
                                    g.protos.iter().map(|p| vec![*p]).collect()
                                };
                                let ps: Vec<Option<String>> = if g.ported {
                                    port_elems.iter().cloned().map(Some).collect()
                                } else {
                                    vec![None]
                                };
                                for proto in &protos {
                                    for p in &ps {
                                        lines.push((
                                            Line {
                                                family: fam,
                                                src: s.clone(),
                                                dst: d.clone(),
                                                l4: l4_match(proto),
                                                ports: p.clone(),
                                            },
                                            verdict,
                                            comment.clone(),
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    let mut classify = String::new();
    let mut reply = String::new();
    for (line, verdict, comment) in &lines {
        classify.push_str(&line.write(false, verdict, comment));
        reply.push_str(&line.write(true, verdict, comment));
    }

    let table = &spec.table;
    let mut def = String::new();
    let _ = writeln!(def, "table {FAMILY} {table} {{");
    def.push_str(&sets.into_text());
    let name = quote(&spec.name, 80);
    let rate = opts.log_per_second.max(1);
    let _ = write!(
        def,
        "\tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related ct mark {GEN} accept comment \"admitted by this policy, and replies\"\n\
         \t\tct direction original jump classify\n\
         \t\tct direction reply jump classify_reply\n\
         \t\tlimit rate {rate}/second burst {burst} packets log prefix \"apiwall {name} deny: \" level info\n\
         \t\tcounter drop comment \"default deny\"\n\
         \t}}\n\
         \tchain classify {{\n{classify}\t}}\n\
         \tchain classify_reply {{\n{reply}\t}}\n",
        burst = rate * 2,
    );
    def.push_str(&snat_chain(spec));
    def.push_str("}\n");

    let generation = match fnv1a(&def) {
        0 => 1,
        g => g,
    };
    let def = def.replace(GEN, &format!("0x{generation:08x}"));

    let mode = match opts.mode {
        Mode::Sets => "sets",
        Mode::Naive => "naive: one nft rule per entry, no sets",
    };
    let addr = |a: Option<IpAddr>| a.map_or("none".to_string(), |a| a.to_string());
    Ruleset {
        table: table.clone(),
        definition: def,
        header: vec![
            format!(
                "apiwall firewall {}: collections {}, rules {}, nft rules {} ({mode})",
                spec.name,
                spec.collections.len(),
                rules.len(),
                lines.len()
            ),
            format!(
                "private IP {}, public IP {}",
                addr(spec.private_ip),
                addr(spec.public_ip)
            ),
            format!("generation 0x{generation:08x} (the ct mark of admitted flows)"),
        ],
        generation: Some(generation),
    }
}

/// The nat chain: SNAT to the public IP unless the destination is private.
fn snat_chain(spec: &FirewallSpec) -> String {
    let mut s = String::from(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    let Some(public) = spec.public_ip else {
        s.push_str("\t\t# no public IP: no SNAT\n\t}\n");
        return s;
    };
    let always: Cidr = "255.255.255.255/32".parse().expect("constant");
    let private = Addresses::from_cidrs(spec.snat_private_ranges.iter().filter(|c| **c != always));
    let f = if public.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    if private.covers(f) {
        let _ = writeln!(
            s,
            "\t\t# every {} destination is private: no SNAT\n\t}}",
            nfproto(f)
        );
        return s;
    }
    let elems: Vec<String> = private.family(f).iter().map(|&x| f.element(x)).collect();
    if !elems.is_empty() {
        let operand = if elems.len() == 1 {
            elems[0].clone()
        } else {
            format!("{{ {} }}", elems.join(", "))
        };
        let _ = writeln!(
            s,
            "\t\t{} daddr {operand} return comment \"private destination: source kept\"",
            f.keyword()
        );
    }
    let _ = writeln!(
        s,
        "\t\tmeta nfproto {} counter snat {} to {public} comment \"SNAT to the public IP\"\n\t}}",
        nfproto(f),
        f.keyword()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiwall_policy::fixture::{WorldBuilder, collection, network_rule};

    fn spec() -> FirewallSpec {
        let w = WorldBuilder::new().procedure("rg", "c", 1).build();
        FirewallSpec::from_world(&w, w.firewalls.values().next().unwrap())
    }

    #[test]
    fn same_rules_same_generation_other_rules_other_generation() {
        let s = spec();
        let a = render(&s, &RenderOptions::default());
        let b = render(&s, &RenderOptions::default());
        assert_eq!(a.generation(), b.generation());
        let mut s2 = s.clone();
        s2.collections.push(collection(
            "fw",
            "deny",
            100,
            Action::Deny,
            vec![network_rule("x", &[Protocol::Udp], &["*"], &["*"], &["53"])],
        ));
        assert_ne!(
            render(&s2, &RenderOptions::default()).generation(),
            a.generation()
        );
        assert!(!a.definition().contains(GEN));
    }

    #[test]
    fn rule_without_protocols_or_addresses_matches_nothing() {
        let mut s = spec();
        s.collections = vec![collection(
            "fw",
            "c",
            100,
            Action::Allow,
            vec![
                network_rule("noproto", &[], &["*"], &["*"], &["*"]),
                network_rule("nosrc", &[Protocol::Tcp], &[], &["*"], &["*"]),
            ],
        )];
        let r = render(&s, &RenderOptions::default());
        assert!(!r.definition().contains("noproto"));
        assert!(!r.definition().contains("nosrc"));
    }
}
