//! `network watcher` against the procedure's end state (DESIGN §3 anchors).

use serde_json::Value;

use crate::support::{Env, MC, NODE};

fn next_hop(env: &Env, dest: &str) -> Value {
    env.json(&[
        "network",
        "watcher",
        "show-next-hop",
        "-g",
        MC,
        "--vm",
        NODE,
        "--source-ip",
        "10.240.0.4",
        "--dest-ip",
        dest,
    ])
}

fn ip_flow(env: &Env, remote: &str) -> Value {
    env.json(&[
        "network",
        "watcher",
        "test-ip-flow",
        "-g",
        MC,
        "--vm",
        NODE,
        "--direction",
        "Outbound",
        "--protocol",
        "TCP",
        "--local",
        "10.240.0.4:50000",
        "--remote",
        remote,
    ])
}

#[test]
fn anchors_of_the_procedures_end_state() {
    let env = Env::new();
    let vars: std::collections::BTreeMap<String, String> = env.procedure().into_iter().collect();
    let api = &vars["K8S_ENDPOINT_IP"];
    let fw_public = &vars["FIREWALL_PUBLIC_IP"];
    let table_id = env.ok(&[
        "network",
        "route-table",
        "show",
        "-g",
        MC,
        "-n",
        &vars["ROUTE_TABLE"],
        "--query",
        "id",
        "-o",
        "tsv",
    ]);

    let hop = next_hop(&env, api);
    assert_eq!(hop["nextHopType"], "VirtualAppliance");
    assert_eq!(hop["nextHopIpAddress"], "10.200.0.4");
    assert_eq!(hop["routeTableId"], table_id.trim());

    let hop = next_hop(&env, "198.51.100.250");
    assert_eq!(hop["nextHopType"], "Internet");
    assert_eq!(hop["routeTableId"], "System Route");

    assert_eq!(next_hop(&env, "172.16.5.5")["nextHopType"], "None");
    assert_eq!(next_hop(&env, "10.240.0.5")["nextHopType"], "VnetLocal");

    let flow = ip_flow(&env, &format!("{api}:443"));
    assert_eq!(flow["access"], "Allow");
    assert_eq!(flow["ruleName"], "AllowTCPOutbound");

    // Narrow the rule to 443 (re-creating a rule under its name replaces it): port 22 is denied.
    env.ok(&[
        "network",
        "firewall",
        "network-rule",
        "create",
        "-g",
        MC,
        "-f",
        "myAzureFirewall",
        "-c",
        "myAzureFirewallCollection",
        "-n",
        "AllowTCPOutbound",
        "--protocols",
        "TCP",
        "--source-addresses",
        "*",
        "--destination-addresses",
        "*",
        "--destination-ports",
        "443",
    ]);
    assert_eq!(ip_flow(&env, &format!("{api}:443"))["access"], "Allow");
    assert_eq!(ip_flow(&env, &format!("{api}:22"))["access"], "Deny");

    let t = env.trace_from_node(NODE, api, 443);
    assert_eq!(t["verdict"], "Allow");
    assert_eq!(t["seenAs"], fw_public.as_str());
    let components: Vec<&str> = t["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["component"].as_str().unwrap())
        .collect();
    assert_eq!(components, ["route", "firewall", "snat", "apiServer"]);
    assert_eq!(t["hops"][1]["rule"], "AllowTCPOutbound");

    let t = env.trace_from_ip("192.0.2.66", api, 443);
    assert_eq!(t["verdict"], "Deny");
    assert_eq!(t["blockedBy"], "apiServer");
    assert!(t["fix"].as_str().unwrap().contains("192.0.2.66/32"), "{t}");

    let table = env.ok(&[
        "network",
        "watcher",
        "trace",
        "-g",
        MC,
        "--vm",
        NODE,
        "--dest-ip",
        api,
        "-o",
        "table",
    ]);
    assert!(table.starts_with("Verdict: Allow"), "{table}");
    assert!(table.contains("AllowTCPOutbound"), "{table}");
}
