//! Every metric the daemon exports, in one place (documented one by one in
//! docs/metrics.md; a host test checks that both lists agree).
//!
//! Rules: labels are bounded (hook, program, event kind, rule, window, map,
//! reason names; never a pid or an mm pointer), and every series exists from
//! the start with its zero value, so dashboards and alerts work before the
//! first event. Counters mirrored from BPF per-CPU arrays are advanced by the
//! difference between two reads (the BPF counts only grow).

use std::sync::Mutex;

use monitor_common::{
    catalogue::{EventId, HookId, ProbeId, ProbeKind, Rung},
    maps::{CounterReason, Stat},
};
use monitor_detector::{
    CoverageState, DetectorStats, FindingKind, RuleCoverage, Severity, Window,
    tracefile::HookStatus,
};
use prometheus::{
    Counter, CounterVec, Encoder as _, Gauge, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::loader::Counters;

/// Prefix of every metric of the monitor (process metrics use the standard
/// `process_` names).
pub const NAMESPACE: &str = "mmrace";

/// The exposition format Prometheus scrapes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `rung` label value of `mmrace_hook_rung` for hooks left out by
/// configuration (`bpf.hooks`); the others are the catalogue's rungs.
pub const EXCLUDED: &str = "excluded";

/// Values of the `reason` label of `mmrace_events_lost_total`.
pub const LOSS_REASONS: [CounterReason; 3] = [
    CounterReason::RingbufFull,
    CounterReason::SeqMapFull,
    CounterReason::ReadError,
];

/// The `hook` label of event kind `id`'s counters: its hook, or the hooks
/// that share it joined by `+`, in catalogue order (the four userfaultfd
/// change hooks all emit `uffd_change_begin`). The BPF side counts records
/// per event kind, not per program.
pub fn event_hook_label(id: EventId) -> String {
    let hooks: Vec<&str> = id.hooks().map(HookId::name).collect();
    hooks.join("+")
}

/// Values of the `what` label of `mmrace_detector_forgotten_total`.
pub const FORGOTTEN: [&str; 4] = ["mms", "streams", "windows", "batches"];

/// Bucket bounds of the window histograms: 1 µs to ~17 s, ×4 apart (reaping
/// takes milliseconds, a UFFDIO_COPY microseconds, a stuck window seconds).
pub fn window_buckets() -> Vec<f64> {
    (0..13).map(|i| 1e-6 * 4f64.powi(i)).collect()
}

/// Facts fixed at start-up that decide which series exist.
pub struct StaticInfo<'a> {
    pub hooks: &'a [HookStatus],
    pub bpf_object: &'a str,
    pub kernel_release: &'a str,
    pub ring_bytes: u32,
    /// Map name and `max_entries` of the maps whose fill is reported.
    pub maps: &'a [(&'static str, u32)],
    /// The kernel reports `recursion_misses` in `bpf_prog_info` (5.12+).
    pub recursion_misses: bool,
    /// Each rule's coverage under this hook plan.
    pub coverage: &'a [RuleCoverage],
    /// Hooks attached but known not to see what they should (e.g. the
    /// UFFDIO_COPY hook when kernel addresses are hidden).
    pub impaired_hooks: &'a [&'a str],
}

/// The coverage states, label values of `mmrace_rule_coverage`.
pub const COVERAGE_STATES: [CoverageState; 3] = [
    CoverageState::Full,
    CoverageState::Partial,
    CoverageState::Disabled,
];

pub struct Metrics {
    pub registry: Registry,
    pub findings: IntCounterVec,
    pub unstable_findings: IntCounterVec,
    pub windows: HistogramVec,
    pub events_produced: IntCounterVec,
    pub events_delivered: IntCounterVec,
    pub events_lost: IntCounterVec,
    pub decode_errors: IntCounter,
    pub kmsg_write_failures: IntCounter,
    pub bpf_stats: IntCounterVec,
    /// Every UFFDIO_COPY the kernel counted, recorded or not, by result.
    pub uffd_copies: IntCounterVec,
    pub fault_gate_open: IntGauge,
    pub fault_gate_opens: IntCounter,
    pub fault_programs: FaultProgramMetrics,
    pub program_hits: IntCounterVec,
    pub program_run_seconds: CounterVec,
    pub program_runs: IntCounterVec,
    pub program_recursion_misses: Option<IntCounterVec>,
    /// The kernel's own miss count of each kprobe/kretprobe attachment.
    pub kprobe_missed: IntCounterVec,
    pub kprobe_missed_unreadable: IntGauge,
    pub run_stats_enabled: IntGauge,
    pub hook_rung: IntGaugeVec,
    pub hook_degraded: IntGaugeVec,
    pub rule_coverage: IntGaugeVec,
    pub detector_tracked_mms: IntGauge,
    pub detector_forgotten: IntCounterVec,
    pub detector_records_missing: IntCounter,
    pub map_entries: IntGaugeVec,
    /// `STASH` slots by the hook whose entry program stored them.
    pub stash_slots: IntGaugeVec,
    pub map_max_entries: IntGaugeVec,
    pub record_bytes: IntCounter,
    pub record_files: IntCounter,
    pub record_errors: IntCounter,
    pub record_dropped: IntCounter,
    /// Lines the daemon could not write to stdout/stderr (reader too slow).
    pub output_dropped: IntCounterVec,
    /// The `hook` label of each event kind's counters.
    event_labels: Vec<(EventId, String)>,
    process: ProcessMetrics,
}

/// The page-fault programs attached on demand (`session.rs`).
pub struct FaultProgramMetrics {
    pub on_demand: IntGauge,
    pub attached: IntGauge,
    pub attaches: IntCounter,
    pub failures: IntCounter,
    pub delay_seconds: Counter,
    pub last_delay_seconds: Gauge,
}

impl FaultProgramMetrics {
    fn new(r: &Registry) -> prometheus::Result<FaultProgramMetrics> {
        Ok(FaultProgramMetrics {
            on_demand: reg(
                r,
                IntGauge::with_opts(opts(
                    "fault_programs_on_demand",
                    "1 if the page-fault programs are attached only while the fault gate is \
                     open (bpf.fault_programs = on-demand, on the fentry or tracepoint rung \
                     of Linux 5.18+), 0 if they stay attached.",
                ))?,
            ),
            attached: reg(
                r,
                IntGauge::with_opts(opts(
                    "fault_programs_attached",
                    "1 while the page-fault programs are attached.",
                ))?,
            ),
            attaches: reg(
                r,
                IntCounter::with_opts(opts(
                    "fault_programs_attaches_total",
                    "Times the page-fault programs were attached after the fault gate opened.",
                ))?,
            ),
            failures: reg(
                r,
                IntCounter::with_opts(opts(
                    "fault_programs_attach_failures_total",
                    "Attaches of the page-fault programs the kernel refused (retried every \
                     second; faults on reaped mms go unseen meanwhile).",
                ))?,
            ),
            delay_seconds: reg(
                r,
                Counter::with_opts(opts(
                    "fault_programs_attach_delay_seconds_total",
                    "Sum over attaches of the time from the fault gate's opening in the kernel \
                     to the page-fault programs attached; divide by \
                     mmrace_fault_programs_attaches_total for the mean.",
                ))?,
            ),
            last_delay_seconds: reg(
                r,
                Gauge::with_opts(opts(
                    "fault_programs_last_attach_delay_seconds",
                    "The same delay for the last attach.",
                ))?,
            ),
        })
    }

    fn observe(&self, prev: &Counters, now: &Counters) {
        let (p, n) = (&prev.fault_programs, &now.fault_programs);
        self.on_demand.set(i64::from(n.on_demand));
        self.attached.set(i64::from(n.attached));
        self.attaches.inc_by(n.attaches.saturating_sub(p.attaches));
        self.failures.inc_by(n.failures.saturating_sub(p.failures));
        let d = n.delay_ns_sum.saturating_sub(p.delay_ns_sum);
        if d > 0 {
            self.delay_seconds.inc_by(d as f64 / 1e9);
        }
        if n.attaches > 0 {
            self.last_delay_seconds.set(n.last_delay_ns as f64 / 1e9);
        }
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

/// Registers a collector; names are static and unique, so this cannot fail
/// unless two families in this file share a name (caught by every test).
fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        panic!("metric registration: {e}");
    }
    c
}

impl Metrics {
    pub fn new(info: &StaticInfo<'_>) -> prometheus::Result<Metrics> {
        let r = Registry::new();

        let build_info = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "build_info",
                    "Always 1; labels describe the monitor build and the running kernel.",
                ),
                &[
                    "version",
                    "revision",
                    "build_date",
                    "wire_version",
                    "bpf_object",
                    "kernel",
                ],
            )?,
        );
        build_info
            .with_label_values(&[
                crate::build_info::VERSION,
                crate::build_info::GIT_REV,
                crate::build_info::BUILD_DATE,
                &monitor_common::maps::WIRE_VERSION.to_string(),
                info.bpf_object,
                info.kernel_release,
            ])
            .set(1);

        let findings = reg(
            &r,
            IntCounterVec::new(
                opts("findings_total", "Race findings reported by the detector."),
                &["kind", "severity"],
            )?,
        );
        for k in FindingKind::ALL {
            for s in Severity::ALL {
                findings.with_label_values(&[k.name(), s.name()]);
            }
        }

        let unstable_findings = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "unstable_fault_findings_total",
                    "unstable_mm_fault findings by the accessor whose faults decided them \
                     (kthread, remote, owner_kernel, owner_user; a finding with several \
                     counts once for each).",
                ),
                &["accessor", "severity"],
            )?,
        );
        for a in monitor_detector::Accessor::ALL {
            for s in Severity::ALL {
                unstable_findings.with_label_values(&[a.name(), s.name()]);
            }
        }

        let windows = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "window_duration_seconds",
                    "How long race windows stayed open (from the kernel's event timestamps).",
                )
                .namespace(NAMESPACE)
                .buckets(window_buckets()),
                &["window"],
            )?,
        );
        for w in Window::ALL {
            windows.with_label_values(&[w.name()]);
        }

        let events_produced = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "events_produced_total",
                    "Records the BPF programs decided to emit, by hook and event kind.",
                ),
                &["hook", "event"],
            )?,
        );
        // Kinds no program writes any more (read from older traces) get no series.
        let event_labels: Vec<(EventId, String)> = EventId::ALL
            .iter()
            .filter(|id| !monitor_common::catalogue::LEGACY_EVENTS.contains(id))
            .map(|id| (*id, event_hook_label(*id)))
            .collect();
        for (id, hook) in &event_labels {
            events_produced.with_label_values(&[hook, id.name()]);
        }
        let events_delivered = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "events_delivered_total",
                    "Records read from the ring buffer and decoded, by the hook of the program \
                     that produced them.",
                ),
                &["hook"],
            )?,
        );
        let events_lost = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "events_lost_total",
                    "Records, or evidence in them, lost: ringbuf_full (record dropped), \
                     seq_map_full (delivered without its per-mm sequence number), read_error \
                     (delivered with fields the kernel could not read).",
                ),
                &["hook", "reason"],
            )?,
        );
        // Loss is labelled like production (by the hooks of the event kind);
        // every hook and every shared label exists from the start.
        let mut loss_labels: Vec<&str> = HookId::ALL.iter().map(|h| h.name()).collect();
        for (_, hook) in &event_labels {
            if !loss_labels.contains(&hook.as_str()) {
                loss_labels.push(hook);
            }
        }
        for h in HookId::ALL {
            events_delivered.with_label_values(&[h.name()]);
        }
        for hook in loss_labels {
            for reason in LOSS_REASONS {
                events_lost.with_label_values(&[hook, reason.name()]);
            }
        }
        let decode_errors = reg(
            &r,
            IntCounter::with_opts(opts(
                "decode_errors_total",
                "Records read from the ring buffer that could not be decoded (dropped).",
            ))?,
        );
        let kmsg_write_failures = reg(
            &r,
            IntCounter::with_opts(opts(
                "kmsg_write_failures_total",
                "Violation findings that could not be written to the kernel log (/dev/kmsg).",
            ))?,
        );
        let bpf_stats = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "bpf_stats_total",
                    "In-kernel aggregates: migration PTEs set/removed, faults examined by the \
                     filter, task scratch map full, ...",
                ),
                &["stat"],
            )?,
        );
        let uffd_copies = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "uffd_copies_total",
                    "UFFDIO_COPY calls counted per CPU in the kernel, recorded or not, by result: \
                     ok, eexist, eagain, other. The ones that needed a record (a change window \
                     on their context, -EAGAIN) are also \
                     mmrace_events_produced_total{event=\"uffd_copy_done\"}.",
                ),
                &["result"],
            )?,
        );
        for s in Stat::ALL {
            match s.uffd_copy_result() {
                Some(result) => uffd_copies.with_label_values(&[result]),
                None => bpf_stats.with_label_values(&[s.name()]),
            };
        }
        let fault_gate_open = reg(
            &r,
            IntGauge::with_opts(opts(
                "fault_gate_open",
                "1 while the page-fault programs examine faults (an OOM victim's mm may be \
                 unstable), 0 while they return at once.",
            ))?,
        );
        let fault_gate_opens = reg(
            &r,
            IntCounter::with_opts(opts(
                "fault_gate_opens_total",
                "Times a BPF program opened the fault gate (OOM victim marked, reap start, \
                 process_mrelease).",
            ))?,
        );

        let fault_programs = FaultProgramMetrics::new(&r)?;
        let program_hits = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "program_hits_total",
                    "Invocations of each BPF program (counted by the program itself).",
                ),
                &["hook", "program"],
            )?,
        );
        let program_run_seconds = reg(
            &r,
            CounterVec::new(
                opts(
                    "program_run_seconds_total",
                    "CPU time the kernel spent in each BPF program (only while run-time \
                     statistics are enabled, see mmrace_bpf_run_stats_enabled).",
                ),
                &["hook", "program"],
            )?,
        );
        let program_runs = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "program_runs_total",
                    "Runs of each BPF program counted by the kernel (only while run-time \
                     statistics are enabled).",
                ),
                &["hook", "program"],
            )?,
        );
        let program_recursion_misses = if info.recursion_misses {
            Some(reg(
                &r,
                IntCounterVec::new(
                    opts(
                        "program_recursion_misses_total",
                        "Times the kernel skipped a BPF program because it was already running \
                         on that CPU (bpf_prog_info.recursion_misses, kernel 5.12+).",
                    ),
                    &["hook", "program"],
                )?,
            ))
        } else {
            None
        };
        let kprobe_missed = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "kprobe_missed_total",
                    "Times the kernel did not run a kprobe-rung BPF program: the kprobe fired \
                     while another ran on that CPU, or a kretprobe had no free instance \
                     (maxactive). The kernel's nmissed of the attachment \
                     (bpf_link_info.perf_event.kprobe.missed, kernel 6.7+).",
                ),
                &["hook", "program"],
            )?,
        );
        let kprobe_missed_unreadable = reg(
            &r,
            IntGauge::with_opts(opts(
                "kprobe_missed_unreadable",
                "Attached kprobe/kretprobe programs whose miss count the kernel does not \
                 report (before 6.7): their mmrace_kprobe_missed_total stays 0.",
            ))?,
        );
        for p in ProbeId::ALL {
            let labels = [p.hook().name(), p.program()];
            if matches!(p.kind(), ProbeKind::KProbe | ProbeKind::KRetProbe) {
                kprobe_missed.with_label_values(&labels);
            }
            program_hits.with_label_values(&labels);
            program_run_seconds.with_label_values(&labels);
            program_runs.with_label_values(&labels);
            if let Some(m) = &program_recursion_misses {
                m.with_label_values(&labels);
            }
        }
        let run_stats_enabled = reg(
            &r,
            IntGauge::with_opts(opts(
                "bpf_run_stats_enabled",
                "1 if the kernel counts BPF program run time (kernel.bpf_stats_enabled or \
                 monitor run --bpf-stats), else 0.",
            ))?,
        );

        let hook_rung = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "hook_rung",
                    "1 for the rung each hook is attached at (fentry, kprobe, tracepoint), \
                     unavailable, or excluded by configuration; 0 for the others.",
                ),
                &["hook", "rung"],
            )?,
        );
        let hook_degraded = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "hook_degraded",
                    "1 if a hook is unavailable or attached below the best rung its plan has.",
                ),
                &["hook"],
            )?,
        );
        // Degraded as `monitor check --strict` sees it (below the hook's best
        // rung, or unavailable), or attached but impaired; excluded hooks are
        // not degraded.
        let below_best: Vec<HookId> = crate::cli::check::degraded(info.hooks)
            .iter()
            .map(|s| s.hook)
            .collect();
        for h in HookId::ALL {
            let status = info.hooks.iter().find(|s| s.hook == *h);
            let rung = status.map_or(EXCLUDED, |s| s.rung.name());
            let candidates = Rung::ALL.iter().map(|r| r.name()).chain([EXCLUDED]);
            for candidate in candidates {
                hook_rung
                    .with_label_values(&[h.name(), candidate])
                    .set(i64::from(candidate == rung));
            }
            let degraded = status.is_some()
                && (below_best.contains(h) || info.impaired_hooks.contains(&h.name()));
            hook_degraded
                .with_label_values(&[h.name()])
                .set(i64::from(degraded));
        }

        let rule_coverage = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "rule_coverage",
                    "1 for each rule's coverage state (full, partial, disabled) given the \
                     hooks attached; 0 for the others.",
                ),
                &["rule", "state"],
            )?,
        );

        for cov in info.coverage {
            for state in COVERAGE_STATES {
                rule_coverage
                    .with_label_values(&[cov.rule.name(), state.name()])
                    .set(i64::from(cov.state == state));
            }
        }
        let detector_tracked_mms = reg(
            &r,
            IntGauge::with_opts(opts(
                "detector_tracked_mms",
                "Mm generations the detector holds rule state for (bounded by its limits).",
            ))?,
        );
        let detector_forgotten = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "detector_forgotten_total",
                    "State the detector had to forget at its memory limits: mms (least \
                     recently used mm generations), streams (sequence streams), windows (open \
                     race windows dropped with them), batches (migration batches not tracked).",
                ),
                &["what"],
            )?,
        );
        for what in FORGOTTEN {
            detector_forgotten.with_label_values(&[what]);
        }
        let detector_records_missing = reg(
            &r,
            IntCounter::with_opts(opts(
                "detector_records_missing_total",
                "Records missing from per-mm sequences (gaps the detector declared after its \
                 reorder window): loss as seen by the detector.",
            ))?,
        );

        let map_entries = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "bpf_map_entries",
                    "Entries in the monitor's BPF hash maps (MM_SEQ: mms tracked in the kernel; \
                     TASKS, VICTIMS, STASH: per-task state, removed when the task is freed; \
                     EXITING: mms inside exit_mmap; UFFD_CTX: userfaultfd contexts with \
                     window state), \
                     read every metrics.map_fill_interval.",
                ),
                &["map"],
            )?,
        );
        let stash_slots = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "bpf_stash_slots",
                    "STASH entries by the hook whose entry program stored them (a slot lives \
                     from a function's entry to its return; slots that stay name the hook \
                     that leaks them), read with mmrace_bpf_map_entries.",
                ),
                &["hook"],
            )?,
        );
        let map_max_entries = reg(
            &r,
            IntGaugeVec::new(
                opts("bpf_map_max_entries", "Capacity of each BPF hash map."),
                &["map"],
            )?,
        );
        // Any attached hook may keep entry → return slots (a function rung's
        // entry/return pair, a syscall's enter/exit tracepoints): its series
        // exists from the start, at 0.
        for h in info.hooks.iter().filter(|h| h.is_attached()) {
            stash_slots.with_label_values(&[h.hook.name()]);
        }
        for (name, max) in info.maps {
            map_entries.with_label_values(&[name]);
            map_max_entries
                .with_label_values(&[name])
                .set(i64::from(*max));
        }
        let ring = reg(
            &r,
            IntGauge::with_opts(opts(
                "ring_buffer_bytes",
                "Size of the BPF ring buffer carrying the records.",
            ))?,
        );
        ring.set(i64::from(info.ring_bytes));

        let record_bytes = reg(
            &r,
            IntCounter::with_opts(opts(
                "record_bytes_total",
                "Bytes written to trace files under --record.",
            ))?,
        );
        let record_files = reg(
            &r,
            IntCounter::with_opts(opts(
                "record_files_total",
                "Trace files started under --record (rotation starts a new one).",
            ))?,
        );
        let record_errors = reg(
            &r,
            IntCounter::with_opts(opts(
                "record_errors_total",
                "Failed writes, rotations or deletions of trace files under --record.",
            ))?,
        );
        let record_dropped = reg(
            &r,
            IntCounter::with_opts(opts(
                "record_events_dropped_total",
                "Events that could not be written to the trace file (writes failing beyond \
                 the recorder's buffer); the file carries a loss line for them.",
            ))?,
        );
        let output_dropped = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "output_lines_dropped_total",
                    "Lines not written to stdout (findings) or stderr (diagnostics) because \
                     the reader did not keep up with the bounded queue.",
                ),
                &["stream"],
            )?,
        );
        for stream in ["stdout", "stderr"] {
            output_dropped.with_label_values(&[stream]);
        }

        let process = ProcessMetrics::new(&r)?;
        Ok(Metrics {
            registry: r,
            findings,
            unstable_findings,
            windows,
            events_produced,
            events_delivered,
            events_lost,
            decode_errors,
            kmsg_write_failures,
            bpf_stats,
            uffd_copies,
            fault_gate_open,
            fault_gate_opens,
            fault_programs,
            program_hits,
            program_run_seconds,
            program_runs,
            program_recursion_misses,
            kprobe_missed,
            kprobe_missed_unreadable,
            run_stats_enabled,
            hook_rung,
            hook_degraded,
            rule_coverage,
            detector_tracked_mms,
            detector_forgotten,
            detector_records_missing,
            map_entries,
            stash_slots,
            map_max_entries,
            record_bytes,
            record_files,
            record_errors,
            record_dropped,
            output_dropped,
            event_labels,
            process,
        })
    }

    /// Mirrors the output streams' drop counters (`crate::output`).
    pub fn observe_output(&self) {
        for s in [&crate::output::STDOUT, &crate::output::STDERR] {
            let c = self.output_dropped.with_label_values(&[s.name()]);
            c.inc_by(s.dropped().saturating_sub(c.get()));
        }
    }

    /// Advances the counters mirrored from the BPF maps by `now - prev`.
    pub fn observe_counters(&self, prev: &Counters, now: &Counters) {
        for (id, hook) in &self.event_labels {
            let (id, hook) = (*id, hook.as_str());
            let delta = |reason| now.get(reason, id).saturating_sub(prev.get(reason, id));
            let produced = delta(CounterReason::Produced);
            if produced > 0 {
                self.events_produced
                    .with_label_values(&[hook, id.name()])
                    .inc_by(produced);
            }
            for reason in LOSS_REASONS {
                let n = delta(reason);
                if n > 0 {
                    self.events_lost
                        .with_label_values(&[hook, reason.name()])
                        .inc_by(n);
                }
            }
        }
        let prev_hits = |p: ProbeId| {
            prev.hits
                .iter()
                .find(|(q, _)| *q == p)
                .map_or(0, |(_, n)| *n)
        };
        for (p, n) in &now.hits {
            let d = n.saturating_sub(prev_hits(*p));
            if d > 0 {
                self.program_hits
                    .with_label_values(&[p.hook().name(), p.program()])
                    .inc_by(d);
            }
        }
        for (s, n) in &now.stats {
            let before = prev
                .stats
                .iter()
                .find(|(q, _)| q == s)
                .map_or(0, |(_, n)| *n);
            let d = n.saturating_sub(before);
            if d > 0 {
                match s.uffd_copy_result() {
                    Some(result) => self.uffd_copies.with_label_values(&[result]).inc_by(d),
                    None => self.bpf_stats.with_label_values(&[s.name()]).inc_by(d),
                }
            }
        }
        self.fault_gate_open.set(i64::from(now.fault_gate_open));
        self.fault_gate_opens
            .inc_by(now.fault_gate_opens.saturating_sub(prev.fault_gate_opens));
        self.fault_programs.observe(prev, now);
    }

    /// Advances the detector's counters from `prev` to `now`.
    pub fn observe_detector(&self, prev: &DetectorStats, now: &DetectorStats, tracked_mms: usize) {
        self.detector_tracked_mms.set(tracked_mms as i64);
        let pairs = [
            ("mms", prev.mms_evicted, now.mms_evicted),
            ("streams", prev.streams_evicted, now.streams_evicted),
            ("windows", prev.windows_dropped, now.windows_dropped),
            ("batches", prev.batches_dropped, now.batches_dropped),
        ];
        for (what, before, after) in pairs {
            let d = after.saturating_sub(before);
            if d > 0 {
                self.detector_forgotten.with_label_values(&[what]).inc_by(d);
            }
        }
        self.detector_records_missing
            .inc_by(now.records_missing.saturating_sub(prev.records_missing));
    }

    /// The exposition text, with the process metrics read now.
    pub fn render(&self) -> Vec<u8> {
        self.process.refresh();
        let mut buf = Vec::with_capacity(32 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::warn!("encoding metrics: {e}");
        }
        buf
    }
}

/// The standard `process_*` metrics (same names and meaning as the Go and
/// Rust Prometheus clients' process collectors), read from `/proc/self`.
struct ProcessMetrics {
    cpu: Counter,
    cpu_seen: Mutex<f64>,
    rss: IntGauge,
    vsz: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
}

/// What `/proc/self/stat` says about CPU and memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcStat {
    pub cpu_seconds: f64,
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat` (the command name may contain spaces and parens).
pub fn parse_proc_stat(text: &str, ticks_per_second: f64) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields counted from `state` (field 3 in proc(5)).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime) = (num(11)?, num(12)?);
    Some(ProcStat {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second,
        start_ticks: num(19)?,
        vsize_bytes: num(20)?,
        rss_pages: num(21)?,
    })
}

impl ProcessMetrics {
    fn new(r: &Registry) -> prometheus::Result<ProcessMetrics> {
        let p = |name: &str, help: &str| Opts::new(name, help).namespace("process");
        let m = ProcessMetrics {
            cpu: reg(
                r,
                Counter::with_opts(p(
                    "cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                ))?,
            ),
            cpu_seen: Mutex::new(0.0),
            rss: reg(
                r,
                IntGauge::with_opts(p("resident_memory_bytes", "Resident memory size in bytes."))?,
            ),
            vsz: reg(
                r,
                IntGauge::with_opts(p("virtual_memory_bytes", "Virtual memory size in bytes."))?,
            ),
            open_fds: reg(
                r,
                IntGauge::with_opts(p("open_fds", "Number of open file descriptors."))?,
            ),
            max_fds: reg(
                r,
                IntGauge::with_opts(p("max_fds", "Maximum number of open file descriptors."))?,
            ),
            start_time: reg(
                r,
                Gauge::with_opts(p(
                    "start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                ))?,
            ),
        };
        m.refresh();
        Ok(m)
    }

    fn refresh(&self) {
        // SAFETY: sysconf has no preconditions.
        let (tck, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t, tck.max(1) as f64));
        if let Some(s) = stat {
            let mut seen = self.cpu_seen.lock().unwrap_or_else(|e| e.into_inner());
            if s.cpu_seconds > *seen {
                self.cpu.inc_by(s.cpu_seconds - *seen);
                *seen = s.cpu_seconds;
            }
            self.rss.set((s.rss_pages * page.max(1) as u64) as i64);
            self.vsz.set(s.vsize_bytes as i64);
            let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            if let Some(btime) = btime {
                self.start_time
                    .set(btime as f64 + s.start_ticks as f64 / tck.max(1) as f64);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            self.max_fds.set(lim.rlim_cur.min(i64::MAX as u64) as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use monitor_detector::tracefile::HookStatus;

    use super::*;

    fn status(hook: &str, rung: &str) -> HookStatus {
        HookStatus {
            hook: HookId::from_name(hook).expect("hook"),
            rung: Rung::from_name(rung).expect("rung"),
            target: None,
            programs: vec![],
            refused: vec![],
        }
    }

    fn metrics(hooks: &[HookStatus]) -> Metrics {
        Metrics::new(&StaticInfo {
            hooks,
            bpf_object: "atomic",
            kernel_release: "6.18.0",
            ring_bytes: 4096,
            maps: &[("MM_SEQ", 65536)],
            recursion_misses: true,
            coverage: &monitor_detector::coverage(hooks),
            impaired_hooks: &[],
        })
        .expect("metrics")
    }

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.render()).expect("utf-8")
    }

    #[test]
    fn every_series_exists_at_zero() {
        let m = metrics(&[status("exit_mmap", "tracepoint")]);
        let t = text(&m);
        for k in FindingKind::ALL {
            for s in Severity::ALL {
                let line = format!(
                    "mmrace_findings_total{{kind=\"{}\",severity=\"{}\"}} 0",
                    k.name(),
                    s.name()
                );
                assert!(t.contains(&line), "missing {line}");
            }
        }
        assert!(t.contains("mmrace_window_duration_seconds_count{window=\"reaping\"} 0"));
        assert!(
            t.contains("mmrace_events_lost_total{hook=\"oom_reap\",reason=\"ringbuf_full\"} 0")
        );
        assert!(t.contains("mmrace_hook_rung{hook=\"exit_mmap\",rung=\"tracepoint\"} 1"));
        assert!(t.contains("mmrace_hook_rung{hook=\"exit_mmap\",rung=\"unavailable\"} 0"));
        // Hooks not planned by configuration are excluded, not degraded.
        assert!(t.contains("mmrace_hook_rung{hook=\"oom_reap\",rung=\"excluded\"} 1"));
        assert!(t.contains("mmrace_hook_degraded{hook=\"oom_reap\"} 0"));
        assert!(t.contains("mmrace_bpf_map_max_entries{map=\"MM_SEQ\"} 65536"));
        // Only exit_mmap is planned: the reaper rule is disabled, and says so.
        assert!(
            t.contains("mmrace_rule_coverage{rule=\"reaper_exit_overlap\",state=\"disabled\"} 1")
        );
        assert!(t.contains("mmrace_rule_coverage{rule=\"reaper_exit_overlap\",state=\"full\"} 0"));
        assert!(t.contains("mmrace_detector_forgotten_total{what=\"windows\"} 0"));
        assert!(t.contains("process_resident_memory_bytes "));
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                !line.contains("pid=") && !line.contains("mm=\""),
                "unbounded label: {line}"
            );
        }
    }

    #[test]
    fn unavailable_hooks_are_degraded() {
        let m = metrics(&[status("exit_mmap", "unavailable")]);
        assert!(text(&m).contains("mmrace_hook_degraded{hook=\"exit_mmap\"} 1"));
    }

    #[test]
    fn counters_advance_by_the_difference() {
        let m = metrics(&[]);
        let mut row = vec![0u64; monitor_common::catalogue::MAX_EVENT_ID as usize];
        let mut prev = Counters {
            by_reason: vec![row.clone(); 4],
            hits: vec![(ProbeId::TpExitMmap, 5)],
            stats: vec![(Stat::FaultsExamined, 1)],
            ..Counters::default()
        };
        row[EventId::ReapStart as usize] = 3;
        let mut now = prev.clone();
        now.by_reason[CounterReason::Produced as usize] = row.clone();
        now.by_reason[CounterReason::RingbufFull as usize] = row;
        now.hits = vec![(ProbeId::TpExitMmap, 7)];
        now.stats = vec![(Stat::FaultsExamined, 4)];
        now.fault_gate_open = true;
        now.fault_gate_opens = 2;
        now.fault_programs = crate::loader::FaultAttach {
            on_demand: true,
            attached: true,
            attaches: 3,
            failures: 1,
            delay_ns_sum: 1_500_000_000,
            last_delay_ns: 250_000_000,
        };
        m.observe_counters(&prev, &now);
        m.observe_counters(&now, &now);
        let t = text(&m);
        assert!(
            t.contains("mmrace_events_produced_total{event=\"reap_start\",hook=\"oom_reap\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("mmrace_events_lost_total{hook=\"oom_reap\",reason=\"ringbuf_full\"} 3")
        );
        assert!(
            t.contains("mmrace_program_hits_total{hook=\"exit_mmap\",program=\"tp_exit_mmap\"} 2")
        );
        assert!(t.contains("mmrace_bpf_stats_total{stat=\"faults_examined\"} 3"));
        assert!(t.contains("mmrace_fault_gate_open 1"), "{t}");
        assert!(t.contains("mmrace_fault_programs_attached 1"), "{t}");
        assert!(t.contains("mmrace_fault_programs_attaches_total 3"), "{t}");
        assert!(
            t.contains("mmrace_fault_programs_attach_failures_total 1"),
            "{t}"
        );
        assert!(
            t.contains("mmrace_fault_programs_attach_delay_seconds_total 1.5"),
            "{t}"
        );
        assert!(
            t.contains("mmrace_fault_programs_last_attach_delay_seconds 0.25"),
            "{t}"
        );
        assert!(t.contains("mmrace_fault_gate_opens_total 2"), "{t}");
        // Counters that went backwards (cannot happen with BPF counts, but a
        // reloaded map would) do not move the metrics.
        prev = now.clone();
        now.hits = vec![(ProbeId::TpExitMmap, 1)];
        m.observe_counters(&prev, &now);
        assert!(
            text(&m).contains(
                "mmrace_program_hits_total{hook=\"exit_mmap\",program=\"tp_exit_mmap\"} 2"
            )
        );
    }

    #[test]
    fn impaired_hooks_are_degraded() {
        let hooks = [status("uffd_ioctl", "tracepoint")];
        let m = Metrics::new(&StaticInfo {
            hooks: &hooks,
            bpf_object: "atomic",
            kernel_release: "6.18.0",
            ring_bytes: 4096,
            maps: &[],
            recursion_misses: false,
            coverage: &[],
            impaired_hooks: &["uffd_ioctl"],
        })
        .expect("metrics");
        let t = text(&m);
        assert!(t.contains("mmrace_hook_degraded{hook=\"uffd_ioctl\"} 1"));
        assert!(
            !t.contains("recursion_misses"),
            "not exported when the kernel lacks it"
        );
    }

    #[test]
    fn proc_stat_with_a_nasty_comm() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 \
                    1000 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_proc_stat(line, 100.0).expect("parses");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_ticks, 1000);
        assert_eq!(s.vsize_bytes, 12_345_678);
        assert_eq!(s.rss_pages, 300);
    }
}
