//! Tidy checks that need no kernel and no root: the names the project
//! publishes agree with each other. Every metric family the daemon exports
//! (rendered from `Metrics::new`, no kernel needed) is documented in
//! docs/metrics.md with its type and vice versa, and every metric name a
//! dashboard panel, a dashboard variable or a shipped alert rule uses is
//! exported. (The daemon tests, as root, also run every one of those
//! queries against a real Prometheus scraping a real daemon.)

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use monitor::daemon::metrics::{Metrics, StaticInfo};
use monitor_detector::{ProbeRef, tracefile::HookStatus};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Binary operators and modifiers.
const PROMQL_KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];
/// Modifiers followed by a parenthesised list of label names.
const PROMQL_LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Aggregation operators (`sum by (x) (...)`: not followed by a parenthesis).
const PROMQL_AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Metric names in a PromQL expression: identifiers that are not function
/// calls, aggregations, keywords, label names (in braces or grouping lists),
/// numbers, durations or strings.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let skip_quoted = |mut i: usize| {
        let q = b[i];
        i += 1;
        while i < b.len() && b[i] != q {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i + 1
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_quoted(i);
        } else if c == b'{' {
            while i < b.len() && b[i] != b'}' {
                i = if b[i] == b'"' { skip_quoted(i) } else { i + 1 };
            }
            i += 1;
        } else if c == b'[' {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let call = j < b.len() && b[j] == b'(';
            if PROMQL_LABEL_LISTS.contains(&word) {
                if call {
                    while j < b.len() && b[j] != b')' {
                        j += 1;
                    }
                    i = j + 1;
                }
            } else if !call
                && !PROMQL_KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
                && !PROMQL_AGGREGATIONS.contains(&word)
            {
                names.insert(word.to_owned());
            }
        } else if c.is_ascii_digit() || c == b'.' {
            // Numbers and durations (0.99, 5m, 1e3).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn promql_names_are_extracted() {
    let names = |e: &str| promql_metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (job, le) (rate(a_total{x="{y}", z=~"$i"}[5m] offset 1d)) > 2 * b_total or on(job) vector(0)"#
        ),
        ["a_total", "b_total"]
    );
    assert_eq!(
        names("histogram_quantile(0.99, sum without (le) (rate(h_bucket[1m]))) / c:rule"),
        ["c:rule", "h_bucket"]
    );
    assert_eq!(names(r#"up{job="m"} == 0 and bool count(x)"#), ["up", "x"]);
}

/// `| `name` | type | … |` rows of docs/metrics.md: family → type.
pub fn documented_metrics(repo: &Path) -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(repo.join("docs/metrics.md")).expect("docs/metrics.md");
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), (*cells.get(2)?).to_owned()))
        })
        .collect()
}

/// Every panel (rows included) of a dashboard.
pub fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

/// A plan with every hook attached at its best rung (so every label exists).
fn full_plan() -> Vec<HookStatus> {
    monitor::plan::HOOKS
        .iter()
        .map(|h| HookStatus {
            hook: h.id,
            rung: h.candidates[0].rung,
            target: Some(h.candidates[0].target.to_owned()),
            programs: h.candidates[0]
                .programs
                .iter()
                .map(|p| ProbeRef::known(p.probe))
                .collect(),
            refused: Vec::new(),
        })
        .collect()
}

/// (families → type, sample names) of the exposition the daemon would serve.
fn exposition() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let hooks = full_plan();
    let coverage = monitor_detector::coverage(&hooks);
    let m = Metrics::new(&StaticInfo {
        hooks: &hooks,
        bpf_object: "atomic",
        kernel_release: "6.12.0",
        ring_bytes: 4 << 20,
        maps: &[("MM_SEQ", 65536), ("TASKS", 16384), ("VICTIMS", 4096)],
        recursion_misses: true,
        coverage: &coverage,
        impaired_hooks: &[],
    })
    .expect("metrics");
    let text = String::from_utf8(m.render()).expect("utf-8");
    let mut types = BTreeMap::new();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            if let (Some(n), Some(t)) = (w.next(), w.next()) {
                types.insert(n.to_owned(), t.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    (types, names)
}

/// Every family of `types` (family → type, from an exposition) is in
/// docs/metrics.md with that type, and every documented family is in `types`.
pub fn assert_metrics_documented(types: &BTreeMap<String, String>) {
    let documented = documented_metrics(&repo());
    for (family, ty) in types {
        assert_eq!(
            documented.get(family),
            Some(ty),
            "{family} ({ty}) must be documented in docs/metrics.md with its type"
        );
    }
    for family in documented.keys() {
        assert!(
            types.contains_key(family),
            "docs/metrics.md documents {family}, which is not exported"
        );
    }
}

#[test]
fn every_exported_family_is_documented_and_every_documented_one_exported() {
    let (types, _) = exposition();
    assert_metrics_documented(&types);
}

#[test]
fn dashboards_and_alert_rules_use_only_exported_metrics() {
    let (_, mut exported) = exposition();
    exported.insert("up".to_owned());
    let mut checked = 0;
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/mm-race-monitor.rules.yml"))
        .expect("rules");
    // `expr:` values, on the line or as a `|` block below it.
    let lines: Vec<&str> = rules.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = l.len() - l.trim_start().len();
        let expr = if rest.trim() == "|" {
            lines[i + 1..]
                .iter()
                .take_while(|n| n.len() - n.trim_start().len() > indent || n.trim().is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            rest.to_owned()
        };
        for name in promql_metric_names(&expr) {
            assert!(
                exported.contains(&name),
                "alert rule uses {name}, which is not exported: {expr}"
            );
        }
        checked += 1;
    }
    for entry in std::fs::read_dir(repo().join("dashboards")).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut exprs: Vec<String> = dash["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["query"]["query"].as_str().map(str::to_owned))
            .collect();
        for p in panels(&dash) {
            for t in p["targets"].as_array().into_iter().flatten() {
                exprs.extend(t["expr"].as_str().map(str::to_owned));
            }
        }
        for e in exprs {
            // Grafana's label_values(SELECTOR, LABEL): the selector's names.
            let query = e
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.rsplit_once(','))
                .map_or(e.as_str(), |(selector, _)| selector);
            // Grafana's `$var`/`${var}` are not metric names.
            let cleaned: String = query.replace("${", "{").replace('$', "_grafana_var_");
            for name in promql_metric_names(&cleaned) {
                if name.starts_with("_grafana_var_") {
                    continue;
                }
                assert!(
                    exported.contains(&name),
                    "{}: query uses {name}, which is not exported: {e}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} queries found");
}
