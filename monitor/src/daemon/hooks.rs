//! Which hook each BPF program and each event kind belongs to, so that metrics
//! carry bounded `hook` labels (the names of [`plan::HOOKS`]).
//!
//! The BPF side counts records per *event kind* (produced, ring buffer full,
//! sequence map full, read error), not per program; to report loss by hook we
//! need to know which programs emit which kinds. That is a fact about the BPF
//! code in `monitor-ebpf/src/probes/`, stated in [`probe_events`]. The host
//! tests check it against every record the daemon receives (each record names
//! the program that produced it), so the table cannot silently drift.

use monitor_common::{event::EventId, probes::ProbeId};

use crate::plan;

/// The event kinds each program can emit (`monitor-ebpf/src/probes/*.rs`).
/// Programs that only count (in `STATS`) or save state for a later program
/// emit nothing.
pub const fn probe_events(p: ProbeId) -> &'static [EventId] {
    match p {
        ProbeId::TpMarkVictim => &[EventId::MarkVictim],
        ProbeId::TpStartReaping => &[EventId::ReapStart],
        ProbeId::TpFinishReaping => &[EventId::ReapEnd],
        ProbeId::TpSkipReaping => &[EventId::ReapSkip],
        ProbeId::TpExitMmap => &[EventId::ExitMmapEnd],
        ProbeId::TpSchedExec => &[EventId::Exec],
        ProbeId::TpTaskRename => &[EventId::ExecMmSwitch],
        ProbeId::TpMigrateStart => &[EventId::MigrateStart],
        ProbeId::TpMigrateEnd7 | ProbeId::TpMigrateEnd8 => &[EventId::MigrateEnd],
        ProbeId::TpSetMigrationPte | ProbeId::TpRemoveMigrationPte => &[],
        ProbeId::TpPageFaultKernel => &[EventId::KernelFault],
        ProbeId::TpSchedFork => &[EventId::Fork],
        ProbeId::TpSysEnterIoctl => &[],
        ProbeId::TpSysExitIoctl => &[EventId::UffdCopy],
        ProbeId::TpSysEnterMrelease => &[EventId::MreleaseEnter],
        ProbeId::TpSysExitMrelease => &[EventId::MreleaseExit],
    }
}

/// The hook whose plan uses program `p`.
pub fn probe_hook(p: ProbeId) -> Option<&'static str> {
    plan::HOOKS
        .iter()
        .find(|h| {
            h.candidates
                .iter()
                .any(|c| c.programs.iter().any(|prog| prog.probe == p))
        })
        .map(|h| h.name)
}

/// The program with this symbol name.
pub fn probe_by_name(name: &str) -> Option<ProbeId> {
    ProbeId::ALL.iter().copied().find(|p| p.program() == name)
}

/// The hook whose programs emit event kind `id`, if any planned program does.
pub fn event_hook(id: EventId) -> Option<&'static str> {
    ProbeId::ALL
        .iter()
        .find(|p| probe_events(**p).contains(&id))
        .and_then(|p| probe_hook(*p))
}

/// Label value for events no planned program emits (cannot happen unless
/// [`probe_events`] is out of date; the daemon logs it).
pub const UNPLANNED: &str = "unplanned";

#[cfg(test)]
mod tests {
    use super::*;

    /// An event kind's hook label is well defined: every program that emits it
    /// belongs to the same hook.
    #[test]
    fn each_event_kind_has_one_hook() {
        for id in EventId::ALL {
            let hooks: std::collections::BTreeSet<&str> = ProbeId::ALL
                .iter()
                .filter(|p| probe_events(**p).contains(&id))
                .map(|p| probe_hook(*p).expect("every probe is planned"))
                .collect();
            assert!(hooks.len() <= 1, "{id:?} is emitted by hooks {hooks:?}");
        }
    }

    #[test]
    fn every_hook_emits_or_counts_something() {
        for h in plan::HOOKS {
            let progs: Vec<ProbeId> = h
                .candidates
                .iter()
                .flat_map(|c| c.programs.iter().map(|p| p.probe))
                .collect();
            assert!(!progs.is_empty(), "{}", h.name);
            for p in progs {
                assert_eq!(probe_hook(p), Some(h.name));
            }
        }
        assert_eq!(event_hook(EventId::ReapStart), Some("oom_reap"));
        assert_eq!(event_hook(EventId::ExitMmapEnd), Some("exit_mmap"));
        assert_eq!(event_hook(EventId::KthreadUseMm), None);
        assert_eq!(probe_by_name("tp_exit_mmap"), Some(ProbeId::TpExitMmap));
    }
}
