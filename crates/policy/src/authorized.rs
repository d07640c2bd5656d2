//! The API server's authorized IP ranges: an IPv4 and IPv6 longest-prefix-match set, and the AKS
//! semantics around it (restriction off, `0.0.0.0/32`, the load balancer's outbound IP).

use std::net::{IpAddr, Ipv4Addr};

use apiwall_model::{Cidr, OutboundType};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::lpm::RangeMap;

/// No prefix covers the address.
const NONE: u8 = u8::MAX;

/// An immutable set of prefixes answering "which is the longest prefix holding this address?".
///
/// Built once per policy revision. Nested prefixes are flattened into sorted, non-overlapping
/// intervals that each remember the length of their longest covering prefix, so a lookup is a
/// bucketed binary search over plain integers and the prefix is rebuilt from the address.
#[derive(Debug, Clone)]
pub struct AuthorizedSet {
    v4: RangeMap<u32, u8>,
    v6: RangeMap<u128, u8>,
    len: usize,
}

impl AuthorizedSet {
    /// Builds the set. Duplicate prefixes count once.
    pub fn build(prefixes: &[Cidr]) -> AuthorizedSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in prefixes {
            match c.net() {
                IpNet::V4(n) => v4.push((
                    u32::from(n.network()),
                    u32::from(n.broadcast()),
                    n.prefix_len(),
                )),
                IpNet::V6(n) => v6.push((
                    u128::from(n.network()),
                    u128::from(n.broadcast()),
                    n.prefix_len(),
                )),
            }
        }
        // Sorting here makes duplicates adjacent and leaves `nested` an already sorted input.
        v4.sort_unstable_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
        v4.dedup();
        v6.sort_unstable_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
        v6.dedup();
        let len = v4.len() + v6.len();
        AuthorizedSet {
            v4: RangeMap::nested(v4, NONE),
            v6: RangeMap::nested(v6, NONE),
            len,
        }
    }

    /// The longest prefix holding `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<Cidr> {
        match ip {
            IpAddr::V4(a) => {
                let len = self.v4.get(u32::from(a));
                (len != NONE).then(|| {
                    Cidr(IpNet::V4(
                        Ipv4Net::new(a, len).expect("stored length").trunc(),
                    ))
                })
            }
            IpAddr::V6(a) => {
                let len = self.v6.get(u128::from(a));
                (len != NONE).then(|| {
                    Cidr(IpNet::V6(
                        Ipv6Net::new(a, len).expect("stored length").trunc(),
                    ))
                })
            }
        }
    }

    /// Whether some prefix holds `ip`.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.get(u32::from(a)) != NONE,
            IpAddr::V6(a) => self.v6.get(u128::from(a)) != NONE,
        }
    }

    /// The number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held by the set (by capacity). The memory test checks this against a
    /// counting allocator.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }

    /// The number of elementary intervals the prefixes flattened into.
    pub fn intervals(&self) -> usize {
        self.v4.intervals() + self.v6.intervals()
    }
}

/// Why the API server admits an address or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum AccessDecision {
    /// `authorizedIpRanges` is unset or empty: everyone is admitted.
    Unrestricted,
    /// The longest authorized range holding the address.
    Range { range: Cidr },
    /// The cluster's load-balancer outbound IP, always admitted (AKS behaviour).
    LoadBalancerOutbound { ip: IpAddr },
    /// No authorized range holds the address.
    NoMatch,
}

impl AccessDecision {
    pub fn admitted(&self) -> bool {
        !matches!(self, AccessDecision::NoMatch)
    }
}

/// One cluster's API server access rule, compiled.
#[derive(Debug, Clone)]
pub struct ApiServerAccess {
    /// `None`: the restriction is off.
    ranges: Option<AuthorizedSet>,
    /// The load-balancer outbound IP, when it is admitted regardless of the ranges.
    lb_outbound_ip: Option<IpAddr>,
}

/// `0.0.0.0/32` alone: only the cluster's own load-balancer outbound IP.
fn is_lb_only(ranges: &[Cidr]) -> bool {
    ranges.len() == 1 && ranges[0].net() == IpNet::V4(Ipv4Net::from(Ipv4Addr::UNSPECIFIED))
}

impl ApiServerAccess {
    /// `ranges` is the cluster's `apiServerAccessProfile.authorizedIpRanges`; `lb_outbound_ip`
    /// the address of its load balancer's `effectiveOutboundIPs[0]`, if any.
    pub fn new(
        ranges: Option<&[Cidr]>,
        outbound_type: OutboundType,
        lb_outbound_ip: Option<IpAddr>,
    ) -> Self {
        // Only a load balancer's outbound IP is admitted by itself (AKS behaviour).
        let lb = lb_outbound_ip.filter(|_| outbound_type == OutboundType::LoadBalancer);
        match ranges {
            None | Some([]) => Self {
                ranges: None,
                lb_outbound_ip: None,
            },
            Some(r) if is_lb_only(r) => Self {
                ranges: Some(AuthorizedSet::build(&[])),
                lb_outbound_ip: lb,
            },
            Some(r) => Self {
                ranges: Some(AuthorizedSet::build(r)),
                lb_outbound_ip: lb,
            },
        }
    }

    /// Whether the API server admits a client that it sees as `ip`, and why.
    #[inline]
    pub fn check(&self, ip: IpAddr) -> AccessDecision {
        let Some(set) = &self.ranges else {
            return AccessDecision::Unrestricted;
        };
        if let Some(range) = set.lookup(ip) {
            AccessDecision::Range { range }
        } else if self.lb_outbound_ip == Some(ip) {
            AccessDecision::LoadBalancerOutbound { ip }
        } else {
            AccessDecision::NoMatch
        }
    }

    /// Whether the restriction is on.
    pub fn restricted(&self) -> bool {
        self.ranges.is_some()
    }

    /// The authorized set, when the restriction is on.
    pub fn ranges(&self) -> Option<&AuthorizedSet> {
        self.ranges.as_ref()
    }

    /// The load-balancer outbound IP that is always admitted, if any.
    pub fn lb_outbound_ip(&self) -> Option<IpAddr> {
        self.lb_outbound_ip
    }
}

/// The host prefix of an address: `/32` or `/128`.
pub fn host_cidr(ip: IpAddr) -> Cidr {
    Cidr(IpNet::from(ip))
}

#[cfg(test)]
mod tests;
