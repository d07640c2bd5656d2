use std::collections::BTreeMap;

use crate::support::Env;

#[test]
fn procedure_replays_and_rerunning_changes_nothing() {
    let env = Env::new();
    let vars: BTreeMap<String, String> = env.procedure().into_iter().collect();
    let var = |k: &str| {
        vars.get(k)
            .unwrap_or_else(|| panic!("{k} not captured"))
            .as_str()
    };

    assert_eq!(
        var("MC_RESOURCE_GROUP"),
        "MC_myResourceGroup_myAKSCluster_westeurope"
    );
    assert!(
        var("VNET_NAME").starts_with("aks-vnet-"),
        "{}",
        var("VNET_NAME")
    );
    assert_eq!(var("VNET_NAME").len(), "aks-vnet-".len() + 8);
    let fw_ip: std::net::Ipv4Addr = var("FIREWALL_PUBLIC_IP").parse().expect("an IPv4 address");
    assert_eq!(
        fw_ip.octets()[..3],
        [203, 0, 113],
        "in the default pool 203.0.113.0/24"
    );
    assert_eq!(var("FIREWALL_INTERNAL_IP"), "10.200.0.4");
    assert!(
        var("ROUTE_TABLE").contains("agentpool"),
        "{}",
        var("ROUTE_TABLE")
    );
    assert_eq!(var("ROUTE_NEXT_HOP"), "VirtualAppliance 10.200.0.4");
    let api: std::net::Ipv4Addr = var("K8S_ENDPOINT_IP").parse().unwrap();
    assert_eq!(api.octets()[..3], [198, 51, 100]);
    assert_eq!(var("AUTHORIZED_IP_RANGES"), format!("[\"{fw_ip}/32\"]"));

    // The cluster's layout, as DESIGN §3 describes it.
    let rg = var("MC_RESOURCE_GROUP");
    let nodes = env.json(&["vm", "list", "-g", rg]);
    let ips: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["privateIps"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.240.0.4", "10.240.0.5", "10.240.0.6"]);
    let routes = env.json(&[
        "network",
        "route-table",
        "route",
        "list",
        "-g",
        rg,
        "--route-table-name",
        var("ROUTE_TABLE"),
    ]);
    let pod_routes: Vec<(String, String)> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"].as_str().unwrap().contains("vmss"))
        .map(|r| {
            (
                r["addressPrefix"].as_str().unwrap().into(),
                r["nextHopIpAddress"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        pod_routes,
        [
            ("10.244.0.0/24", "10.240.0.4"),
            ("10.244.1.0/24", "10.240.0.5"),
            ("10.244.2.0/24", "10.240.0.6")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // Re-running `aks create` without --node-count keeps the cluster's size.
    env.aks_create(Some(4), false).ok();
    env.aks_create(None, false).ok();
    assert_eq!(
        env.json(&["vm", "list", "-g", rg])
            .as_array()
            .unwrap()
            .len(),
        4
    );
    env.aks_create(Some(3), false).ok();

    let first = env.dump();
    let revision_probe = env.ok(&["configure"]);
    let again: BTreeMap<String, String> = env.procedure().into_iter().collect();
    assert_eq!(again, vars, "a second run captures the same values");
    assert_eq!(
        env.dump(),
        first,
        "a second run leaves every show/list output byte-identical"
    );
    assert_eq!(env.ok(&["configure"]), revision_probe);
}
