//! Builds a plan's hosts and links, idempotently: what exists is left alone, what is missing is
//! made. Running it twice is safe.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::LabError;
use crate::host::{ip_batch, namespaces, run};
use crate::plan::{Plan, Role};

/// Names of the temporary root-namespace ends of new veth pairs; `lab down` removes leftovers.
pub const TEMP_LINK_PREFIX: &str = "awtmp";

fn link_exists(netns: &str, dev: &str) -> bool {
    run("ip", &["-n", netns, "link", "show", "dev", dev], None).is_ok()
}

/// A stable, locally administered MAC address for a lab bridge.
fn bridge_mac(netns: &str, bridge: &str) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in netns.bytes().chain([b'/']).chain(bridge.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    let [a, b, c, d] = h.to_be_bytes();
    format!("02:a7:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

pub fn build(plan: &Plan) -> Result<(), LabError> {
    let existing: BTreeSet<String> = namespaces()?.into_iter().collect();
    for h in &plan.hosts {
        if !existing.contains(&h.netns) {
            run("ip", &["netns", "add", &h.netns], None)?;
        }
    }
    // Links: made in the root namespace under temporary names, then moved and renamed, so no
    // name in the root namespace is ever taken.
    let ns_of = |host: &str| {
        plan.host(host)
            .map(|h| h.netns.clone())
            .ok_or_else(|| LabError::Model(format!("no host {host}")))
    };
    for (i, l) in plan.links.iter().enumerate() {
        let (na, nb) = (ns_of(&l.a.0)?, ns_of(&l.b.0)?);
        if link_exists(&na, &l.a.1) && link_exists(&nb, &l.b.1) {
            continue;
        }
        // A half-made pair (one end missing) cannot be completed: remove what is there.
        for (ns, dev) in [(&na, &l.a.1), (&nb, &l.b.1)] {
            if link_exists(ns, dev) {
                run("ip", &["-n", ns, "link", "del", dev], None)?;
            }
        }
        let (ta, tb) = (
            format!("{TEMP_LINK_PREFIX}{}a{i}", std::process::id() % 1000),
            format!("{TEMP_LINK_PREFIX}{}b{i}", std::process::id() % 1000),
        );
        ip_batch(
            None,
            &format!(
                "link add {ta} type veth peer name {tb}\nlink set {ta} netns {na}\nlink set {tb} netns {nb}\n"
            ),
        )?;
        ip_batch(Some(&na), &format!("link set {ta} name {}\n", l.a.1))?;
        ip_batch(Some(&nb), &format!("link set {tb} name {}\n", l.b.1))?;
    }
    for h in &plan.hosts {
        let mut b = String::from("link set lo up\n");
        for (br, ports) in &h.bridges {
            if !link_exists(&h.netns, br) {
                // A bridge takes the lowest MAC of its ports unless it has its own: pinned, it
                // keeps its address when a port goes (a host removed), so neighbours' ARP
                // entries for the gateway stay right.
                let _ = writeln!(
                    b,
                    "link add {br} address {} type bridge",
                    bridge_mac(&h.netns, br)
                );
            }
            for p in ports {
                let _ = writeln!(b, "link set {p} master {br}");
            }
        }
        let devs: BTreeSet<&str> = h
            .addresses
            .iter()
            .map(|(d, _)| d.as_str())
            .chain(h.bridges.values().flatten().map(String::as_str))
            .chain(h.bridges.keys().map(String::as_str))
            .collect();
        for d in &devs {
            let _ = writeln!(b, "link set {d} up");
        }
        for (dev, addr) in &h.addresses {
            let _ = writeln!(b, "addr replace {addr} dev {dev}");
        }
        for r in &h.routes {
            let _ = writeln!(b, "route replace {r}");
        }
        ip_batch(Some(&h.netns), &b)?;
        let mut sysctls = vec![
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ];
        if h.forwarding {
            sysctls.push("net.ipv4.ip_forward=1");
        }
        if h.role == Role::Internet {
            // One bridge carries several public ranges: do not redirect hosts to each other.
            sysctls.extend([
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.br0.send_redirects=0",
            ]);
        }
        let mut args = vec!["netns", "exec", &h.netns, "sysctl", "-qw"];
        args.extend(sysctls);
        run("ip", &args, None)?;
    }
    Ok(())
}

/// Removes what `old` had and `new` has not: hosts (their namespaces, and with them their links
/// and rulesets) and the fabric's legs in subnets that are gone (bridge, routing table, rule).
pub fn prune(old: &Plan, new: &Plan) -> Result<(), LabError> {
    for h in old.hosts.iter().filter(|h| new.host(&h.name).is_none()) {
        tracing::info!(host = %h.name, netns = %h.netns, "removing a host the model no longer has");
        run("ip", &["netns", "del", &h.netns], None)?;
    }
    let Some(fabric) = new.host("fabric") else {
        return Ok(());
    };
    for leg in old
        .subnets
        .iter()
        .filter(|l| !new.subnets.iter().any(|n| n.id == l.id))
    {
        tracing::info!(subnet = %leg.name, "removing the fabric's leg in a subnet the model no longer has");
        apiwall_kernel::remove_routes(&crate::controller::target(leg), Some(&fabric.netns))?;
        if link_exists(&fabric.netns, &leg.bridge) {
            run(
                "ip",
                &["-n", &fabric.netns, "link", "del", &leg.bridge],
                None,
            )?;
        }
    }
    Ok(())
}
