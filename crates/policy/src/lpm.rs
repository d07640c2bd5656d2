//! A read-only map from every address (or port) of a key space to a value, stored as the sorted
//! starts of its elementary intervals. Longest-prefix match compiles into it: nested prefixes
//! flatten into non-overlapping intervals, each holding the value of its longest covering prefix.
//!
//! A lookup is one binary search. Large maps add a 65,536-entry index on the key's top 16 bits,
//! so the search runs inside one small, cache-friendly run of the array.

use std::cmp::Reverse;

/// A key space: `u16` ports, `u32` IPv4 and `u128` IPv6 addresses.
pub(crate) trait Key: Copy + Ord + std::fmt::Debug {
    const MIN: Self;
    const MAX: Self;
    /// The top 16 bits.
    fn bucket(self) -> usize;
    fn succ(self) -> Self;
}

macro_rules! key {
    ($t:ty) => {
        impl Key for $t {
            const MIN: Self = 0;
            const MAX: Self = <$t>::MAX;
            #[inline]
            fn bucket(self) -> usize {
                (self >> (<$t>::BITS - 16)) as usize
            }
            #[inline]
            fn succ(self) -> Self {
                self + 1
            }
        }
    };
}
key!(u16);
key!(u32);
key!(u128);

/// Below this many intervals a plain binary search is as fast as the index, which would cost
/// 256 KiB to build: small maps (most authorized lists, every route table) skip it.
const INDEX_MIN: usize = 4096;
const BUCKETS: usize = 1 << 16;

#[derive(Debug, Clone)]
pub(crate) struct RangeMap<K, V> {
    /// `starts[0] == K::MIN`; interval `i` is `starts[i]..starts[i + 1]`.
    starts: Vec<K>,
    vals: Vec<V>,
    /// `index[b]`: how many starts lie in buckets below `b` (`BUCKETS + 1` entries, or none).
    index: Vec<u32>,
}

impl<K: Key, V: Copy + Eq> RangeMap<K, V> {
    /// Builds from properly nested or disjoint intervals `(first, last, value)` (prefixes are).
    /// Where several cover a key, the innermost wins; among equal intervals, the later one.
    pub(crate) fn nested(mut entries: Vec<(K, K, V)>, none: V) -> Self {
        // Outer intervals first; equal intervals keep their order, so the later one wins.
        entries.sort_by_key(|&(s, e, _)| (s, Reverse(e)));
        let mut b = Builder::new(none);
        let mut stack: Vec<(K, V)> = Vec::new();
        for (s, e, v) in entries {
            while let Some(&(end, _)) = stack.last() {
                if end >= s {
                    break;
                }
                stack.pop();
                let parent = stack.last().map_or(none, |p| p.1);
                b.emit(end.succ(), parent);
            }
            stack.push((e, v));
            b.emit(s, v);
        }
        while let Some((end, _)) = stack.pop() {
            if end != K::MAX {
                let parent = stack.last().map_or(none, |p| p.1);
                b.emit(end.succ(), parent);
            }
        }
        b.finish()
    }

    /// Builds from boundaries already sorted by start, the first at `K::MIN`.
    pub(crate) fn from_sorted(points: impl IntoIterator<Item = (K, V)>, none: V) -> Self {
        let mut b = Builder::new(none);
        for (k, v) in points {
            b.emit(k, v);
        }
        b.finish()
    }

    fn with_index(starts: Vec<K>, vals: Vec<V>) -> Self {
        let mut index = Vec::new();
        if starts.len() >= INDEX_MIN {
            index.reserve_exact(BUCKETS + 1);
            let mut i = 0;
            for bucket in 0..=BUCKETS {
                while i < starts.len() && starts[i].bucket() < bucket {
                    i += 1;
                }
                index.push(i as u32);
            }
        }
        Self {
            starts,
            vals,
            index,
        }
    }

    #[inline]
    pub(crate) fn get(&self, k: K) -> V {
        let (lo, hi) = if self.index.is_empty() {
            (0, self.starts.len())
        } else {
            let b = k.bucket();
            (self.index[b] as usize, self.index[b + 1] as usize)
        };
        let n = lo + self.starts[lo..hi].partition_point(|&s| s <= k);
        // `starts[0] == K::MIN <= k`, so `n >= 1`.
        self.vals[n - 1]
    }

    pub(crate) fn intervals(&self) -> usize {
        self.starts.len()
    }

    /// Heap bytes held, by capacity.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.starts.capacity() * size_of::<K>()
            + self.vals.capacity() * size_of::<V>()
            + self.index.capacity() * size_of::<u32>()
    }
}

struct Builder<K, V> {
    starts: Vec<K>,
    vals: Vec<V>,
}

impl<K: Key, V: Copy + Eq> Builder<K, V> {
    fn new(none: V) -> Self {
        Self {
            starts: vec![K::MIN],
            vals: vec![none],
        }
    }

    /// From `k` on, the value is `v`. Keys come in non-decreasing order; a repeated key overrides.
    fn emit(&mut self, k: K, v: V) {
        let last = self.starts.len() - 1;
        debug_assert!(self.starts[last] <= k);
        if self.starts[last] == k {
            self.vals[last] = v;
        } else {
            self.starts.push(k);
            self.vals.push(v);
        }
    }

    /// Merges neighbours holding the same value.
    fn finish(self) -> RangeMap<K, V> {
        let mut starts = Vec::with_capacity(self.starts.len());
        let mut vals: Vec<V> = Vec::with_capacity(self.vals.len());
        for (k, v) in self.starts.into_iter().zip(self.vals) {
            if vals.last() != Some(&v) {
                starts.push(k);
                vals.push(v);
            }
        }
        starts.shrink_to_fit();
        vals.shrink_to_fit();
        RangeMap::with_index(starts, vals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_innermost_wins() {
        let m = RangeMap::<u32, u32>::nested(
            vec![
                (0, u32::MAX, 1),
                (10, 20, 2),
                (12, 13, 3),
                (20, 20, 4),
                (30, 40, 5),
            ],
            0,
        );
        let want = |k| match k {
            10..=11 | 14..=19 => 2,
            12..=13 => 3,
            20 => 4,
            30..=40 => 5,
            _ => 1,
        };
        for k in 0..50 {
            assert_eq!(m.get(k), want(k), "key {k}");
        }
        assert_eq!(m.get(u32::MAX), 1);
    }

    #[test]
    fn equal_intervals_later_wins_and_ends_cleanly() {
        let m = RangeMap::<u16, u8>::nested(vec![(5, 9, 1), (5, 9, 2), (0, 100, 3)], 0);
        assert_eq!(m.get(4), 3);
        assert_eq!(m.get(5), 2);
        assert_eq!(m.get(9), 2);
        assert_eq!(m.get(10), 3);
        assert_eq!(m.get(101), 0);
    }

    #[test]
    fn indexed_agrees_with_plain() {
        let entries: Vec<(u32, u32, u32)> = (0..10_000u32)
            .map(|i| {
                let s = i << 12;
                (s, s | 0xff, i)
            })
            .collect();
        let m = RangeMap::nested(entries.clone(), u32::MAX);
        assert!(!m.index.is_empty());
        for &(s, e, v) in &entries {
            assert_eq!(m.get(s), v);
            assert_eq!(m.get(e), v);
        }
        assert_eq!(m.get(0x0000_0100), u32::MAX);
    }
}
