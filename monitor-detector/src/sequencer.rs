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

use std::collections::{BTreeMap, VecDeque, hash_map::Entry};

use monitor_common::event::hdr;

use crate::{
    bounded::DetMap,
    detector::DetectorStats,
    event::{Data, Event},
    slots::{Idx, Slots},
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

/// What became of the record given to [`Sequencer::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Released ahead of everything the push appended (it is then not copied
    /// into `out`), with the slot of its stream if it has one: an
    /// unsequenced record, or the next record of its stream, which is what
    /// almost every record is.
    First(Option<Idx>),
    /// Held for reordering, dropped as a straggler, or appended to `out`.
    Later,
}

/// The sequencer's part of an mm generation's slot.
pub(crate) struct Stream {
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

    /// Places an arriving record: advances `next` and returns false when the
    /// record is released now, true when it must be held.
    fn place(&mut self, ev: &Event, stats: &mut DetectorStats) -> bool {
        if self.next.is_none() && (ev.hdr_flags & hdr::NEW_GENERATION != 0 || ev.seq == 1) {
            self.next = Some(ev.seq);
        }
        match self.next {
            Some(n) if ev.seq == n => {
                self.next = Some(n.saturating_add(1));
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
        }
    }
}

/// The streams themselves live in the detector's [`Slots`] (one lookup per
/// record finds both a stream and its rules' state); the sequencer keeps what
/// is not per stream.
pub(crate) struct Sequencer {
    /// The live generation per address: exactly the addresses with a stream.
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
#[inline]
pub(crate) fn ends_generation(ev: &Event) -> bool {
    ev.hdr_flags & hdr::END_GENERATION != 0 || matches!(ev.data, Data::MmDrop(_))
}

type Streams<R> = Slots<Stream, R>;

impl Sequencer {
    pub(crate) fn new(window: u64, max_streams: usize) -> Self {
        Sequencer {
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
    ///
    /// A record of a stream that exists needs no more checks than its place
    /// in the stream: a stream exists only for a key that has not ended and
    /// is its mm's current generation (`accept_new` creates it after checking
    /// both; ending, replacing and evicting a stream remove it).
    #[inline]
    pub(crate) fn push<R>(
        &mut self,
        slots: &mut Streams<R>,
        ev: &Event,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) -> Push {
        self.arrivals += 1;
        let first = if !ev.is_sequenced() {
            if ev.mm != 0 {
                stats.unsequenced += 1;
            }
            Push::First(None)
        } else {
            match slots.find_stream((ev.mm, ev.mm_gen)) {
                Some((idx, stream)) => {
                    if stream.place(ev, stats) {
                        self.hold(stream, *ev, stats);
                        Push::Later
                    } else {
                        let nothing_held = stream.pending.is_empty();
                        if ends_generation(ev) {
                            self.end(slots, (ev.mm, ev.mm_gen), Some(idx), out, stats);
                        } else if !nothing_held {
                            self.drain(slots, (ev.mm, ev.mm_gen), out, stats);
                        }
                        Push::First(Some(idx))
                    }
                }
                None => self.accept_new(slots, ev, out, stats),
            }
        };
        if !self.deadlines.is_empty() {
            self.expire(slots, out, stats);
        }
        first
    }

    /// A record of a key without a stream: a new generation, a straggler of
    /// an ended one, or a stream joined midway.
    #[inline(never)]
    fn accept_new<R>(
        &mut self,
        slots: &mut Streams<R>,
        ev: &Event,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) -> Push {
        let key: MmKey = (ev.mm, ev.mm_gen);
        if self.ended.contains_key(&key) {
            stats.late_after_end += 1;
            return Push::Later;
        }
        let at = out.len();
        match self.current_gen.insert(ev.mm, ev.mm_gen) {
            Some(old_gen) if old_gen != ev.mm_gen => {
                // The old generation's end record never arrived.
                let old = (ev.mm, old_gen);
                self.resolve(slots, old, true, out, stats);
                if let Some(i) = slots.find(old) {
                    slots.take_stream(i);
                }
                self.mark_ended(old);
                out.push(Released::Replaced { old });
            }
            _ => {}
        }
        let mut stream = Stream {
            next: None,
            pending: BTreeMap::new(),
        };
        let held = stream.place(ev, stats);
        let (idx, evicted) = slots.insert_stream(key, stream);
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
            if let Some(stream) = slots.stream(idx) {
                self.hold(stream, *ev, stats);
            }
            return Push::Later;
        }
        // A new stream holds nothing: nothing to drain after `ev`.
        let first = out.len() == at;
        if !first {
            out.push(Released::Event(*ev));
        }
        if ends_generation(ev) {
            self.end(slots, key, Some(idx), out, stats);
        }
        if first {
            Push::First(Some(idx))
        } else {
            Push::Later
        }
    }

    fn hold(&mut self, stream: &mut Stream, ev: Event, stats: &mut DetectorStats) {
        let arrivals = self.arrivals;
        let key = (ev.mm, ev.mm_gen);
        stream
            .pending
            .entry(ev.seq)
            .or_default()
            .push((arrivals, ev));
        stats.held += 1;
        self.deadlines.push_back((arrivals + self.window, key));
    }

    /// End of input: every held event is released, every gap declared.
    pub(crate) fn flush<R>(
        &mut self,
        slots: &mut Streams<R>,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) {
        for key in slots.stream_keys() {
            self.resolve(slots, key, true, out, stats);
        }
        self.deadlines.clear();
    }

    /// Releases held events that are now in order.
    fn drain<R>(
        &mut self,
        slots: &mut Streams<R>,
        key: MmKey,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) {
        let Some(idx) = slots.find(key) else { return };
        let mut ended = false;
        while let Some(stream) = slots.stream(idx) {
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
            self.end(slots, key, Some(idx), out, stats);
        }
    }

    /// The stream has ended: release anything still held, forget it.
    /// `hint` is its slot if the caller has it.
    #[inline(never)]
    fn end<R>(
        &mut self,
        slots: &mut Streams<R>,
        key: MmKey,
        hint: Option<Idx>,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) {
        let idx = match hint {
            Some(i) if slots.is(i, key) => Some(i),
            _ => slots.find(key),
        };
        if let Some(stream) = idx.and_then(|i| slots.take_stream(i))
            && !stream.pending.is_empty()
        {
            for (_, events) in stream.pending {
                for (_, ev) in events {
                    stats.late_records += 1;
                    out.push(Released::Event(ev));
                }
            }
        }
        if let Entry::Occupied(e) = self.current_gen.entry(key.0)
            && *e.get() == key.1
        {
            e.remove();
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

    fn expire<R>(
        &mut self,
        slots: &mut Streams<R>,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) {
        while let Some(&(deadline, key)) = self.deadlines.front() {
            if deadline > self.arrivals {
                break;
            }
            self.deadlines.pop_front();
            self.resolve(slots, key, false, out, stats);
        }
    }

    /// Gives up waiting for the missing numbers of `key`'s stream: declares
    /// the gap in front of the oldest held event (if its wait is over, or
    /// unconditionally when `all`) and releases what follows. Every held event
    /// has its own deadline entry, so nothing needs re-arming here.
    fn resolve<R>(
        &mut self,
        slots: &mut Streams<R>,
        key: MmKey,
        all: bool,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) {
        loop {
            let arrivals = self.arrivals;
            let window = self.window;
            let Some(stream) = slots.find(key).and_then(|i| slots.stream(i)) else {
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
            self.drain(slots, key, out, stats);
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
    fn push(
        (s, slots): &mut (Sequencer, Streams<()>),
        e: Event,
        out: &mut Vec<Released>,
        stats: &mut DetectorStats,
    ) {
        let at = out.len();
        if let Push::First(_) = s.push(slots, &e, out, stats) {
            out.insert(at, Released::Event(e));
        }
    }

    fn sequencer(window: u64, max_streams: usize) -> (Sequencer, Streams<()>) {
        (
            Sequencer::new(window, max_streams),
            Slots::new(max_streams, max_streams),
        )
    }

    /// Feeds events, returns what was released as compact strings.
    fn run(window: u64, input: Vec<Event>) -> (Vec<String>, DetectorStats) {
        let mut s = sequencer(window, 1024);
        let mut stats = DetectorStats::default();
        let mut out = Vec::new();
        for e in input {
            push(&mut s, e, &mut out, &mut stats);
        }
        s.0.flush(&mut s.1, &mut out, &mut stats);
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
        let mut s = sequencer(100, 1);
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
