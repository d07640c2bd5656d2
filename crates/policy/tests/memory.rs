//! Memory per prefix of the authorized set, measured with a counting global allocator (next
//! to prefix-trie's `JointPrefixSet` for comparison). Run with `--nocapture` to see the figures.

use std::alloc::System;

use apiwall_policy::AuthorizedSet;
use apiwall_policy::fixture::random_prefixes;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 1_000_000;

fn live_bytes(r: &Region<'_, System>) -> isize {
    let s = r.change();
    // Reallocations are already folded into both counters.
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

#[test]
fn authorized_set_holds_at_most_100_bytes_per_prefix() {
    let prefixes = random_prefixes(N, 7);

    let region = Region::new(GLOBAL);
    let set = AuthorizedSet::build(&prefixes);
    let ours = live_bytes(&region);
    let per_prefix = ours as f64 / set.len() as f64;
    println!(
        "apiwall AuthorizedSet: {} distinct prefixes, {} intervals, {ours} bytes live, {per_prefix:.1} bytes/prefix (heap_bytes {})",
        set.len(),
        set.intervals(),
        set.heap_bytes()
    );
    assert!(per_prefix <= 100.0, "{per_prefix} bytes per prefix");
    assert_eq!(ours as usize, set.heap_bytes(), "heap_bytes() is honest");
    drop(set);

    let region = Region::new(GLOBAL);
    let mut trie = prefix_trie::joint::JointPrefixSet::<ipnet::IpNet>::new();
    for p in &prefixes {
        trie.insert(p.net());
    }
    let theirs = live_bytes(&region);
    println!(
        "prefix-trie JointPrefixSet: {} prefixes, {theirs} bytes live, {:.1} bytes/prefix",
        trie.len(),
        theirs as f64 / trie.len() as f64
    );
}
