//! The dashboards against Grafana's own published schema types: the
//! `@grafana/schema` package (pinned in `dashboards/schema/package.json`,
//! installed with `npm ci` by `scripts/setup.sh --for-tests`) and the
//! TypeScript compiler. Each dashboard becomes a TypeScript module in which
//! the dashboard is a literal of type `Dashboard`, every panel a literal of
//! `Panel` with its plugin's published `Options` and `FieldConfig`, every
//! annotation an `AnnotationQuery`: a key the schema does not know, a value of
//! the wrong type or a missing required field fails the test. (The queries
//! themselves run against a real Prometheus in `daemon`.)
//!
//! Two things the dashboard schema leaves to the data source plugin are
//! declared here from Grafana's Prometheus plugin: its query model
//! (`expr`, `legendFormat`, `instant`, `range`, `format`, `interval`) and the
//! options its annotation support reads (`titleFormat`, `textFormat`,
//! `tagKeys`, `useValueForTime`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::{
    tidy::panels,
    util::{run, tempdir::TempDir},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn schema_dir() -> PathBuf {
    repo().join("dashboards/schema")
}

/// The pinned compiler, or `None` with the reason printed.
fn tsc() -> Option<PathBuf> {
    let tsc = schema_dir().join("node_modules/typescript/bin/tsc");
    if !tsc.exists() {
        eprintln!(
            "skipped: {} is missing (scripts/setup.sh --for-tests runs npm ci in dashboards/schema)",
            tsc.display()
        );
        return None;
    }
    Some(tsc)
}

const PANEL_TYPES: [(&str, &str); 4] = [
    ("stat", "stat/panelcfg/x/StatPanelCfg_types.gen"),
    (
        "timeseries",
        "timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen",
    ),
    ("heatmap", "heatmap/panelcfg/x/HeatmapPanelCfg_types.gen"),
    ("table", "table/panelcfg/x/TablePanelCfg_types.gen"),
];

const PRELUDE: &str = r#"import type { AnnotationQuery, Dashboard, DataQuery, Panel, RowPanel } from "@grafana/schema";

/** The Prometheus data source's query (its plugin's model, not the dashboard schema's). */
interface PromQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  format?: "time_series" | "table" | "heatmap";
  interval?: string;
}

/** What Grafana's Prometheus annotation support reads from the annotation. */
interface PromAnnotation extends AnnotationQuery<PromQuery> {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}

/**
 * The JSON form of a schema type: the schema's string enums (FieldColorModeId,
 * ThresholdsMode, GraphDrawStyle, ...) are their string values in a dashboard
 * file. Everything else, optionality and excess-property checks included, is
 * the schema's own.
 */
type Json<T> = T extends string
  ? string extends T ? string : `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** A panel of a plugin with published options: Grafana fills omitted options with defaults. */
type TypedPanel<O, F> = Json<
  Omit<Panel<unknown, F>, "targets" | "options"> & {
    targets: PromQuery[];
    options?: Partial<O>;
  }
>;

type Row = Json<Omit<RowPanel, "panels"> & { panels: never[] }>;

type DashboardModel = Json<
  Omit<Dashboard, "annotations" | "panels"> & {
    annotations: { list: PromAnnotation[] };
    panels: unknown[];
  }
>;
"#;

/// The TypeScript module that type-checks one dashboard.
fn module(dash: &Value) -> String {
    let mut ts = String::from(PRELUDE);
    for (ty, path) in PANEL_TYPES {
        ts.push_str(&format!(
            "import type * as {ty} from \"@grafana/schema/dist/esm/raw/composable/{path}\";\n"
        ));
    }
    let mut names = Vec::new();
    for (i, p) in panels(dash).into_iter().enumerate() {
        let ty = p["type"].as_str().unwrap_or("?");
        let annotation = if ty == "row" {
            "Row".to_owned()
        } else if PANEL_TYPES.iter().any(|(t, _)| *t == ty) {
            // Heatmaps and tables have no custom field config type of their own
            // beyond what FieldConfig allows; pass the plugin's where it exists.
            let field = match ty {
                "timeseries" | "heatmap" | "table" => format!("{ty}.FieldConfig"),
                _ => "Record<string, unknown>".to_owned(),
            };
            format!("TypedPanel<{ty}.Options, {field}>")
        } else {
            format!("never /* no published options type for panel type {ty} */")
        };
        let name = format!("panel_{i}");
        ts.push_str(&format!(
            "\n// {}\nexport const {name}: {annotation} = {};\n",
            p["title"].as_str().unwrap_or(""),
            serde_json::to_string_pretty(p).expect("json")
        ));
        names.push(name);
    }
    let mut top = dash.clone();
    top["panels"] = Value::Array(Vec::new());
    ts.push_str(&format!(
        "\nexport const dashboard: DashboardModel = {};\n",
        serde_json::to_string_pretty(&top).expect("json")
    ));
    ts
}

/// Compiles the module; `Err` holds the compiler's diagnostics.
fn check(tsc: &Path, dash: &Value) -> Result<(), String> {
    let dir = TempDir::new("grafana-schema");
    std::os::unix::fs::symlink(
        schema_dir().join("node_modules"),
        dir.path().join("node_modules"),
    )
    .expect("symlink node_modules");
    let file = dir.path().join("dashboard.ts");
    std::fs::write(&file, module(dash)).expect("write module");
    let out = run(Command::new("node").arg(tsc).args([
        "--noEmit",
        "--strict",
        "--target",
        "es2022",
        "--module",
        "esnext",
        "--moduleResolution",
        "bundler",
        "--skipLibCheck",
        "--pretty",
        "false",
        file.to_str().expect("utf-8"),
    ]));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let v = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, v));
        }
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn dashboards_match_grafanas_published_schema_types() {
    let Some(tsc) = tsc() else {
        return;
    };
    // The installed schema is the pinned one.
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(schema_dir().join("package.json")).expect("package.json"),
    )
    .expect("json");
    let installed: Value = serde_json::from_str(
        &std::fs::read_to_string(schema_dir().join("node_modules/@grafana/schema/package.json"))
            .expect("installed @grafana/schema"),
    )
    .expect("json");
    assert_eq!(
        installed["version"], pinned["devDependencies"]["@grafana/schema"],
        "run scripts/setup.sh --for-tests"
    );
    for (path, dash) in dashboards() {
        if let Err(e) = check(&tsc, &dash) {
            panic!(
                "{} does not match Grafana's schema types:\n{e}",
                path.display()
            );
        }
        // The finding annotations and the fleet table are there.
        let annos = dash["annotations"]["list"].as_array().expect("annotations");
        let color = |name: &str| {
            annos
                .iter()
                .find(|a| a["name"] == name)
                .map(|a| a["iconColor"].clone())
        };
        assert_eq!(color("Violations"), Some(Value::from("red")));
        assert!(
            color("Near misses").is_some_and(|c| c.as_str().is_some_and(|c| c.contains("0.45"))),
            "near misses are muted"
        );
        assert!(
            panels(&dash)
                .iter()
                .any(|p| p["type"] == "table" && p["title"] == "Findings per instance")
        );
    }
}

/// The schema check fails on what Grafana's schema forbids.
#[test]
fn schema_check_catches_broken_dashboards() {
    let Some(tsc) = tsc() else {
        return;
    };
    let (_, dash) = dashboards().remove(0);
    type Breakage = (&'static str, fn(&mut Value));
    let breakages: [Breakage; 5] = [
        ("gridPos", |d| {
            d["panels"][1]["gridPos"]["h"] = Value::from("four")
        }),
        ("colour", |d| d["panels"][1]["colour"] = Value::from("red")),
        ("graphMode", |d| {
            d["panels"][1]["options"]["graphMode"] = Value::from("sparkles")
        }),
        ("iconColor", |d| {
            d["annotations"]["list"][0]
                .as_object_mut()
                .expect("annotation")
                .remove("iconColor");
        }),
        ("refresh_rate", |d| d["refresh_rate"] = Value::from("30s")),
    ];
    for (what, broken) in breakages {
        let mut d = dash.clone();
        broken(&mut d);
        match check(&tsc, &d) {
            Ok(()) => panic!("a dashboard with a broken {what} passed the schema check"),
            Err(e) => assert!(e.contains("error TS"), "{what}: {e}"),
        }
    }
}
