//! Every command-line type. Raw flags are turned into validated options by the
//! subcommand modules; nothing here touches the system.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{loader::FaultPrograms, plan::Rung};

#[derive(Debug, Parser)]
#[command(
    name = "monitor",
    version = crate::build_info::LONG_VERSION,
    about = "eBPF race monitor for Linux memory management",
    long_about = "Watches the windows in which known mm races happen (OOM reaper vs exit_mmap, \
                  faults after MMF_UNSTABLE, leftover migration entries, UFFDIO_COPY vs \
                  non-cooperative events), records the per-mm order of the events involved and \
                  flags the dangerous interleavings."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More diagnostics on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace race-window events for a while, print them, optionally record a trace file.
    #[command(after_help = "Examples:\n  \
        sudo monitor trace --duration 30s\n  \
        sudo monitor trace --comm postgres --output pg.trace.jsonl --quiet\n  \
        sudo monitor trace --format json --duration 1h30m | jq 'select(.ev == \"mark_victim\")'\n\n\
        Stops on Ctrl-C, SIGTERM or SIGHUP (detaching everything first); then\n\
        `monitor analyze FILE` replays a recording through the detector.")]
    Trace(TraceArgs),
    /// Run as a daemon: serve Prometheus metrics, log findings, optionally record.
    #[command(after_help = "Examples:\n  \
        sudo monitor run --config /etc/mm-race-monitor/monitor.toml\n  \
        sudo monitor run --listen 127.0.0.1:10416 --record /var/lib/mm-race-monitor\n  \
        monitor run --config monitor.toml --check-config\n\n\
        After attach it drops every capability and runs as --user (default:\n\
        mm-race-monitor, else nobody). See docs/deployment.md.")]
    Run(RunArgs),
    /// Show how each hook attaches on this kernel and which detector rules are covered.
    #[command(after_help = "Examples:\n  \
        sudo monitor check\n  \
        sudo monitor check --strict --format json\n  \
        sudo monitor check --btf /boot/vmlinux-$(uname -r).btf")]
    Check(CheckArgs),
    /// Run the race detector over recorded trace files.
    #[command(after_help = "Examples:\n  \
        monitor analyze pg.trace.jsonl\n  \
        monitor analyze /var/lib/mm-race-monitor/mm-race-*.trace.jsonl --format json\n\n\
        Exit status: 0 no findings, 1 findings, 2 error (errors win).")]
    Analyze(AnalyzeArgs),
    /// Packaging: write man pages and shell completions (see `cargo xtask dist`).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// `monitor generate` (hidden, for packaging).
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Write the man pages (section 8) into this directory.
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
    /// Write bash, zsh and fish completions into this directory.
    #[arg(long, value_name = "DIR")]
    pub completions: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for humans.
    Table,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RungArg {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl From<RungArg> for Rung {
    fn from(r: RungArg) -> Rung {
        match r {
            RungArg::Fentry => Rung::Fentry,
            RungArg::Kprobe => Rung::Kprobe,
            RungArg::Tracepoint => Rung::Tracepoint,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FaultProgramsArg {
    OnDemand,
    Always,
}

impl From<FaultProgramsArg> for FaultPrograms {
    fn from(f: FaultProgramsArg) -> FaultPrograms {
        match f {
            FaultProgramsArg::OnDemand => FaultPrograms::OnDemand,
            FaultProgramsArg::Always => FaultPrograms::Always,
        }
    }
}

/// How to load the BPF side (shared by the commands that attach).
#[derive(Clone, Debug, Args)]
pub struct LoadArgs {
    /// Kernel BTF to resolve struct layouts from (must describe the running kernel).
    #[arg(long, value_name = "FILE", default_value = "/sys/kernel/btf/vmlinux")]
    pub btf: PathBuf,
    /// Ring buffer size: a power of two from 4K to 1G (suffixes K, M, G).
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = parse_ring_size)]
    pub ring_size: u32,
    /// Use no hook rung better than this one (to test or benchmark fallbacks).
    #[arg(long, value_enum, default_value = "fentry")]
    pub max_rung: RungArg,
    /// Attach only these hooks (comma-separated names, see `monitor check`).
    #[arg(long, value_name = "HOOK,...", value_delimiter = ',')]
    pub hooks: Option<Vec<String>>,
    /// When to attach the page-fault programs: only while an OOM victim's
    /// mm may be unstable (where the kernel can attach them again), or always.
    #[arg(long, value_enum, default_value = "on-demand")]
    pub fault_programs: FaultProgramsArg,
    /// Testing only: make this hook's every candidate fail, as if the kernel
    /// lacked all its symbols and tracepoints.
    #[arg(long, value_name = "HOOK", hide = true)]
    pub test_break_hook: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// How long to trace, e.g. 30s, 500ms, 2m, 1h30m (default: until Ctrl-C).
    #[arg(long, short, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Only events of this process (thread-group id), about it, or on its mm.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only events of tasks with this exact name, about them, or on their mm.
    #[arg(long, value_name = "COMM")]
    pub comm: Option<String>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Record a trace file (JSON Lines, see docs/trace-format.md); created
    /// mode 0600, never over an existing file (see --force). A name ending
    /// in `.gz` or `.zst` writes it compressed.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing --output file (it is removed first, never written
    /// through).
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Print nothing per event on stdout (useful with --output).
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `monitor run`. Every option is also a config file key (`--config`); a flag
/// given on the command line overrides the file, so none has a clap default
/// (the defaults live in `daemon::config` and docs/deployment.md).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML, see docs/deployment.md); flags override it.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for /metrics and /healthz [default: 127.0.0.1:10416]; port 0 picks a free one.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Record rotating trace files into this directory.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Start a new trace file when the current one reaches this size [default: 64M].
    #[arg(long, value_name = "BYTES")]
    pub record_max_size: Option<String>,
    /// Start a new trace file when the current one is this old [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub record_max_age: Option<String>,
    /// Keep at most this many trace files, deleting the oldest [default: 10].
    #[arg(long, value_name = "N")]
    pub record_max_files: Option<u32>,
    /// Kernel BTF to resolve struct layouts from [default: /sys/kernel/btf/vmlinux].
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,
    /// Ring buffer size: a power of two from 4K to 1G [default: 4M].
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<String>,
    /// Use no hook rung better than this one [default: fentry].
    #[arg(long, value_enum)]
    pub max_rung: Option<RungArg>,
    /// Attach only these hooks (comma-separated names) [default: all].
    #[arg(long, value_name = "HOOK,...", value_delimiter = ',')]
    pub hooks: Option<Vec<String>>,
    /// When to attach the page-fault programs [default: on-demand].
    #[arg(long, value_enum)]
    pub fault_programs: Option<FaultProgramsArg>,
    /// Have the kernel count BPF program run time (BPF_ENABLE_STATS, 5.8+).
    #[arg(long)]
    pub bpf_stats: bool,
    /// Keep every capability after attach, and root (debugging; the default drops them).
    #[arg(long)]
    pub keep_capabilities: bool,
    /// Run as this user once attached: NAME, UID or UID:GID, or root
    /// [default: mm-race-monitor if it exists, else nobody].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Validate the configuration, print the effective one (TOML) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Testing only: hold the fault gate open this long after the last OOM
    /// victim activity instead of a minute (tests of its closing).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, hide = true)]
    pub test_fault_gate_hold: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Exit non-zero (1) if a hook is below its best rung or a rule is not fully covered.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Trace files recorded by `monitor trace --output` (or the daemon);
    /// gzip and zstd files are decompressed on the fly.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format on stdout (perfetto: Chrome trace-event JSON for Perfetto UI
    /// and chrome://tracing, see docs/report.md).
    #[arg(long, value_enum, default_value = "table")]
    pub format: AnalyzeFormat,
    /// Also write a self-contained HTML report (swimlanes per finding) to this file.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnalyzeFormat {
    /// Aligned columns for humans.
    Table,
    /// One JSON object per line.
    Json,
    /// Chrome trace-event JSON (Perfetto UI, chrome://tracing).
    Perfetto,
}

/// The longest duration accepted anywhere (a century: longer is a typo, and
/// adding it to a clock must never overflow).
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000); // 100 × 365.25 days

/// Parses a duration: `500ms`, `30s`, `2m`, `1h30m`, `1d` (humantime
/// syntax), or a plain number of seconds (`3`, `1.5`). At least 1ms, at
/// most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let examples = "examples: 500ms, 30s, 2m, 1h30m";
    if s.is_empty() {
        return Err(format!("an empty string is not a duration ({examples})"));
    }
    let plain = s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let with_unit = if plain { format!("{s}s") } else { s.to_owned() };
    let d = humantime::parse_duration(&with_unit).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => {
            format!("duration {s:?} is too long (at most 100 years)")
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown unit {unit:?} in {s:?} (use ms, s, m, h or d; {examples})")
        }
        _ => format!("{s:?} is not a duration ({examples})"),
    })?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be positive"));
    }
    if d < Duration::from_millis(1) {
        return Err(format!("duration {s:?} is shorter than 1ms"));
    }
    if d > MAX_DURATION {
        return Err(format!("duration {s:?} is too long (at most 100 years)"));
    }
    Ok(d)
}

/// Parses a size: a number of bytes with an optional `K`, `M` or `G` suffix
/// (powers of 1024, either case). The one size parser of the monitor.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let bad = || format!("{s:?} is not a size (examples: 65536, 512K, 64M, 1G)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses a ring buffer size: a power of two from 4K to 1G.
pub fn parse_ring_size(s: &str) -> Result<u32, String> {
    let bytes = parse_size(s)?;
    if !(4096..=1 << 30).contains(&bytes) || !bytes.is_power_of_two() {
        return Err(format!(
            "ring buffer size {:?} must be a power of two between 4K and 1G",
            s.trim()
        ));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("nan").is_err());
        assert!(parse_duration("1e3").is_err());
        assert!(parse_duration("0.0000000001s").is_err());
    }

    /// D4: huge values are one-line errors, never a panic.
    #[test]
    fn huge_durations_are_errors_not_panics() {
        for s in [
            "99999999999999999999",
            "9999999999999999h",
            "18446744073709551616ms",
            "9300000000000000000s",
            "101y",
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.contains("too long"), "{s}: {e}");
        }
        assert_eq!(parse_duration("100y").map(|d| d <= MAX_DURATION), Ok(true));
    }

    /// U3: `1G` is the stated maximum; multiplication never wraps.
    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("4K"), Ok(4096));
        assert_eq!(parse_ring_size("4M"), Ok(4 << 20));
        assert_eq!(parse_ring_size("1G"), Ok(1 << 30));
        assert_eq!(parse_ring_size("1024M"), Ok(1 << 30));
        assert!(parse_ring_size("3000").is_err());
        assert!(parse_ring_size("1K").is_err());
        assert!(parse_ring_size("2G").is_err());
        assert!(parse_ring_size("-4K").is_err());
        let e = parse_ring_size("18014398509481988K").expect_err("wraps on main");
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
