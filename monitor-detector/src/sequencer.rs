//! Per-(mm, generation) ordering: a small deterministic reorder window, gap
//! (loss) detection and generation boundaries.
//!
//! Records arrive in ring-buffer order. The BPF side takes an event's per-mm
//! sequence number slightly *before* it reserves ring space, so two events of
//! one mm emitted on two CPUs at nearly the same moment may arrive swapped
//! (`seq` N+1 before N). The sequencer holds an out-of-order event until the
//! missing numbers arrive or until `window` more records (of any mm) have
//! arrived; only then is the gap declared as loss. No clock is involved: time
//! is counted in records, so the same input always gives the same output.
//!
//! Other rules implemented here:
//! * A stream starts at the event flagged `NEW_GENERATION` (seq 1). A stream
//!   whose first event is not seq 1 waits `window` records for the start; if
//!   it never comes, the stream is joined where it is (the monitor may have
//!   forgotten it under memory pressure) without declaring a gap.
//! * `SEQ_NON_ATOMIC` (kernels before 5.12): two events may share a number;
//!   the second one is released as a duplicate, not as a late arrival.
//! * An event flagged `END_GENERATION`, or an `mmdrop`, ends its stream.
//!   A later straggler of an ended stream is dropped and counted.
//! * A different `mm_gen` at an address whose previous generation never ended
//!   means that generation's end record was lost (the BPF side drops its
//!   sequence entry even when the ring buffer is full): it is reported as
//!   `Released::Replaced`.

use std::collections::{BTreeMap, VecDeque};

use monitor_common::event::hdr;

use crate::{
    bounded::{BoundedMap, DetMap},
    detector::DetectorStats,
    event::{Data, Event},
};

/// `(mm address, generation)`; generation 0 is the pseudo-generation of
/// unsequenced events about an mm (the BPF sequence map was full).
pub type MmKey = (u64, u64);

/// What the sequencer hands on, in order.
#[derive(Debug)]
pub(crate) enum Released {
    Event(Event),
    /// `missing` records of this stream never arrived (or arrived too late).
    Gap {
        key: MmKey,
        missing: u64,
    },
    /// A new generation appeared at this address before the old one ended.
    Replaced {
        old: MmKey,
    },
}

struct Stream {
    /// The next expected sequence number; `None` until the start is known.
    next: Option<u64>,
    /// Held events by sequence number, each with its arrival index.
    pending: BTreeMap<u64, Vec<(u64, Event)>>,
}

impl Stream {
    fn oldest_arrival(&self) -> Option<u64> {
        self.pending
            .values()
            .flat_map(|v| v.iter().map(|(a, _)| *a))
            .min()
    }
}

pub(crate) struct Sequencer {
    streams: BoundedMap<MmKey, Stream>,
    /// The live generation per address.
    current_gen: DetMap<u64, u64>,
    /// (deadline in arrivals, key): when a held event's wait runs out.
    deadlines: VecDeque<(u64, MmKey)>,
    /// Recently ended streams, to recognise stragglers.
    ended: DetMap<MmKey, ()>,
    ended_fifo: VecDeque<MmKey>,
    max_ended: usize,
    arrivals: u64,
    window: u64,
}

/// Whether this event ends its generation.
pub(crate) fn ends_generation(ev: &Event) -> bool {
    ev.hdr_flags & hdr::END_GENERATION != 0 || matches!(ev.data, Data::MmDrop(_))
}

impl Sequencer {
    pub(crate) fn new(window: u64, max_streams: usize) -> Self {
        Sequencer {
            streams: BoundedMap::new(max_streams),
            current_gen: DetMap::default(),
            deadlines: VecDeque::new(),
            ended: DetMap::default(),
            ended_fifo: VecDeque::new(),
            max_ended: max_streams.clamp(16, 65_536),
            arrivals: 0,
            window: window.max(1),
        }
    }

    /// Accepts one record in arrival order; appends what can be released.
    /// Returns `true` when `ev` itself is released ahead of everything
    /// appended (it is then not copied into `out`): an unsequenced record, or
    /// the next record of a stream with nothing held, which is what almost
    /// every record is.
    pub(crate) fn push(
        &mut self,
        ev: &Event,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) -> bool {
        self.arrivals += 1;
        let first = if !ev.is_sequenced() {
            if ev.mm != 0 {
                stats.unsequenced += 1;
            }
            true
        } else if self.in_order(ev) {
            true
        } else {
            self.accept(*ev, out, stats);
            false
        };
        self.expire(out, stats);
        first
    }

    /// The common case, with one lookup: `ev` is the next record of a known
    /// stream that holds nothing and it does not end the generation. What
    /// `accept` would do then comes down to advancing `next`: a stream
    /// exists only for a key that has not ended and is its mm's current
    /// generation (`accept` creates it after checking both; ending, replacing
    /// and evicting a stream remove it).
    fn in_order(&mut self, ev: &Event) -> bool {
        if ends_generation(ev) {
            return false;
        }
        let Some(stream) = self.streams.get_mut(&(ev.mm, ev.mm_gen)) else {
            return false;
        };
        if stream.next != Some(ev.seq) || !stream.pending.is_empty() {
            return false;
        }
        stream.next = Some(ev.seq.saturating_add(1));
        true
    }

    /// End of input: every held event is released, every gap declared.
    pub(crate) fn flush(&mut self, out: &mut Vec<Released>, stats: &mut DetectorStats) {
        for key in self.streams.sorted_keys() {
            self.resolve(key, true, out, stats);
        }
        self.deadlines.clear();
    }

    fn accept(&mut self, ev: Event, out: &mut Vec<Released>, stats: &mut DetectorStats) {
        let key: MmKey = (ev.mm, ev.mm_gen);
        if self.ended.contains_key(&key) {
            stats.late_after_end += 1;
            return;
        }
        match self.current_gen.insert(ev.mm, ev.mm_gen) {
            Some(old_gen) if old_gen != ev.mm_gen => {
                // The old generation's end record never arrived.
                let old = (ev.mm, old_gen);
                self.resolve(old, true, out, stats);
                self.streams.remove(&old);
                self.mark_ended(old);
                out.push(Released::Replaced { old });
            }
            _ => {}
        }
        let arrivals = self.arrivals;
        let (stream, evicted) = self.streams.get_or_insert_with(key, || Stream {
            next: None,
            pending: BTreeMap::new(),
        });
        if stream.next.is_none() && (ev.hdr_flags & hdr::NEW_GENERATION != 0 || ev.seq == 1) {
            stream.next = Some(ev.seq);
        }
        let held = match stream.next {
            Some(n) if ev.seq == n => {
                stream.next = Some(n.saturating_add(1));
                false
            }
            Some(n) if ev.seq < n => {
                // A duplicate number (non-atomic sequencing) or a late arrival
                // after its gap was declared. Released as is; it cannot be put
                // back in order.
                if ev.hdr_flags & hdr::SEQ_NON_ATOMIC == 0 || ev.seq.saturating_add(1) != n {
                    stats.late_records += 1;
                }
                false
            }
            // Ahead of the expected number, or the start is not known yet.
            _ => true,
        };
        if let Some((evicted_key, old)) = evicted {
            stats.streams_evicted += 1;
            if self.current_gen.get(&evicted_key.0) == Some(&evicted_key.1) {
                self.current_gen.remove(&evicted_key.0);
            }
            // Whatever it still held is released as it is, never dropped.
            for (_, events) in old.pending {
                for (_, e) in events {
                    stats.late_records += 1;
                    out.push(Released::Event(e));
                }
            }
        }
        if held {
            if let Some(stream) = self.streams.peek_mut(&key) {
                stream
                    .pending
                    .entry(ev.seq)
                    .or_default()
                    .push((arrivals, ev));
            }
            stats.held += 1;
            self.deadlines.push_back((arrivals + self.window, key));
            return;
        }
        let ends = ends_generation(&ev);
        out.push(Released::Event(ev));
        if ends {
            self.end(key, out, stats);
        } else {
            self.drain(key, out, stats);
        }
    }

    /// Releases held events that are now in order.
    fn drain(&mut self, key: MmKey, out: &mut Vec<Released>, stats: &mut DetectorStats) {
        let mut ended = false;
        while let Some(stream) = self.streams.peek_mut(&key) {
            let Some(next) = stream.next else { break };
            let Some(mut first) = stream.pending.first_entry() else {
                break;
            };
            let seq = *first.key();
            if seq > next {
                break;
            }
            let events = std::mem::take(first.get_mut());
            first.remove();
            if seq == next {
                stream.next = Some(next.saturating_add(1));
            } else {
                stats.late_records += events.len() as u64;
            }
            for (_, ev) in events {
                ended |= ends_generation(&ev);
                out.push(Released::Event(ev));
            }
            if ended {
                break;
            }
        }
        if ended {
            self.end(key, out, stats);
        }
    }

    /// The stream has ended: release anything still held, forget it.
    fn end(&mut self, key: MmKey, out: &mut Vec<Released>, stats: &mut DetectorStats) {
        if let Some(stream) = self.streams.remove(&key) {
            for (_, events) in stream.pending {
                for (_, ev) in events {
                    stats.late_records += 1;
                    out.push(Released::Event(ev));
                }
            }
        }
        if self.current_gen.get(&key.0) == Some(&key.1) {
            self.current_gen.remove(&key.0);
        }
        self.mark_ended(key);
    }

    fn mark_ended(&mut self, key: MmKey) {
        if self.ended.insert(key, ()).is_none() {
            self.ended_fifo.push_back(key);
            while self.ended_fifo.len() > self.max_ended {
                if let Some(old) = self.ended_fifo.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
    }

    fn expire(&mut self, out: &mut Vec<Released>, stats: &mut DetectorStats) {
        while let Some(&(deadline, key)) = self.deadlines.front() {
            if deadline > self.arrivals {
                break;
            }
            self.deadlines.pop_front();
            self.resolve(key, false, out, stats);
        }
    }

    /// Gives up waiting for the missing numbers of `key`'s stream: declares
    /// the gap in front of the oldest held event (if its wait is over, or
    /// unconditionally when `all`) and releases what follows. Every held event
    /// has its own deadline entry, so nothing needs re-arming here.
    fn resolve(
        &mut self,
        key: MmKey,
        all: bool,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) {
        loop {
            let arrivals = self.arrivals;
            let window = self.window;
            let Some(stream) = self.streams.peek_mut(&key) else {
                return;
            };
            let Some(oldest) = stream.oldest_arrival() else {
                return;
            };
            if !all && oldest + window > arrivals {
                return;
            }
            let Some(&min_seq) = stream.pending.keys().next() else {
                return;
            };
            match stream.next {
                None => {
                    // Joined mid-stream: start here without claiming loss.
                    stats.streams_joined += 1;
                    stream.next = Some(min_seq);
                }
                Some(n) if min_seq > n => {
                    let missing = min_seq - n;
                    stats.gaps += 1;
                    stats.records_missing = stats.records_missing.saturating_add(missing);
                    stream.next = Some(min_seq);
                    out.push(Released::Gap { key, missing });
                }
                Some(_) => {}
            }
            // Releases at least the event at `min_seq`, so the loop progresses.
            self.drain(key, out, stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MmState;

    fn ev(mm: u64, generation: u64, seq: u64, flags: u32) -> Event {
        Event {
            t: seq,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: monitor_common::event::fixed_str("t"),
            task_flags: 0,
            mm,
            mm_gen: generation,
            seq,
            hdr_flags: flags | if seq == 1 { hdr::NEW_GENERATION } else { 0 },
            probe: crate::event::ProbeRef::UNKNOWN,
            cgroup_id: 0,
            memcg_id: 0,
            data: Data::ExitMmapStart(MmState { mm_flags: 0 }),
        }
    }

    /// What the detector does with a push: a record released first goes
    /// ahead of what the push appended.
    fn push(s: &mut Sequencer, e: Event, out: &mut Vec<Released>, stats: &mut DetectorStats) {
        let at = out.len();
        if s.push(&e, out, stats) {
            out.insert(at, Released::Event(e));
        }
    }

    /// Feeds events, returns what was released as compact strings.
    fn run(window: u64, input: Vec<Event>) -> (Vec<String>, DetectorStats) {
        let mut s = Sequencer::new(window, 1024);
        let mut stats = DetectorStats::default();
        let mut out = Vec::new();
        for e in input {
            push(&mut s, e, &mut out, &mut stats);
        }
        s.flush(&mut out, &mut stats);
        let shown = out
            .iter()
            .map(|r| match r {
                Released::Event(e) => format!("{:x}/{}#{}", e.mm, e.mm_gen, e.seq),
                Released::Gap { key, missing } => format!("gap {:x}/{} {missing}", key.0, key.1),
                Released::Replaced { old } => format!("replaced {:x}/{}", old.0, old.1),
            })
            .collect();
        (shown, stats)
    }

    #[test]
    fn swapped_records_are_put_back_in_order() {
        let (out, st) = run(
            8,
            vec![
                ev(0xa, 1, 1, 0),
                ev(0xa, 1, 3, 0),
                ev(0xa, 1, 2, 0),
                ev(0xa, 1, 4, 0),
            ],
        );
        assert_eq!(out, ["a/1#1", "a/1#2", "a/1#3", "a/1#4"]);
        assert_eq!((st.gaps, st.held, st.late_records), (0, 1, 0));
    }

    #[test]
    fn a_gap_is_declared_only_after_the_window() {
        let mut input = vec![ev(0xa, 1, 1, 0), ev(0xa, 1, 3, 0)];
        // Two other records: still inside a window of 3.
        input.push(ev(0xb, 1, 1, 0));
        input.push(ev(0xb, 1, 2, 0));
        let (out, _) = run(3, input.clone());
        // Flush at the end declares it anyway; check the position instead.
        assert_eq!(out, ["a/1#1", "b/1#1", "b/1#2", "gap a/1 1", "a/1#3"]);
        input.push(ev(0xb, 1, 3, 0));
        input.push(ev(0xa, 1, 2, 0)); // too late
        let (out, st) = run(3, input);
        // a#3 arrived 2nd; once 3 more records arrived (the 5th is b#3) the
        // wait is over and the gap is declared.
        let want = [
            "a/1#1",
            "b/1#1",
            "b/1#2",
            "b/1#3",
            "gap a/1 1",
            "a/1#3",
            "a/1#2",
        ];
        assert_eq!(out, want);
        assert_eq!((st.gaps, st.records_missing, st.late_records), (1, 1, 1));
    }

    #[test]
    fn generations_end_and_are_replaced() {
        let (out, st) = run(
            4,
            vec![
                ev(0xa, 1, 1, 0),
                ev(0xa, 1, 2, hdr::END_GENERATION),
                ev(0xa, 1, 3, 0), // straggler after the end
                ev(0xa, 2, 1, 0),
                ev(0xa, 3, 1, 0), // gen 2 never ended: its end was lost
            ],
        );
        assert_eq!(out, ["a/1#1", "a/1#2", "a/2#1", "replaced a/2", "a/3#1"]);
        assert_eq!(st.late_after_end, 1);
    }

    #[test]
    fn a_stream_joined_midway_is_not_loss() {
        let (out, st) = run(
            2,
            vec![
                ev(0xa, 1, 7, 0),
                ev(0xa, 1, 8, 0),
                ev(0xb, 1, 1, 0),
                ev(0xb, 1, 2, 0),
            ],
        );
        assert_eq!(out, ["b/1#1", "a/1#7", "a/1#8", "b/1#2"]);
        assert_eq!((st.gaps, st.streams_joined), (0, 1));
    }

    #[test]
    fn non_atomic_duplicates_pass() {
        let (out, st) = run(
            4,
            vec![
                ev(0xa, 1, 1, hdr::SEQ_NON_ATOMIC),
                ev(0xa, 1, 2, hdr::SEQ_NON_ATOMIC),
                ev(0xa, 1, 2, hdr::SEQ_NON_ATOMIC),
                ev(0xa, 1, 3, hdr::SEQ_NON_ATOMIC),
            ],
        );
        assert_eq!(out, ["a/1#1", "a/1#2", "a/1#2", "a/1#3"]);
        assert_eq!((st.gaps, st.late_records), (0, 0));
    }

    #[test]
    fn an_evicted_stream_releases_what_it_held() {
        let mut s = Sequencer::new(100, 1);
        let mut stats = DetectorStats::default();
        let mut out = Vec::new();
        push(&mut s, ev(0xa, 1, 1, 0), &mut out, &mut stats);
        push(&mut s, ev(0xa, 1, 3, 0), &mut out, &mut stats); // held
        push(&mut s, ev(0xb, 1, 1, 0), &mut out, &mut stats); // evicts a
        let seqs: Vec<(u64, u64)> = out
            .iter()
            .filter_map(|r| match r {
                Released::Event(e) => Some((e.mm, e.seq)),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [(0xa, 1), (0xa, 3), (0xb, 1)]);
        assert_eq!(stats.streams_evicted, 1);
    }

    #[test]
    fn unsequenced_events_pass_straight_through() {
        let mut e = ev(0xa, 0, 0, hdr::UNSEQUENCED);
        e.hdr_flags = hdr::UNSEQUENCED;
        let (out, st) = run(4, vec![ev(0xb, 1, 2, 0), e]);
        assert_eq!(out, ["a/0#0", "b/1#2"]);
        assert_eq!(st.unsequenced, 1);
    }
}
