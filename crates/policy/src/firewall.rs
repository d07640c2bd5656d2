//! A firewall's network rule collections, compiled into a classifier, and its SNAT decision.
//!
//! Rules are numbered in evaluation order: collections by priority (stored order on a tie), then
//! rules as stored. Each dimension of a flow (protocol, destination port, source and destination
//! address) maps through a sorted interval map to the bitset of rules that match it there. A flow's
//! rule is the lowest bit set in the AND of its four bitsets: first match wins, no bit means the
//! default deny. A lookup costs four binary searches and a scan of `rules / 64` words, whatever the
//! rules look like.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use apiwall_model::{AddressEntry, Cidr, Firewall, PortEntry, Protocol, resources::Action};
use ipnet::IpNet;
use serde::Serialize;

use crate::authorized::AuthorizedSet;
use crate::lpm::{Key, RangeMap};

/// The rule that decided a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    pub collection: String,
    pub priority: u32,
    pub rule: String,
    pub action: Action,
}

/// The rules of a firewall in evaluation order: `(collection name, priority, action, rule)`.
pub fn ordered_rules(fw: &Firewall) -> Vec<(&str, u32, Action, &apiwall_model::NetworkRule)> {
    let mut cols: Vec<_> = fw.network_rule_collections.iter().collect();
    cols.sort_by_key(|c| c.priority);
    cols.iter()
        .flat_map(|c| {
            c.rules
                .iter()
                .map(|r| (c.name.as_str(), c.priority.get(), c.action.kind, r))
        })
        .collect()
}

/// The protocol of a flow as an index into the per-protocol bitsets.
fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Icmp => 2,
        Protocol::Any => 3,
    }
}

const PROTOCOLS: [Protocol; 4] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Any];

/// The compiled network rules of one firewall.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<RuleMatch>,
    words: usize,
    /// `words` per protocol, in `proto_index` order.
    proto: Vec<u64>,
    all: Vec<u64>,
    port: Dim<u16>,
    src4: Dim<u32>,
    src6: Dim<u128>,
    dst4: Dim<u32>,
    dst6: Dim<u128>,
}

impl Classifier {
    pub fn compile(fw: &Firewall) -> Self {
        let ordered = ordered_rules(fw);
        let n = ordered.len();
        let words = n.div_ceil(64);
        let mut proto = vec![0u64; words * 4];
        let mut ports = Vec::new();
        let (mut src4, mut src6, mut dst4, mut dst6) = (vec![], vec![], vec![], vec![]);
        let mut rules = Vec::with_capacity(n);
        for (i, (col, prio, action, r)) in ordered.into_iter().enumerate() {
            let id = i as u32;
            rules.push(RuleMatch {
                collection: col.to_string(),
                priority: prio,
                rule: r.name.clone(),
                action,
            });
            for (p, packet) in PROTOCOLS.iter().enumerate() {
                if r.protocols.iter().any(|rp| rp.matches(*packet)) {
                    proto[p * words + i / 64] |= 1 << (i % 64);
                }
            }
            for e in &r.destination_ports {
                let (lo, hi) = match e {
                    // `*` holds every port, including 0.
                    PortEntry::Any => (0, u16::MAX),
                    PortEntry::Range(a, b) => (*a, *b),
                };
                ports.push((lo, hi, id));
            }
            for e in &r.source_addresses {
                push_address(e, id, &mut src4, &mut src6);
            }
            for e in &r.destination_addresses {
                push_address(e, id, &mut dst4, &mut dst6);
            }
        }
        Self {
            rules,
            words,
            proto,
            all: vec![u64::MAX; words],
            port: Dim::build(ports, words),
            src4: Dim::build(src4, words),
            src6: Dim::build(src6, words),
            dst4: Dim::build(dst4, words),
            dst6: Dim::build(dst6, words),
        }
    }

    /// The first rule matching the flow; `None` is the default deny. ICMP has no ports, so an
    /// ICMP flow matches any rule's destination ports.
    pub fn classify(
        &self,
        src: IpAddr,
        dst: IpAddr,
        dst_port: u16,
        protocol: Protocol,
    ) -> Option<&RuleMatch> {
        let s = match src {
            IpAddr::V4(a) => self.src4.get(u32::from(a)),
            IpAddr::V6(a) => self.src6.get(u128::from(a)),
        };
        let d = match dst {
            IpAddr::V4(a) => self.dst4.get(u32::from(a)),
            IpAddr::V6(a) => self.dst6.get(u128::from(a)),
        };
        let p = if protocol == Protocol::Icmp {
            &self.all[..]
        } else {
            self.port.get(dst_port)
        };
        let pi = proto_index(protocol) * self.words;
        let pr = &self.proto[pi..pi + self.words];
        for w in 0..self.words {
            let x = s[w] & d[w] & p[w] & pr[w];
            if x != 0 {
                return self.rules.get(w * 64 + x.trailing_zeros() as usize);
            }
        }
        None
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> &[RuleMatch] {
        &self.rules
    }

    /// Heap bytes held by the compiled dimensions.
    pub fn heap_bytes(&self) -> usize {
        self.port.heap_bytes()
            + self.src4.heap_bytes()
            + self.src6.heap_bytes()
            + self.dst4.heap_bytes()
            + self.dst6.heap_bytes()
            + (self.proto.len() + self.all.len()) * 8
    }
}

fn push_address(
    e: &AddressEntry,
    id: u32,
    v4: &mut Vec<(u32, u32, u32)>,
    v6: &mut Vec<(u128, u128, u32)>,
) {
    match e {
        AddressEntry::Any => {
            v4.push((0, u32::MAX, id));
            v6.push((0, u128::MAX, id));
        }
        AddressEntry::Net(c) => match c.net() {
            IpNet::V4(n) => v4.push((n.network().into(), n.broadcast().into(), id)),
            IpNet::V6(n) => v6.push((n.network().into(), n.broadcast().into(), id)),
        },
        AddressEntry::Range(IpAddr::V4(a), IpAddr::V4(b)) => {
            v4.push(((*a).into(), (*b).into(), id))
        }
        AddressEntry::Range(IpAddr::V6(a), IpAddr::V6(b)) => {
            v6.push(((*a).into(), (*b).into(), id))
        }
        // Mixed families never parse; such an entry matches nothing.
        AddressEntry::Range(..) => {}
    }
}

/// One dimension: key → bitset of the rules matching there. Equal bitsets are stored once.
#[derive(Debug, Clone)]
struct Dim<K> {
    map: RangeMap<K, u32>,
    words: usize,
    sets: Vec<u64>,
}

impl<K: Key> Dim<K> {
    /// Sweeps the intervals' start and end events in key order, snapshotting the active set at
    /// every boundary.
    fn build(intervals: Vec<(K, K, u32)>, words: usize) -> Self {
        let mut events: Vec<(K, bool, u32)> = Vec::with_capacity(intervals.len() * 2);
        for (lo, hi, id) in intervals {
            events.push((lo, true, id));
            if hi != K::MAX {
                events.push((hi.succ(), false, id));
            }
        }
        events.sort_unstable_by_key(|e| e.0);
        // A rule may list overlapping entries: count, don't just flip.
        let mut count = vec![0u32; words * 64];
        let mut active = vec![0u64; words];
        let mut interner = Interner::new(words);
        let mut points = vec![(K::MIN, 0u32)];
        let mut i = 0;
        while i < events.len() {
            let at = events[i].0;
            while i < events.len() && events[i].0 == at {
                let (_, start, id) = events[i];
                let c = &mut count[id as usize];
                if start {
                    *c += 1;
                } else {
                    *c -= 1;
                }
                let bit = 1u64 << (id % 64);
                if *c > 0 {
                    active[id as usize / 64] |= bit;
                } else {
                    active[id as usize / 64] &= !bit;
                }
                i += 1;
            }
            let set = interner.intern(&active);
            if at == K::MIN {
                points[0].1 = set;
            } else {
                points.push((at, set));
            }
        }
        Self {
            map: RangeMap::from_sorted(points, 0),
            words,
            sets: interner.sets,
        }
    }

    #[inline]
    fn get(&self, k: K) -> &[u64] {
        let s = self.map.get(k) as usize * self.words;
        &self.sets[s..s + self.words]
    }

    fn heap_bytes(&self) -> usize {
        self.map.heap_bytes() + self.sets.capacity() * 8
    }
}

/// Stores each distinct bitset once; set 0 is the empty set.
struct Interner {
    words: usize,
    sets: Vec<u64>,
    by_hash: HashMap<u64, Vec<u32>>,
}

impl Interner {
    fn new(words: usize) -> Self {
        let mut i = Self {
            words,
            sets: Vec::new(),
            by_hash: HashMap::new(),
        };
        i.intern(&vec![0; words]);
        i
    }

    fn intern(&mut self, set: &[u64]) -> u32 {
        let mut h = DefaultHasher::new();
        set.hash(&mut h);
        let ids = self.by_hash.entry(h.finish()).or_default();
        for &id in ids.iter() {
            let s = id as usize * self.words;
            if &self.sets[s..s + self.words] == set {
                return id;
            }
        }
        // With no rules every set is the empty set, id 0.
        let id = self.sets.len().checked_div(self.words).unwrap_or(0) as u32;
        self.sets.extend_from_slice(set);
        ids.push(id);
        id
    }
}

/// Whether a firewall SNATs traffic to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "snat")]
pub enum SnatDecision {
    /// The source becomes the firewall's public IP.
    Translate { to: IpAddr },
    /// The destination lies in a never-SNAT private range: the source is kept.
    Keep { range: Cidr },
    /// The destination needs SNAT but the firewall has no public IP.
    NoPublicIp,
}

/// A firewall's SNAT decision, compiled from its private ranges.
#[derive(Debug, Clone)]
pub struct Snat {
    private: AuthorizedSet,
    public_ip: Option<IpAddr>,
}

impl Snat {
    /// `private_ranges` is `Firewall::snat_private_ranges()`. `255.255.255.255/32` means "always
    /// SNAT", so it holds no destination; `0.0.0.0/0` holds every IPv4 destination.
    pub fn new(private_ranges: &[Cidr], public_ip: Option<IpAddr>) -> Self {
        let always: Cidr = "255.255.255.255/32".parse().expect("constant");
        let ranges: Vec<Cidr> = private_ranges
            .iter()
            .copied()
            .filter(|c| *c != always)
            .collect();
        Self {
            private: AuthorizedSet::build(&ranges),
            public_ip,
        }
    }

    pub fn decide(&self, dst: IpAddr) -> SnatDecision {
        match (self.private.lookup(dst), self.public_ip) {
            (Some(range), _) => SnatDecision::Keep { range },
            (None, Some(to)) => SnatDecision::Translate { to },
            (None, None) => SnatDecision::NoPublicIp,
        }
    }

    pub fn public_ip(&self) -> Option<IpAddr> {
        self.public_ip
    }
}

#[cfg(test)]
mod tests;
