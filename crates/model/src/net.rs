//! Azure's address, port and protocol formats, parsed into typed values that print back exactly.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::ParseError;

/// Implements `FromStr`/`Display`-based serde for a type, so it is stored and printed as the
/// string az shows.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A network prefix with no host bits set: `10.200.0.0/16`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// Parses a prefix written as a CIDR; a bare address is refused.
    pub fn parse_strict(s: &str) -> Result<Self, ParseError> {
        if !s.contains('/') {
            return Err(ParseError::new(format!(
                "not a CIDR prefix; write it with a prefix length, for example {s}/24"
            )));
        }
        s.parse()
    }

    pub fn net(&self) -> IpNet {
        self.0
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn contains_addr(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }

    /// The n-th address of the prefix (0 is the network address), if it lies inside.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let addr = match self.0 {
            IpNet::V4(v4) => {
                let base = u32::from(v4.network()) as u128;
                IpAddr::from(std::net::Ipv4Addr::from(u32::try_from(base + n).ok()?))
            }
            IpNet::V6(v6) => {
                let base = u128::from(v6.network());
                IpAddr::from(std::net::Ipv6Addr::from(base.checked_add(n)?))
            }
        };
        self.0.contains(&addr).then_some(addr)
    }
}

impl FromStr for Cidr {
    type Err = ParseError;

    /// Parses a CIDR or a bare address (which means /32 or /128). Host bits set is an error that
    /// names the network to use instead.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let net = if s.contains('/') {
            IpNet::from_str(s).map_err(|_| {
                ParseError::new(
                    "not an IPv4 or IPv6 CIDR prefix (expected for example 10.0.0.0/16)",
                )
            })?
        } else {
            let ip = IpAddr::from_str(s).map_err(|_| {
                ParseError::new("not an IP address or CIDR prefix (expected for example 203.0.113.4 or 10.0.0.0/16)")
            })?;
            IpNet::from(ip)
        };
        let trunc = net.trunc();
        if trunc != net {
            return Err(ParseError::new(format!("host bits are set; use {trunc}")));
        }
        Ok(Self(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

serde_as_string!(Cidr);

/// One entry of a firewall rule's source or destination addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressEntry {
    /// `*`: every address.
    Any,
    Net(Cidr),
    /// `a.b.c.d-e.f.g.h`, inclusive, same family, first <= last.
    Range(IpAddr, IpAddr),
}

impl AddressEntry {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            AddressEntry::Any => true,
            AddressEntry::Net(c) => c.contains_addr(ip),
            AddressEntry::Range(a, b) => match (a, b, ip) {
                (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(x)) => *a <= x && x <= *b,
                (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(x)) => *a <= x && x <= *b,
                _ => false,
            },
        }
    }
}

impl FromStr for AddressEntry {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s == "*" {
            return Ok(AddressEntry::Any);
        }
        if let Some((a, b)) = s.split_once('-') {
            if let (Ok(a), Ok(b)) = (IpAddr::from_str(a.trim()), IpAddr::from_str(b.trim())) {
                if a.is_ipv4() != b.is_ipv4() {
                    return Err(ParseError::new(
                        "range mixes IPv4 and IPv6; both ends must be the same family",
                    ));
                }
                if a > b {
                    return Err(ParseError::new(format!("range is reversed; use {b}-{a}")));
                }
                return Ok(AddressEntry::Range(a, b));
            }
            return Err(ParseError::new(not_an_address(s)));
        }
        Cidr::from_str(s).map(AddressEntry::Net).map_err(|e| {
            if s.contains('/') || s.parse::<IpAddr>().is_ok() {
                e
            } else {
                ParseError::new(not_an_address(s))
            }
        })
    }
}

/// The message for a word that is no address at all. A word like `destination-ports` is most
/// likely a flag that lost its `--`, so say so.
fn not_an_address(s: &str) -> String {
    let flag_like =
        s.len() > 2 && s.chars().all(|c| c.is_ascii_lowercase() || c == '-') && s.contains('-');
    if flag_like {
        format!("not an address; if '{s}' is meant as a flag, write it as --{s}")
    } else {
        "not '*', an IP address, a CIDR prefix or a range a.b.c.d-e.f.g.h".to_string()
    }
}

impl fmt::Display for AddressEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressEntry::Any => f.write_str("*"),
            // A single address prints bare, as it was most likely written.
            AddressEntry::Net(c) if c.0.prefix_len() == c.0.max_prefix_len() => c.0.addr().fmt(f),
            AddressEntry::Net(c) => c.fmt(f),
            AddressEntry::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

serde_as_string!(AddressEntry);

/// One entry of a rule's destination ports: `*`, `443`, or `8000-8999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortEntry {
    Any,
    Range(u16, u16),
}

impl PortEntry {
    pub fn contains(&self, port: u16) -> bool {
        match self {
            PortEntry::Any => true,
            PortEntry::Range(a, b) => *a <= port && port <= *b,
        }
    }

    /// The inclusive bounds; `*` is 1-65535.
    pub fn bounds(&self) -> (u16, u16) {
        match self {
            PortEntry::Any => (1, 65535),
            PortEntry::Range(a, b) => (*a, *b),
        }
    }
}

fn parse_port(s: &str) -> Result<u16, ParseError> {
    match s.trim().parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        Ok(_) => Err(ParseError::new("port must be between 1 and 65535")),
        Err(_) => Err(ParseError::new(
            "not a port; use '*', a port between 1 and 65535, or a range such as 8000-8999",
        )),
    }
}

impl FromStr for PortEntry {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s == "*" {
            return Ok(PortEntry::Any);
        }
        match s.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_port(a)?, parse_port(b)?);
                if a > b {
                    return Err(ParseError::new(format!(
                        "port range is reversed; use {b}-{a}"
                    )));
                }
                Ok(PortEntry::Range(a, b))
            }
            None => parse_port(s).map(|p| PortEntry::Range(p, p)),
        }
    }
}

impl fmt::Display for PortEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortEntry::Any => f.write_str("*"),
            PortEntry::Range(a, b) if a == b => write!(f, "{a}"),
            PortEntry::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

serde_as_string!(PortEntry);

/// A network rule's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Protocol {
    /// Whether a rule written with `self` matches a packet of protocol `packet`.
    pub fn matches(self, packet: Protocol) -> bool {
        self == Protocol::Any || self == packet
    }
}

impl FromStr for Protocol {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            "any" => Ok(Protocol::Any),
            _ => Err(ParseError::new("not a protocol; use TCP, UDP, ICMP or Any")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmp => "ICMP",
            Protocol::Any => "Any",
        })
    }
}

serde_as_string!(Protocol);

/// Splits a list argument the way az accepts lists: space-separated words, each of which may
/// itself be a comma-separated list (and a file read with `@path` may hold one per line).
pub fn split_list<'a>(words: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    words
        .into_iter()
        .flat_map(|w| w.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|w| !w.is_empty())
        .collect()
}

/// One entry of a firewall's `--private-ranges`: a prefix never SNATed, or `IANAPrivateRanges`
/// (RFC 1918 and RFC 6598).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateRange {
    Iana,
    Net(Cidr),
}

impl FromStr for PrivateRange {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.trim().eq_ignore_ascii_case("IANAPrivateRanges") {
            return Ok(PrivateRange::Iana);
        }
        s.parse().map(PrivateRange::Net).map_err(|e: ParseError| {
            if s.contains('/') || s.parse::<IpAddr>().is_ok() {
                e
            } else {
                ParseError::new("not a CIDR prefix or IANAPrivateRanges")
            }
        })
    }
}

impl fmt::Display for PrivateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivateRange::Iana => f.write_str("IANAPrivateRanges"),
            PrivateRange::Net(c) => c.fmt(f),
        }
    }
}

/// The value of `--api-server-authorized-ip-ranges`: a comma-separated list of CIDRs or bare
/// addresses, or `""`, which turns the restriction off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedRanges(pub Option<Vec<Cidr>>);

/// `0.0.0.0/32`: alone, admits only the cluster's load-balancer outbound IP.
pub const LB_ONLY: &str = "0.0.0.0/32";

impl FromStr for AuthorizedRanges {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let words = split_list([s]);
        if words.is_empty() {
            return Ok(Self(None));
        }
        let mut seen = std::collections::HashSet::with_capacity(words.len());
        let mut out = Vec::with_capacity(words.len());
        for w in words {
            let c: Cidr = w
                .parse()
                .map_err(|e: ParseError| ParseError::new(format!("{w}: {e}")))?;
            if seen.insert(c) {
                out.push(c);
            }
        }
        let lb_only: Cidr = LB_ONLY.parse().expect("constant");
        if out.len() > 1 && out.contains(&lb_only) {
            return Err(ParseError::new(format!(
                "{LB_ONLY} means 'only the load balancer's outbound IP' and cannot be combined with other ranges; remove it or pass it alone"
            )));
        }
        Ok(Self(Some(out)))
    }
}

#[cfg(test)]
mod tests;
