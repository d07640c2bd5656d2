//! `trace` at 10,000 firewall rules (with the compiled classifier against a linear scan), and
//! one lockout check (two compiles and a trace per node, before and after) at 1,000 nodes.

use std::hint::black_box;
use std::time::Duration;

use apiwall_model::{Protocol, World};
use apiwall_policy::fixture::{WorldBuilder, big_firewall_collections};
use apiwall_policy::{Flow, Policy, lockout};
use criterion::{Criterion, criterion_group, criterion_main};

fn with_rules(nodes: u32, rules: usize) -> World {
    let mut w = WorldBuilder::new()
        .procedure("rg", "myAKSCluster", nodes)
        .build();
    for fw in w.firewalls.values_mut() {
        fw.network_rule_collections = big_firewall_collections(&fw.id, rules);
    }
    w
}

fn api_flow(w: &World) -> Flow {
    let vm = w.vms.values().next().unwrap().name.clone();
    let api = w.clusters.values().next().unwrap().api_server_address;
    Flow::from_vm(&vm, api, 443, Protocol::Tcp)
}

fn trace(c: &mut Criterion) {
    let mut g = c.benchmark_group("trace");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let w = with_rules(3, 10_000);
    let p = Policy::compile(&w);
    let flow = api_flow(&w);
    let t = p.trace(&flow);
    assert!(t.allowed());
    assert_eq!(t.hops[1].rule.as_deref(), Some("AllowTCPOutbound"));
    g.bench_function("trace/10k_rules", |b| b.iter(|| p.trace(black_box(&flow))));

    let fw = w.firewalls.values().next().unwrap();
    let compiled = &p.firewalls()[0].classifier;
    let (src, dst) = ("10.240.0.4".parse().unwrap(), flow.dst);
    g.bench_function("classify/compiled/10k_rules", |b| {
        b.iter(|| {
            compiled
                .classify(black_box(src), black_box(dst), 443, Protocol::Tcp)
                .is_some()
        })
    });
    let ordered = apiwall_policy::firewall::ordered_rules(fw);
    g.bench_function("classify/linear_scan/10k_rules", |b| {
        b.iter(|| {
            ordered.iter().position(|(_, _, _, r)| {
                r.protocols.iter().any(|p| p.matches(Protocol::Tcp))
                    && r.source_addresses
                        .iter()
                        .any(|a| a.contains(black_box(src)))
                    && r.destination_addresses
                        .iter()
                        .any(|a| a.contains(black_box(dst)))
                    && r.destination_ports.iter().any(|p| p.contains(443))
            })
        })
    });
    g.bench_function("compile/10k_rules", |b| {
        b.iter(|| Policy::compile(black_box(&w)))
    });
    g.finish();
}

fn lockout_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("lockout");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let before = WorldBuilder::new()
        .procedure("rg", "myAKSCluster", 1000)
        .build();
    // The change: authorized ranges that leave out the firewall's public IP.
    let mut after = before.clone();
    for c in after.clusters.values_mut() {
        c.api_server_access_profile.authorized_ip_ranges =
            Some(vec!["192.0.2.0/24".parse().unwrap()]);
    }
    let found = lockout(&Policy::compile(&before), &Policy::compile(&after));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].nodes.len(), 1000);
    g.bench_function("lockout/1000_nodes", |b| {
        b.iter(|| {
            let (b4, af) = (
                Policy::compile(black_box(&before)),
                Policy::compile(black_box(&after)),
            );
            lockout(&b4, &af).len()
        })
    });
    g.bench_function("compile/1000_nodes", |b| {
        b.iter(|| Policy::compile(black_box(&before)))
    });
    g.finish();
}

criterion_group!(benches, trace, lockout_check);
criterion_main!(benches);
