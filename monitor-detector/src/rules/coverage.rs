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
        assert!(cov[0].missing_hooks.contains(&HookId::MarkVictim));
    }
}
