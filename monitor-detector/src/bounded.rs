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
/// multiply-rotate mixing with a folded-multiply finalizer, so page-aligned
/// kernel addresses (low bits all zero) still spread over the buckets.
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

    /// A folded multiply (the 128-bit product's high half folded onto its
    /// low half): every input bit reaches both the low bits the table
    /// indexes with and the top bits it tags slots with, in one
    /// multiplication where a splitmix64 finalizer takes three.
    #[inline]
    fn finish(&self) -> u64 {
        let p = u128::from(self.state).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (p as u64) ^ ((p >> 64) as u64)
    }
}

pub(crate) type DetMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_spreads_aligned_addresses() {
        use std::collections::BTreeSet;
        // 256 keys into 256 low-byte values, and into the 128 tags of the
        // top 7 bits: a random function reaches about 162 and 110.
        let spread = |keys: &mut dyn Iterator<Item = (u64, Option<u64>)>| {
            let (mut low, mut top) = (BTreeSet::new(), BTreeSet::new());
            for (a, b) in keys {
                let mut h = MixHasher::default();
                h.write_u64(a);
                if let Some(b) = b {
                    h.write_u64(b);
                }
                low.insert(h.finish() & 0xff);
                top.insert(h.finish() >> 57);
            }
            (low.len(), top.len())
        };
        let base = 0xffff_8880_0000_0000u64;
        for (what, (low, top)) in [
            (
                "pages",
                spread(&mut (0..256).map(|i| (base + i * 0x1000, None))),
            ),
            (
                "mm slab objects",
                spread(&mut (0..256).map(|i| (base + i * 0x400, None))),
            ),
            (
                "one mm's generations",
                spread(&mut (0..256).map(|i| (base, Some(1_000_000_000 + i * 700)))),
            ),
            (
                "(mm, generation)",
                spread(&mut (0..256).map(|i| (base + i * 0x800, Some(i)))),
            ),
        ] {
            assert!(low > 128 && top > 80, "{what}: {low} low bytes, {top} tags");
        }
    }
}
