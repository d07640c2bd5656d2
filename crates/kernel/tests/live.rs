//! The rulesets and routes in a real kernel, inside network namespaces that each test creates and
//! removes (on drop, also on panic). Needs root, as CI has. Traffic goes only to addresses inside
//! these namespaces.
//!
//! Topology of the forwarding tests:
//!
//! ```text
//!  cli (10.240.0.4-7/16) ── fw (10.240.0.1 | 203.0.113.2, the firewall ruleset) ── srv (203.0.113.10;
//!                                                          198.51.100.1, 198.51.100.2, 192.0.2.10, 10.50.0.1)
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use apiwall_kernel::{
    ApiGate, FirewallSpec, KernelError, Netns, RenderOptions, RoutingTarget, Ruleset, Selector,
    apply_routes, apply_ruleset, list_table, remove_routes, remove_table, render, render_api_gate,
    render_routes, rule_counters,
};
use apiwall_model::resources::Action;
use apiwall_model::{NetworkRuleCollection, Protocol, World};
use apiwall_policy::Policy;
use apiwall_policy::fixture::{WorldBuilder, collection, network_rule};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use socket2::{Domain, SockAddr, Socket, Type};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace name unique to this process and call.
fn ns_name(role: &str) -> String {
    format!(
        "apiwall-test-{}-{}-{role}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The fixture firewall's public IP (203.0.113.1 is the cluster's load-balancer outbound IP).
const PUBLIC_IP: &str = "203.0.113.2";
const SOURCES: [&str; 4] = ["10.240.0.4", "10.240.0.5", "10.240.0.6", "10.240.0.7"];
const DESTINATIONS: [&str; 4] = ["198.51.100.1", "198.51.100.2", "192.0.2.10", "10.50.0.1"];
const PORTS: [u16; 4] = [80, 443, 8080, 9000];
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Three namespaces wired client ─ firewall ─ server, with listeners on `PORTS` in the server.
struct Lab {
    cli: Netns,
    fw: Netns,
    srv: Netns,
    listeners: Vec<TcpListener>,
}

fn sh(ns: &Netns, args: &[&str]) {
    ns.ip(args)
        .unwrap_or_else(|e| panic!("{}: ip {args:?}: {e}", ns.name()));
}

impl Lab {
    fn new() -> Lab {
        let cli = Netns::create(&ns_name("cli")).unwrap();
        let fw = Netns::create(&ns_name("fw")).unwrap();
        let srv = Netns::create(&ns_name("srv")).unwrap();
        sh(
            &fw,
            &[
                "link",
                "add",
                "c0",
                "type",
                "veth",
                "peer",
                "name",
                "f0",
                "netns",
                cli.name(),
            ],
        );
        sh(
            &fw,
            &[
                "link",
                "add",
                "s0",
                "type",
                "veth",
                "peer",
                "name",
                "f0",
                "netns",
                srv.name(),
            ],
        );
        sh(&fw, &["addr", "add", "10.240.0.1/16", "dev", "c0"]);
        sh(
            &fw,
            &["addr", "add", &format!("{PUBLIC_IP}/24"), "dev", "s0"],
        );
        sh(&fw, &["link", "set", "c0", "up"]);
        sh(&fw, &["link", "set", "s0", "up"]);
        for net in ["198.51.100.0/24", "192.0.2.0/24", "10.50.0.0/16"] {
            sh(&fw, &["route", "add", net, "via", "203.0.113.10"]);
        }
        fw.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
            .unwrap();

        for a in SOURCES {
            sh(&cli, &["addr", "add", &format!("{a}/16"), "dev", "f0"]);
        }
        sh(&cli, &["link", "set", "f0", "up"]);
        sh(&cli, &["route", "add", "default", "via", "10.240.0.1"]);

        sh(&srv, &["addr", "add", "203.0.113.10/24", "dev", "f0"]);
        for a in DESTINATIONS {
            sh(&srv, &["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        sh(&srv, &["link", "set", "f0", "up"]);
        sh(&srv, &["route", "add", "default", "via", PUBLIC_IP]);

        let listeners = srv
            .run(|| {
                PORTS
                    .iter()
                    .map(|p| {
                        let l = TcpListener::bind(("0.0.0.0", *p)).unwrap();
                        l.set_nonblocking(true).unwrap();
                        l
                    })
                    .collect()
            })
            .unwrap();
        Lab {
            cli,
            fw,
            srv,
            listeners,
        }
    }

    /// Accepts every pending connection: `(local port, peer address, stream)`.
    fn accept_all(&self) -> Vec<(u16, SocketAddr, TcpStream)> {
        let mut out = Vec::new();
        for l in &self.listeners {
            let port = l.local_addr().unwrap().port();
            for _ in 0..1000 {
                match l.accept() {
                    Ok((s, peer)) => out.push((port, peer, s)),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("accept: {e}"),
                }
            }
        }
        out
    }

    /// Waits (with a deadline) for one connection on `port`.
    fn accept_one(&self, port: u16) -> (SocketAddr, TcpStream) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let l = self
            .listeners
            .iter()
            .find(|l| l.local_addr().unwrap().port() == port)
            .unwrap();
        loop {
            match l.accept() {
                Ok((s, peer)) => return (peer, s),
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("no connection on port {port}: {e}"),
            }
        }
    }

    /// Opens TCP connections from the client namespace: whether each one was established.
    fn connect_all(&self, flows: &[(IpAddr, IpAddr, u16)]) -> Vec<bool> {
        let r = self
            .cli
            .run(|| {
                flows
                    .iter()
                    .map(|&(src, dst, port)| match connect(src, dst, port) {
                        Ok(_) => true,
                        Err(e) if e.kind() == ErrorKind::TimedOut => false,
                        Err(e) => panic!("connect {src} -> {dst}:{port}: {e}"),
                    })
                    .collect()
            })
            .unwrap();
        self.accept_all();
        r
    }

    fn apply(&self, r: &Ruleset) {
        apply_ruleset(r, Some(self.fw.name())).unwrap();
    }
}

/// A TCP connection from `src` (bound) to `dst:port`, in the calling thread's namespace.
fn connect(src: IpAddr, dst: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(dst, port)),
        Type::STREAM,
        None,
    )?;
    s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    s.connect_timeout(&SockAddr::from(SocketAddr::new(dst, port)), CONNECT_TIMEOUT)?;
    Ok(s.into())
}

fn world_with(cols: Option<Vec<NetworkRuleCollection>>) -> World {
    let b = WorldBuilder::new().procedure("rg", "c", 1);
    match cols {
        Some(c) => b.firewall_collections(c).build(),
        None => b.build(),
    }
}

fn fw_id(w: &World) -> String {
    w.firewalls.values().next().unwrap().id.clone()
}

/// The firewall of `w`.
fn spec(w: &World) -> FirewallSpec {
    let s = FirewallSpec::from_world(w, w.firewalls.values().next().unwrap());
    assert_eq!(s.public_ip, Some(ip(PUBLIC_IP)));
    s
}

fn allow_tcp(
    w: &World,
    name: &str,
    src: &[&str],
    dst: &[&str],
    ports: &[&str],
) -> NetworkRuleCollection {
    collection(
        &fw_id(w),
        "lab",
        200,
        Action::Allow,
        vec![network_rule(name, &[Protocol::Tcp], src, dst, ports)],
    )
}

#[test]
fn apply_list_counters_reapply_and_remove() {
    let ns = Netns::create(&ns_name("nft")).unwrap();
    let w = world_with(None);
    let r = render(&spec(&w), &RenderOptions::default());
    apply_ruleset(&r, Some(ns.name())).unwrap();
    let listed = list_table(r.table(), Some(ns.name())).unwrap();
    assert!(listed.contains("chain classify_ip"), "{listed}");
    assert!(listed.contains(&format!("0x{:08x}", r.generation().unwrap())));
    let c = rule_counters(r.table(), Some(ns.name())).unwrap();
    // The same rule is in the IPv4 and the IPv6 chain.
    let rule = &c["myAzureFirewallCollection/AllowTCPOutbound"];
    assert_eq!((rule.rules, rule.packets), (2, 0));
    assert!(c.contains_key("default deny"));

    // Re-applying replaces the table in one transaction, with sets this time.
    apply_ruleset(&r, Some(ns.name())).unwrap();
    let multi = {
        let w2 = world_with(None);
        let id = fw_id(&w2);
        world_with(Some(vec![collection(
            &id,
            "many",
            100,
            Action::Allow,
            vec![network_rule(
                "r",
                &[Protocol::Tcp],
                &["10.240.0.4", "10.240.0.6-10.240.0.7"],
                &["198.51.100.0/24", "192.0.2.10"],
                &["80", "443"],
            )],
        )]))
    };
    let r2 = render(&spec(&multi), &RenderOptions::default());
    assert_eq!(r2.table(), r.table());
    apply_ruleset(&r2, Some(ns.name())).unwrap();
    let listed = list_table(r2.table(), Some(ns.name())).unwrap();
    assert!(listed.contains("set r0_src4"), "{listed}");
    assert!(
        !listed.contains("AllowTCPOutbound"),
        "old rules are gone: {listed}"
    );
    let c = rule_counters(r2.table(), Some(ns.name())).unwrap();
    assert!(c.contains_key("many/r"));

    // A ruleset nft refuses changes nothing: the old table stays whole.
    let broken = r.to_nft().replace("policy drop", "policy dorp");
    let err = apiwall_kernel::check_nft(&broken, Some(ns.name())).unwrap_err();
    assert!(matches!(err, KernelError::Command { .. }), "{err}");
    assert!(
        list_table(r2.table(), Some(ns.name()))
            .unwrap()
            .contains("many/r")
    );

    remove_table(r2.table(), Some(ns.name())).unwrap();
    assert!(list_table(r2.table(), Some(ns.name())).is_err());
    remove_table(r2.table(), Some(ns.name())).unwrap();
}

#[test]
fn forwarding_snat_counters_and_default_deny() {
    let lab = Lab::new();
    let w = world_with(None);
    let w = world_with(Some(vec![allow_tcp(
        &w,
        "web",
        &["10.240.0.4", "10.240.0.5"],
        &["198.51.100.0/24", "10.50.0.0/16"],
        &["80", "443"],
    )]));
    let r = render(&spec(&w), &RenderOptions::default());
    lab.apply(&r);

    // Allowed, to a public destination: SNATed to the public IP.
    lab.cli
        .run(|| connect(ip("10.240.0.4"), ip("198.51.100.1"), 80).unwrap())
        .unwrap();
    let (peer, _s) = lab.accept_one(80);
    assert_eq!(peer.ip(), ip(PUBLIC_IP));
    // Allowed, to a private destination: the source is kept.
    lab.cli
        .run(|| connect(ip("10.240.0.5"), ip("10.50.0.1"), 443).unwrap())
        .unwrap();
    let (peer, _s2) = lab.accept_one(443);
    assert_eq!(peer.ip(), ip("10.240.0.5"));

    // Denied: wrong source, wrong port, wrong destination.
    let denied = lab.connect_all(&[
        (ip("10.240.0.6"), ip("198.51.100.1"), 80),
        (ip("10.240.0.4"), ip("198.51.100.1"), 8080),
        (ip("10.240.0.4"), ip("192.0.2.10"), 80),
    ]);
    assert_eq!(denied, [false, false, false]);

    let c = rule_counters(r.table(), Some(lab.fw.name())).unwrap();
    assert!(c["lab/web"].packets >= 2, "{c:?}");
    assert!(c["default deny"].packets >= 3, "{c:?}");
}

#[test]
fn policy_change_drops_established_sessions_and_reapply_keeps_them() {
    let lab = Lab::new();
    let base = world_with(None);
    let allow_80 = world_with(Some(vec![allow_tcp(&base, "web", &["*"], &["*"], &["80"])]));
    let allow_443 = world_with(Some(vec![allow_tcp(
        &base,
        "tls",
        &["*"],
        &["*"],
        &["443"],
    )]));
    let r80 = render(&spec(&allow_80), &RenderOptions::default());
    lab.apply(&r80);

    let mut client = lab
        .cli
        .run(|| connect(ip("10.240.0.4"), ip("198.51.100.1"), 80).unwrap())
        .unwrap();
    let (_, mut server) = lab.accept_one(80);
    server.set_nonblocking(false).unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1];

    client.write_all(b"a").unwrap();
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"a");

    // The same rules again: a new table, the same generation, the session lives on.
    lab.apply(&render(&spec(&allow_80), &RenderOptions::default()));
    client.write_all(b"b").unwrap();
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"b");
    server.write_all(b"c").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"c");

    // Rules that no longer admit the flow: its packets are dropped both ways.
    let r443 = render(&spec(&allow_443), &RenderOptions::default());
    assert_ne!(r443.generation(), r80.generation());
    lab.apply(&r443);
    client.write_all(b"d").unwrap();
    let e = server.read_exact(&mut buf).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    server.write_all(b"e").unwrap();
    let e = client.read_exact(&mut buf).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    let c = rule_counters(r443.table(), Some(lab.fw.name())).unwrap();
    assert!(c["default deny"].packets >= 2, "{c:?}");
    // New flows that the new rules admit pass.
    assert_eq!(
        lab.connect_all(&[(ip("10.240.0.4"), ip("198.51.100.1"), 443)]),
        [true]
    );
}

#[test]
fn api_gate_admits_only_authorized_sources_behind_the_firewall() {
    let lab = Lab::new();
    let w = world_with(None);
    lab.apply(&render(&spec(&w), &RenderOptions::default()));
    let mut gate = ApiGate::for_cluster(&w, w.clusters.values().next().unwrap());
    let on = |g: &ApiGate| apply_ruleset(&render_api_gate(g), Some(lab.srv.name())).unwrap();

    // The firewall's public IP is authorized: a node behind it gets in; a private destination
    // is not SNATed, so the API host sees 10.240.0.4, which is not authorized.
    gate.ranges = Some(vec![format!("{PUBLIC_IP}/32").parse().unwrap()]);
    on(&gate);
    let flows = [
        (ip("10.240.0.4"), ip("198.51.100.1"), 443),
        (ip("10.240.0.4"), ip("10.50.0.1"), 443),
        (ip("10.240.0.4"), ip("198.51.100.1"), 80),
    ];
    assert_eq!(lab.connect_all(&flows), [true, false, true]);

    gate.ranges = Some(vec![
        "192.0.2.0/24".parse().unwrap(),
        "10.240.0.0/16".parse().unwrap(),
    ]);
    on(&gate);
    assert_eq!(lab.connect_all(&flows), [false, true, true]);
    let c = rule_counters(&gate.table, Some(lab.srv.name())).unwrap();
    assert!(c["not in the authorized ranges"].packets >= 1, "{c:?}");

    gate.ranges = None;
    on(&gate);
    assert_eq!(lab.connect_all(&flows), [true, true, true]);
}

#[test]
fn routes_apply_replace_stale_and_remove() {
    let ns = Netns::create(&ns_name("rt")).unwrap();
    sh(
        &ns,
        &[
            "link", "add", "sub0", "type", "veth", "peer", "name", "sub1",
        ],
    );
    sh(&ns, &["link", "set", "sub1", "up"]);
    sh(&ns, &["addr", "add", "10.240.0.1/16", "dev", "sub0"]);
    sh(&ns, &["addr", "add", "10.200.0.1/16", "dev", "sub0"]);
    sh(&ns, &["link", "set", "sub0", "up"]);
    ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    let target = RoutingTarget {
        subnet: "aks-subnet".into(),
        table: 100,
        selector: Selector::From("10.240.0.0/16".parse().unwrap()),
        rule_priority: 1000,
    };
    let plan_of = |w: &World| {
        let p = Policy::compile(w);
        let c = p.clusters().first().unwrap();
        render_routes(
            p.subnet_routes(c.subnet_id.as_deref().unwrap()).unwrap(),
            &target,
        )
    };
    let show = || ns.ip(&["route", "show", "table", "100"]).unwrap();

    let before = WorldBuilder::new().procedure("rg", "c", 3).build();
    apply_routes(&plan_of(&before), Some(ns.name())).unwrap();
    let t = show();
    assert!(t.contains("198.51.100.1 via 10.200.0.4"), "{t}");
    assert!(t.contains("10.244.2.0/24 via 10.240.0.6"), "{t}");
    assert!(t.contains("blackhole 172.16.0.0/12"), "{t}");
    assert!(t.contains("throw 10.0.0.0/8"), "{t}");
    // The kernel agrees with the userspace next hop: a lookup from the subnet.
    let got = ns
        .ip(&[
            "route",
            "get",
            "198.51.100.1",
            "from",
            "10.240.0.9",
            "iif",
            "sub0",
        ])
        .unwrap();
    assert!(got.contains("via 10.200.0.4"), "{got}");

    // Fewer nodes, no firewall route, a default route to the firewall: replaced and pruned.
    let after = WorldBuilder::new()
        .cluster("rg", "c", 2)
        .firewall()
        .user_route(
            "default",
            "0.0.0.0/0",
            apiwall_model::NextHopType::VirtualAppliance,
            Some("10.200.0.4"),
        )
        .build();
    apply_routes(&plan_of(&after), Some(ns.name())).unwrap();
    apply_routes(&plan_of(&after), Some(ns.name())).unwrap();
    let t = show();
    assert!(t.contains("default via 10.200.0.4"), "{t}");
    assert!(!t.contains("198.51.100.1"), "{t}");
    assert!(!t.contains("10.244.2.0"), "{t}");
    let rules = ns.ip(&["rule", "show"]).unwrap();
    assert_eq!(rules.matches("lookup 100").count(), 1, "{rules}");

    remove_routes(&target, Some(ns.name())).unwrap();
    remove_routes(&target, Some(ns.name())).unwrap();
    assert!(show().trim().is_empty());
    assert!(!ns.ip(&["rule", "show"]).unwrap().contains("lookup 100"));
}

// === kernel verdict = userspace classifier verdict ===

const SRC_POOL: [&str; 6] = [
    "*",
    "10.240.0.4",
    "10.240.0.5-10.240.0.6",
    "10.240.0.0/30",
    "10.240.0.0/16",
    "192.168.0.0/16",
];
const DST_POOL: [&str; 7] = [
    "*",
    "198.51.100.1",
    "198.51.100.0/24",
    "192.0.2.10",
    "10.50.0.0/16",
    "198.51.100.2-198.51.100.9",
    "2001:db8::/32",
];
const PORT_POOL: [&str; 6] = ["*", "80", "443", "8080", "80-443", "1000-9000"];
const PROTO_POOL: [Protocol; 4] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Any];

fn pick<T: Clone + std::fmt::Debug + 'static>(pool: &'static [T]) -> impl Strategy<Value = Vec<T>> {
    proptest::sample::subsequence(pool, 1..=2)
}

type RuleShape = (
    Vec<Protocol>,
    Vec<&'static str>,
    Vec<&'static str>,
    Vec<&'static str>,
);

fn rules_strategy() -> impl Strategy<Value = Vec<(u32, bool, Vec<RuleShape>)>> {
    let rule = (
        pick(&PROTO_POOL),
        pick(&SRC_POOL),
        pick(&DST_POOL),
        pick(&PORT_POOL),
    );
    proptest::collection::vec(
        (
            prop_oneof![Just(100u32), Just(200), Just(300)],
            any::<bool>(),
            proptest::collection::vec(rule, 1..=6),
        ),
        1..=3,
    )
}

fn flows_strategy() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    proptest::collection::vec((0..SOURCES.len(), 0..DESTINATIONS.len(), 0..PORTS.len()), 8)
}

#[test]
fn kernel_verdict_equals_userspace_classifier() {
    let lab = Lab::new();
    let base = world_with(None);
    let id = fw_id(&base);
    let seen = std::cell::Cell::new((0usize, 0usize));
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(rules_strategy(), flows_strategy()), |(shape, flows)| {
            let cols: Vec<NetworkRuleCollection> = shape
                .iter()
                .enumerate()
                .map(|(ci, (prio, allow, rules))| {
                    let rules = rules
                        .iter()
                        .enumerate()
                        .map(|(ri, (p, s, d, o))| network_rule(&format!("r{ri}"), p, s, d, o))
                        .collect();
                    let action = if *allow { Action::Allow } else { Action::Deny };
                    collection(&id, &format!("c{ci}"), *prio, action, rules)
                })
                .collect();
            let w = world_with(Some(cols));
            let policy = Policy::compile(&w);
            let classifier = &policy.firewalls()[0].classifier;
            lab.apply(&render(&spec(&w), &RenderOptions::default()));
            let flows: Vec<(IpAddr, IpAddr, u16)> = flows
                .iter()
                .map(|&(s, d, p)| (ip(SOURCES[s]), ip(DESTINATIONS[d]), PORTS[p]))
                .collect();
            let wire = lab.connect_all(&flows);
            for (&(s, d, p), got) in flows.iter().zip(wire) {
                let (a, n) = seen.get();
                seen.set(if got { (a + 1, n) } else { (a, n + 1) });
                let want = classifier
                    .classify(s, d, p, Protocol::Tcp)
                    .is_some_and(|m| m.action == Action::Allow);
                prop_assert_eq!(
                    got,
                    want,
                    "flow {} -> {}:{} rule {:?}",
                    s,
                    d,
                    p,
                    classifier.classify(s, d, p, Protocol::Tcp)
                );
            }
            Ok(())
        })
        .unwrap();
    let (admitted, denied) = seen.get();
    assert!(
        admitted > 0 && denied > 0,
        "the cases should see both verdicts: {admitted} admitted, {denied} denied"
    );
}

/// The benchmark's rule sets (10,000 rules, with sets and naively) load, and replace each other
/// in one transaction.
#[test]
fn ten_thousand_rules_load_in_both_modes() {
    let ns = Netns::create(&ns_name("big")).unwrap();
    let base = world_with(None);
    let cols = apiwall_policy::fixture::big_firewall_collections(&fw_id(&base), 10_000);
    let w = world_with(Some(cols));
    for mode in [apiwall_kernel::Mode::Sets, apiwall_kernel::Mode::Naive] {
        let opts = RenderOptions {
            mode,
            ..RenderOptions::default()
        };
        let r = render(&spec(&w), &opts);
        let t = Instant::now();
        apply_ruleset(&r, Some(ns.name())).unwrap();
        eprintln!("{mode:?}: 10,000 rules applied in {:?}", t.elapsed());
        let c = rule_counters(r.table(), Some(ns.name())).unwrap();
        assert_eq!(
            c.len(),
            10_000 + 2,
            "one per rule, the default deny and the SNAT"
        );
    }
}
