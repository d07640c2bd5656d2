//! A firewall's network rule collections compiled to one nftables table.
//!
//! The table (`inet apiwall_<firewall>`) holds:
//! - chain `forward` (hook forward): the fast path for flows this policy already admitted, the
//!   classification of every other packet, then the default deny with a rate-limited log;
//! - chain `classify` and, per family, `classify_ip` / `classify_ip6`: the rules in evaluation
//!   order (collections by priority, then rules as stored; the first match wins), matched on the
//!   connection's original tuple (`ct original …`), so one chain serves both directions. Each run
//!   of rules with specific destinations is one interval map from the destination to a bucket
//!   chain holding only the rules of the run that cover it, in order; see [`render`]. Every nft
//!   rule has a counter and the comment `collection/rule` ([`crate::rule_counters`] sums them).
//!   [`Mode::Naive`] keeps the old linear layout, mirrored in `classify_reply`, as the baseline;
//! - logging: every rule's verdict, and the default deny (rate-limited), also sends the packet to
//!   NFLOG group [`LOG_GROUP`] with the prefix `Allow <collection>/<rule>`, `Deny <collection>/<rule>`
//!   or `Deny` ([`log_prefix`]). Only classifications log, so that is one line per decision; the
//!   lab reads the group and writes Azure's wording;
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
//!   again by its connection's original tuple, whichever direction it travels. A flow the new
//!   rules still allow is stamped with the new generation; one they deny is dropped, both ways.
//!
//! So counters count classifications (first packets, and re-checks after a change), not every
//! packet of a flow. The table owns the connection mark of its namespace: one firewall per
//! namespace.
//!
//! Protocols: `TCP` and `UDP` match their destination ports; `ICMP` (ICMP and ICMPv6) ignores
//! ports, as the userspace classifier does; `Any` is TCP and UDP with the ports plus ICMP, or
//! every protocol when the ports are `*`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// The NFLOG group every classification verdict logs to (`log group`): the lab's log reader
/// binds it inside the firewall's namespace.
pub const LOG_GROUP: u16 = 2718;

/// The NFLOG prefix of the default deny (rate-limited, as its kernel log line).
pub const DEFAULT_DENY_PREFIX: &str = "Deny";

/// The NFLOG prefix of a rule's verdict: `Allow <collection>/<rule>` or `Deny <collection>/<rule>`,
/// cut to the 127 bytes nft keeps (Azure names have no `/`, `"` or `\`).
pub fn log_prefix(action: Action, collection: &str, rule: &str) -> String {
    let word = match action {
        Action::Allow => "Allow",
        Action::Deny => "Deny",
    };
    quote(&format!("{word} {collection}/{rule}"), COMMENT_MAX)
}

/// A rule's verdict statements: counted, logged to [`LOG_GROUP`], then accepted (stamping the
/// generation) or dropped.
fn verdict(action: Action, collection: &str, rule: &str) -> String {
    let prefix = log_prefix(action, collection, rule);
    match action {
        Action::Allow => {
            format!("counter log group {LOG_GROUP} prefix \"{prefix}\" ct mark set {GEN} accept")
        }
        Action::Deny => format!("counter log group {LOG_GROUP} prefix \"{prefix}\" drop"),
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
    match opts.mode {
        Mode::Sets => render_dispatch(spec, opts),
        Mode::Naive => render_naive(spec, opts),
    }
}

/// Address and port lists of two or more entries are named interval sets, one per distinct list,
/// up to this many sets. Beyond it, a list used by one rule only with at most [`EXPAND_MAX`]
/// entries becomes one nft rule per entry instead: the kernel finds sets by name in a list, so
/// ten thousand sets make a load quadratic (seconds), while a few more rules cost little.
const SET_BUDGET: usize = 512;
const EXPAND_MAX: usize = 4;
/// A run of fewer destination-specific rules than this stays linear (a map is not worth it).
const MIN_SEGMENT: usize = 4;

/// One firewall rule, ready for the dispatch renderer.
struct Compiled {
    comment: String,
    verdict: String,
    src: Addresses,
    dst: Addresses,
    groups: Vec<L4>,
    ports: Vec<String>,
}

impl Compiled {
    /// Whether the rule can match packets of family `f`.
    fn applies(&self, f: Family) -> bool {
        (self.src.any || !self.src.family(f).is_empty())
            && (self.dst.any || !self.dst.family(f).is_empty())
    }
}

/// The operands of one side of a rule: one entry per nft rule it expands to (`None`: no match).
fn operands(
    sets: &mut Sets,
    shared: &HashMap<(&'static str, Vec<String>), usize>,
    expand: bool,
    ty: &'static str,
    name: &str,
    elems: Option<Vec<String>>,
) -> Vec<Option<String>> {
    let Some(elems) = elems else {
        return vec![None];
    };
    if elems.len() == 1 {
        return vec![Some(elems[0].clone())];
    }
    let uses = shared.get(&(ty, elems.clone())).copied().unwrap_or(0);
    if !expand || elems.len() > EXPAND_MAX || uses > 1 {
        vec![Some(sets.named(name, ty, elems))]
    } else {
        elems.into_iter().map(Some).collect()
    }
}

/// The dispatch renderer's state: named sets, bucket chains, and how often each list is used.
struct Dispatch {
    sets: Sets,
    shared: HashMap<(&'static str, Vec<String>), usize>,
    /// Whether single-use short lists expand to one rule per entry ([`SET_BUDGET`]).
    expand: bool,
    /// `chain NAME {…}` texts of buckets and maps.
    chains: String,
    maps: String,
    /// Bucket chains by their rule list.
    buckets: HashMap<Vec<usize>, String>,
    nft_rules: usize,
}

impl Dispatch {
    /// The nft rules of rule `i` for family `f`, matched on the connection's original tuple;
    /// `with_dst: false` inside a bucket, whose map already matched the destination.
    fn lines(&mut self, rules: &[Compiled], i: usize, f: Family, with_dst: bool) -> String {
        let r = &rules[i];
        let k = f.keyword();
        let side =
            |a: &Addresses| (!a.any).then(|| a.family(f).iter().map(|&x| f.element(x)).collect());
        let srcs = operands(
            &mut self.sets,
            &self.shared,
            self.expand,
            f.set_type(),
            &format!("r{i}_src{}", f.suffix()),
            side(&r.src),
        );
        let dsts = if with_dst {
            operands(
                &mut self.sets,
                &self.shared,
                self.expand,
                f.set_type(),
                &format!("r{i}_dst{}", f.suffix()),
                side(&r.dst),
            )
        } else {
            vec![None]
        };
        let mut out = String::new();
        for g in &r.groups {
            let ports = if g.ported {
                operands(
                    &mut self.sets,
                    &self.shared,
                    self.expand,
                    "inet_service",
                    &format!("r{i}_ports"),
                    Some(r.ports.clone()),
                )
            } else {
                vec![None]
            };
            for s in &srcs {
                for d in &dsts {
                    for p in &ports {
                        let mut parts = Vec::with_capacity(6);
                        if let Some(s) = s {
                            parts.push(format!("ct original {k} saddr {s}"));
                        }
                        if let Some(d) = d {
                            parts.push(format!("ct original {k} daddr {d}"));
                        }
                        parts.extend(l4_match(&g.protos));
                        if let Some(p) = p {
                            parts.push(format!("ct original proto-dst {p}"));
                        }
                        parts.push(r.verdict.clone());
                        parts.push(format!("comment \"{}\"", r.comment));
                        let _ = writeln!(out, "\t\t{}", parts.join(" "));
                        self.nft_rules += 1;
                    }
                }
            }
        }
        out
    }

    /// The text of a segment of destination-specific rules for family `f`: linear when short,
    /// else one interval map from destination to the chain of the rules that cover it.
    fn segment(&mut self, rules: &[Compiled], seg: &Segment, f: Family) -> String {
        if seg.rules.len() < MIN_SEGMENT {
            return seg
                .rules
                .iter()
                .map(|&i| self.lines(rules, i, f, true))
                .collect();
        }
        let mut elems = Vec::with_capacity(seg.map.len());
        for (&lo, (hi, list)) in &seg.map {
            let chain = match self.buckets.get(list) {
                Some(c) => c.clone(),
                None => {
                    let name = format!("bucket{}_{}", f.suffix(), self.buckets.len());
                    let body: String = list
                        .iter()
                        .map(|&i| self.lines(rules, i, f, false))
                        .collect();
                    let _ = write!(self.chains, "\tchain {name} {{\n{body}\t}}\n");
                    self.buckets.insert(list.clone(), name.clone());
                    name
                }
            };
            elems.push(format!("{} : jump {chain}", f.element((lo, *hi))));
        }
        let name = format!("dst{}_{}", f.suffix(), seg.first);
        let _ = write!(
            self.maps,
            "\tmap {name} {{\n\t\ttype {} : verdict\n\t\tflags interval\n\t\telements = {{ {} }}\n\t}}\n",
            f.set_type(),
            elems.join(", ")
        );
        self.nft_rules += 1;
        format!("\t\tct original {} daddr vmap @{name}\n", f.keyword())
    }
}

/// A run of consecutive rules with specific destinations, as disjoint destination intervals,
/// each with the rules (in order) whose destinations cover it.
#[derive(Default)]
struct Segment {
    first: usize,
    rules: Vec<usize>,
    /// `lo → (hi, rules)`, disjoint.
    map: BTreeMap<u128, (u128, Vec<usize>)>,
    copies: usize,
}

impl Segment {
    /// Splits the interval holding `at` (if any) so that one starts at `at`.
    fn split(&mut self, at: u128) {
        let Some((&lo, (hi, list))) = self.map.range(..at).next_back() else {
            return;
        };
        if *hi >= at {
            let (hi, list) = (*hi, list.clone());
            self.map.insert(lo, (at - 1, list.clone()));
            self.map.insert(at, (hi, list));
        }
    }

    /// How many intervals `[lo, hi]` overlaps.
    fn overlapping(&self, lo: u128, hi: u128) -> usize {
        let before = self
            .map
            .range(..lo)
            .next_back()
            .is_some_and(|(_, (h, _))| *h >= lo);
        self.map.range(lo..=hi).count() + usize::from(before)
    }

    /// Adds rule `i` with destination intervals `dst`, unless that would copy rules into too
    /// many intervals (nested or crossing ranges); then the caller starts a new segment.
    fn add(&mut self, i: usize, dst: &[(u128, u128)]) -> bool {
        let extra: usize = dst
            .iter()
            .map(|&(lo, hi)| self.overlapping(lo, hi) + 1)
            .sum();
        if !self.rules.is_empty() && self.copies + extra > 4 * (self.rules.len() + 1) + 64 {
            return false;
        }
        if self.rules.is_empty() {
            self.first = i;
        }
        for &(lo, hi) in dst {
            self.split(lo);
            if let Some(next) = hi.checked_add(1) {
                self.split(next);
            }
            // Existing intervals inside [lo, hi] get the rule; the gaps become new intervals.
            let inside: Vec<(u128, u128)> = self
                .map
                .range(lo..=hi)
                .map(|(&l, (h, _))| (l, *h))
                .collect();
            let mut at = Some(lo);
            for (l, h) in inside {
                if let Some(a) = at
                    && a < l
                {
                    self.map.insert(a, (l - 1, vec![i]));
                }
                self.map.get_mut(&l).expect("present").1.push(i);
                at = h.checked_add(1);
            }
            if let Some(a) = at
                && a <= hi
            {
                self.map.insert(a, (hi, vec![i]));
            }
        }
        self.copies += extra;
        self.rules.push(i);
        true
    }
}

/// Connections are classified by their original tuple (`ct original …`), so one chain serves
/// both directions. Per family, each run of rules with specific destinations becomes one
/// interval map from the destination to a bucket chain holding, in order, only the rules of
/// that run that cover it; rules with any destination stay linear between the maps. A packet
/// falls through a bucket (or a map miss) to the next item, so the first matching rule still
/// decides.
fn render_dispatch(spec: &FirewallSpec, opts: &RenderOptions) -> Ruleset {
    let ordered_rules = ordered(&spec.collections);
    let rules: Vec<Compiled> = ordered_rules
        .iter()
        .map(|(col, rule)| {
            let port_list = ports(&rule.destination_ports);
            Compiled {
                comment: quote(&format!("{}/{}", col.name, rule.name), COMMENT_MAX),
                verdict: verdict(col.action.kind, &col.name, &rule.name),
                src: Addresses::from_entries(&rule.source_addresses),
                dst: Addresses::from_entries(&rule.destination_addresses),
                groups: l4_groups(&rule.protocols, port_list.is_none()),
                ports: port_list
                    .iter()
                    .flatten()
                    .map(|&p| port_element(p))
                    .collect(),
            }
        })
        .collect();

    // How many rules use each list: a list used by several becomes one shared set.
    let mut shared: HashMap<(&'static str, Vec<String>), usize> = HashMap::new();
    for r in &rules {
        for f in Family::BOTH {
            for a in [&r.src, &r.dst] {
                if !a.any && a.family(f).len() > 1 {
                    let e = a.family(f).iter().map(|&x| f.element(x)).collect();
                    *shared.entry((f.set_type(), e)).or_default() += 1;
                }
            }
        }
        if r.ports.len() > 1 && r.groups.iter().any(|g| g.ported) {
            *shared.entry(("inet_service", r.ports.clone())).or_default() += 1;
        }
    }
    let mut d = Dispatch {
        sets: Sets::default(),
        expand: shared.len() > SET_BUDGET,
        shared,
        chains: String::new(),
        maps: String::new(),
        buckets: HashMap::new(),
        nft_rules: 0,
    };

    let mut family_chains = String::new();
    let mut jumps = String::new();
    for f in Family::BOTH {
        let mut body = String::new();
        let mut seg = Segment::default();
        for (i, r) in rules.iter().enumerate() {
            if !r.applies(f) {
                continue;
            }
            if r.dst.any {
                let s = std::mem::take(&mut seg);
                body.push_str(&d.segment(&rules, &s, f));
                body.push_str(&d.lines(&rules, i, f, true));
                continue;
            }
            if !seg.add(i, r.dst.family(f)) {
                let s = std::mem::take(&mut seg);
                body.push_str(&d.segment(&rules, &s, f));
                assert!(
                    seg.add(i, r.dst.family(f)),
                    "an empty segment takes any rule"
                );
            }
        }
        body.push_str(&d.segment(&rules, &seg, f));
        if body.is_empty() {
            continue;
        }
        let chain = format!("classify_{}", f.keyword());
        let _ = write!(family_chains, "\tchain {chain} {{\n{body}\t}}\n");
        let _ = writeln!(jumps, "\t\tmeta nfproto {} jump {chain}", nfproto(f));
        d.nft_rules += 1;
    }

    let table = &spec.table;
    let mut def = String::new();
    let _ = writeln!(def, "table {FAMILY} {table} {{");
    def.push_str(&d.sets.into_text());
    def.push_str(&d.maps);
    let name = quote(&spec.name, 80);
    let rate = opts.log_per_second.max(1);
    let _ = write!(
        def,
        "\tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related ct mark {GEN} accept comment \"admitted by this policy, and replies\"\n\
         \t\tct state new,established,related jump classify\n\
         \t\tlimit rate {rate}/second burst {burst} packets log prefix \"apiwall {name} deny: \" level info\n\
         \t\tlimit rate {rate}/second burst {burst} packets log group {LOG_GROUP} prefix \"{DEFAULT_DENY_PREFIX}\"\n\
         \t\tcounter drop comment \"default deny\"\n\
         \t}}\n\
         \tchain classify {{\n{jumps}\t}}\n\
         {family_chains}{chains}",
        burst = rate * 2,
        chains = d.chains,
    );
    def.push_str(&snat_chain(spec));
    def.push_str("}\n");
    finish(
        spec,
        def,
        ordered_rules.len(),
        d.nft_rules,
        "sets: destination maps to bucket chains, by the connection's original tuple",
    )
}

/// Stamps the generation (a hash of the text) and writes the header.
fn finish(spec: &FirewallSpec, def: String, rules: usize, nft_rules: usize, mode: &str) -> Ruleset {
    let generation = match fnv1a(&def) {
        0 => 1,
        g => g,
    };
    let def = def.replace(GEN, &format!("0x{generation:08x}"));
    let addr = |a: Option<IpAddr>| a.map_or("none".to_string(), |a| a.to_string());
    Ruleset {
        table: spec.table.clone(),
        definition: def,
        header: vec![
            format!(
                "apiwall firewall {}: collections {}, rules {rules}, nft rules {nft_rules} ({mode})",
                spec.name,
                spec.collections.len(),
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

/// The baseline: one nft rule per protocol × source × destination × port entry, matched on
/// the packet (mirrored in `classify_reply`), scanned linearly.
fn render_naive(spec: &FirewallSpec, opts: &RenderOptions) -> Ruleset {
    let mut lines: Vec<(Line, String, String)> = Vec::new();
    let rules = ordered(&spec.collections);
    for (col, rule) in &rules {
        let comment = quote(&format!("{}/{}", col.name, rule.name), COMMENT_MAX);
        let verdict = verdict(col.action.kind, &col.name, &rule.name);
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
                                    verdict.clone(),
                                    comment.clone(),
                                ));
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
         \t\tlimit rate {rate}/second burst {burst} packets log group {LOG_GROUP} prefix \"{DEFAULT_DENY_PREFIX}\"\n\
         \t\tcounter drop comment \"default deny\"\n\
         \t}}\n\
         \tchain classify {{\n{classify}\t}}\n\
         \tchain classify_reply {{\n{reply}\t}}\n",
        burst = rate * 2,
    );
    def.push_str(&snat_chain(spec));
    def.push_str("}\n");

    finish(
        spec,
        def,
        rules.len(),
        lines.len(),
        "naive: one nft rule per entry, no sets",
    )
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
    fn every_verdict_logs_its_rule_and_prefixes_fit_nft() {
        let mut s = spec();
        let long = "x".repeat(80);
        s.collections.push(collection(
            "fw",
            &long,
            100,
            Action::Deny,
            vec![network_rule(
                &long,
                &[Protocol::Udp],
                &["*"],
                &["*"],
                &["53"],
            )],
        ));
        for mode in [Mode::Sets, Mode::Naive] {
            let def = render(
                &s,
                &RenderOptions {
                    mode,
                    ..Default::default()
                },
            )
            .definition()
            .to_string();
            for l in def
                .lines()
                .filter(|l| l.contains(" accept comment") || l.contains(" drop comment"))
            {
                if l.contains("admitted by this policy") || l.contains("default deny") {
                    continue;
                }
                assert!(
                    l.contains(&format!("log group {LOG_GROUP} prefix \"")),
                    "{l}"
                );
            }
            assert!(def.contains(&format!(
                "log group {LOG_GROUP} prefix \"{DEFAULT_DENY_PREFIX}\""
            )));
            assert!(def.contains("prefix \"Allow myAzureFirewallCollection/AllowTCPOutbound\""));
        }
        let p = log_prefix(Action::Deny, &long, &long);
        assert_eq!(p.len(), COMMENT_MAX);
        assert!(p.starts_with(&format!("Deny {long}/x")));
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
