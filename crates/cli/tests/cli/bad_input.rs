use crate::support::Env;

const MC: &str = "MC_myResourceGroup_myAKSCluster_westeurope";
const FW_RULE: [&str; 10] = [
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
];

/// A good network-rule create with one flag's value replaced.
fn rule_with(flag: &str, value: &str) -> Vec<String> {
    let mut args: Vec<String> = FW_RULE.iter().map(|s| s.to_string()).collect();
    let mut fields = vec![
        ("-n", "AllowTCPOutbound"),
        ("--priority", "200"),
        ("--action", "Allow"),
        ("--protocols", "TCP"),
        ("--source-addresses", "*"),
        ("--destination-addresses", "*"),
        ("--destination-ports", "443"),
    ];
    for f in &mut fields {
        if f.0 == flag {
            f.1 = value;
        }
    }
    for (f, v) in fields {
        args.push(f.into());
        args.push(v.into());
    }
    args
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(|w| w.replace("$MC", MC)).collect()
}

/// Each bad input fails with its exit code and a message naming the field, the value and the
/// fix, and leaves every show/list output byte-identical.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.procedure();
    // A second firewall with its own public IP, to try to share the first one's subnet.
    env.ok(&words("network firewall create -g $MC -n fw2")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    env.ok(&words("network public-ip create -g $MC -n fw2ip")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let before = env.dump();

    let route = "network route-table route create -g $MC --route-table-name aks-agentpool-81643024-routetable -n r1 --address-prefix 198.51.100.7/32";
    let cases: Vec<(Vec<String>, i32, &[&str])> = vec![
        (
            words("group create -n bad!name -l westeurope"),
            1,
            &["--name 'bad!name'", "remove '!'"],
        ),
        (
            words("group create -n myResourceGroup -l eastus"),
            1,
            &[
                "--location 'eastus'",
                "already exists in location 'westeurope'",
            ],
        ),
        (
            words("aks create -g myResourceGroup -n myAKSCluster --node-count 0"),
            1,
            &["--node-count '0'", "between 1 and 256"],
        ),
        (
            words(
                "aks update -g myResourceGroup -n myAKSCluster --api-server-authorized-ip-ranges 137.117.106.90/29",
            ),
            2,
            &["--api-server-authorized-ip-ranges", "use 137.117.106.88/29"],
        ),
        (
            words(
                "aks update -g myResourceGroup -n myAKSCluster --api-server-authorized-ip-ranges 0.0.0.0/32,10.0.0.0/8",
            ),
            2,
            &["0.0.0.0/32", "cannot be combined"],
        ),
        (
            words("aks show -g myResourceGroup -n nosuchcluster"),
            3,
            &["nosuchcluster", "was not found"],
        ),
        (
            words("aks create -g nosuchgroup -n c"),
            3,
            &["Resource group 'nosuchgroup' could not be found"],
        ),
        (
            words(
                "network vnet subnet create -g $MC --vnet-name aks-vnet-81643024 -n s1 --address-prefixes 192.168.0.0/24",
            ),
            1,
            &[
                "--address-prefixes '192.168.0.0/24'",
                "not inside the address space",
                "10.0.0.0/8",
            ],
        ),
        (
            words(
                "network vnet subnet create -g $MC --vnet-name aks-vnet-81643024 -n s1 --address-prefixes 10.240.1.0/24",
            ),
            1,
            &[
                "--address-prefixes '10.240.1.0/24'",
                "overlaps subnet 'aks-subnet'",
            ],
        ),
        (
            words(
                "network vnet subnet create -g $MC --vnet-name aks-vnet-81643024 -n s1 --address-prefixes 10.201.0.1/16",
            ),
            2,
            &["--address-prefixes", "use 10.201.0.0/16"],
        ),
        (
            words(
                "network vnet subnet create -g $MC --vnet-name aks-vnet-81643024 -n AzureFirewallSubnet --address-prefixes 10.200.0.0/27",
            ),
            1,
            &["'10.200.0.0/27'", "/26 or larger"],
        ),
        (
            words("network public-ip create -g $MC -n ip2 --sku Premium"),
            1,
            &["--sku 'Premium'", "Standard or Basic"],
        ),
        (
            words("network public-ip delete -g $MC -n myAzureFirewallPublicIP"),
            1,
            &[
                "public IP 'myAzureFirewallPublicIP'",
                "in use by ip-config 'myAzureFirewallIPConfig' of firewall 'myAzureFirewall'",
                "ip-config delete",
            ],
        ),
        (
            rule_with("--priority", "50"),
            2,
            &["--priority", "'50'", "between 100 and 65000"],
        ),
        (
            rule_with("--priority", "300"),
            1,
            &[
                "--priority 300",
                "exists with priority 200",
                "cannot change",
            ],
        ),
        (
            rule_with("--action", "Deny"),
            1,
            &["--action Deny", "cannot change"],
        ),
        (
            rule_with("--destination-ports", "70000"),
            2,
            &["--destination-ports", "'70000'", "between 1 and 65535"],
        ),
        (
            rule_with("--protocols", "SCTP"),
            2,
            &["--protocols", "'SCTP'", "TCP, UDP, ICMP or Any"],
        ),
        (
            rule_with("--source-addresses", "10.0.0.300"),
            2,
            &["--source-addresses", "'10.0.0.300'"],
        ),
        (rule_with("-n", "bad rule"), 1, &["--name 'bad rule'"]),
        (
            words(&format!("{route} --next-hop-type VirtualAppliance")),
            1,
            &[
                "--next-hop-type 'VirtualAppliance'",
                "needs --next-hop-ip-address",
            ],
        ),
        (
            words(&format!(
                "{route} --next-hop-type Internet --next-hop-ip-address 10.200.0.4"
            )),
            1,
            &[
                "--next-hop-ip-address '10.200.0.4'",
                "only allowed with --next-hop-type VirtualAppliance",
            ],
        ),
        (
            words(&format!("{route} --next-hop-type Bogus")),
            2,
            &["--next-hop-type", "'Bogus'", "VirtualAppliance"],
        ),
        (
            words(
                "network route-table route create -g $MC --route-table-name aks-agentpool-81643024-routetable -n r2 --address-prefix 198.51.100.1/32 --next-hop-type None",
            ),
            1,
            &["'198.51.100.1/32'", "route 'AzureFirewallAPIServer'"],
        ),
        (
            words("network route-table delete -g $MC -n aks-agentpool-81643024-routetable"),
            1,
            &["route table 'aks-agentpool-81643024-routetable' is in use by subnet 'aks-subnet'"],
        ),
        (
            words("network firewall update -g $MC -n myAzureFirewall --private-ranges 10.0.0.1/8"),
            2,
            &["--private-ranges", "'10.0.0.1/8'", "use 10.0.0.0/8"],
        ),
        (
            words("network firewall show -g $MC -n nosuchfirewall"),
            3,
            &["Microsoft.Network/azureFirewalls/nosuchfirewall"],
        ),
        (words("network route-table create -g $MC -n -bad"), 2, &[]),
        (
            words(
                "network firewall ip-config create -g $MC -f myAzureFirewall -n cfg2 --vnet-name aks-vnet-81643024 --public-ip-address nosuchip",
            ),
            3,
            &["nosuchip"],
        ),
        (
            words("configure --public-ip-pool 203.0.113.7/24"),
            2,
            &["--public-ip-pool", "use 203.0.113.0/24"],
        ),
        (
            words("aks get-credentials -g myResourceGroup -n nosuchcluster --file -"),
            3,
            &["nosuchcluster", "was not found"],
        ),
        (
            words(
                "network watcher test-ip-flow -g $MC --vm aks-nodepool1-81643024-vmss000000 --direction Outbound --protocol Any --local 10.240.0.4:5000 --remote 198.51.100.1:443",
            ),
            1,
            &["--protocol 'Any'", "one protocol"],
        ),
        (
            words("configure --public-ip-pool 192.0.2.0/24"),
            1,
            &["--public-ip-pool '192.0.2.0/24'", "internet hosts"],
        ),
        (
            words("configure --api-server-pool 203.0.113.0/25"),
            1,
            &[
                "--api-server-pool '203.0.113.0/25'",
                "overlaps the public IP pool",
            ],
        ),
        (
            words("configure --public-ip-pool 198.18.0.0/24"),
            1,
            &["public IP", "lies outside it"],
        ),
        (
            words("network public-ip create -g $MC -n myAzureFirewallPublicIP --sku Basic"),
            1,
            &["--sku Basic", "exists with SKU Standard", "cannot change"],
        ),
        (
            words(
                "network vnet subnet update -g $MC --vnet-name aks-vnet-81643024 -n aks-subnet --address-prefixes 10.241.0.0/16",
            ),
            1,
            &["subnet 'aks-subnet' holds the nodes of cluster 'myAKSCluster'"],
        ),
        (
            words(
                "network firewall ip-config create -g $MC -f fw2 -n cfg --vnet-name aks-vnet-81643024 --public-ip-address fw2ip",
            ),
            1,
            &[
                "AzureFirewallSubnet is already used by",
                "myAzureFirewallIPConfig",
            ],
        ),
        (
            words(
                "network route-table route create -g $MC --route-table-name aks-agentpool-81643024-routetable -n r6 --address-prefix 203.0.113.0/24 --next-hop-type VirtualAppliance --next-hop-ip-address 2001:db8::1",
            ),
            1,
            &["--next-hop-ip-address '2001:db8::1'", "same IP family"],
        ),
    ];
    assert!(cases.len() >= 15);
    for (args, code, needles) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = env.run(&a);
        assert_eq!(
            r.code,
            *code,
            "apiwall {}\nstderr: {}",
            args.join(" "),
            r.stderr
        );
        assert!(
            r.stdout.is_empty(),
            "apiwall {}: printed {}",
            args.join(" "),
            r.stdout
        );
        for n in *needles {
            assert!(
                r.stderr.contains(n),
                "apiwall {}\nstderr lacks {n:?}: {}",
                args.join(" "),
                r.stderr
            );
        }
    }
    assert_eq!(env.dump(), before, "no failed command changed the store");
}
