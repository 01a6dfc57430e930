//! The daemon's configuration: an optional TOML file whose every key has a
//! default (documented in docs/deployment.md), overridden key by key by
//! command-line flags, then validated into a [`DaemonConfig`].
//!
//! Errors name where the bad value came from (`config file F:LINE:COL`, the
//! key, or the flag) in one line.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::caps::{self, User};
use crate::{
    cli::args::{RunArgs, parse_duration, parse_ring_size, parse_size},
    loader::{FaultPrograms, LoadOptions},
    plan::{self, Rung},
};

/// The default port. The Prometheus project's registry of exporter ports
/// (9100–9999) is fully allocated, so any port there collides with some
/// exporter; 10416 is outside it, below the Linux ephemeral range
/// (32768–60999), not in `/etc/services`, and clear of the well-known
/// neighbours (Webmin 10000, Zabbix 10050/10051, amanda 10080–10083, kubelet
/// and kube-proxy 10248–10259, NBD 10809).
pub const DEFAULT_PORT: u16 = 10416;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10416";

/// The file, as written. Every section and key is optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `IP:PORT` to serve `/metrics` and `/healthz` on.
    pub listen: String,
    pub bpf: BpfSection,
    pub record: RecordSection,
    pub metrics: MetricsSection,
    pub security: SecuritySection,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BpfSection {
    pub btf: PathBuf,
    pub ring_size: String,
    pub max_rung: String,
    /// Hooks to attach; empty means all of them.
    pub hooks: Vec<String>,
    /// Have the kernel count program run time and runs (BPF_ENABLE_STATS).
    pub run_stats: bool,
    /// When the page-fault programs are attached: `on-demand` (only while
    /// the fault gate is open, where the kernel can attach them again) or
    /// `always`.
    pub fault_programs: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordSection {
    /// Directory for rotating trace files; unset means no recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    pub max_file_size: String,
    pub max_file_age: String,
    pub max_files: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// How often BPF map fill and program statistics are read.
    pub map_fill_interval: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    /// Drop every capability not needed once the programs are attached.
    pub drop_capabilities: bool,
    /// The user to run as once attached: a name, `UID` or `UID:GID`, or
    /// `root` to stay root; unset: `mm-race-monitor` if it exists, else
    /// `nobody` (65534:65534 without `/etc/passwd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The OOM killer's adjustment for the daemon (-1000..=1000), set at
    /// start unless the current one is already lower: the monitor of OOM
    /// races must outlive the OOM kills it watches.
    pub oom_score_adj: i32,
}

/// The default `security.oom_score_adj`: far below any workload (0), still
/// above -1000 (never killed), so a runaway monitor can be killed last.
pub const DEFAULT_OOM_SCORE_ADJ: i32 = -900;

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            listen: DEFAULT_LISTEN.to_owned(),
            bpf: BpfSection::default(),
            record: RecordSection::default(),
            metrics: MetricsSection::default(),
            security: SecuritySection::default(),
        }
    }
}

impl Default for BpfSection {
    fn default() -> Self {
        let load = LoadOptions::default();
        BpfSection {
            btf: load.btf_path,
            ring_size: "4M".to_owned(),
            max_rung: load.max_rung.name().to_owned(),
            hooks: Vec::new(),
            run_stats: false,
            fault_programs: load.fault_programs.name().to_owned(),
        }
    }
}

impl Default for RecordSection {
    fn default() -> Self {
        RecordSection {
            dir: None,
            max_file_size: "64M".to_owned(),
            max_file_age: "1h".to_owned(),
            max_files: 10,
        }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            map_fill_interval: "10s".to_owned(),
        }
    }
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            drop_capabilities: true,
            user: None,
            oom_score_adj: DEFAULT_OOM_SCORE_ADJ,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config file {path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// `origin` is "--flag" or "config file F, key K" or "default".
    #[error("{origin}: {message}")]
    Value { origin: String, message: String },
}

/// Rotation limits for `--record`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    pub dir: PathBuf,
    pub max_file_bytes: u64,
    pub max_file_age: Duration,
    pub max_files: u32,
}

/// The validated configuration the daemon runs with.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub listen: SocketAddr,
    pub load: LoadOptions,
    pub bpf_stats: bool,
    pub record: Option<RecordOptions>,
    pub map_fill_every: Duration,
    pub drop_capabilities: bool,
    /// The user to switch to after attach (`None`: stay root).
    pub user: Option<User>,
    /// `security.user` was given (not the default).
    pub user_explicit: bool,
    /// `security.oom_score_adj`, checked to be in -1000..=1000.
    pub oom_score_adj: i32,
    /// The merged file + flags, for `--check-config`.
    pub effective: FileConfig,
}

/// A config file is a few hundred bytes; anything near this is not one.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and parses a config file; errors carry line and column.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let read = |err| ConfigError::Read {
        path: path.to_owned(),
        err,
    };
    let bytes = crate::secfs::read_regular(path, MAX_CONFIG_BYTES).map_err(read)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })?;
    parse(&text).map_err(|(line, column, message)| ConfigError::Parse {
        path: path.to_owned(),
        line,
        column,
        message,
    })
}

/// Parses TOML text; the error is (line, column, one-line message).
pub fn parse(text: &str) -> Result<FileConfig, (usize, usize, String)> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
        let message = e.message().trim().replace('\n', " ");
        (line, column, message)
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Parses `IP:PORT` (no host names: the daemon must not depend on DNS to start).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid listen address {s:?}: expected IP:PORT, e.g. {DEFAULT_LISTEN}, \
             0.0.0.0:{DEFAULT_PORT} or [::]:{DEFAULT_PORT}"
        )
    })
}

/// Where a value came from, for error messages.
struct Origin<'a> {
    file: Option<&'a Path>,
}

impl Origin<'_> {
    fn of(&self, flag: Option<&str>, key: &str) -> String {
        match (flag, self.file) {
            (Some(flag), _) => flag.to_owned(),
            (None, Some(path)) => format!("config file {}, key {key}", path.display()),
            (None, None) => format!("default {key}"),
        }
    }
}

/// Merges the file (if any) and the flags, then validates everything.
pub fn resolve(args: &RunArgs) -> Result<DaemonConfig, ConfigError> {
    let cfg = match &args.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    merge(cfg, args.config.as_deref(), args)
}

/// Applies the flags to the file's configuration (read from `file`, for
/// error messages) and validates the result.
pub fn merge(
    mut cfg: FileConfig,
    file: Option<&Path>,
    args: &RunArgs,
) -> Result<DaemonConfig, ConfigError> {
    let origin = Origin { file };
    // Remember which keys the command line set, to blame the right source.
    let flag = |set: bool, name: &'static str| set.then_some(name);
    let f_listen = flag(args.listen.is_some(), "--listen");
    let f_ring = flag(args.ring_size.is_some(), "--ring-size");
    let f_hooks = flag(args.hooks.is_some(), "--hooks");
    let f_size = flag(args.record_max_size.is_some(), "--record-max-size");
    let f_age = flag(args.record_max_age.is_some(), "--record-max-age");
    let f_files = flag(args.record_max_files.is_some(), "--record-max-files");

    if let Some(v) = &args.listen {
        cfg.listen.clone_from(v);
    }
    if let Some(v) = &args.btf {
        cfg.bpf.btf.clone_from(v);
    }
    if let Some(v) = &args.ring_size {
        cfg.bpf.ring_size.clone_from(v);
    }
    if let Some(v) = args.max_rung {
        cfg.bpf.max_rung = Rung::from(v).name().to_owned();
    }
    if let Some(v) = &args.hooks {
        cfg.bpf.hooks.clone_from(v);
    }
    if let Some(v) = args.fault_programs {
        cfg.bpf.fault_programs = FaultPrograms::from(v).name().to_owned();
    }
    cfg.bpf.run_stats |= args.bpf_stats;
    if let Some(v) = &args.record {
        cfg.record.dir = Some(v.clone());
    }
    if let Some(v) = &args.record_max_size {
        cfg.record.max_file_size.clone_from(v);
    }
    if let Some(v) = &args.record_max_age {
        cfg.record.max_file_age.clone_from(v);
    }
    if let Some(v) = args.record_max_files {
        cfg.record.max_files = v;
    }
    if args.keep_capabilities {
        cfg.security.drop_capabilities = false;
    }
    let f_user = flag(args.user.is_some(), "--user");
    if let Some(v) = &args.user {
        cfg.security.user = Some(v.clone());
    }

    let bad = |origin: String, message: String| ConfigError::Value { origin, message };

    let listen = parse_listen(&cfg.listen).map_err(|m| bad(origin.of(f_listen, "listen"), m))?;
    let ring_bytes = parse_ring_size(&cfg.bpf.ring_size)
        .map_err(|m| bad(origin.of(f_ring, "bpf.ring_size"), m))?;
    let max_rung = Rung::parse(&cfg.bpf.max_rung).ok_or_else(|| {
        bad(
            origin.of(None, "bpf.max_rung"),
            format!(
                "unknown rung {:?} (use fentry, kprobe or tracepoint)",
                cfg.bpf.max_rung
            ),
        )
    })?;
    let fault_programs = FaultPrograms::parse(&cfg.bpf.fault_programs).ok_or_else(|| {
        bad(
            origin.of(None, "bpf.fault_programs"),
            format!(
                "unknown value {:?} (use on-demand or always)",
                cfg.bpf.fault_programs
            ),
        )
    })?;
    for h in &cfg.bpf.hooks {
        if plan::hook(h).is_none() {
            let known: Vec<&str> = plan::HOOKS.iter().map(|h| h.id.name()).collect();
            return Err(bad(
                origin.of(f_hooks, "bpf.hooks"),
                format!("unknown hook {h:?} (known: {})", known.join(", ")),
            ));
        }
    }
    let map_fill_every = parse_duration(&cfg.metrics.map_fill_interval)
        .map_err(|m| bad(origin.of(None, "metrics.map_fill_interval"), m))?;
    if map_fill_every < Duration::from_secs(1) {
        return Err(bad(
            origin.of(None, "metrics.map_fill_interval"),
            "must be at least 1s (reading map fill walks every key)".to_owned(),
        ));
    }
    let max_file_bytes = parse_size(&cfg.record.max_file_size)
        .map_err(|m| bad(origin.of(f_size, "record.max_file_size"), m))?;
    if max_file_bytes < 4096 {
        return Err(bad(
            origin.of(f_size, "record.max_file_size"),
            format!("{:?} is too small (at least 4K)", cfg.record.max_file_size),
        ));
    }
    let max_file_age = parse_duration(&cfg.record.max_file_age)
        .map_err(|m| bad(origin.of(f_age, "record.max_file_age"), m))?;
    if cfg.record.max_files == 0 {
        return Err(bad(
            origin.of(f_files, "record.max_files"),
            "must be at least 1".to_owned(),
        ));
    }
    // --keep-capabilities is for debugging: it keeps root as well.
    let user = if cfg.security.drop_capabilities {
        caps::resolve_user(cfg.security.user.as_deref(), Path::new("/etc/passwd"))
            .map_err(|m| bad(origin.of(f_user, "security.user"), m))?
    } else {
        None
    };
    if !(-1000..=1000).contains(&cfg.security.oom_score_adj) {
        return Err(bad(
            origin.of(None, "security.oom_score_adj"),
            format!(
                "{} is out of range (-1000 to 1000)",
                cfg.security.oom_score_adj
            ),
        ));
    }
    let record = cfg.record.dir.as_ref().map(|dir| RecordOptions {
        dir: dir.clone(),
        max_file_bytes,
        max_file_age,
        max_files: cfg.record.max_files,
    });
    Ok(DaemonConfig {
        listen,
        load: LoadOptions {
            btf_path: cfg.bpf.btf.clone(),
            ring_bytes,
            max_rung,
            only_hooks: (!cfg.bpf.hooks.is_empty()).then(|| cfg.bpf.hooks.clone()),
            break_hooks: Vec::new(),
            fault_programs,
            fault_gate_hold: args
                .test_fault_gate_hold
                .unwrap_or(LoadOptions::default().fault_gate_hold),
        },
        bpf_stats: cfg.bpf.run_stats,
        record,
        map_fill_every,
        drop_capabilities: cfg.security.drop_capabilities,
        user,
        user_explicit: cfg.security.user.is_some(),
        oom_score_adj: cfg.security.oom_score_adj,
        effective: cfg,
    })
}

impl FileConfig {
    /// The configuration as TOML (for `--check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn args(argv: &[&str]) -> RunArgs {
        let mut full = vec!["monitor", "run"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).expect("valid flags").command {
            Command::Run(a) => a,
            _ => panic!("not run"),
        }
    }

    #[test]
    fn defaults_are_safe() {
        let c = resolve(&args(&[])).expect("defaults validate");
        assert_eq!(c.listen.to_string(), "127.0.0.1:10416");
        assert!(
            c.listen.ip().is_loopback(),
            "never listen widely by default"
        );
        assert_eq!(c.load.ring_bytes, 4 << 20);
        assert!(c.record.is_none());
        assert!(c.drop_capabilities);
        assert_eq!(c.map_fill_every, Duration::from_secs(10));
    }

    /// The documented example config is exactly the defaults (so the docs
    /// cannot drift from the code), and it parses.
    #[test]
    fn shipped_example_config_matches_defaults() {
        let text = include_str!("../../../deploy/monitor.toml");
        let parsed = parse(text).unwrap_or_else(|e| panic!("deploy/monitor.toml: {e:?}"));
        let mut expected = FileConfig::default();
        expected.record.dir = parsed.record.dir.clone();
        assert_eq!(parsed, expected);
        assert_eq!(
            parse(&FileConfig::default().to_toml()),
            Ok(FileConfig::default())
        );
    }

    #[test]
    fn parse_errors_have_line_and_column() {
        let (line, col, msg) = parse("listen = \"127.0.0.1:1\"\n[bpf]\nring_sise = \"4M\"\n")
            .expect_err("unknown key");
        assert_eq!((line, col), (3, 1));
        assert!(msg.contains("unknown field `ring_sise`"), "{msg}");
        let (line, _, msg) = parse("[bpf]\nring_size = 5\n").expect_err("bad type");
        assert_eq!(line, 2);
        assert!(msg.contains("invalid type"), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(parse("listen = ").is_err());
    }

    #[test]
    fn flags_override_the_file_and_errors_blame_the_source() {
        let dir = std::env::temp_dir().join(format!("monitor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let file = dir.join("m.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9999\"\n[bpf]\nring_size = \"3000\"\n",
        )
        .expect("write");
        let f = file.to_str().expect("utf-8");
        let err = resolve(&args(&["--config", f])).expect_err("bad ring size");
        assert!(
            err.to_string()
                .starts_with(&format!("config file {f}, key bpf.ring_size: ")),
            "{err}"
        );
        let ok = resolve(&args(&[
            "--config",
            f,
            "--ring-size",
            "64K",
            "--listen",
            "[::1]:0",
        ]))
        .expect("flags fix it");
        assert_eq!(ok.load.ring_bytes, 65536);
        assert_eq!(ok.listen.to_string(), "[::1]:0");
        std::fs::write(&file, "[bpf]\nfault_programs = \"sometimes\"\n").expect("write");
        let err = resolve(&args(&["--config", f])).expect_err("bad fault_programs");
        assert_eq!(
            err.to_string(),
            format!(
                "config file {f}, key bpf.fault_programs: unknown value \"sometimes\" \
                 (use on-demand or always)"
            )
        );
        let ok = resolve(&args(&["--config", f, "--fault-programs", "always"]))
            .expect("the flag fixes it");
        assert_eq!(ok.load.fault_programs, FaultPrograms::Always);
        assert_eq!(
            resolve(&args(&[])).expect("defaults").load.fault_programs,
            FaultPrograms::OnDemand
        );
        let err = resolve(&args(&["--listen", "localhost:80"])).expect_err("no DNS");
        assert!(
            err.to_string()
                .starts_with("--listen: invalid listen address \"localhost:80\""),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
