//! Address and port lists as merged, sorted intervals, printed the way nft reads them.
//!
//! nft refuses overlapping elements in one interval set ("conflicting intervals specified"), so
//! overlapping entries are merged here. Adjacent ones are kept apart: `10.0.0.0/24, 10.0.1.0/24`
//! stays readable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use apiwall_model::{AddressEntry, Cidr, PortEntry};
use ipnet::IpNet;

/// The addresses of one side of a rule (its sources or its destinations), by family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Addresses {
    /// `*`: every address of both families.
    pub any: bool,
    pub v4: Vec<(u128, u128)>,
    pub v6: Vec<(u128, u128)>,
}

impl Addresses {
    pub fn from_entries(entries: &[AddressEntry]) -> Self {
        let mut a = Addresses::default();
        for e in entries {
            match e {
                AddressEntry::Any => a.any = true,
                AddressEntry::Net(c) => a.push_cidr(c),
                AddressEntry::Range(IpAddr::V4(x), IpAddr::V4(y)) => {
                    a.v4.push((u32::from(*x).into(), u32::from(*y).into()))
                }
                AddressEntry::Range(IpAddr::V6(x), IpAddr::V6(y)) => {
                    a.v6.push((u128::from(*x), u128::from(*y)))
                }
                // Mixed families never parse; such an entry matches nothing.
                AddressEntry::Range(..) => {}
            }
        }
        if a.any {
            a.v4.clear();
            a.v6.clear();
        }
        a.v4 = merge(a.v4);
        a.v6 = merge(a.v6);
        a
    }

    pub fn from_cidrs<'a>(cidrs: impl IntoIterator<Item = &'a Cidr>) -> Self {
        let mut a = Addresses::default();
        for c in cidrs {
            a.push_cidr(c);
        }
        a.v4 = merge(a.v4);
        a.v6 = merge(a.v6);
        a
    }

    fn push_cidr(&mut self, c: &Cidr) {
        match c.net() {
            IpNet::V4(n) => self.v4.push((
                u32::from(n.network()).into(),
                u32::from(n.broadcast()).into(),
            )),
            IpNet::V6(n) => self
                .v6
                .push((u128::from(n.network()), u128::from(n.broadcast()))),
        }
    }

    pub fn family(&self, f: Family) -> &[(u128, u128)] {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Whether the list holds the whole address space of `f`.
    pub fn covers(&self, f: Family) -> bool {
        self.any || self.family(f) == [(0, f.max())]
    }
}

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    fn max(self) -> u128 {
        match self {
            Family::V4 => u32::MAX.into(),
            Family::V6 => u128::MAX,
        }
    }

    /// The nft payload keyword: `ip` or `ip6`.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The nft set type.
    pub fn set_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    fn addr(self, x: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(x as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(x)),
        }
    }

    fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// One interval as nft writes it: `10.0.0.1`, `10.0.0.0/8` or `10.0.0.1-10.0.0.9`.
    pub fn element(self, (lo, hi): (u128, u128)) -> String {
        if lo == hi {
            return self.addr(lo).to_string();
        }
        let span = hi - lo;
        if span & span.wrapping_add(1) == 0 && lo & span == 0 {
            let len = self.bits() - (span.count_ones());
            return format!("{}/{len}", self.addr(lo));
        }
        format!("{}-{}", self.addr(lo), self.addr(hi))
    }
}

/// A rule's destination ports; `None` is `*`.
pub(crate) fn ports(entries: &[PortEntry]) -> Option<Vec<(u128, u128)>> {
    if entries.contains(&PortEntry::Any) {
        return None;
    }
    Some(merge(
        entries
            .iter()
            .map(|p| {
                let (a, b) = p.bounds();
                (a.into(), b.into())
            })
            .collect(),
    ))
}

/// One port interval as nft writes it: `443` or `8000-8999`.
pub(crate) fn port_element((lo, hi): (u128, u128)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// Sorts and merges overlapping intervals.
fn merge(mut v: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    v.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(s: &[&str]) -> Vec<AddressEntry> {
        s.iter().map(|x| x.parse().unwrap()).collect()
    }

    #[test]
    fn merges_overlaps_and_prints_cidrs_ranges_and_hosts() {
        let a = Addresses::from_entries(&entries(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.168.1.5",
            "192.168.1.10-192.168.1.20",
            "192.168.1.15-192.168.1.30",
            "192.168.2.0/24",
            "2001:db8::/32",
        ]));
        let v4: Vec<_> = a.v4.iter().map(|i| Family::V4.element(*i)).collect();
        assert_eq!(
            v4,
            [
                "10.0.0.0/8",
                "192.168.1.5",
                "192.168.1.10-192.168.1.30",
                "192.168.2.0/24"
            ]
        );
        assert_eq!(Family::V6.element(a.v6[0]), "2001:db8::/32");
        assert!(!a.covers(Family::V4));
    }

    #[test]
    fn whole_spaces() {
        let a = Addresses::from_entries(&entries(&["0.0.0.0/0"]));
        assert_eq!(Family::V4.element(a.v4[0]), "0.0.0.0/0");
        assert!(a.covers(Family::V4));
        assert!(!a.covers(Family::V6));
        assert_eq!(Family::V6.element((0, u128::MAX)), "::/0");
        let any = Addresses::from_entries(&entries(&["*", "10.0.0.1"]));
        assert!(any.any && any.v4.is_empty());
    }

    #[test]
    fn port_lists() {
        let p: Vec<PortEntry> = ["443", "80", "8000-8999", "8500-9000"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got: Vec<_> = ports(&p).unwrap().into_iter().map(port_element).collect();
        assert_eq!(got, ["80", "443", "8000-9000"]);
        assert_eq!(ports(&[PortEntry::Any]), None);
    }
}
