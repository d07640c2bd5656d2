//! Authorized-set lookup and build at 1,000,000 prefixes: apiwall's interval array against
//! prefix-trie's `JointPrefixSet`, with a naive linear scan as the baseline at 10,000.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use apiwall_model::Cidr;
use apiwall_policy::AuthorizedSet;
use apiwall_policy::fixture::{random_prefixes, random_queries};
use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::IpNet;
use prefix_trie::joint::JointPrefixSet;

const QUERIES: usize = 1 << 16;

fn trie(prefixes: &[Cidr]) -> JointPrefixSet<IpNet> {
    let mut t = JointPrefixSet::new();
    for p in prefixes {
        t.insert(p.net());
    }
    t
}

fn naive(prefixes: &[Cidr], ip: IpAddr) -> Option<Cidr> {
    prefixes
        .iter()
        .filter(|c| c.contains_addr(ip))
        .max_by_key(|c| c.prefix_len())
        .copied()
}

/// Benchmarks one lookup per iteration, cycling through random keys.
fn lookups<T>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    qs: &[IpAddr],
    f: impl Fn(IpAddr) -> T,
) {
    c.bench_function(name, |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            black_box(f(black_box(qs[i])))
        })
    });
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("authorized_lookup");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);

    let big = random_prefixes(1_000_000, 1);
    let qs = random_queries(&big, QUERIES, 2);
    let set = AuthorizedSet::build(&big);
    let t = trie(&big);
    // Same answers, or the comparison means nothing.
    for q in qs.iter().take(2000) {
        let want = t.get_lpm(&IpNet::from(*q)).map(|p| p.to_string());
        assert_eq!(set.lookup(*q).map(|c| c.to_string()), want);
    }
    lookups(&mut g, "apiwall/1M", &qs, |ip| set.lookup(ip));
    lookups(&mut g, "prefix_trie_joint/1M", &qs, |ip| {
        t.get_lpm(&IpNet::from(ip))
    });
    drop((set, t));

    let small = random_prefixes(10_000, 3);
    let qs = random_queries(&small, QUERIES, 4);
    let set = AuthorizedSet::build(&small);
    lookups(&mut g, "apiwall/10k", &qs, |ip| set.lookup(ip));
    lookups(&mut g, "naive_scan/10k", &qs, |ip| naive(&small, ip));
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("authorized_build");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    let big = random_prefixes(1_000_000, 1);
    g.bench_function("apiwall/1M", |b| {
        b.iter(|| AuthorizedSet::build(black_box(&big)))
    });
    g.bench_function("prefix_trie_joint/1M", |b| b.iter(|| trie(black_box(&big))));
    let few = random_prefixes(3, 5);
    g.bench_function("apiwall/3", |b| {
        b.iter(|| AuthorizedSet::build(black_box(&few)))
    });
    g.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
