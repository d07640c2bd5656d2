use super::*;
use proptest::prelude::*;
use std::net::Ipv6Addr;

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn longest_prefix_wins() {
    let set = AuthorizedSet::build(&[
        c("10.0.0.0/8"),
        c("10.1.0.0/16"),
        c("10.1.2.3/32"),
        c("2001:db8::/32"),
        c("2001:db8:1::/48"),
        c("10.0.0.0/8"),
    ]);
    assert_eq!(set.len(), 5);
    assert_eq!(set.lookup(ip("10.1.2.3")), Some(c("10.1.2.3/32")));
    assert_eq!(set.lookup(ip("10.1.2.4")), Some(c("10.1.0.0/16")));
    assert_eq!(set.lookup(ip("10.2.0.0")), Some(c("10.0.0.0/8")));
    assert_eq!(set.lookup(ip("11.0.0.0")), None);
    assert_eq!(set.lookup(ip("2001:db8:1::5")), Some(c("2001:db8:1::/48")));
    assert_eq!(set.lookup(ip("2001:db8:2::5")), Some(c("2001:db8::/32")));
    assert_eq!(set.lookup(ip("::1")), None);
}

#[test]
fn default_routes_cover_everything() {
    let set = AuthorizedSet::build(&[c("0.0.0.0/0"), c("::/0")]);
    assert_eq!(set.lookup(ip("255.255.255.255")), Some(c("0.0.0.0/0")));
    assert_eq!(set.lookup(ip("ffff::1")), Some(c("::/0")));
    assert!(AuthorizedSet::build(&[]).lookup(ip("1.2.3.4")).is_none());
}

#[test]
fn aks_restriction_off_admits_everyone() {
    let a = ApiServerAccess::new(None, OutboundType::LoadBalancer, Some(ip("203.0.113.1")));
    assert_eq!(a.check(ip("192.0.2.9")), AccessDecision::Unrestricted);
    let a = ApiServerAccess::new(Some(&[]), OutboundType::LoadBalancer, None);
    assert!(a.check(ip("192.0.2.9")).admitted());
}

#[test]
fn aks_zero_slash_32_admits_only_the_lb_outbound_ip() {
    let lb = ip("203.0.113.1");
    let a = ApiServerAccess::new(
        Some(&[c("0.0.0.0/32")]),
        OutboundType::LoadBalancer,
        Some(lb),
    );
    assert_eq!(a.check(lb), AccessDecision::LoadBalancerOutbound { ip: lb });
    assert_eq!(a.check(ip("0.0.0.0")), AccessDecision::NoMatch);
    assert_eq!(a.check(ip("203.0.113.2")), AccessDecision::NoMatch);
    // Without a load-balancer egress, 0.0.0.0/32 admits nobody.
    let a = ApiServerAccess::new(
        Some(&[c("0.0.0.0/32")]),
        OutboundType::UserDefinedRouting,
        Some(lb),
    );
    assert_eq!(a.check(lb), AccessDecision::NoMatch);
}

#[test]
fn aks_lb_outbound_ip_always_admitted_with_load_balancer() {
    let lb = ip("203.0.113.1");
    let ranges = [c("192.0.2.0/24")];
    let a = ApiServerAccess::new(Some(&ranges), OutboundType::LoadBalancer, Some(lb));
    assert_eq!(a.check(lb), AccessDecision::LoadBalancerOutbound { ip: lb });
    assert_eq!(
        a.check(ip("192.0.2.7")),
        AccessDecision::Range {
            range: c("192.0.2.0/24")
        }
    );
    assert_eq!(a.check(ip("198.51.100.7")), AccessDecision::NoMatch);
    // With user-defined routing, the load balancer is not the egress: not admitted.
    let a = ApiServerAccess::new(Some(&ranges), OutboundType::UserDefinedRouting, Some(lb));
    assert_eq!(a.check(lb), AccessDecision::NoMatch);
}

fn arb_cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        // Clustered IPv4 prefixes, so that nesting is common.
        (0u32..64, 0u8..=32).prop_map(|(hi, len)| {
            let a = Ipv4Addr::from(0x0a00_0000 | (hi << 18) | (hi.wrapping_mul(977) & 0x3ffff));
            Cidr(IpNet::V4(Ipv4Net::new(a, len).unwrap().trunc()))
        }),
        (any::<u16>(), 0u8..=128).prop_map(|(hi, len)| {
            let a = Ipv6Addr::from(((hi as u128) << 100) | 0x2001_0db8);
            Cidr(IpNet::V6(Ipv6Net::new(a, len).unwrap().trunc()))
        }),
    ]
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..64, any::<u32>()).prop_map(|(hi, lo)| IpAddr::V4(Ipv4Addr::from(
            0x0a00_0000 | (hi << 18) | (lo & 0x3ffff)
        ))),
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        (any::<u16>(), any::<u128>())
            .prop_map(|(hi, lo)| IpAddr::V6(Ipv6Addr::from(((hi as u128) << 100) | (lo >> 28)))),
    ]
}

/// The oracle: scan every prefix, keep the longest that holds the address.
fn naive(prefixes: &[Cidr], ip: IpAddr) -> Option<Cidr> {
    prefixes
        .iter()
        .filter(|c| c.contains_addr(ip))
        .max_by_key(|c| c.prefix_len())
        .copied()
}

proptest! {
    #[test]
    fn agrees_with_a_naive_prefix_scan(
        prefixes in proptest::collection::vec(arb_cidr(), 0..200),
        ips in proptest::collection::vec(arb_ip(), 1..50),
    ) {
        let set = AuthorizedSet::build(&prefixes);
        for ip in ips.iter().copied().chain(prefixes.iter().map(|c| c.net().addr())) {
            prop_assert_eq!(set.lookup(ip), naive(&prefixes, ip), "ip {}", ip);
        }
    }
}
