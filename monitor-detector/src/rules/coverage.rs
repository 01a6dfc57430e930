//! Which rules can run, given the hook plan (`Header::hooks`).
//!
//! A rule is `full` when every hook it uses is attached at a rung that sees
//! what the rule needs, `partial` when it runs but some pattern is invisible
//! (the reason names the missing hooks and what is lost), and `disabled` when a
//! hook it cannot do without is unavailable. A disabled rule is reported as
//! such by `monitor check`, in metrics and in every analysis report: it never
//! passes silently.
//!
//! Each rule also names the kernel code paths it watches ([`paths`]: hook,
//! path, the rung that sees what the rule needs). Whatever a rule's own
//! coverage function says, [`finish`] lists every path not hooked at that
//! rung in `missing_paths` and never lets such a rule be `full`.

use std::fmt;

use serde::{Deserialize, Serialize};

use monitor_common::catalogue::{HookId, Rung};

use crate::{
    finding::FindingKind,
    tracefile::{HookStatus, rung_of},
};

/// How well a rule is covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageState {
    Full,
    Partial,
    Disabled,
}

impl CoverageState {
    pub const fn name(self) -> &'static str {
        match self {
            CoverageState::Full => "full",
            CoverageState::Partial => "partial",
            CoverageState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for CoverageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The coverage of one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCoverage {
    /// The rule, named like the findings it produces.
    pub rule: FindingKind,
    pub state: CoverageState,
    /// One human sentence per limitation ("hook X is unavailable: …"); empty
    /// when the coverage is full.
    pub reasons: Vec<String>,
    /// Hooks the rule uses that are not attached.
    pub missing_hooks: Vec<HookId>,
    /// Every kernel path the rule names that is not hooked at a rung that
    /// sees what the rule needs ([`paths`]).
    #[serde(default)]
    pub missing_paths: Vec<MissingPath>,
}

/// The rung a rule needs on one kernel path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Needs {
    /// Any attached rung (a tracepoint substitute shows what the rule uses).
    Any,
    /// fentry/fexit or kprobe/kretprobe: arguments, return values or the
    /// call's extent.
    Function,
}

impl Needs {
    const fn met(self, seen: Seen) -> bool {
        match self {
            Needs::Any => !matches!(seen, Seen::Unavailable),
            Needs::Function => matches!(seen, Seen::Function),
        }
    }
}

/// One kernel code path a rule watches, through one hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPath {
    pub hook: HookId,
    /// The code path, as `file function` (and what the rule takes from it).
    pub path: &'static str,
    pub needs: Needs,
}

/// A kernel path not hooked at the rung its rule needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPath {
    pub hook: HookId,
    pub path: String,
    pub needs: Needs,
    /// The rung the hook got.
    pub rung: Rung,
}

const fn kp(hook: HookId, path: &'static str, needs: Needs) -> KernelPath {
    KernelPath { hook, path, needs }
}

const REAPER_PATHS: &[KernelPath] = &[
    kp(
        HookId::OomReap,
        "mm/oom_kill.c __oom_reap_task_mm (oom_reaper and process_mrelease)",
        Needs::Function,
    ),
    kp(
        HookId::MarkVictim,
        "mm/oom_kill.c mark_oom_victim (victim pid -> mm)",
        Needs::Any,
    ),
    kp(
        HookId::UnmapPageRange,
        "mm/memory.c unmap_page_range inside a reap",
        Needs::Function,
    ),
    kp(
        HookId::ExitMmap,
        "mm/mmap.c exit_mmap (entry and return)",
        Needs::Function,
    ),
    kp(
        HookId::UnmapVmas,
        "mm/memory.c unmap_vmas inside exit_mmap",
        Needs::Function,
    ),
    kp(HookId::Mmdrop, "kernel/fork.c __mmdrop", Needs::Function),
];

const UNSTABLE_PATHS: &[KernelPath] = &[
    kp(
        HookId::HandleMmFault,
        "mm/memory.c handle_mm_fault (entry and result)",
        Needs::Function,
    ),
    kp(
        HookId::KthreadUseMm,
        "kernel/kthread.c kthread_use_mm / kthread_unuse_mm",
        Needs::Any,
    ),
    kp(
        HookId::OomReap,
        "mm/oom_kill.c __oom_reap_task_mm (sets MMF_UNSTABLE)",
        Needs::Any,
    ),
    kp(
        HookId::MarkVictim,
        "mm/oom_kill.c mark_oom_victim",
        Needs::Any,
    ),
];

const MIGRATION_PATHS: &[KernelPath] = &[
    kp(
        HookId::TryToMigrateOne,
        "mm/rmap.c try_to_migrate_one (entry installed)",
        Needs::Function,
    ),
    kp(
        HookId::InvalidMigrationVma,
        "mm/rmap.c invalid_migration_vma (temporary stack skipped)",
        Needs::Function,
    ),
    kp(
        HookId::RemoveMigrationPtes,
        "mm/migrate.c remove_migration_ptes (entries removed, per mm)",
        Needs::Function,
    ),
    kp(
        HookId::MigrationEntryWait,
        "mm/migrate.c migration_entry_wait (PTE-level waits)",
        Needs::Function,
    ),
    kp(
        HookId::PmdMigrationEntryWait,
        "mm/migrate.c pmd_migration_entry_wait (PMD-level THP waits)",
        Needs::Function,
    ),
    kp(
        HookId::MigrationEntryWaitHuge,
        "mm/migrate.c migration_entry_wait_huge (hugetlb waits)",
        Needs::Function,
    ),
    kp(
        HookId::MigratePages,
        "mm/migrate.c migrate_pages batches",
        Needs::Any,
    ),
    kp(
        HookId::StackMove,
        "mm/mmap.c relocate_vma_down / fs/exec.c shift_arg_pages",
        Needs::Any,
    ),
];

const UFFD_PATHS: &[KernelPath] = &[
    kp(
        HookId::UffdIoctl,
        "fs/userfaultfd.c userfaultfd_ioctl UFFDIO_COPY (early mmap_changing -EAGAIN)",
        Needs::Any,
    ),
    kp(
        HookId::MfillCopy,
        "mm/userfaultfd.c mfill_atomic_copy / mcopy_atomic (copy result)",
        Needs::Function,
    ),
    kp(
        HookId::UffdFork,
        "fs/userfaultfd.c dup_userfaultfd (fork event)",
        Needs::Function,
    ),
    kp(
        HookId::UffdRemap,
        "fs/userfaultfd.c mremap_userfaultfd_prep (remap event)",
        Needs::Function,
    ),
    kp(
        HookId::UffdUnmap,
        "fs/userfaultfd.c userfaultfd_unmap_prep (unmap event)",
        Needs::Function,
    ),
    kp(
        HookId::UffdRemove,
        "fs/userfaultfd.c userfaultfd_remove (remove event)",
        Needs::Function,
    ),
    kp(
        HookId::UffdEventWait,
        "fs/userfaultfd.c userfaultfd_event_wait_completion",
        Needs::Function,
    ),
];

/// The kernel paths each rule watches. Exhaustive: a new rule must name its
/// paths here.
pub const fn paths(rule: FindingKind) -> &'static [KernelPath] {
    match rule {
        FindingKind::ReaperExitOverlap => REAPER_PATHS,
        FindingKind::UnstableMmFault => UNSTABLE_PATHS,
        FindingKind::LeftoverMigrationEntry => MIGRATION_PATHS,
        FindingKind::UffdCopyVsMmChange => UFFD_PATHS,
    }
}

/// Completes a rule's own coverage with its [`paths`]: every path not hooked
/// at the rung it needs is listed, its hook is missing, and a rule the
/// coverage function called `full` becomes `partial`.
pub(crate) fn finish(mut c: RuleCoverage, hooks: &[HookStatus]) -> RuleCoverage {
    for p in paths(c.rule) {
        let got = seen(hooks, p.hook);
        if p.needs.met(got) {
            continue;
        }
        if !c.missing_hooks.contains(&p.hook) {
            c.missing_hooks.push(p.hook);
        }
        c.missing_paths.push(MissingPath {
            hook: p.hook,
            path: p.path.to_owned(),
            needs: p.needs,
            rung: rung_of(hooks, p.hook),
        });
    }
    if c.state == CoverageState::Full && !c.missing_paths.is_empty() {
        c.state = CoverageState::Partial;
        let list: Vec<String> = c
            .missing_paths
            .iter()
            .map(|m| format!("{} ({})", m.hook.name(), m.rung.name()))
            .collect();
        c.reasons.push(format!(
            "kernel paths not hooked at the rung the rule needs: {}",
            list.join(", ")
        ));
    }
    c
}

impl RuleCoverage {
    /// All reasons joined, or "all hooks attached".
    pub fn reason(&self) -> String {
        if self.reasons.is_empty() {
            "all hooks attached".to_owned()
        } else {
            self.reasons.join("; ")
        }
    }
}

/// Hook names joined for a sentence.
pub(crate) fn names(hooks: &[HookId]) -> String {
    hooks
        .iter()
        .map(|h| h.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a hook's rung lets a rule see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// fentry/fexit or kprobe/kretprobe: arguments and return values.
    Function,
    /// A tracepoint substitute.
    Tracepoint,
    Unavailable,
}

/// What hook `hook` shows under the plan; a hook missing from the plan is
/// unavailable.
pub(crate) fn seen(hooks: &[HookStatus], hook: HookId) -> Seen {
    match rung_of(hooks, hook) {
        Rung::Fentry | Rung::Kprobe => Seen::Function,
        Rung::Tracepoint => Seen::Tracepoint,
        Rung::Unavailable => Seen::Unavailable,
    }
}

pub(crate) struct Builder {
    rule: FindingKind,
    disabled: bool,
    partial: bool,
    reasons: Vec<String>,
    missing: Vec<HookId>,
}

impl Builder {
    pub(crate) fn new(rule: FindingKind) -> Self {
        Builder {
            rule,
            disabled: false,
            partial: false,
            reasons: Vec::new(),
            missing: Vec::new(),
        }
    }

    pub(crate) fn missing(&mut self, hook: HookId) {
        if !self.missing.contains(&hook) {
            self.missing.push(hook);
        }
    }

    pub(crate) fn disable(&mut self, why: impl Into<String>) {
        self.disabled = true;
        self.reasons.push(why.into());
    }

    pub(crate) fn degrade(&mut self, why: impl Into<String>) {
        self.partial = true;
        self.reasons.push(why.into());
    }

    pub(crate) fn build(self) -> RuleCoverage {
        let state = if self.disabled {
            CoverageState::Disabled
        } else if self.partial {
            CoverageState::Partial
        } else {
            CoverageState::Full
        };
        RuleCoverage {
            rule: self.rule,
            state,
            reasons: self.reasons,
            missing_hooks: self.missing,
            missing_paths: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::coverage;

    fn plan(entries: &[(&str, &str)]) -> Vec<HookStatus> {
        entries
            .iter()
            .map(|(hook, rung)| HookStatus {
                hook: HookId::from_name(hook).expect("hook"),
                rung: Rung::from_name(rung).expect("rung"),
                target: None,
                programs: Vec::new(),
                refused: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn empty_plan_disables_every_rule() {
        let cov = coverage(&[]);
        assert_eq!(cov.len(), FindingKind::ALL.len());
        for c in &cov {
            assert_eq!(c.state, CoverageState::Disabled, "{c:?}");
            assert!(!c.missing_hooks.is_empty());
        }
    }

    #[test]
    fn tracepoint_only_host() {
        let cov = coverage(&plan(&[
            ("oom_reap", "tracepoint"),
            ("mark_victim", "tracepoint"),
            ("exit_mmap", "tracepoint"),
            ("handle_mm_fault", "tracepoint"),
            ("remove_migration_ptes", "tracepoint"),
            ("migrate_pages", "tracepoint"),
            ("stack_move", "tracepoint"),
            ("exec", "tracepoint"),
            ("fork", "tracepoint"),
            ("uffd_ioctl", "tracepoint"),
        ]));
        let state = |k: FindingKind| cov.iter().find(|c| c.rule == k).map(|c| c.state);
        assert_eq!(
            state(FindingKind::ReaperExitOverlap),
            Some(CoverageState::Partial)
        );
        assert_eq!(
            state(FindingKind::UnstableMmFault),
            Some(CoverageState::Partial)
        );
        assert_eq!(
            state(FindingKind::LeftoverMigrationEntry),
            Some(CoverageState::Disabled)
        );
        assert_eq!(
            state(FindingKind::UffdCopyVsMmChange),
            Some(CoverageState::Partial)
        );
    }

    #[test]
    fn function_rung_everywhere_is_full() {
        let names = [
            "oom_reap",
            "mark_victim",
            "exit_mmap",
            "unmap_page_range",
            "unmap_vmas",
            "mmdrop",
            "remove_migration_ptes",
            "migrate_pages",
            "try_to_migrate_one",
            "invalid_migration_vma",
            "migration_entry_wait",
            "pmd_migration_entry_wait",
            "migration_entry_wait_huge",
            "stack_move",
            "exec",
            "fork",
            "handle_mm_fault",
            "kthread_use_mm",
            "mfill_copy",
            "uffd_ioctl",
            "uffd_fork",
            "uffd_remap",
            "uffd_unmap",
            "uffd_remove",
            "uffd_event_wait",
        ];
        let entries: Vec<(&str, &str)> = names
            .iter()
            .map(|n| {
                (
                    *n,
                    if *n == "migrate_pages" {
                        "tracepoint"
                    } else {
                        "kprobe"
                    },
                )
            })
            .collect();
        for c in coverage(&plan(&entries)) {
            assert_eq!(c.state, CoverageState::Full, "{c:?}");
            assert_eq!(c.reason(), "all hooks attached");
        }
    }

    /// No rule is `full` while a path it names is unhooked at the rung it
    /// needs, and `missing_paths` names each such path: every hook of every
    /// rule taken away in turn from an otherwise complete function plan.
    #[test]
    fn full_only_with_every_named_path_hooked() {
        let all: Vec<HookStatus> = HookId::ALL
            .iter()
            .map(|h| HookStatus {
                hook: *h,
                rung: Rung::Kprobe,
                target: None,
                programs: Vec::new(),
                refused: Vec::new(),
            })
            .collect();
        for c in coverage(&all) {
            assert_eq!(c.state, CoverageState::Full, "{c:?}");
            assert!(c.missing_paths.is_empty());
        }
        for rule in FindingKind::ALL {
            for p in paths(*rule) {
                for rung in [Rung::Unavailable, Rung::Tracepoint] {
                    let plan: Vec<HookStatus> = all
                        .iter()
                        .cloned()
                        .map(|mut h| {
                            if h.hook == p.hook {
                                h.rung = rung;
                            }
                            h
                        })
                        .collect();
                    let cov = coverage(&plan);
                    let c = cov.iter().find(|c| c.rule == *rule).expect("rule");
                    let lacking = !p.needs.met(seen(&plan, p.hook));
                    if lacking {
                        assert_ne!(
                            c.state,
                            CoverageState::Full,
                            "{} without {}",
                            rule.name(),
                            p.hook.name()
                        );
                        assert!(
                            c.missing_paths
                                .iter()
                                .any(|m| m.hook == p.hook && m.rung == rung),
                            "{c:?}"
                        );
                        assert!(c.missing_hooks.contains(&p.hook));
                    } else {
                        assert!(c.missing_paths.iter().all(|m| m.hook != p.hook), "{c:?}");
                    }
                }
            }
        }
    }

    /// The PMD-level and hugetlb migration-entry waits are named paths of
    /// `leftover_migration_entry`: without them the rule is not `full`.
    #[test]
    fn huge_migration_waits_are_required_for_full() {
        let names = [
            "remove_migration_ptes",
            "migrate_pages",
            "try_to_migrate_one",
            "invalid_migration_vma",
            "migration_entry_wait",
            "stack_move",
        ];
        let entries: Vec<(&str, &str)> = names.iter().map(|n| (*n, "fentry")).collect();
        let cov = coverage(&plan(&entries));
        let c = cov
            .iter()
            .find(|c| c.rule == FindingKind::LeftoverMigrationEntry)
            .expect("rule");
        assert_eq!(c.state, CoverageState::Partial, "{c:?}");
        let hooks: Vec<HookId> = c.missing_paths.iter().map(|m| m.hook).collect();
        assert_eq!(
            hooks,
            [
                HookId::PmdMigrationEntryWait,
                HookId::MigrationEntryWaitHuge
            ]
        );
        assert!(
            c.reason()
                .contains("pmd_migration_entry_wait (unavailable)"),
            "{}",
            c.reason()
        );
    }

    #[test]
    fn tracepoint_reaping_without_mark_victim_is_disabled() {
        let cov = coverage(&plan(&[
            ("oom_reap", "tracepoint"),
            ("exit_mmap", "fentry"),
        ]));
        assert_eq!(cov[0].state, CoverageState::Disabled);
        assert!(cov[0].missing_hooks.contains(&HookId::MarkVictim));
    }
}
