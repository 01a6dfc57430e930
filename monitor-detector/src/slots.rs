//! One map for everything the detector keeps per mm generation.
//!
//! A slot holds two parts under one [`MmKey`]: the sequencer's stream (`S`)
//! and the rules' state (`R`). The key is hashed once per record: the
//! sequencer finds the slot, and the rules reach their state through the
//! slot's index ([`Idx`]) without a second lookup. Slots live in a slab
//! (reused through a free list), so the hash table itself only maps keys to
//! small indices.
//!
//! The two parts keep the lifetimes and bounds they would have in two maps:
//! each is created, evicted and removed on its own (a stream exists from a
//! generation's first arrival to its end record, rule state from its first
//! released record to its end), each is capped at its own limit, and each has
//! its own CLOCK queue (the approximation of least-recently-used eviction that
//! `BoundedMap` implemented: amortised O(1), deterministic). A slot is freed
//! when both parts are gone.

use std::collections::{VecDeque, hash_map::Entry};

use crate::{bounded::DetMap, sequencer::MmKey};

/// Index of a slot in the slab.
pub(crate) type Idx = u32;

struct Part<T> {
    value: Option<T>,
    /// Tick of the last access.
    touched: u64,
    /// Stamp of this part's one valid entry in its CLOCK queue.
    queued: u64,
}

impl<T> Part<T> {
    const EMPTY: Part<T> = Part {
        value: None,
        touched: 0,
        queued: 0,
    };
}

struct Slot<S, R> {
    key: MmKey,
    live: bool,
    stream: Part<S>,
    rules: Part<R>,
}

/// CLOCK bookkeeping of one part: how many are present, the cap, and the
/// queue of (slot, stamp) in insertion order (stale entries are skipped).
struct Clock {
    queue: VecDeque<(Idx, u64)>,
    len: usize,
    cap: usize,
}

impl Clock {
    fn new(cap: usize) -> Clock {
        Clock {
            queue: VecDeque::new(),
            len: 0,
            cap: cap.max(1),
        }
    }
}

/// Which part of a slot an operation is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Stream,
    Rules,
}

pub(crate) struct Slots<S, R> {
    index: DetMap<MmKey, Idx>,
    slab: Vec<Slot<S, R>>,
    free: Vec<Idx>,
    tick: u64,
    streams: Clock,
    rules: Clock,
}

/// What inserting a part evicted: the evicted part's key and value.
pub(crate) type Evicted<T> = Option<(MmKey, T)>;

impl<S, R> Slots<S, R> {
    /// At most `max_streams` streams and `max_rules` rule states at once.
    pub(crate) fn new(max_streams: usize, max_rules: usize) -> Self {
        Slots {
            index: DetMap::default(),
            slab: Vec::new(),
            free: Vec::new(),
            tick: 0,
            streams: Clock::new(max_streams),
            rules: Clock::new(max_rules),
        }
    }

    /// The slot of `key`, if either part exists.
    #[inline]
    pub(crate) fn find(&self, key: MmKey) -> Option<Idx> {
        self.index.get(&key).copied()
    }

    /// Whether `idx` is a live slot of `key` (checks a slot index handed on
    /// from an earlier step of the same record).
    #[inline]
    pub(crate) fn is(&self, idx: Idx, key: MmKey) -> bool {
        self.slab
            .get(idx as usize)
            .is_some_and(|s| s.live && s.key == key)
    }

    /// Number of streams / rule states present.
    #[cfg(test)]
    pub(crate) fn streams_len(&self) -> usize {
        self.streams.len
    }

    pub(crate) fn rules_len(&self) -> usize {
        self.rules.len
    }

    /// The slot and stream of `key`, marked as recently used.
    #[inline]
    pub(crate) fn find_stream(&mut self, key: MmKey) -> Option<(Idx, &mut S)> {
        let idx = *self.index.get(&key)?;
        self.tick += 1;
        let part = &mut self.slab[idx as usize].stream;
        part.touched = self.tick;
        Some((idx, part.value.as_mut()?))
    }

    /// The rule state of `key`, marked as recently used; `hint` is the slot
    /// found for it earlier, if any. Without rule state: the key's slot, if
    /// it has one.
    #[inline]
    pub(crate) fn find_rules(
        &mut self,
        key: MmKey,
        hint: Option<Idx>,
    ) -> Result<(Idx, &mut R), Option<Idx>> {
        let idx = match hint {
            Some(i) if self.is(i, key) => i,
            _ => *self.index.get(&key).ok_or(None)?,
        };
        self.tick += 1;
        let part = &mut self.slab[idx as usize].rules;
        match &mut part.value {
            Some(v) => {
                part.touched = self.tick;
                Ok((idx, v))
            }
            None => Err(Some(idx)),
        }
    }

    /// The stream of slot `idx`, without marking it used.
    #[inline]
    pub(crate) fn stream(&mut self, idx: Idx) -> Option<&mut S> {
        self.slab.get_mut(idx as usize)?.stream.value.as_mut()
    }

    /// The rule state of slot `idx`, without marking it used.
    pub(crate) fn rules(&mut self, idx: Idx) -> Option<&mut R> {
        self.slab.get_mut(idx as usize)?.rules.value.as_mut()
    }

    /// Every rule state, in no particular order (only for order-insensitive
    /// updates such as marking loss).
    pub(crate) fn rules_mut(&mut self) -> impl Iterator<Item = &mut R> {
        self.slab.iter_mut().filter_map(|s| s.rules.value.as_mut())
    }

    /// Keys with a stream, ascending.
    pub(crate) fn stream_keys(&self) -> Vec<MmKey> {
        self.sorted_keys(Which::Stream)
    }

    /// Keys with rule state, ascending.
    pub(crate) fn rules_keys(&self) -> Vec<MmKey> {
        self.sorted_keys(Which::Rules)
    }

    fn sorted_keys(&self, which: Which) -> Vec<MmKey> {
        let mut keys: Vec<MmKey> = self
            .slab
            .iter()
            .filter(|s| match which {
                Which::Stream => s.stream.value.is_some(),
                Which::Rules => s.rules.value.is_some(),
            })
            .map(|s| s.key)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Adds a stream for `key` (which has none). If streams were at their
    /// cap, the least recently used one is evicted first and returned.
    pub(crate) fn insert_stream(&mut self, key: MmKey, value: S) -> (Idx, Evicted<S>) {
        let evicted = if self.streams.len >= self.streams.cap {
            self.evict(Which::Stream)
                .map(|(k, s, _)| (k, s.expect("an evicted stream part holds a stream")))
        } else {
            None
        };
        let idx = self.slot(key);
        self.tick += 1;
        let tick = self.tick;
        let part = &mut self.slab[idx as usize].stream;
        debug_assert!(part.value.is_none());
        *part = Part {
            value: Some(value),
            touched: tick,
            queued: tick,
        };
        self.streams.len += 1;
        self.streams.queue.push_back((idx, tick));
        self.compact(Which::Stream);
        (idx, evicted)
    }

    /// Adds rule state to `key`'s slot (`idx` if known; the key has none).
    /// If rule states were at their cap, the least recently used one is
    /// evicted first and returned.
    pub(crate) fn insert_rules(
        &mut self,
        key: MmKey,
        idx: Option<Idx>,
        value: R,
    ) -> (Idx, Evicted<R>) {
        let evicted = if self.rules.len >= self.rules.cap {
            self.evict(Which::Rules)
                .map(|(k, _, r)| (k, r.expect("an evicted rules part holds rule state")))
        } else {
            None
        };
        // Evicting frees only slots without a stream; `idx` has one or is
        // looked up again.
        let idx = match idx {
            Some(i) if self.is(i, key) => i,
            _ => self.slot(key),
        };
        self.tick += 1;
        let tick = self.tick;
        let part = &mut self.slab[idx as usize].rules;
        debug_assert!(part.value.is_none());
        *part = Part {
            value: Some(value),
            touched: tick,
            queued: tick,
        };
        self.rules.len += 1;
        self.rules.queue.push_back((idx, tick));
        self.compact(Which::Rules);
        (idx, evicted)
    }

    /// Removes the stream of slot `idx`.
    pub(crate) fn take_stream(&mut self, idx: Idx) -> Option<S> {
        let v = self.slab.get_mut(idx as usize)?.stream.value.take()?;
        self.streams.len -= 1;
        self.release(idx);
        Some(v)
    }

    /// Removes the rule state of slot `idx`.
    pub(crate) fn take_rules(&mut self, idx: Idx) -> Option<R> {
        let v = self.slab.get_mut(idx as usize)?.rules.value.take()?;
        self.rules.len -= 1;
        self.release(idx);
        Some(v)
    }

    /// The slot of `key`, created if absent.
    fn slot(&mut self, key: MmKey) -> Idx {
        let entry = match self.index.entry(key) {
            Entry::Occupied(e) => return *e.get(),
            Entry::Vacant(e) => e,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slab[i as usize];
                s.key = key;
                s.live = true;
                i
            }
            None => {
                self.slab.push(Slot {
                    key,
                    live: true,
                    stream: Part::EMPTY,
                    rules: Part::EMPTY,
                });
                (self.slab.len() - 1) as Idx
            }
        };
        entry.insert(idx);
        idx
    }

    /// Frees slot `idx` if both its parts are gone.
    fn release(&mut self, idx: Idx) {
        let s = &mut self.slab[idx as usize];
        if s.stream.value.is_none() && s.rules.value.is_none() && s.live {
            s.live = false;
            let key = s.key;
            self.index.remove(&key);
            self.free.push(idx);
        }
    }

    /// Evicts the part `which` of a slot that has not been used for a while:
    /// (key, the stream if evicted, the rules if evicted).
    fn evict(&mut self, which: Which) -> Option<(MmKey, Option<S>, Option<R>)> {
        loop {
            let clock = match which {
                Which::Stream => &mut self.streams,
                Which::Rules => &mut self.rules,
            };
            let (idx, stamp) = clock.queue.pop_front()?;
            let slot = &mut self.slab[idx as usize];
            let (present, touched, queued) = match which {
                Which::Stream => (
                    slot.stream.value.is_some(),
                    slot.stream.touched,
                    &mut slot.stream.queued,
                ),
                Which::Rules => (
                    slot.rules.value.is_some(),
                    slot.rules.touched,
                    &mut slot.rules.queued,
                ),
            };
            if !slot.live || !present || *queued != stamp {
                continue;
            }
            if touched > stamp {
                // Used since it was queued: second chance.
                *queued = touched;
                clock.queue.push_back((idx, touched));
                continue;
            }
            let key = slot.key;
            return Some(match which {
                Which::Stream => (key, self.take_stream(idx), None),
                Which::Rules => (key, None, self.take_rules(idx)),
            });
        }
    }

    /// Drops stale queue entries once they dominate the queue.
    fn compact(&mut self, which: Which) {
        let clock = match which {
            Which::Stream => &mut self.streams,
            Which::Rules => &mut self.rules,
        };
        if clock.queue.len() <= 2 * clock.len + 64 {
            return;
        }
        let slab = &self.slab;
        clock.queue.retain(|&(idx, stamp)| {
            let s = &slab[idx as usize];
            s.live
                && match which {
                    Which::Stream => s.stream.value.is_some() && s.stream.queued == stamp,
                    Which::Rules => s.rules.value.is_some() && s.rules.queued == stamp,
                }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: u64) -> MmKey {
        (k, 1)
    }

    #[test]
    fn caps_and_evicts_the_least_recently_used() {
        let mut m: Slots<u64, ()> = Slots::new(3, 3);
        for k in 0..3 {
            let (_, ev) = m.insert_stream(key(k), k * 10);
            assert!(ev.is_none());
        }
        // Touch 0 so 1 is the oldest untouched entry.
        assert_eq!(m.find_stream(key(0)).map(|(_, v)| *v), Some(0));
        let (_, ev) = m.insert_stream(key(3), 30);
        assert_eq!(ev, Some((key(1), 10)));
        assert_eq!(m.streams_len(), 3);
        assert!(m.find(key(1)).is_none());
        assert_eq!(m.stream_keys(), [key(0), key(2), key(3)]);
    }

    #[test]
    fn parts_are_bounded_and_freed_independently() {
        let mut m: Slots<u64, u64> = Slots::new(2, 1);
        let (a, _) = m.insert_stream(key(1), 1);
        m.insert_rules(key(1), Some(a), 11);
        let (b, _) = m.insert_stream(key(2), 2);
        // Rule state is capped at one: key 1's goes, its stream stays.
        let (_, ev) = m.insert_rules(key(2), Some(b), 22);
        assert_eq!(ev, Some((key(1), 11)));
        assert_eq!(m.find(key(1)), Some(a));
        assert_eq!(m.stream(a).copied(), Some(1));
        assert_eq!(m.take_stream(a), Some(1));
        assert!(m.find(key(1)).is_none(), "both parts gone: slot freed");
        assert_eq!(m.take_rules(b), Some(22));
        assert_eq!(m.find(key(2)), Some(b), "the stream keeps the slot");
        assert_eq!((m.streams_len(), m.rules_len()), (1, 0));
    }

    #[test]
    fn queues_stay_bounded_under_churn() {
        let mut m: Slots<(), ()> = Slots::new(8, 8);
        for k in 0..10_000u64 {
            let (i, _) = m.insert_stream(key(k), ());
            if k % 2 == 0 {
                m.take_stream(i);
            }
        }
        assert!(m.streams_len() <= 8);
        assert!(m.streams.queue.len() <= 2 * m.streams_len() + 65);
        assert!(m.slab.len() <= 9, "freed slots are reused");
    }
}
