//! Which rules can run, given the hook plan (`Header::hooks`).
//!
//! A rule is `full` when every hook it uses is attached at a rung that sees
//! what the rule needs, `partial` when it runs but some pattern is invisible
//! (the reason names the missing hooks and what is lost), and `disabled` when a
//! hook it cannot do without is unavailable. A disabled rule is reported as
//! such by `monitor check`, in metrics and in every analysis report: it never
//! passes silently.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{finding::FindingKind, tracefile::HookStatus};

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
    pub missing_hooks: Vec<String>,
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

/// The rung a hook is attached at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rung {
    /// fentry/fexit or kprobe/kretprobe: arguments and return values.
    Function,
    /// A tracepoint substitute.
    Tracepoint,
    Unavailable,
}

/// Looks up hook `name` in the plan. A hook missing from the plan is
/// unavailable; an unknown rung string counts as unavailable too.
pub fn rung(hooks: &[HookStatus], name: &str) -> Rung {
    match hooks
        .iter()
        .find(|h| h.hook == name)
        .map(|h| h.rung.as_str())
    {
        Some("fentry" | "kprobe" | "fexit" | "kretprobe") => Rung::Function,
        Some("tracepoint" | "tp_btf" | "raw_tracepoint") => Rung::Tracepoint,
        _ => Rung::Unavailable,
    }
}

struct Builder {
    rule: FindingKind,
    disabled: bool,
    partial: bool,
    reasons: Vec<String>,
    missing: Vec<String>,
}

impl Builder {
    fn new(rule: FindingKind) -> Self {
        Builder {
            rule,
            disabled: false,
            partial: false,
            reasons: Vec::new(),
            missing: Vec::new(),
        }
    }

    fn missing(&mut self, hook: &str) {
        if !self.missing.iter().any(|h| h == hook) {
            self.missing.push(hook.to_owned());
        }
    }

    fn disable(&mut self, why: impl Into<String>) {
        self.disabled = true;
        self.reasons.push(why.into());
    }

    fn degrade(&mut self, why: impl Into<String>) {
        self.partial = true;
        self.reasons.push(why.into());
    }

    fn build(self) -> RuleCoverage {
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
        }
    }
}

/// The coverage of every rule, in [`FindingKind::ALL`] order. Pure: the
/// `monitor check` command, the metrics and the analyzer all call this.
pub fn coverage(hooks: &[HookStatus]) -> Vec<RuleCoverage> {
    vec![
        reaper_exit_overlap(hooks),
        unstable_mm_fault(hooks),
        leftover_migration_entry(hooks),
        uffd_copy_vs_mm_change(hooks),
    ]
}

fn reaper_exit_overlap(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::ReaperExitOverlap);
    match rung(hooks, "oom_reap") {
        Rung::Unavailable => {
            b.missing("oom_reap");
            b.disable("oom_reap is unavailable: reaping is invisible");
        }
        Rung::Tracepoint => {
            if rung(hooks, "mark_victim") == Rung::Unavailable {
                b.missing("mark_victim");
                b.disable(
                    "oom_reap is on the tracepoint rung and mark_victim is unavailable: \
                     oom:*_task_reaping carry only a pid, which cannot be attributed to an mm",
                );
            } else {
                b.degrade(
                    "oom_reap is on the tracepoint rung: only the oom_reaper kthread's \
                     start/finish bracket is seen; process_mrelease(2) reaping and the \
                     reaper's per-VMA unmap_page_range are invisible",
                );
            }
        }
        Rung::Function => {
            if rung(hooks, "unmap_page_range") == Rung::Unavailable {
                // Detail only: the __oom_reap_task_mm bracket encloses it.
                b.missing("unmap_page_range");
            }
        }
    }
    match rung(hooks, "exit_mmap") {
        Rung::Unavailable => {
            b.missing("exit_mmap");
            b.disable("exit_mmap is unavailable: the victim's teardown is invisible");
        }
        Rung::Tracepoint => b.degrade(
            "exit_mmap is on the tracepoint rung (mmap:exit_mmap = its end only): \
             overlaps (near misses) cannot be seen; exit_mmap ending inside a reaping \
             bracket and reaping after exit_mmap ended (violations) still are",
        ),
        Rung::Function => {}
    }
    if rung(hooks, "unmap_vmas") != Rung::Function {
        b.missing("unmap_vmas");
        b.degrade(
            "unmap_vmas is unavailable: on 4.14-5.19 kernels an overlap with exit_mmap's \
             unmap_vmas (a violation) cannot be told from an overlap with its start (a near miss)",
        );
    }
    if rung(hooks, "mmdrop") != Rung::Function {
        b.missing("mmdrop");
        b.degrade("mmdrop is unavailable: the mm being freed under the reaper is invisible");
    }
    b.build()
}

fn unstable_mm_fault(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::UnstableMmFault);
    match rung(hooks, "handle_mm_fault") {
        Rung::Unavailable => {
            b.missing("handle_mm_fault");
            b.disable("handle_mm_fault is unavailable: faults are invisible");
        }
        Rung::Tracepoint => b.degrade(
            "handle_mm_fault is on the tracepoint rung (exceptions:page_fault_kernel): \
             the fault's result is invisible (findings are `uncertain`) and remote \
             (GUP, /proc/PID/mem) faults are not seen",
        ),
        Rung::Function => {}
    }
    if rung(hooks, "kthread_use_mm") == Rung::Unavailable {
        // Evidence only.
        b.missing("kthread_use_mm");
    }
    if rung(hooks, "oom_reap") == Rung::Unavailable
        && rung(hooks, "mark_victim") == Rung::Unavailable
    {
        b.missing("oom_reap");
        b.missing("mark_victim");
        b.degrade(
            "neither oom_reap nor mark_victim is attached: a fault whose mm flags could not \
             be read cannot be placed after the reaper started",
        );
    }
    b.build()
}

fn leftover_migration_entry(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::LeftoverMigrationEntry);
    let try_one = rung(hooks, "try_to_migrate_one") == Rung::Function;
    let invalid = rung(hooks, "invalid_migration_vma") == Rung::Function;
    let removed = rung(hooks, "remove_migration_ptes") == Rung::Function;
    let wait = rung(hooks, "migration_entry_wait") == Rung::Function;
    let stack = rung(hooks, "stack_move");
    let batches = rung(hooks, "migrate_pages") != Rung::Unavailable;
    if !(try_one || invalid || removed || wait) {
        for h in [
            "try_to_migrate_one",
            "invalid_migration_vma",
            "remove_migration_ptes",
            "migration_entry_wait",
        ] {
            b.missing(h);
        }
        b.disable(
            "no function-rung migration hook is attached (try_to_migrate_one, \
             invalid_migration_vma, remove_migration_ptes, migration_entry_wait): on the \
             tracepoint rung migration cannot be attributed to an mm",
        );
        return b.build();
    }
    if !try_one {
        b.missing("try_to_migrate_one");
        b.degrade("try_to_migrate_one is unavailable: a migration entry installed into a temporary exec stack (violation) is invisible");
    }
    if !invalid {
        b.missing("invalid_migration_vma");
        b.degrade("invalid_migration_vma is unavailable: migration skipping a temporary stack (near miss) is invisible");
    }
    if !removed {
        b.missing("remove_migration_ptes");
        b.degrade("remove_migration_ptes is not on the function rung: migration PTE removals cannot be attributed to an mm");
    } else if stack == Rung::Unavailable {
        b.missing("stack_move");
        b.degrade("stack_move is unavailable: a migration PTE removal cannot be placed inside an exec stack move");
    }
    if !wait {
        b.missing("migration_entry_wait");
        b.degrade("migration_entry_wait is unavailable: repeated waits on a left-behind entry are invisible");
    } else if !batches {
        b.missing("migrate_pages");
        b.degrade("migrate_pages is unavailable: migration-entry waits cannot be compared with migration batches");
    }
    b.build()
}

fn uffd_copy_vs_mm_change(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::UffdCopyVsMmChange);
    let ioctl = rung(hooks, "uffd_ioctl");
    let mfill = rung(hooks, "mfill_copy") == Rung::Function;
    if ioctl == Rung::Unavailable && !mfill {
        b.missing("uffd_ioctl");
        b.missing("mfill_copy");
        b.disable("neither uffd_ioctl nor mfill_copy is attached: UFFDIO_COPY is invisible");
        return b.build();
    }
    if ioctl == Rung::Unavailable {
        b.missing("uffd_ioctl");
        b.degrade(
            "uffd_ioctl is unavailable: -EAGAIN from the early mmap_changing check in \
             userfaultfd_copy (where every measured -EAGAIN came from) is invisible",
        );
    }
    let changes = ["uffd_fork", "uffd_remap", "uffd_unmap", "uffd_remove"];
    let missing_changes: Vec<&str> = changes
        .iter()
        .copied()
        .filter(|h| rung(hooks, h) != Rung::Function)
        .collect();
    let wait = rung(hooks, "uffd_event_wait") == Rung::Function;
    if !mfill || missing_changes.len() == changes.len() || !wait {
        let mut lacking = Vec::new();
        if !mfill {
            lacking.push("mfill_copy");
        }
        if missing_changes.len() == changes.len() {
            lacking.extend(changes);
        }
        if !wait {
            lacking.push("uffd_event_wait");
        }
        for h in &lacking {
            b.missing(h);
        }
        b.degrade(format!(
            "{} unavailable: only -EAGAIN near misses are seen; a copy that succeeded inside \
             an mmap_changing window (violation) cannot be proven",
            lacking.join(", ")
        ));
    } else if !missing_changes.is_empty() {
        for h in &missing_changes {
            b.missing(h);
        }
        b.degrade(format!(
            "{} unavailable: windows opened by those changes are invisible",
            missing_changes.join(", ")
        ));
    }
    if ioctl == Rung::Tracepoint && rung(hooks, "fork") == Rung::Unavailable {
        b.missing("fork");
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(entries: &[(&str, &str)]) -> Vec<HookStatus> {
        entries
            .iter()
            .map(|(hook, rung)| HookStatus {
                hook: (*hook).to_owned(),
                rung: (*rung).to_owned(),
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

    #[test]
    fn tracepoint_reaping_without_mark_victim_is_disabled() {
        let cov = coverage(&plan(&[
            ("oom_reap", "tracepoint"),
            ("exit_mmap", "fentry"),
        ]));
        assert_eq!(cov[0].state, CoverageState::Disabled);
        assert!(cov[0].missing_hooks.contains(&"mark_victim".to_owned()));
    }
}
