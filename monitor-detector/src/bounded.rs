//! Deterministic hashing and a size-capped map with approximate-LRU eviction.
//!
//! The detector must behave identically on identical input, so it never uses
//! `std`'s randomly seeded hasher; iteration order is never relied upon either
//! (everything that is emitted in bulk is sorted first).

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    hash::{BuildHasherDefault, Hash, Hasher},
};

/// A small deterministic hasher for integer keys (mm addresses, pids):
/// multiply-rotate mixing with a splitmix64 finalizer, so page-aligned kernel
/// addresses (low bits all zero) still spread over the buckets.
#[derive(Clone, Copy, Default)]
pub(crate) struct MixHasher {
    state: u64,
}

impl MixHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.state = (self.state.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for MixHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

pub(crate) type DetMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

struct Slot<V> {
    value: V,
    /// Tick of the last access.
    touched: u64,
    /// Stamp of this key's one valid entry in the eviction queue.
    queued: u64,
}

/// A map holding at most `cap` entries. When full, inserting evicts an entry
/// that has not been touched for a while (the CLOCK approximation of LRU:
/// amortised O(1), deterministic).
pub(crate) struct BoundedMap<K, V> {
    map: DetMap<K, Slot<V>>,
    queue: VecDeque<(K, u64)>,
    cap: usize,
    tick: u64,
}

impl<K: Copy + Eq + Hash + Ord, V> BoundedMap<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        BoundedMap {
            map: DetMap::default(),
            queue: VecDeque::new(),
            cap: cap.max(1),
            tick: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Looks up and marks as recently used.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|s| {
            s.touched = tick;
            &mut s.value
        })
    }

    /// Looks up without marking as used.
    pub(crate) fn peek_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Returns the entry for `key`, creating it with `make` if absent. If the
    /// map was full, the evicted entry is returned alongside.
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
    ) -> (&mut V, Option<(K, V)>) {
        self.tick += 1;
        let tick = self.tick;
        let mut evicted = None;
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.cap {
                evicted = self.evict_one();
            }
            self.compact();
            self.queue.push_back((key, tick));
        }
        let slot = match self.map.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(Slot {
                value: make(),
                touched: tick,
                queued: tick,
            }),
        };
        slot.touched = tick;
        (&mut slot.value, evicted)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let v = self.map.remove(key).map(|s| s.value);
        self.compact();
        v
    }

    /// Keys in ascending order.
    pub(crate) fn sorted_keys(&self) -> Vec<K> {
        let mut keys: Vec<K> = self.map.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Mutable access to every value, in no particular order (only for
    /// order-insensitive updates such as marking loss).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.map.values_mut().map(|s| &mut s.value)
    }

    fn evict_one(&mut self) -> Option<(K, V)> {
        while let Some((key, stamp)) = self.queue.pop_front() {
            let Some(slot) = self.map.get_mut(&key) else {
                continue;
            };
            if slot.queued != stamp {
                continue;
            }
            if slot.touched > stamp {
                // Used since it was queued: second chance.
                slot.queued = slot.touched;
                self.queue.push_back((key, slot.touched));
                continue;
            }
            return self.map.remove(&key).map(|s| (key, s.value));
        }
        None
    }

    /// Drops stale queue entries once they dominate the queue.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.queue
                .retain(|(k, stamp)| map.get(k).is_some_and(|s| s.queued == *stamp));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_evicts_the_least_recently_used() {
        let mut m: BoundedMap<u64, u64> = BoundedMap::new(3);
        for k in 0..3 {
            let (_, ev) = m.get_or_insert_with(k, || k * 10);
            assert!(ev.is_none());
        }
        // Touch 0 so 1 is the oldest untouched entry.
        assert_eq!(m.get_mut(&0).copied(), Some(0));
        let (_, ev) = m.get_or_insert_with(3, || 30);
        assert_eq!(ev, Some((1, 10)));
        assert_eq!(m.len(), 3);
        assert!(m.contains(&0) && m.contains(&2) && m.contains(&3));
    }

    #[test]
    fn queue_stays_bounded_under_churn() {
        let mut m: BoundedMap<u64, ()> = BoundedMap::new(8);
        for k in 0..10_000u64 {
            m.get_or_insert_with(k, || ());
            if k % 2 == 0 {
                m.remove(&k);
            }
        }
        assert!(m.len() <= 8);
        assert!(m.queue.len() <= 2 * m.len() + 65);
    }

    #[test]
    fn hasher_spreads_aligned_addresses() {
        let mut low_bits = std::collections::BTreeSet::new();
        for i in 0..256u64 {
            let mut h = MixHasher::default();
            h.write_u64(0xffff_8880_0000_0000 + i * 0x1000);
            low_bits.insert(h.finish() & 0xff);
        }
        assert!(low_bits.len() > 128, "{}", low_bits.len());
    }
}
