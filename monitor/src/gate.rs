//! When to close the fault gate (`monitor_common::maps::state::FAULT_GATE`).
//!
//! Page faults are the hottest path the monitor hooks. A fault matters to the
//! detector only on an mm the OOM reaper may have unmapped, so the fault
//! programs return after one array read while the gate is closed. The BPF
//! side opens it, with no userspace delay, whenever it sees an OOM victim
//! marked, a reap start or a `process_mrelease(2)`, and counts the openings
//! (`state::GATE_OPENS`). Userspace closes it: once no victim's mm is alive
//! (every generation it saw marked, reaped or faulting while unstable has
//! ended) and nothing opened the gate for [`HOLD_NS`].
//!
//! Closing races with a program opening it again; the session closes, then
//! re-reads the opening count and reopens if it moved ([`FaultGate::closed`]).
//! Erring on the open side costs only time: a gate left open is what the
//! monitor did before there was a gate.
//!
//! Pure: no IO, no clock (times are passed in, kernel monotonic ns).

use std::collections::HashMap;

use monitor_common::{event::hdr, mmf::MMF_UNSTABLE};
use monitor_detector::{Data, Event};

const UNSTABLE: u64 = 1 << MMF_UNSTABLE;

/// How long the gate stays open after the last victim activity.
pub const HOLD_NS: u64 = 60_000_000_000;
/// A victim mm whose generation end was never seen (lost records) is
/// forgotten after this long without activity.
pub const LIVE_MAX_AGE_NS: u64 = 3_600_000_000_000;
/// Victim mms remembered at most (the oldest is forgotten first).
pub const MAX_LIVE: usize = 4096;

/// What the session should do with the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Close,
}

#[derive(Debug)]
pub struct FaultGate {
    /// How long the gate stays open after the last victim activity.
    hold_ns: u64,
    /// (mm, generation) → kernel time of its last victim activity.
    live: HashMap<(u64, u64), u64>,
    last_activity_ns: u64,
    last_opens: u64,
}

impl FaultGate {
    pub fn new(now_ns: u64) -> FaultGate {
        FaultGate::with_hold(now_ns, HOLD_NS)
    }

    /// A gate held open `hold_ns` after the last victim activity rather than
    /// [`HOLD_NS`] (tests of the closing path).
    pub fn with_hold(now_ns: u64, hold_ns: u64) -> FaultGate {
        FaultGate {
            hold_ns,
            live: HashMap::new(),
            last_activity_ns: now_ns,
            last_opens: 0,
        }
    }

    /// Victim mms currently considered alive.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Learns from one record.
    pub fn observe(&mut self, ev: &Event) {
        let victim = match &ev.data {
            Data::MarkVictim(_)
            | Data::ReapStart(_)
            | Data::ReapEnd(_)
            | Data::ReaperUnmapStart(_)
            | Data::ReaperUnmapEnd(_)
            | Data::MreleaseEnter(_)
            | Data::MreleaseExit(_) => true,
            Data::Fault(f) | Data::KernelFault(f) => f.mm_flags & UNSTABLE != 0,
            _ => false,
        };
        let key = (ev.mm, ev.mm_gen);
        if ev.hdr_flags & hdr::END_GENERATION != 0 {
            self.live.remove(&key);
        }
        if !victim {
            return;
        }
        self.last_activity_ns = self.last_activity_ns.max(ev.t);
        if ev.mm == 0 || ev.hdr_flags & hdr::END_GENERATION != 0 {
            return;
        }
        if !self.live.contains_key(&key)
            && self.live.len() >= MAX_LIVE
            && let Some(oldest) = self.live.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
        {
            self.live.remove(&oldest);
        }
        let t = self.live.entry(key).or_insert(ev.t);
        *t = (*t).max(ev.t);
    }

    /// Victim activity userspace knows of without a record (a process found
    /// dying at start, `dying.rs`): holds the gate open like a record would.
    pub fn hold(&mut self, now_ns: u64) {
        self.last_activity_ns = self.last_activity_ns.max(now_ns);
    }

    /// Called periodically with the gate's state and opening count as the
    /// kernel has them.
    pub fn decide(&mut self, now_ns: u64, gate_open: bool, opens: u64) -> Decision {
        if opens != self.last_opens {
            // Opened since the last look (its records may not be read yet).
            self.last_opens = opens;
            self.last_activity_ns = self.last_activity_ns.max(now_ns);
            return Decision::Keep;
        }
        self.live
            .retain(|_, t| now_ns.saturating_sub(*t) < LIVE_MAX_AGE_NS);
        if gate_open
            && self.live.is_empty()
            && now_ns.saturating_sub(self.last_activity_ns) >= self.hold_ns
        {
            Decision::Close
        } else {
            Decision::Keep
        }
    }

    /// After closing: the opening count read again. Returns whether a program
    /// opened the gate meanwhile, in which case the session must reopen it.
    pub fn closed(&mut self, now_ns: u64, opens: u64) -> bool {
        if opens == self.last_opens {
            return false;
        }
        self.last_opens = opens;
        self.last_activity_ns = self.last_activity_ns.max(now_ns);
        true
    }
}

#[cfg(test)]
mod tests {
    use monitor_detector::event::{Fault, MarkVictim, MmState};

    fn victim() -> MarkVictim {
        MarkVictim {
            victim_pid: 9,
            victim_tgid: 9,
            victim_comm: monitor_common::event::fixed_str("v"),
            ..MarkVictim::default()
        }
    }

    fn fault(mm_flags: u64) -> Fault {
        Fault {
            address: 0x1000,
            mm_flags,
            ret: u64::MAX,
            ..Fault::default()
        }
    }

    use super::*;

    const S: u64 = 1_000_000_000;

    fn ev(t: u64, mm: u64, mm_gen: u64, flags: u32, data: Data) -> Event {
        Event {
            t,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: monitor_common::event::fixed_str("x"),
            task_flags: 0,
            mm,
            mm_gen,
            seq: 1,
            hdr_flags: flags,
            probe: monitor_detector::ProbeRef::UNKNOWN,
            cgroup_id: 0,
            memcg_id: 0,
            data,
        }
    }

    fn mark(t: u64, mm: u64) -> Event {
        ev(t, mm, 7, 0, Data::MarkVictim(victim()))
    }

    fn exit_end(t: u64, mm: u64) -> Event {
        ev(
            t,
            mm,
            7,
            hdr::END_GENERATION,
            Data::ExitMmapEnd(MmState { mm_flags: 0 }),
        )
    }

    #[test]
    fn closes_only_after_the_victim_is_gone_and_the_hold_expired() {
        let mut g = FaultGate::new(0);
        assert_eq!(g.decide(S, true, 1), Decision::Keep, "fresh opening");
        g.observe(&mark(2 * S, 0xa));
        assert_eq!(g.decide(100 * S, true, 1), Decision::Keep, "victim alive");
        g.observe(&exit_end(101 * S, 0xa));
        assert_eq!(g.live(), 0);
        // The end of the generation is not victim activity: the hold counts
        // from the mark, long past.
        assert_eq!(g.decide(120 * S, true, 1), Decision::Close);
        assert_eq!(
            g.decide(120 * S, false, 1),
            Decision::Keep,
            "already closed"
        );
        // A victim that dies quickly: the hold still applies.
        let mut g = FaultGate::new(0);
        g.observe(&mark(2 * S, 0xa));
        g.observe(&exit_end(3 * S, 0xa));
        assert_eq!(g.decide(4 * S, true, 0), Decision::Keep, "within the hold");
        assert_eq!(g.decide(2 * S + HOLD_NS, true, 0), Decision::Close);
    }

    #[test]
    fn a_new_opening_keeps_it_open_and_a_racing_one_reopens_it() {
        let mut g = FaultGate::new(0);
        assert_eq!(g.decide(HOLD_NS + 1, true, 0), Decision::Close);
        assert!(!g.closed(HOLD_NS + 1, 0));
        // A program opened it between the decision and the close.
        assert!(g.closed(HOLD_NS + 2, 1));
        assert_eq!(g.decide(HOLD_NS + 3, true, 1), Decision::Keep);
        assert_eq!(g.decide(2 * HOLD_NS + 3, true, 1), Decision::Close);
    }

    #[test]
    fn unstable_faults_keep_a_victim_alive_and_lost_ends_age_out() {
        let mut g = FaultGate::new(0);
        g.observe(&ev(S, 0xb, 3, 0, Data::Fault(fault(UNSTABLE))));
        assert_eq!(g.live(), 1);
        assert_eq!(g.decide(S + HOLD_NS * 2, true, 0), Decision::Keep);
        assert_eq!(g.decide(S + LIVE_MAX_AGE_NS, true, 0), Decision::Close);
        assert_eq!(g.live(), 0);
        // A healthy fault is not victim activity.
        let mut g = FaultGate::new(0);
        g.observe(&ev(S, 0xc, 3, 0, Data::Fault(fault(0))));
        assert_eq!(g.live(), 0);
    }

    #[test]
    fn the_live_set_is_bounded() {
        let mut g = FaultGate::new(0);
        for i in 0..(MAX_LIVE as u64 + 10) {
            g.observe(&mark(i, 0x1000 + i));
        }
        assert_eq!(g.live(), MAX_LIVE);
    }
}
