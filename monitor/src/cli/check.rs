//! `monitor check`: attach every hook as `run`/`trace` would, print which rung
//! each one got (and why every better candidate was refused) and which
//! detector rules that covers, then detach.

use std::process::ExitCode;

use monitor_common::catalogue::HookId;
use monitor_detector::{CoverageState, Needs, RuleCoverage, coverage, tracefile::HookStatus};
use serde_json::json;

use super::args::{CheckArgs, Format};
use crate::{loader, output, plan, say, sys};

use plan::best_rung;

/// Hooks below their best rung.
pub fn degraded(hooks: &[HookStatus]) -> Vec<&HookStatus> {
    hooks
        .iter()
        .filter(|h| h.rung > best_rung(h.hook))
        .collect()
}

fn table(hooks: &[HookStatus], rules: &[RuleCoverage], object: &str) -> String {
    // The hook column fits the longest hook name of the catalogue.
    let w = HookId::ALL
        .iter()
        .map(|h| h.name().len())
        .max()
        .unwrap_or(22);
    let mut out = format!(
        "kernel {} ({} BPF object)\n\n{:<w$} {:<12} TARGET\n",
        sys::kernel_release(),
        object,
        "HOOK",
        "RUNG"
    );
    for h in hooks {
        let primary = plan::spec(h.hook).is_some_and(|s| s.primary);
        out.push_str(&format!(
            "{:<w$} {:<12} {}{}\n",
            h.hook.name(),
            h.rung.name(),
            h.target.as_deref().unwrap_or("-"),
            if primary { "  (function hook)" } else { "" }
        ));
        for r in &h.refused {
            out.push_str(&format!(
                "    refused {:<10} {}: {}\n",
                r.rung.name(),
                r.target,
                r.reason
            ));
        }
    }
    out.push_str("\nRULE                         COVERAGE  WHY\n");
    for r in rules {
        out.push_str(&format!(
            "{:<28} {:<9} {}\n",
            r.rule.name(),
            r.state.name(),
            r.reason()
        ));
        for m in &r.missing_paths {
            out.push_str(&format!(
                "    missing {:<25} {:<11} (needs {}): {}\n",
                m.hook.name(),
                m.rung.name(),
                needs(m.needs),
                m.path
            ));
        }
    }
    out
}

fn needs(n: Needs) -> &'static str {
    match n {
        Needs::Any => "any rung",
        Needs::Function => "a function rung",
    }
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    args.load.validate()?;
    sys::check_privileges()?;
    let mut loaded = loader::load(&args.load.options())?;
    let rules = coverage(&loaded.hooks);
    match args.format {
        Format::Table => {
            output::STDOUT.bytes(table(&loaded.hooks, &rules, loaded.object.name()).into_bytes());
        }
        Format::Json => {
            let v = json!({
                "kernel_release": sys::kernel_release(),
                "bpf_object": loaded.object.name(),
                "hooks": loaded.hooks,
                "rules": rules.iter().map(|r| json!({
                    "rule": r.rule.name(),
                    "coverage": r.state.name(),
                    "reasons": r.reasons,
                    "missing_hooks": r.missing_hooks,
                    "missing_paths": r.missing_paths,
                })).collect::<Vec<_>>(),
            });
            output::STDOUT.line(&v.to_string());
        }
    }
    loaded.detach_all();
    let degraded = degraded(&loaded.hooks);
    let uncovered: Vec<&RuleCoverage> = rules
        .iter()
        .filter(|r| r.state != CoverageState::Full)
        .collect();
    if args.strict && (!degraded.is_empty() || !uncovered.is_empty()) {
        let hooks: Vec<String> = degraded
            .iter()
            .map(|h| format!("{} ({} < {})", h.hook, h.rung, best_rung(h.hook)))
            .collect();
        let rules: Vec<String> = uncovered
            .iter()
            .map(|r| format!("{} ({})", r.rule.name(), r.state.name()))
            .collect();
        say!(
            "monitor: check --strict failed: degraded hooks: [{}]; rules not fully covered: [{}]",
            hooks.join(", "),
            rules.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
