//! The lab, end to end, as root: the seed's procedure in network namespaces with the real
//! kubectl, the kernel firewall and the gate; the analysis checked against the wire; and a clean
//! teardown. One test, because the lab's namespaces are global to the machine.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use apiwall_lab::host::in_netns;
use apiwall_lab::kernel::rule_counters;
use apiwall_lab::probe::probe;
use serde_json::Value;

use crate::support::{Env, MC, NODE};

const FW_NETNS: &str = "awlab-myAzureFirewall";
const FW_TABLE: &str = "apiwall_myAzureFirewall";

fn netns_list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n.starts_with("awlab-"))
        .collect()
}

fn kubectl(env: &Env, host: &str, kubeconfig: &str, args: &[&str]) -> (bool, String) {
    let mut a = vec![
        "lab",
        "exec",
        host,
        "--",
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "--request-timeout",
        "5s",
    ];
    a.extend_from_slice(args);
    let r = env.run(&a);
    (r.code == 0, format!("{}{}", r.stdout, r.stderr))
}

fn matrix(env: &Env) -> BTreeMap<String, Value> {
    let v = env.json(&["lab", "matrix"]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| (row["host"].as_str().unwrap().to_string(), row.clone()))
        .collect()
}

fn counter(rule: &str) -> u64 {
    rule_counters(FW_TABLE, Some(FW_NETNS))
        .expect("firewall counters")
        .get(rule)
        .map_or(0, |c| c.packets)
}

/// What a flow looked like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// Relayed (443: the API server answered through the gate).
    Allowed,
    /// Reached the API host, which refused it (RST, or the gate closed it).
    Refused,
    /// Never got an answer: dropped on the way.
    Dropped,
}

fn wire(netns: &str, api: IpAddr, port: u16, ca: &str) -> Wire {
    if port == 443 {
        let outcome = probe(netns, api, ca).expect("probe");
        return if outcome.admitted {
            Wire::Allowed
        } else if outcome.detail.starts_with("connect") {
            Wire::Dropped
        } else {
            Wire::Refused
        };
    }
    let addr = SocketAddr::new(api, port);
    in_netns(netns, move || {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(600)) {
            Ok(_) => Wire::Allowed,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Wire::Refused,
            Err(_) => Wire::Dropped,
        }
    })
    .expect("enter the host's namespace")
}

/// `trace`'s verdict in the same terms: where the flow stops.
fn traced(t: &Value) -> Wire {
    match (t["verdict"].as_str(), t["blockedBy"].as_str()) {
        (Some("Allow"), _) => Wire::Allowed,
        (_, Some("apiServer")) => Wire::Refused,
        _ => Wire::Dropped,
    }
}

/// Takes the lab down when the test ends, even on a failed assertion.
struct Down<'a>(&'a Env);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["lab", "down"]);
    }
}

/// A small deterministic generator (xorshift), so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[test]
fn lab_runs_the_procedure_and_matches_the_analysis() {
    let _turn = crate::support::HEAVY.blocking_lock();
    let uid = Command::new("id").arg("-u").output().expect("id -u").stdout;
    assert_eq!(
        String::from_utf8_lossy(&uid).trim(),
        "0",
        "the lab test needs root (CI runs as root)"
    );
    assert!(
        netns_list().is_empty(),
        "another lab is up on this machine; run 'apiwall lab down' first"
    );
    let env = Env::new();
    assert_eq!(
        env.run(&["lab", "down"]).code,
        0,
        "lab down without a lab is safe"
    );

    let vars: BTreeMap<String, String> = env.procedure().into_iter().collect();
    let api: IpAddr = vars["K8S_ENDPOINT_IP"].parse().unwrap();
    let fw_ip = vars["FIREWALL_PUBLIC_IP"].clone();
    let lb_ip = env
        .ok(&[
            "network",
            "public-ip",
            "list",
            "-g",
            MC,
            "--query",
            "[?starts_with(name, 'aks-outbound')].ipAddress | [0]",
            "-o",
            "tsv",
        ])
        .trim()
        .to_string();
    // Back to the state before the procedure's route and ranges.
    env.firewall_route(None, false).ok();
    env.set_ranges("", false).ok();

    let _down = Down(&env);
    env.ok(&["lab", "up"]);
    env.ok(&["lab", "up"]); // twice is safe
    let hosts = env.json(&["lab", "hosts"]);
    assert_eq!(hosts.as_array().unwrap().len(), 9, "{hosts}");

    let kubeconfig = env.home.path().join("kubeconfig");
    let kubeconfig = kubeconfig.to_str().unwrap();
    env.ok(&[
        "aks",
        "get-credentials",
        "-g",
        "myResourceGroup",
        "-n",
        "myAKSCluster",
        "--file",
        kubeconfig,
    ]);
    let ca = std::fs::read_to_string(
        env.home
            .path()
            .join("clusters/myresourcegroup_myakscluster/ca.pem"),
    )
    .expect("the cluster's CA");

    // Before the route and ranges: the node goes out through the load balancer.
    let jsonpath =
        r#"-o=jsonpath={.items[?(@.metadata.name == "kubernetes")].subsets[].addresses[].ip}"#;
    let (ok, out) = kubectl(&env, NODE, kubeconfig, &["get", "endpoints", jsonpath]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        api.to_string(),
        "the seed's kubectl line returns the API server's address"
    );
    // The gate writes its access log line when the connection ends.
    let gate_log = env.home.path().join("lab/logs/gate.log");
    let needle = format!("\"peer\":\"{lb_ip}:");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !std::fs::read_to_string(&gate_log)
        .unwrap_or_default()
        .contains(&needle)
    {
        assert!(
            Instant::now() < deadline,
            "the gate's log never showed the LB outbound IP {lb_ip}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = matrix(&env);
    assert_eq!(m[NODE]["result"], "admitted");
    assert_eq!(m[NODE]["seenAs"], lb_ip.as_str());

    // The procedure's route and ranges.
    env.firewall_route(Some(&api.to_string()), false).ok();
    env.set_ranges(&format!("{fw_ip}/32"), false).ok();
    env.ok(&["lab", "wait"]);
    let rule = "myAzureFirewallCollection/AllowTCPOutbound";
    let before = counter(rule);
    let (ok, out) = kubectl(&env, NODE, kubeconfig, &["get", "nodes"]);
    assert!(ok && out.contains(NODE), "{out}");
    assert!(
        counter(rule) > before,
        "the firewall's counter for {rule} went up"
    );
    // The firewall logs the decision in Azure's wording, and as a JSON line.
    let logs = env.home.path().join("lab/logs");
    let (head, tail) = (
        "TCP request from 10.240.0.4:",
        format!(
            " to {api}:443. Action: Allow. Rule Collection: myAzureFirewallCollection. Rule: AllowTCPOutbound"
        ),
    );
    let logged = |l: &str| {
        l.strip_prefix(head)
            .and_then(|r| r.strip_suffix(tail.as_str()))
            .is_some_and(|port| port.parse::<u16>().is_ok())
    };
    let json_logged = |v: &Value| {
        v["protocol"] == "TCP"
            && v["source"] == "10.240.0.4"
            && v["sourcePort"].is_u64()
            && v["destination"] == api.to_string().as_str()
            && v["destinationPort"] == 443
            && v["action"] == "Allow"
            && v["ruleCollection"] == "myAzureFirewallCollection"
            && v["rule"] == "AllowTCPOutbound"
            && v["ts"].is_string()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text =
            std::fs::read_to_string(logs.join("firewall-myAzureFirewall.log")).unwrap_or_default();
        let jsonl = std::fs::read_to_string(logs.join("firewall-myAzureFirewall.jsonl"))
            .unwrap_or_default();
        let records: Vec<Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        if text.lines().any(logged) && records.iter().any(json_logged) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the firewall's log has no line '{head}<port>{tail}' with its JSON form:\n{text}\n{jsonl}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = matrix(&env);
    for n in 0..3 {
        let node = format!("aks-nodepool1-81643024-vmss00000{n}");
        assert_eq!(m[&node]["result"], "admitted", "{}", m[&node]);
        assert_eq!(m[&node]["seenAs"], fw_ip.as_str(), "{}", m[&node]);
    }
    assert_eq!(m["workstation"]["result"], "refused");
    assert_eq!(m["outsider"]["result"], "refused");
    assert!(m.values().all(|r| r["agrees"] == true), "{m:?}");

    // The workstation is admitted once its /32 is added; the outsider stays out.
    assert_eq!(
        env.set_ranges(&format!("{fw_ip}/32,192.0.2.10/32"), false)
            .code,
        0
    );
    let m = matrix(&env);
    assert_eq!(m["workstation"]["result"], "admitted");
    assert_eq!(m["workstation"]["seenAs"], "192.0.2.10");
    assert_eq!(m["outsider"]["result"], "refused");
    let (ok, _) = kubectl(&env, "workstation", kubeconfig, &["version"]);
    assert!(ok);

    // A forced lockout really cuts the nodes off within 1 s; the workstation keeps access.
    env.set_ranges("192.0.2.10/32", true).ok();
    let node_ns = format!("awlab-{NODE}");
    let changed = Instant::now();
    while probe(&node_ns, api, &ca).unwrap().admitted {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the node still got through 1 s after the change"
        );
    }
    eprintln!(
        "forced lockout enforced on the wire after {:?}",
        changed.elapsed()
    );
    assert!(probe("awlab-workstation", api, &ca).unwrap().admitted);

    // 200 random flows over random rule sets, routes and ranges: trace equals the wire.
    let mut rng = Rng(0x5eed_1234_abcd);
    let sources = [
        "*",
        "10.240.0.0/16",
        "10.240.0.4",
        "10.240.0.5-10.240.0.6",
        "192.0.2.0/24",
    ];
    let destinations = ["*", "198.51.100.1", "198.51.100.0/24", "203.0.113.0/24"];
    let ports = ["*", "443", "22", "80-90", "8000-8999", "443,8080"];
    let hosts_of_flows = [
        NODE,
        "aks-nodepool1-81643024-vmss000001",
        "aks-nodepool1-81643024-vmss000002",
        "workstation",
        "outsider",
    ];
    let flow_ports = [443u16, 443, 22, 80, 8080, 8443];
    let mut disagreements = Vec::new();
    let mut flows = 0;
    for round in 0..4 {
        let colls = env.json(&[
            "network",
            "firewall",
            "network-rule",
            "collection",
            "list",
            "-g",
            MC,
            "-f",
            "myAzureFirewall",
        ]);
        for c in colls.as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            env.delete_collection(name, true).ok();
        }
        for c in 0..3 {
            let action = if rng.below(3) == 0 { "Deny" } else { "Allow" };
            let priority = (100 + 100 * c + rng.below(50)).to_string();
            for r in 0..=rng.below(3) {
                let mut args = vec![
                    "network",
                    "firewall",
                    "network-rule",
                    "create",
                    "-g",
                    MC,
                    "-f",
                    "myAzureFirewall",
                ];
                let (coll, name) = (format!("c{round}{c}"), format!("r{r}"));
                args.extend([
                    "-c",
                    &coll,
                    "-n",
                    &name,
                    "--priority",
                    &priority,
                    "--action",
                    action,
                    "--force",
                ]);
                let protocol = rng.pick(&["TCP", "TCP", "Any", "UDP"]);
                let (src, dst, port) = (
                    rng.pick(&sources),
                    rng.pick(&destinations),
                    rng.pick(&ports),
                );
                let port_words: Vec<&str> = port.split(',').collect();
                args.extend([
                    "--protocols",
                    protocol,
                    "--source-addresses",
                    src,
                    "--destination-addresses",
                    dst,
                    "--destination-ports",
                ]);
                args.extend(port_words);
                env.ok(&args);
            }
        }
        if rng.below(2) == 0 {
            // Deleting a route that a previous round deleted already is a not-found (exit 3).
            let r = env.firewall_route(None, true);
            assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
        } else {
            env.firewall_route(Some(&api.to_string()), true).ok();
        }
        let ranges = rng.pick(&[
            "",
            "192.0.2.10/32",
            "203.0.113.2/32,192.0.2.0/25",
            "0.0.0.0/32",
            "203.0.113.1/32",
        ]);
        env.set_ranges(ranges, true).ok();
        env.ok(&["lab", "wait"]);

        let batch: Vec<(&str, u16)> = (0..50)
            .map(|_| {
                (
                    rng.pick(&hosts_of_flows),
                    flow_ports[rng.below(flow_ports.len())],
                )
            })
            .collect();
        let traces: Vec<Value> = batch
            .iter()
            .map(|(host, port)| {
                let port = port.to_string();
                let api = api.to_string();
                let mut a = vec![
                    "network",
                    "watcher",
                    "trace",
                    "--dest-ip",
                    &api,
                    "--dest-port",
                    &port,
                ];
                let src = match *host {
                    "workstation" => Some("192.0.2.10"),
                    "outsider" => Some("192.0.2.66"),
                    _ => None,
                };
                match src {
                    Some(ip) => a.extend(["--source-ip", ip]),
                    None => a.extend(["-g", MC, "--vm", host]),
                }
                env.json(&a)
            })
            .collect();
        let seen: Vec<Wire> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|(host, port)| {
                    let ca = &ca;
                    s.spawn(move || wire(&format!("awlab-{host}"), api, *port, ca))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (((host, port), t), w) in batch.iter().zip(&traces).zip(&seen) {
            flows += 1;
            // A verdict is only wrong if it stays wrong: a probe on a loaded machine can time
            // out once, so a disagreeing flow is probed twice more, alone.
            let w = if traced(t) != *w {
                let again = (0..2)
                    .map(|_| wire(&format!("awlab-{host}"), api, *port, &ca))
                    .find(|x| *x == traced(t));
                eprintln!(
                    "round {round}: {host} -> {api}:{port}: wire {w:?}, then {again:?} when probed again"
                );
                again.unwrap_or(*w)
            } else {
                *w
            };
            if traced(t) != w {
                disagreements.push(format!(
                    "round {round}: {host} -> {api}:{port}: trace {:?} ({}), wire {w:?}",
                    traced(t),
                    t["reason"]
                ));
            }
        }
    }
    assert_eq!(flows, 200);
    assert!(
        disagreements.is_empty(),
        "{} of 200 flows disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );

    // What the model removes, the lab removes: a node scaled away, a firewall without ip-config.
    env.aks_create(Some(2), true).ok();
    env.ok(&[
        "network",
        "firewall",
        "ip-config",
        "delete",
        "-g",
        MC,
        "-f",
        "myAzureFirewall",
        "-n",
        "myAzureFirewallIPConfig",
        "--force",
    ]);
    env.ok(&["lab", "wait"]);
    let left = netns_list();
    assert!(
        !left
            .iter()
            .any(|n| n == "awlab-aks-nodepool1-81643024-vmss000002"),
        "{left:?}"
    );
    assert!(!left.iter().any(|n| n == FW_NETNS), "{left:?}");
    assert!(
        left.iter()
            .any(|n| n == "awlab-aks-nodepool1-81643024-vmss000001"),
        "{left:?}"
    );

    // The authorized ranges also as an nftables set on the API host: a refused client no longer
    // reaches the gate at all, and an admitted one still does.
    env.ok(&["lab", "up", "--kernel-gate"]);
    env.set_ranges("192.0.2.10/32", true).ok();
    env.ok(&["lab", "wait"]);
    let table = Command::new("ip")
        .args([
            "netns",
            "exec",
            "awlab-apiserver",
            "nft",
            "list",
            "table",
            "inet",
            "apiwall_gate_myAKSCluster",
        ])
        .output()
        .unwrap();
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    for (host, expected) in [
        ("awlab-outsider", Wire::Dropped),
        ("awlab-workstation", Wire::Allowed),
    ] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = wire(host, api, 443, &ca);
        while seen != expected && Instant::now() < deadline {
            let detail = probe(host, api, &ca).map(|o| o.detail).unwrap_or_default();
            let ruleset = Command::new("ip")
                .args(["netns", "exec", "awlab-apiserver", "nft", "list", "ruleset"])
                .output()
                .unwrap();
            eprintln!(
                "{host}: {seen:?} ({detail}), expected {expected:?}; probing again. The API host's ruleset:\n{}",
                String::from_utf8_lossy(&ruleset.stdout)
            );
            seen = wire(host, api, 443, &ca);
        }
        assert_eq!(seen, expected, "{host} through the kernel gate");
    }

    // Teardown leaves nothing behind, and is safe to repeat.
    let pids: Vec<u64> = env.json(&["lab", "status"])["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    env.ok(&["lab", "down"]);
    assert!(
        netns_list().is_empty(),
        "namespaces left: {:?}",
        netns_list()
    );
    for pid in pids {
        // A killed process may linger as a zombie until its new parent reaps it: not running.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        assert!(
            matches!(state, None | Some('Z' | 'X')),
            "process {pid} left running: {stat}"
        );
    }
    let links = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!links.contains("awtmp"), "temporary links left: {links}");
    env.ok(&["lab", "down"]);
}
