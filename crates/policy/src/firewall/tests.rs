use super::*;
use crate::fixture::{collection, network_rule};
use apiwall_model::{NetworkRule, NetworkRuleCollection};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn firewall(cols: Vec<NetworkRuleCollection>) -> Firewall {
    let mut w = crate::fixture::WorldBuilder::new()
        .cluster("rg", "c", 1)
        .firewall()
        .firewall_collections(cols)
        .build();
    w.firewalls.pop_first().unwrap().1
}

/// The oracle: walk the rules in evaluation order and stop at the first that matches.
fn linear(
    fw: &Firewall,
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    proto: Protocol,
) -> Option<(String, String, Action)> {
    let mut cols: Vec<&NetworkRuleCollection> = fw.network_rule_collections.iter().collect();
    cols.sort_by_key(|c| c.priority.get());
    for c in cols {
        for r in &c.rules {
            let m = r.protocols.iter().any(|p| p.matches(proto))
                && r.source_addresses.iter().any(|a| a.contains(src))
                && r.destination_addresses.iter().any(|a| a.contains(dst))
                && (proto == Protocol::Icmp
                    || r.destination_ports.iter().any(|p| p.contains(port)));
            if m {
                return Some((c.name.clone(), r.name.clone(), c.action.kind));
            }
        }
    }
    None
}

fn classify(
    c: &Classifier,
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    proto: Protocol,
) -> Option<(String, String, Action)> {
    c.classify(src, dst, port, proto)
        .map(|m| (m.collection.clone(), m.rule.clone(), m.action))
}

#[test]
fn first_match_by_collection_priority() {
    let fw = firewall(vec![
        collection(
            "fw",
            "late-allow",
            300,
            Action::Allow,
            vec![network_rule(
                "allow-all",
                &[Protocol::Any],
                &["*"],
                &["*"],
                &["*"],
            )],
        ),
        collection(
            "fw",
            "early-deny",
            100,
            Action::Deny,
            vec![
                network_rule("deny-ssh", &[Protocol::Tcp], &["*"], &["*"], &["22"]),
                network_rule(
                    "deny-dns",
                    &[Protocol::Udp],
                    &["10.0.0.0/8"],
                    &["192.0.2.53"],
                    &["53"],
                ),
            ],
        ),
        collection(
            "fw",
            "mid-allow",
            200,
            Action::Allow,
            vec![network_rule(
                "allow-ssh-admin",
                &[Protocol::Tcp],
                &["10.240.0.4"],
                &["*"],
                &["22"],
            )],
        ),
    ]);
    let c = Classifier::compile(&fw);
    let m = c
        .classify(ip("10.240.0.4"), ip("192.0.2.1"), 22, Protocol::Tcp)
        .unwrap();
    assert_eq!(
        (m.collection.as_str(), m.rule.as_str(), m.action),
        ("early-deny", "deny-ssh", Action::Deny)
    );
    let m = c
        .classify(ip("10.240.0.4"), ip("192.0.2.53"), 53, Protocol::Udp)
        .unwrap();
    assert_eq!(m.rule, "deny-dns");
    let m = c
        .classify(ip("172.16.0.1"), ip("192.0.2.53"), 53, Protocol::Udp)
        .unwrap();
    assert_eq!((m.rule.as_str(), m.action), ("allow-all", Action::Allow));
    assert_eq!(m.priority, 300);
}

#[test]
fn no_match_is_default_deny() {
    let fw = firewall(vec![collection(
        "fw",
        "web",
        200,
        Action::Allow,
        vec![network_rule(
            "https",
            &[Protocol::Tcp],
            &["10.240.0.0/16"],
            &["198.51.100.0-198.51.100.9"],
            &["443", "8443-8445"],
        )],
    )]);
    let c = Classifier::compile(&fw);
    assert!(
        c.classify(ip("10.240.0.4"), ip("198.51.100.1"), 443, Protocol::Tcp)
            .is_some()
    );
    assert!(
        c.classify(ip("10.240.0.4"), ip("198.51.100.9"), 8444, Protocol::Tcp)
            .is_some()
    );
    assert!(
        c.classify(ip("10.240.0.4"), ip("198.51.100.1"), 22, Protocol::Tcp)
            .is_none()
    );
    assert!(
        c.classify(ip("10.240.0.4"), ip("198.51.100.10"), 443, Protocol::Tcp)
            .is_none()
    );
    assert!(
        c.classify(ip("10.241.0.4"), ip("198.51.100.1"), 443, Protocol::Tcp)
            .is_none()
    );
    assert!(
        c.classify(ip("10.240.0.4"), ip("198.51.100.1"), 443, Protocol::Udp)
            .is_none()
    );
    assert!(
        c.classify(ip("2001:db8::1"), ip("198.51.100.1"), 443, Protocol::Tcp)
            .is_none()
    );
    let empty = Classifier::compile(&firewall(vec![]));
    assert!(
        empty
            .classify(ip("10.240.0.4"), ip("198.51.100.1"), 443, Protocol::Tcp)
            .is_none()
    );
}

#[test]
fn snat_private_ranges() {
    let pub_ip = ip("203.0.113.9");
    let mut fw = firewall(vec![]);
    // Default: IANA private ranges are not SNATed.
    let s = Snat::new(&fw.snat_private_ranges(), Some(pub_ip));
    assert_eq!(
        s.decide(ip("198.51.100.1")),
        SnatDecision::Translate { to: pub_ip }
    );
    assert_eq!(
        s.decide(ip("10.1.2.3")),
        SnatDecision::Keep {
            range: "10.0.0.0/8".parse().unwrap()
        }
    );
    assert!(matches!(
        s.decide(ip("100.64.1.1")),
        SnatDecision::Keep { .. }
    ));
    // 0.0.0.0/0: never SNAT.
    fw.additional_properties.insert(
        apiwall_model::SNAT_PRIVATE_RANGES.into(),
        "0.0.0.0/0".into(),
    );
    let s = Snat::new(&fw.snat_private_ranges(), Some(pub_ip));
    assert!(matches!(
        s.decide(ip("198.51.100.1")),
        SnatDecision::Keep { .. }
    ));
    // 255.255.255.255/32: always SNAT, even to private ranges.
    fw.additional_properties.insert(
        apiwall_model::SNAT_PRIVATE_RANGES.into(),
        "255.255.255.255/32".into(),
    );
    let s = Snat::new(&fw.snat_private_ranges(), Some(pub_ip));
    assert_eq!(
        s.decide(ip("10.1.2.3")),
        SnatDecision::Translate { to: pub_ip }
    );
    assert_eq!(
        s.decide(ip("255.255.255.255")),
        SnatDecision::Translate { to: pub_ip }
    );
    // A custom list replaces IANA's.
    fw.additional_properties.insert(
        apiwall_model::SNAT_PRIVATE_RANGES.into(),
        "198.51.100.0/24".into(),
    );
    let s = Snat::new(&fw.snat_private_ranges(), None);
    assert!(matches!(
        s.decide(ip("198.51.100.1")),
        SnatDecision::Keep { .. }
    ));
    assert_eq!(s.decide(ip("10.1.2.3")), SnatDecision::NoPublicIp);
}

// === proptest: compiled classifier == linear scan ===

/// Addresses from a small space so that rules and flows collide often.
fn arb_v4() -> impl Strategy<Value = Ipv4Addr> {
    (0u32..4, 0u32..64).prop_map(|(a, b)| Ipv4Addr::from(0x0af0_0000 | (a << 8) | b))
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        8 => arb_v4().prop_map(IpAddr::V4),
        1 => (0u128..64).prop_map(|b| IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | b))),
    ]
}

fn arb_address() -> impl Strategy<Value = AddressEntry> {
    prop_oneof![
        1 => Just(AddressEntry::Any),
        4 => (arb_v4(), 22u8..=32).prop_map(|(a, l)| {
            AddressEntry::Net(Cidr(IpNet::V4(ipnet::Ipv4Net::new(a, l).unwrap().trunc())))
        }),
        2 => (arb_v4(), arb_v4()).prop_map(|(a, b)| {
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            AddressEntry::Range(IpAddr::V4(a), IpAddr::V4(b))
        }),
        1 => (0u128..64, 120u8..=128).prop_map(|(b, l)| {
            let a = Ipv6Addr::from(0x2001_0db8_u128 << 96 | b);
            AddressEntry::Net(Cidr(IpNet::V6(ipnet::Ipv6Net::new(a, l).unwrap().trunc())))
        }),
    ]
}

fn arb_port_entry() -> impl Strategy<Value = PortEntry> {
    prop_oneof![
        1 => Just(PortEntry::Any),
        3 => (1u16..40).prop_map(|p| PortEntry::Range(p, p)),
        2 => (1u16..40, 0u16..10).prop_map(|(p, w)| PortEntry::Range(p, p + w)),
        1 => Just(PortEntry::Range(65530, 65535)),
    ]
}

fn arb_protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp),
        Just(Protocol::Any)
    ]
}

fn arb_rule() -> impl Strategy<Value = NetworkRule> {
    (
        proptest::collection::vec(arb_protocol(), 0..3),
        proptest::collection::vec(arb_address(), 0..3),
        proptest::collection::vec(arb_address(), 0..3),
        proptest::collection::vec(arb_port_entry(), 0..3),
    )
        .prop_map(|(protocols, src, dst, ports)| NetworkRule {
            description: None,
            destination_addresses: dst,
            destination_fqdns: vec![],
            destination_ip_groups: vec![],
            destination_ports: ports,
            name: String::new(),
            protocols,
            source_addresses: src,
            source_ip_groups: vec![],
        })
}

fn arb_firewall() -> impl Strategy<Value = Firewall> {
    proptest::collection::vec(
        (
            100u32..110,
            any::<bool>(),
            proptest::collection::vec(arb_rule(), 0..60),
        ),
        0..10,
    )
    .prop_map(|cols| {
        let cols = cols
            .into_iter()
            .enumerate()
            .map(|(ci, (prio, allow, rules))| {
                let rules = rules
                    .into_iter()
                    .enumerate()
                    .map(|(ri, mut r)| {
                        r.name = format!("r{ci}-{ri}");
                        r
                    })
                    .collect();
                let action = if allow { Action::Allow } else { Action::Deny };
                collection("fw", &format!("c{ci}"), prio, action, rules)
            })
            .collect();
        firewall(cols)
    })
}

fn arb_flow() -> impl Strategy<Value = (IpAddr, IpAddr, u16, Protocol)> {
    (
        arb_ip(),
        arb_ip(),
        prop_oneof![0u16..45, Just(65535u16), any::<u16>()],
        arb_protocol(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn compiled_classifier_agrees_with_linear_scan(
        fw in arb_firewall(),
        flows in proptest::collection::vec(arb_flow(), 1..64),
    ) {
        let c = Classifier::compile(&fw);
        for (src, dst, port, proto) in flows {
            prop_assert_eq!(
                classify(&c, src, dst, port, proto),
                linear(&fw, src, dst, port, proto),
                "flow {} -> {}:{} {}", src, dst, port, proto
            );
        }
    }
}
