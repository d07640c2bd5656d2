use super::*;
use crate::fixture::{WorldBuilder, collection, network_rule};
use crate::trace::{Component, Flow, HopDecision, Verdict};
use crate::{AccessDecision, lockout};
use apiwall_model::resources::Action;
use apiwall_model::{NextHopType, Protocol};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The procedure's end state: firewall, route to it, API server authorizing its public IP.
fn procedure() -> World {
    WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .build()
}

fn node0(w: &World) -> String {
    w.vms.values().next().unwrap().name.clone()
}

fn api(w: &World) -> IpAddr {
    w.clusters.values().next().unwrap().api_server_address
}

fn fw_public_ip(w: &World) -> IpAddr {
    w.public_ips
        .values()
        .find(|p| p.name == "myAzureFirewallPublicIP")
        .unwrap()
        .ip_address
}

fn lb_ip(w: &World) -> IpAddr {
    w.public_ips
        .values()
        .find(|p| p.name.ends_with("-outbound-ip"))
        .unwrap()
        .ip_address
}

#[test]
fn next_hop_anchors() {
    let w = procedure();
    let p = Policy::compile(&w);
    let vm = node0(&w);
    let table_id = w.route_tables.values().next().unwrap().id.clone();

    let h = p.next_hop(&vm, api(&w)).unwrap();
    assert_eq!(h.next_hop_type, NextHopType::VirtualAppliance);
    assert_eq!(h.next_hop_ip_address, Some(ip("10.200.0.4")));
    assert_eq!(h.route_table_label(), table_id);

    let h = p.next_hop(&vm, ip("198.51.100.250")).unwrap().show();
    assert_eq!(h.next_hop_type, NextHopType::Internet);
    assert_eq!(h.route_table_id, "System Route");
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["routeTableId"], "System Route");
    assert_eq!(json["nextHopType"], "Internet");

    let h = p.next_hop(&vm, ip("172.16.5.5")).unwrap();
    assert_eq!(h.next_hop_type, NextHopType::None);

    let h = p.next_hop(&vm, ip("10.240.0.200")).unwrap();
    assert_eq!(h.next_hop_type, NextHopType::VnetLocal);

    assert_eq!(
        p.next_hop("no-such-vm", api(&w)).unwrap_err(),
        crate::PolicyError::UnknownVm("no-such-vm".into())
    );
}

#[test]
fn test_ip_flow_includes_the_firewall() {
    let w = WorldBuilder::new()
        .procedure("rg", "c", 2)
        .firewall_collections(vec![collection(
            "fw",
            "apiserver",
            200,
            Action::Allow,
            vec![network_rule(
                "AllowAPI443",
                &[Protocol::Tcp],
                &["*"],
                &["*"],
                &["443"],
            )],
        )])
        .build();
    let p = Policy::compile(&w);
    let f = p.test_ip_flow(&Flow::from_vm(&node0(&w), api(&w), 443, Protocol::Tcp));
    assert_eq!(
        (f.access, f.rule_name.as_str()),
        (Action::Allow, "AllowAPI443")
    );
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["access"], "Allow");
    assert_eq!(json["ruleName"], "AllowAPI443");

    let t = p.trace(&Flow::from_vm(&node0(&w), api(&w), 22, Protocol::Tcp));
    assert_eq!(t.verdict, Verdict::Deny);
    assert_eq!(t.blocked_by, Some(Component::Firewall));
    let f = t.ip_flow();
    assert_eq!(
        (f.access, f.rule_name.as_str()),
        (Action::Deny, "DefaultDeny")
    );
    assert!(
        t.fix
            .unwrap()
            .contains("add a network rule allowing TCP 22 from 10.240.0.4")
    );
}

#[test]
fn trace_from_node_goes_through_the_firewall() {
    let w = procedure();
    let p = Policy::compile(&w);
    let t = p.trace(&Flow::from_vm(&node0(&w), api(&w), 443, Protocol::Tcp));
    assert_eq!(t.verdict, Verdict::Allow, "{t:#?}");
    assert_eq!(t.source, ip("10.240.0.4"));
    assert_eq!(t.seen_as, Some(fw_public_ip(&w)));
    let comps: Vec<Component> = t.hops.iter().map(|h| h.component).collect();
    assert_eq!(
        comps,
        [
            Component::Route,
            Component::Firewall,
            Component::Snat,
            Component::ApiServer
        ]
    );
    let fw = &t.hops[1];
    assert_eq!(fw.collection.as_deref(), Some("myAzureFirewallCollection"));
    assert_eq!(fw.rule.as_deref(), Some("AllowTCPOutbound"));
    assert_eq!(t.hops[2].translated_to, Some(fw_public_ip(&w)));
    assert!(matches!(
        t.hops[3].access,
        Some(AccessDecision::Range { .. })
    ));

    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["verdict"], "Allow");
    assert_eq!(json["hops"][0]["component"], "route");
    assert_eq!(json["hops"][3]["component"], "apiServer");
    assert_eq!(json["seenAs"], fw_public_ip(&w).to_string());
}

#[test]
fn trace_from_unauthorized_internet_address_is_denied_at_the_api_server() {
    let w = procedure();
    let p = Policy::compile(&w);
    let t = p.trace(&Flow::from_ip(
        ip("192.0.2.66"),
        api(&w),
        443,
        Protocol::Tcp,
    ));
    assert_eq!(t.verdict, Verdict::Deny);
    assert_eq!(t.blocked_by, Some(Component::ApiServer));
    assert_eq!(t.seen_as, Some(ip("192.0.2.66")));
    assert!(t.fix.as_deref().unwrap().starts_with("add 192.0.2.66/32"));
    assert_eq!(serde_json::to_value(&t).unwrap()["blockedBy"], "apiServer");

    let t = p.trace(&Flow::from_ip(
        fw_public_ip(&w),
        api(&w),
        443,
        Protocol::Tcp,
    ));
    assert_eq!(t.verdict, Verdict::Allow);
}

#[test]
fn firewall_ip_missing_from_ranges_names_the_fix() {
    let w = WorldBuilder::new()
        .procedure("rg", "c", 1)
        .authorized(Some(&["192.0.2.0/24"]))
        .build();
    let p = Policy::compile(&w);
    let t = p.trace(&Flow::from_vm(&node0(&w), api(&w), 443, Protocol::Tcp));
    assert_eq!(t.blocked_by, Some(Component::ApiServer));
    assert_eq!(
        t.fix.as_deref(),
        Some(&*format!(
            "add {}/32, the public IP of firewall myAzureFirewall, to --api-server-authorized-ip-ranges of cluster c",
            fw_public_ip(&w)
        ))
    );
}

#[test]
fn internet_next_hop_leaves_through_the_load_balancer() {
    let w = WorldBuilder::new()
        .cluster("rg", "c", 1)
        .authorized(Some(&["192.0.2.0/24"]))
        .build();
    let p = Policy::compile(&w);
    let t = p.trace(&Flow::from_vm(&node0(&w), api(&w), 443, Protocol::Tcp));
    assert_eq!(t.verdict, Verdict::Allow, "{t:#?}");
    assert_eq!(t.seen_as, Some(lb_ip(&w)));
    assert_eq!(
        t.hops.last().unwrap().access,
        Some(AccessDecision::LoadBalancerOutbound { ip: lb_ip(&w) })
    );
}

#[test]
fn user_defined_routing_without_appliance_has_no_egress() {
    let w = WorldBuilder::new()
        .cluster("rg", "c", 1)
        .outbound_type(apiwall_model::OutboundType::UserDefinedRouting)
        .firewall()
        .build();
    let p = Policy::compile(&w);
    let t = p.trace(&Flow::from_vm(&node0(&w), api(&w), 443, Protocol::Tcp));
    assert_eq!(t.verdict, Verdict::Deny);
    assert_eq!(t.blocked_by, Some(Component::Route));
    assert!(t.reason.as_deref().unwrap().contains("userDefinedRouting"));
    assert!(
        t.fix
            .as_deref()
            .unwrap()
            .contains("VirtualAppliance 10.200.0.4"),
        "{:?}",
        t.fix
    );
}

#[test]
fn route_none_gateway_and_foreign_appliance_deny() {
    let w = WorldBuilder::new()
        .cluster("rg", "c", 2)
        .firewall()
        .user_route(
            "to-gw",
            "192.0.2.0/24",
            NextHopType::VirtualNetworkGateway,
            None,
        )
        .user_route(
            "to-box",
            "192.0.3.0/24",
            NextHopType::VirtualAppliance,
            Some("10.240.9.9"),
        )
        .build();
    let p = Policy::compile(&w);
    let vm = node0(&w);
    let deny = |dst: &str| {
        let t = p.trace(&Flow::from_vm(&vm, ip(dst), 443, Protocol::Tcp));
        assert_eq!(t.verdict, Verdict::Deny, "{dst}");
        assert_eq!(t.blocked_by, Some(Component::Route), "{dst}");
        t
    };
    assert!(deny("172.16.5.5").reason.unwrap().contains("next hop None"));
    assert!(
        deny("192.0.2.1")
            .reason
            .unwrap()
            .contains("virtual network gateway")
    );
    let t = deny("192.0.3.1");
    assert!(t.reason.unwrap().contains("not a firewall"));
    assert!(
        t.fix
            .unwrap()
            .contains("10.200.0.4, the private IP of firewall myAzureFirewall")
    );
    // A pod route's appliance is a node: delivered.
    let t = p.trace(&Flow::from_vm(&vm, ip("10.244.1.9"), 80, Protocol::Tcp));
    assert_eq!(t.verdict, Verdict::Allow);
    assert_eq!(t.hops[0].decision, HopDecision::Forward);
    let unknown = p.trace(&Flow::from_vm(
        "nobody",
        ip("10.244.1.9"),
        80,
        Protocol::Tcp,
    ));
    assert_eq!(unknown.blocked_by, Some(Component::Source));
}

#[test]
fn snat_private_ranges_keep_the_node_address() {
    let mut w = procedure();
    for fw in w.firewalls.values_mut() {
        fw.additional_properties.insert(
            apiwall_model::SNAT_PRIVATE_RANGES.into(),
            "0.0.0.0/0".into(),
        );
    }
    let p = Policy::compile(&w);
    let t = p.trace(&Flow::from_vm(&node0(&w), api(&w), 443, Protocol::Tcp));
    assert_eq!(t.seen_as, Some(ip("10.240.0.4")));
    assert_eq!(t.hops[2].decision, HopDecision::NoSnat);
    assert_eq!(t.blocked_by, Some(Component::ApiServer));
    assert!(
        t.fix
            .unwrap()
            .contains("10.240.0.4/32, the node's own address")
    );
}

#[test]
fn aks_zero_slash_32_in_a_policy() {
    let w = WorldBuilder::new()
        .cluster("rg", "c", 1)
        .authorized(Some(&["0.0.0.0/32"]))
        .build();
    let p = Policy::compile(&w);
    assert!(
        p.trace(&Flow::from_vm(&node0(&w), api(&w), 443, Protocol::Tcp))
            .allowed()
    );
    assert!(
        !p.trace(&Flow::from_ip(ip("192.0.2.1"), api(&w), 443, Protocol::Tcp))
            .allowed()
    );
    assert!(
        p.trace(&Flow::from_ip(lb_ip(&w), api(&w), 443, Protocol::Tcp))
            .allowed()
    );
}

// === lockout ===

#[test]
fn ranges_without_the_firewall_ip_lock_the_nodes_out() {
    let before = procedure();
    let mut after = before.clone();
    for c in after.clusters.values_mut() {
        c.api_server_access_profile.authorized_ip_ranges =
            Some(vec!["192.0.2.0/24".parse().unwrap()]);
    }
    let l = lockout(&Policy::compile(&before), &Policy::compile(&after));
    assert_eq!(l.len(), 1, "{l:#?}");
    let l = &l[0];
    assert_eq!(l.cluster, "myAKSCluster");
    assert_eq!(l.nodes.len(), 3);
    assert_eq!(l.seen_as, Some(fw_public_ip(&before)));
    assert_eq!(l.blocked_by, Component::ApiServer);
    let msg = l.to_string();
    assert!(
        msg.contains(&format!(
            "{}/32, the public IP of firewall myAzureFirewall",
            fw_public_ip(&before)
        )),
        "{msg}"
    );
    assert!(msg.contains("3 nodes of cluster myAKSCluster"), "{msg}");
    assert!(msg.contains("--force"), "{msg}");
}

#[test]
fn deleting_the_rule_collection_locks_the_nodes_out() {
    let before = procedure();
    let mut after = before.clone();
    for fw in after.firewalls.values_mut() {
        fw.network_rule_collections.clear();
    }
    let l = lockout(&Policy::compile(&before), &Policy::compile(&after));
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].blocked_by, Component::Firewall);
    assert_eq!(l[0].nodes.len(), 3);
    assert!(
        l[0].fix
            .starts_with("add a network rule allowing TCP 443 from 10.240.0.0/16 to "),
        "{}",
        l[0].fix
    );
}

#[test]
fn deleting_the_firewall_route_is_not_a_lockout_with_a_load_balancer() {
    let before = procedure();
    let mut after = before.clone();
    for t in after.route_tables.values_mut() {
        t.routes.retain(|r| r.name != "AzureFirewallAPIServer");
    }
    let (b, a) = (Policy::compile(&before), Policy::compile(&after));
    assert!(lockout(&b, &a).is_empty());
    // The nodes now leave through the load balancer, always admitted.
    let t = a.trace(&Flow::from_vm(
        &node0(&after),
        api(&after),
        443,
        Protocol::Tcp,
    ));
    assert_eq!(t.seen_as, Some(lb_ip(&after)));
    assert!(t.allowed());
}

#[test]
fn deleting_the_firewall_route_locks_out_with_user_defined_routing() {
    let mut before = procedure();
    for c in before.clusters.values_mut() {
        c.network_profile.outbound_type = apiwall_model::OutboundType::UserDefinedRouting;
    }
    let mut after = before.clone();
    for t in after.route_tables.values_mut() {
        t.routes.retain(|r| r.name != "AzureFirewallAPIServer");
    }
    let l = lockout(&Policy::compile(&before), &Policy::compile(&after));
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].blocked_by, Component::Route);
}

#[test]
fn already_blocked_nodes_and_no_op_changes_are_not_lockouts() {
    let before = WorldBuilder::new()
        .procedure("rg", "c", 2)
        .authorized(Some(&["192.0.2.0/24"]))
        .build();
    let mut after = before.clone();
    for fw in after.firewalls.values_mut() {
        fw.network_rule_collections.clear();
    }
    let (b, a) = (Policy::compile(&before), Policy::compile(&after));
    assert!(lockout(&b, &a).is_empty());
    assert!(lockout(&b, &b).is_empty());
}

#[test]
fn two_clusters_with_the_same_layout_stay_apart() {
    let w = WorldBuilder::new()
        .procedure("rg", "a", 1)
        .cluster("rg", "b", 1)
        .authorized(Some(&["192.0.2.0/24"]))
        .build();
    let p = Policy::compile(&w);
    let a = p.clusters().iter().find(|c| c.name == "a").unwrap();
    let b = p.clusters().iter().find(|c| c.name == "b").unwrap();
    let na = p.nodes_of(a).next().unwrap().name.clone();
    let nb = p.nodes_of(b).next().unwrap().name.clone();
    let ta = p.trace(&Flow::from_vm(
        &na,
        a.api_server_address,
        443,
        Protocol::Tcp,
    ));
    assert_eq!(ta.hops[1].component, Component::Firewall);
    let tb = p.trace(&Flow::from_vm(
        &nb,
        b.api_server_address,
        443,
        Protocol::Tcp,
    ));
    assert_eq!(tb.hops[1].component, Component::Snat);
    assert!(ta.allowed() && tb.allowed());
}
