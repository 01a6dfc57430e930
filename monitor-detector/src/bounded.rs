//! Deterministic hashing (the size-capped per-mm map is [`crate::slots`]).
//!
//! The detector must behave identically on identical input, so it never uses
//! `std`'s randomly seeded hasher; iteration order is never relied upon either
//! (everything that is emitted in bulk is sorted first).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
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

#[cfg(test)]
mod tests {
    use super::*;

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
