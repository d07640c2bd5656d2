use std::process::Stdio;

use crate::support::{BIN, Env};

/// Two processes each create 50 rules in the same firewall at the same time; every rule lands.
#[test]
fn two_writers_create_100_rules() {
    let env = Env::new();
    env.ok(&["group", "create", "-n", "rg", "-l", "westeurope"]);
    env.ok(&["network", "firewall", "create", "-g", "rg", "-n", "fw"]);
    env.ok(&[
        "network",
        "firewall",
        "network-rule",
        "create",
        "-g",
        "rg",
        "-f",
        "fw",
        "-c",
        "coll",
        "-n",
        "seed",
        "--priority",
        "300",
        "--action",
        "Allow",
        "--protocols",
        "TCP",
        "--source-addresses",
        "*",
        "--destination-addresses",
        "*",
        "--destination-ports",
        "443",
    ]);
    let script = r#"for i in $(seq 1 50); do
        "$BIN" network firewall network-rule create -g rg -f fw -c coll -n "rule-$W-$i" --protocols TCP \
          --source-addresses "10.0.$i.0/24" --destination-addresses '*' --destination-ports 443 -o none || exit 1
    done"#;
    let writers: Vec<_> = ["a", "b"]
        .iter()
        .map(|w| {
            std::process::Command::new("bash")
                .args(["-c", script])
                .env("BIN", BIN)
                .env("W", w)
                .env("APIWALL_HOME", env.home.path())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for w in writers {
        let out = w.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a writer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let n = env.ok(&[
        "network",
        "firewall",
        "network-rule",
        "list",
        "-g",
        "rg",
        "-f",
        "fw",
        "-c",
        "coll",
        "--query",
        "length(@)",
        "-o",
        "tsv",
    ]);
    assert_eq!(n.trim(), "101", "50 + 50 new rules plus the seed rule");
}
