//! Lockout protection through the CLI: refused and named, `--force` applies, not over-cautious.

use std::collections::BTreeMap;

use crate::support::Env;
use crate::support::{MC, NODE};

#[test]
fn a_change_that_cuts_the_nodes_off_is_refused_and_named() {
    let env = Env::new();
    let vars: BTreeMap<String, String> = env.procedure().into_iter().collect();
    let (api, fw_ip) = (&vars["K8S_ENDPOINT_IP"], &vars["FIREWALL_PUBLIC_IP"]);
    let before = env.dump();

    // Ranges that leave out the firewall's public IP.
    let r = env.set_ranges("192.0.2.10/32", false);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for needle in [
        NODE,
        fw_ip.as_str(),
        &format!("add {fw_ip}/32"),
        "myAzureFirewall",
        "--force",
    ] {
        assert!(
            r.stderr.contains(needle),
            "message lacks {needle:?}: {}",
            r.stderr
        );
    }
    assert_eq!(env.dump(), before, "a refused change changes nothing");

    // Deleting the collection that carries the nodes' API traffic.
    let del = [
        "network",
        "firewall",
        "network-rule",
        "collection",
        "delete",
        "-g",
        MC,
        "-f",
        "myAzureFirewall",
        "-n",
        "myAzureFirewallCollection",
    ];
    let r = env.run(&del);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(NODE) && r.stderr.contains("firewall"),
        "{}",
        r.stderr
    );
    assert_eq!(env.dump(), before);

    // With --force the change applies, and trace shows the nodes denied.
    let mut forced = del.to_vec();
    forced.push("--force");
    env.ok(&forced);
    let t = env.trace_from_node(NODE, api, 443);
    assert_eq!(t["verdict"], "Deny");
    assert_eq!(t["blockedBy"], "firewall");
}

#[test]
fn removing_the_firewall_route_is_allowed_while_the_lb_ip_is_admitted() {
    let env = Env::new();
    let vars: BTreeMap<String, String> = env.procedure().into_iter().collect();
    env.firewall_route(None, false).ok();
    // The nodes now leave through the load balancer, whose outbound IP is always admitted.
    let lb_ip = env.ok(&[
        "network",
        "public-ip",
        "list",
        "-g",
        MC,
        "--query",
        "[?starts_with(name, 'aks-outbound')].ipAddress | [0]",
        "-o",
        "tsv",
    ]);
    let t = env.trace_from_node(NODE, &vars["K8S_ENDPOINT_IP"], 443);
    assert_eq!(t["verdict"], "Allow", "{t}");
    assert_eq!(t["seenAs"], lb_ip.trim());
}
