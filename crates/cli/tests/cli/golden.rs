use crate::support::{Env, golden};

#[test]
fn help_is_stable() {
    let env = Env::new();
    golden("help.txt", &env.ok(&["--help"]));
}

#[test]
fn seed_typo_is_a_usage_error_naming_the_stray_word() {
    let env = Env::new();
    env.procedure();
    let before = env.dump();
    // The seed's network-rule line, with `destination-ports` missing its `--`.
    let r = env.run(&[
        "network",
        "firewall",
        "network-rule",
        "create",
        "--resource-group",
        "MC_myResourceGroup_myAKSCluster_westeurope",
        "--firewall-name",
        "myAzureFirewall",
        "--name",
        "AllowTCPOutbound2",
        "--collection-name",
        "myAzureFirewallCollection",
        "--priority",
        "200",
        "--action",
        "Allow",
        "--protocols",
        "TCP",
        "--source-addresses",
        "*",
        "--destination-addresses",
        "*",
        "destination-ports",
        "*",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("'destination-ports'"), "{}", r.stderr);
    assert!(r.stderr.contains("--destination-ports"), "{}", r.stderr);
    golden("usage-seed-typo.txt", &r.stderr);
    assert_eq!(env.dump(), before, "a usage error changes nothing");
}

#[test]
fn firewall_show_table_and_tsv() {
    let env = Env::new();
    env.procedure();
    let rg = "MC_myResourceGroup_myAKSCluster_westeurope";
    golden(
        "firewall-show.table",
        &env.ok(&[
            "network",
            "firewall",
            "show",
            "-g",
            rg,
            "-n",
            "myAzureFirewall",
            "-o",
            "table",
        ]),
    );
    golden(
        "firewall-show.tsv",
        &env.ok(&[
            "network",
            "firewall",
            "show",
            "-g",
            rg,
            "-n",
            "myAzureFirewall",
            "-o",
            "tsv",
        ]),
    );
    golden(
        "route-list.table",
        &env.ok(&[
            "network",
            "route-table",
            "route",
            "list",
            "-g",
            rg,
            "--route-table-name",
            "aks-agentpool-81643024-routetable",
            "-o",
            "table",
        ]),
    );
}
