use std::path::Path;

use apiwall_policy::fixture::WorldBuilder;

use super::*;

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).expect("golden file; run with UPDATE_GOLDEN=1");
    assert_eq!(actual, expected, "differs from {}", path.display());
}

#[test]
fn procedure_topology() {
    let world = WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .build();
    let plan = plan(&world, "myResourceGroup", "myAKSCluster").unwrap();
    golden("procedure.plan", &plan.script());
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert!(
        names.contains(&"myAzureFirewall")
            && names.contains(&"workstation")
            && names.contains(&"outsider")
    );
    // Interface names must fit the kernel's 15 characters.
    for l in &plan.links {
        assert!(l.a.1.len() <= 15 && l.b.1.len() <= 15, "{l:?}");
    }
    let fw = plan.host("myAzureFirewall").unwrap();
    assert_eq!(
        fw.addresses[0],
        ("eth0".to_string(), "10.200.0.4/16".to_string())
    );
    assert!(plan.lb_snat.is_some());
}

#[test]
fn unknown_cluster_is_named() {
    let world = WorldBuilder::new().build();
    let err = plan(&world, "rg", "nope").unwrap_err();
    assert!(err.to_string().contains("rg/nope"), "{err}");
}

#[test]
fn lb_snat_ruleset_is_valid_nft() {
    let world = WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .build();
    let plan = plan(&world, "myResourceGroup", "myAKSCluster").unwrap();
    let text = render_lb_snat(plan.lb_snat.as_ref());
    golden("fabric_lb_snat.nft", &text);
    apiwall_kernel::check_nft(&text, None).expect("nft -c accepts the fabric ruleset");
}

#[test]
fn a_firewall_named_like_a_lab_host_is_refused() {
    let mut world = WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .build();
    let fw = world.firewalls.values_mut().next().unwrap();
    fw.name = "apiserver".into();
    let err = plan(&world, "myResourceGroup", "myAKSCluster").unwrap_err();
    assert!(err.to_string().contains("firewall 'apiserver'"), "{err}");
}

#[test]
fn subnet_legs_do_not_move_when_another_subnet_comes() {
    let world = WorldBuilder::new()
        .procedure("myResourceGroup", "myAKSCluster", 3)
        .build();
    let before = plan(&world, "myResourceGroup", "myAKSCluster").unwrap();
    let mut more = world.clone();
    let vnet = more.vnets.values_mut().next().unwrap();
    let mut extra = vnet.subnets[0].clone();
    extra.name = "agw-subnet".into();
    extra.id = extra.id.replace("aks-subnet", "agw-subnet");
    extra.address_prefix = "10.50.0.0/16".parse().unwrap();
    extra.route_table = None;
    vnet.subnets.insert(0, extra);
    let after = plan(&more, "myResourceGroup", "myAKSCluster").unwrap();
    for leg in &before.subnets {
        assert!(after.subnets.contains(leg), "{leg:?} moved");
    }
    assert_eq!(after.subnets.len(), before.subnets.len() + 1);
}
