//! Which hook each BPF program and each event kind belongs to, so that metrics
//! carry bounded `hook` labels (the names of [`plan::HOOKS`]).
//!
//! The BPF side counts records per *event kind* (produced, ring buffer full,
//! sequence map full, read error), not per program; to report loss by hook we
//! need to know which programs emit which kinds. That is a fact about the BPF
//! code in `monitor-ebpf/src/probes/`, stated in [`probe_events`] and checked
//! two ways: a unit test compares it with the BPF sources, and the host tests
//! compare it with every record the daemon receives (each record names the
//! program that produced it).
//!
//! One event kind can be emitted by programs of several hooks (the four
//! userfaultfd change hooks all emit `uffd_change_begin`); its counts are then
//! labelled with those hooks joined by `+`, in plan order.

use monitor_common::{event::EventId, probes::ProbeId};

use crate::plan;

/// The event kinds each program can emit (`monitor-ebpf/src/probes/*.rs`).
/// Programs that only count (in `STATS`) or save state for their return
/// program emit nothing.
pub const fn probe_events(p: ProbeId) -> &'static [EventId] {
    use EventId as E;
    use ProbeId as P;
    match p {
        P::TpMarkVictim | P::FexitMarkOomVictim | P::KretprobeMarkOomVictim => &[E::MarkVictim],
        P::TpStartReaping | P::FentryOomReap | P::KprobeOomReap => &[E::ReapStart],
        P::TpFinishReaping | P::FexitOomReap | P::KretprobeOomReap => &[E::ReapEnd],
        P::TpSkipReaping => &[E::ReapSkip],
        P::FentryUnmapPageRange | P::KprobeUnmapPageRange => &[E::ReaperUnmapStart],
        P::FexitUnmapPageRange | P::KretprobeUnmapPageRange => &[E::ReaperUnmapEnd],
        P::TpSysEnterMrelease => &[E::MreleaseEnter],
        P::TpSysExitMrelease => &[E::MreleaseExit],
        P::FentryExitMmap | P::KprobeExitMmap => &[E::ExitMmapStart],
        P::TpExitMmap | P::FexitExitMmap | P::KretprobeExitMmap => &[E::ExitMmapEnd],
        P::FentryUnmapVmas | P::KprobeUnmapVmas => &[E::UnmapVmasStart],
        P::FexitUnmapVmas | P::KretprobeUnmapVmas => &[E::UnmapVmasEnd],
        P::FentryMmdrop | P::KprobeMmdrop => &[E::MmDrop],
        P::TpSchedExec => &[E::Exec],
        P::TpTaskRename => &[E::ExecMmSwitch],
        P::FentryStackMove | P::KprobeStackMove => &[E::StackMoveStart],
        P::FexitStackMove | P::KretprobeStackMove => &[E::StackMoveEnd],
        P::TpMigrateStart | P::KprobeMigratePages => &[E::MigrateStart],
        P::TpMigrateEnd7 | P::TpMigrateEnd8 | P::KretprobeMigratePages => &[E::MigrateEnd],
        P::KprobeInvalidMigrationVma => &[E::MigrationSkipTempStack],
        P::FentryTryToMigrateOne | P::KprobeTryToMigrateOne => &[E::MigrationEntryInTempStack],
        P::FentryRemoveMigrationPte | P::KprobeRemoveMigrationPte => &[E::MigrationPteRemoved],
        P::FentryMigrationEntryWait | P::KprobeMigrationEntryWait => &[E::MigrationEntryWait],
        P::FexitFault | P::KretprobeFault => &[E::Fault],
        P::TpPageFaultKernel => &[E::KernelFault],
        P::FentryKthreadUseMm | P::KprobeKthreadUseMm => &[E::KthreadUseMm],
        P::FentryKthreadUnuseMm | P::KprobeKthreadUnuseMm => &[E::KthreadUnuseMm],
        P::TpSysExitIoctl | P::FexitUffdIoctl | P::KretprobeUffdIoctl => &[E::UffdCopy],
        P::FentryMfillMm | P::KprobeMfillMm | P::FentryMfillCtx | P::KprobeMfillCtx => {
            &[E::MfillStart]
        }
        P::FexitMfillMm | P::KretprobeMfillMm | P::FexitMfillCtx | P::KretprobeMfillCtx => {
            &[E::MfillEnd]
        }
        P::FexitDupUffd
        | P::KretprobeDupUffd
        | P::FexitMremapUffdPrep
        | P::KretprobeMremapUffdPrep
        | P::FexitUnmapUffdPrep
        | P::KretprobeUnmapUffdPrep
        | P::FentryUffdRemove
        | P::KprobeUffdRemove => &[E::UffdChangeBegin],
        P::FexitUffdWait | P::KretprobeUffdWait => &[E::UffdChangeEnd],
        P::TpSchedFork => &[E::Fork],
        // Entry halves that stash arguments, and counting-only programs.
        P::KprobeMarkOomVictim
        | P::TpSetMigrationPte
        | P::TpRemoveMigrationPte
        | P::FentryRemoveMigrationPtes
        | P::KprobeRemoveMigrationPtes
        | P::FentryFault
        | P::KprobeFault
        | P::TpSysEnterIoctl
        | P::KprobeUffdIoctl
        | P::FentryDupUffd
        | P::KprobeDupUffd
        | P::KprobeUffdWait
        | P::KprobeMremapUffdPrep
        | P::KprobeUnmapUffdPrep => &[],
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

/// The hooks whose programs emit event kind `id`, in plan order.
pub fn event_hooks(id: EventId) -> Vec<&'static str> {
    plan::HOOKS
        .iter()
        .filter(|h| {
            h.candidates.iter().any(|c| {
                c.programs
                    .iter()
                    .any(|prog| probe_events(prog.probe).contains(&id))
            })
        })
        .map(|h| h.name)
        .collect()
}

/// The `hook` label of event kind `id`'s counters: its hook, or the hooks
/// that share it joined by `+`; `None` if no planned program emits it.
pub fn event_hook(id: EventId) -> Option<String> {
    let hooks = event_hooks(id);
    (!hooks.is_empty()).then(|| hooks.join("+"))
}

/// Label value for events no planned program emits (cannot happen unless
/// [`probe_events`] is out of date; the daemon logs it).
pub const UNPLANNED: &str = "unplanned";

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn every_hook_is_labelled_and_every_event_kind_has_a_label() {
        for h in plan::HOOKS {
            for c in h.candidates {
                for p in c.programs {
                    assert_eq!(probe_hook(p.probe), Some(h.name), "{:?}", p.probe);
                }
            }
        }
        assert_eq!(event_hook(EventId::ReapStart).as_deref(), Some("oom_reap"));
        assert_eq!(
            event_hook(EventId::ExitMmapEnd).as_deref(),
            Some("exit_mmap")
        );
        assert_eq!(
            event_hook(EventId::UffdChangeBegin).as_deref(),
            Some("uffd_fork+uffd_remap+uffd_unmap+uffd_remove")
        );
        for id in EventId::ALL {
            assert!(event_hook(id).is_some(), "no planned program emits {id:?}");
        }
        assert_eq!(probe_by_name("tp_exit_mmap"), Some(ProbeId::TpExitMmap));
    }

    /// The table agrees with the BPF sources: every event kind a probe file
    /// emits is claimed by a program defined in that file, and every program
    /// is claimed to emit only kinds its file mentions.
    #[test]
    fn table_matches_the_bpf_sources() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf/src/probes");
        let mut seen_programs = BTreeSet::new();
        for entry in std::fs::read_dir(dir).expect("monitor-ebpf/src/probes") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let mentioned: BTreeSet<EventId> = EventId::ALL
                .into_iter()
                .filter(|id| text.contains(&format!("EventId::{id:?},")))
                .collect();
            let defined: Vec<ProbeId> = ProbeId::ALL
                .iter()
                .copied()
                .filter(|p| text.contains(&format!("pub fn {}(", p.program())))
                .collect();
            let claimed: BTreeMap<EventId, Vec<ProbeId>> =
                defined.iter().fold(BTreeMap::new(), |mut m, p| {
                    for id in probe_events(*p) {
                        m.entry(*id).or_insert_with(Vec::new).push(*p);
                    }
                    m
                });
            for id in &mentioned {
                assert!(
                    claimed.contains_key(id),
                    "{}: emits {id:?} but no program of the file claims it",
                    path.display()
                );
            }
            for (id, progs) in &claimed {
                assert!(
                    mentioned.contains(id),
                    "{progs:?} claimed to emit {id:?}, absent from {}",
                    path.display()
                );
            }
            seen_programs.extend(defined);
        }
        let all: BTreeSet<ProbeId> = ProbeId::ALL.iter().copied().collect();
        assert_eq!(seen_programs, all, "programs not found in the BPF sources");
    }
}
