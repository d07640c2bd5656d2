//! Golden files for the kernel compilers. `UPDATE_GOLDEN=1 cargo test -p apiwall-kernel --test
//! golden` rewrites them. Every `.nft` golden file is also checked by the real `nft -c -f`
//! (CI runs as root).

use std::path::PathBuf;

use apiwall_kernel::{
    ApiGate, FirewallSpec, Mode, RenderOptions, RoutingTarget, Selector, check_nft, render,
    render_api_gate, render_routes,
};
use apiwall_model::resources::{Action, NextHopType, OutboundType, SNAT_PRIVATE_RANGES};
use apiwall_model::{Protocol, World};
use apiwall_policy::Policy;
use apiwall_policy::fixture::{WorldBuilder, collection, network_rule};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with the golden file `name` (or rewrites it under `UPDATE_GOLDEN=1`); for
/// `.nft` files, also has `nft -c` check it.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    } else {
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
        assert!(
            expected == actual,
            "{name} differs from the golden file; run with UPDATE_GOLDEN=1 to accept.\n--- expected\n{expected}\n--- actual\n{actual}"
        );
    }
    if name.ends_with(".nft") {
        check_nft(actual, None).unwrap_or_else(|e| panic!("{name}: nft -c: {e}"));
    }
}

fn procedure() -> World {
    WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .build()
}

fn firewall_spec(w: &World) -> FirewallSpec {
    FirewallSpec::from_world(w, w.firewalls.values().next().unwrap())
}

/// Three collections: a Deny collection that runs first, an Allow collection with ranges, CIDRs,
/// IPv6, port lists and mixed protocols, and the seed's catch-all last.
fn multi() -> World {
    let w = procedure();
    let fw_id = w.firewalls.values().next().unwrap().id.clone();
    WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .firewall_collections(vec![
            collection(
                &fw_id,
                "allow-web",
                300,
                Action::Allow,
                vec![
                    network_rule(
                        "web",
                        &[Protocol::Tcp],
                        &["10.240.0.0/16", "10.241.0.10-10.241.0.20", "10.240.5.0/24"],
                        &["198.51.100.0/24", "192.0.2.10", "2001:db8::/32"],
                        &["80", "443", "8000-8999", "8443"],
                    ),
                    network_rule(
                        "dns",
                        &[Protocol::Udp, Protocol::Tcp],
                        &["*"],
                        &["192.0.2.53", "192.0.2.54"],
                        &["53"],
                    ),
                    network_rule(
                        "ping-and-ntp",
                        &[Protocol::Icmp, Protocol::Udp],
                        &["10.240.0.0/16"],
                        &["*"],
                        &["123"],
                    ),
                    network_rule(
                        "v6-anything",
                        &[Protocol::Any],
                        &["fd00::/8"],
                        &["*"],
                        &["*"],
                    ),
                ],
            ),
            collection(
                &fw_id,
                "deny-bad",
                100,
                Action::Deny,
                vec![
                    network_rule(
                        "block-range",
                        &[Protocol::Any],
                        &["*"],
                        &["198.51.100.200-198.51.100.250"],
                        &["*"],
                    ),
                    network_rule(
                        "block-smtp",
                        &[Protocol::Tcp],
                        &["10.240.0.0/16"],
                        &["*"],
                        &["25", "465", "587"],
                    ),
                ],
            ),
            collection(
                &fw_id,
                "myAzureFirewallCollection",
                65000,
                Action::Allow,
                vec![network_rule(
                    "AllowTCPOutbound",
                    &[Protocol::Tcp],
                    &["*"],
                    &["*"],
                    &["*"],
                )],
            ),
        ])
        .build()
}

#[test]
fn procedure_firewall() {
    let r = render(&firewall_spec(&procedure()), &RenderOptions::default());
    assert_eq!(r.table(), "apiwall_myAzureFirewall");
    golden("procedure_firewall.nft", &r.to_nft());
}

#[test]
fn multi_collection_firewall() {
    let r = render(&firewall_spec(&multi()), &RenderOptions::default());
    golden("multi_collection.nft", &r.to_nft());
}

/// Runs of destination-specific rules: nested and crossing destinations (copied into each bucket
/// they cover, in order), a rule with any destination between two runs, IPv6, a short run that
/// stays linear, and a list shared by several rules (one set).
fn dispatch() -> World {
    let w = procedure();
    let fw_id = w.firewalls.values().next().unwrap().id.clone();
    let tcp = &[Protocol::Tcp];
    let nodes = &["10.240.0.0/16", "10.241.0.0/16"];
    WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .firewall_collections(vec![
            collection(
                &fw_id,
                "deny-first",
                100,
                Action::Deny,
                vec![
                    network_rule("host", tcp, &["*"], &["198.51.100.10"], &["443"]),
                    network_rule("range", tcp, nodes, &["198.51.100.0/28"], &["22"]),
                    network_rule("v6", &[Protocol::Any], &["*"], &["2001:db8::/64"], &["*"]),
                ],
            ),
            collection(
                &fw_id,
                "allow-then",
                200,
                Action::Allow,
                vec![
                    network_rule("wide", tcp, nodes, &["198.51.100.0/24"], &["443", "8443"]),
                    network_rule("other", &[Protocol::Udp], nodes, &["192.0.2.0/25"], &["53"]),
                    network_rule(
                        "crossing",
                        tcp,
                        &["*"],
                        &["192.0.2.64-192.0.2.200", "2001:db8::/32"],
                        &["80", "8000-8999"],
                    ),
                    network_rule("icmp-anywhere", &[Protocol::Icmp], nodes, &["*"], &["*"]),
                    network_rule("late", tcp, nodes, &["203.0.113.0/24"], &["443"]),
                    network_rule("late-2", tcp, nodes, &["203.0.114.0/24"], &["443"]),
                ],
            ),
        ])
        .build()
}

#[test]
fn dispatch_firewall() {
    let r = render(&firewall_spec(&dispatch()), &RenderOptions::default());
    let def = r.definition();
    assert!(def.contains("ct original ip daddr vmap @dst4_0"), "{def}");
    golden("dispatch.nft", &r.to_nft());
}

#[test]
fn multi_collection_firewall_naive() {
    let opts = RenderOptions {
        mode: Mode::Naive,
        ..RenderOptions::default()
    };
    let r = render(&firewall_spec(&multi()), &opts);
    golden("multi_collection_naive.nft", &r.to_nft());
}

fn with_private_ranges(ranges: &str) -> FirewallSpec {
    let mut w = procedure();
    let fw = w.firewalls.values_mut().next().unwrap();
    fw.additional_properties
        .insert(SNAT_PRIVATE_RANGES.into(), ranges.into());
    firewall_spec(&w)
}

#[test]
fn private_ranges_override() {
    let r = render(
        &with_private_ranges("IANAPrivateRanges, 198.18.0.0/15, 10.0.0.0/16"),
        &RenderOptions::default(),
    );
    golden("snat_custom_ranges.nft", &r.to_nft());
}

#[test]
fn private_ranges_never_snat() {
    let r = render(&with_private_ranges("0.0.0.0/0"), &RenderOptions::default());
    assert!(!r.definition().contains("snat ip to"));
    golden("snat_never.nft", &r.to_nft());
}

#[test]
fn private_ranges_always_snat() {
    let r = render(
        &with_private_ranges("255.255.255.255/32"),
        &RenderOptions::default(),
    );
    assert!(r.definition().contains("snat ip to"));
    assert!(!r.definition().contains("return"));
    golden("snat_always.nft", &r.to_nft());
}

#[test]
fn firewall_without_public_ip() {
    let mut spec = firewall_spec(&procedure());
    spec.public_ip = None;
    let r = render(&spec, &RenderOptions::default());
    assert!(!r.definition().contains("snat"));
    golden("no_public_ip.nft", &r.to_nft());
}

fn gate_of(w: &World) -> ApiGate {
    ApiGate::for_cluster(w, w.clusters.values().next().unwrap())
}

#[test]
fn api_gate_procedure() {
    // The procedure's end state: only the firewall's public IP (and, with outbound type
    // loadBalancer, the load balancer's outbound IP).
    golden(
        "gate_procedure.nft",
        &render_api_gate(&gate_of(&procedure())).to_nft(),
    );
}

#[test]
fn api_gate_many_ranges_user_defined_routing() {
    let w = WorldBuilder::new()
        .cluster("rg", "c1", 1)
        .outbound_type(OutboundType::UserDefinedRouting)
        .authorized(Some(&[
            "192.0.2.0/24",
            "192.0.2.128/25",
            "203.0.113.7",
            "10.0.0.0/8",
            "2001:db8::/48",
            "2001:db8:1::1",
        ]))
        .build();
    let g = gate_of(&w);
    let r = render_api_gate(&g);
    assert!(!r.definition().contains("load balancer"));
    golden("gate_many_ranges.nft", &r.to_nft());
}

#[test]
fn api_gate_lb_only() {
    let w = WorldBuilder::new()
        .cluster("rg", "c1", 1)
        .authorized(Some(&["0.0.0.0/32"]))
        .build();
    let r = render_api_gate(&gate_of(&w));
    assert!(!r.definition().contains("0.0.0.0"));
    golden("gate_lb_only.nft", &r.to_nft());
}

#[test]
fn api_gate_unrestricted() {
    let w = WorldBuilder::new().cluster("rg", "c1", 1).build();
    golden(
        "gate_unrestricted.nft",
        &render_api_gate(&gate_of(&w)).to_nft(),
    );
}

fn agentpool_routes(w: &World) -> String {
    let p = Policy::compile(w);
    let cluster = p.clusters().first().unwrap();
    let routes = p
        .subnet_routes(cluster.subnet_id.as_deref().unwrap())
        .unwrap();
    let target = RoutingTarget {
        subnet: "aks-subnet".into(),
        table: 100,
        selector: Selector::From("10.240.0.0/16".parse().unwrap()),
        rule_priority: 1000,
    };
    render_routes(routes, &target).to_batch()
}

#[test]
fn routes_procedure() {
    golden("routes_procedure.ip", &agentpool_routes(&procedure()));
}

#[test]
fn routes_every_next_hop_type() {
    let w = WorldBuilder::new()
        .cluster("rg", "c1", 2)
        .firewall()
        .user_route(
            "default-to-firewall",
            "0.0.0.0/0",
            NextHopType::VirtualAppliance,
            Some("10.200.0.4"),
        )
        .user_route(
            "direct-to-api",
            "198.51.100.0/24",
            NextHopType::Internet,
            None,
        )
        .user_route("drop-this", "192.0.2.66/32", NextHopType::None, None)
        .user_route(
            "on-prem",
            "172.16.0.0/12",
            NextHopType::VirtualNetworkGateway,
            None,
        )
        .user_route("v6-drop", "2001:db8::/32", NextHopType::None, None)
        .build();
    let batch = agentpool_routes(&w);
    // User routes replace system routes of the same prefix.
    assert!(batch.contains("route replace 0.0.0.0/0 via 10.200.0.4 table 100"));
    assert!(!batch.contains("throw 0.0.0.0/0"));
    assert!(batch.contains("route replace unreachable 172.16.0.0/12 table 100"));
    golden("routes_every_next_hop_type.ip", &batch);
}

/// Every `.nft` file in the golden folder is one nft accepts, including any not rendered above.
#[test]
fn every_golden_nft_file_passes_nft_check() {
    let mut n = 0;
    for e in std::fs::read_dir(golden_dir()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "nft") {
            let text = std::fs::read_to_string(&path).unwrap();
            check_nft(&text, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 10, "expected the golden .nft files, found {n}");
}
