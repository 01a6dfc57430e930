//! The daemon's [`Sink`]: every record the session delivers goes through the
//! race detector (which also measures the race windows for the histograms),
//! updates the metrics, and goes to the recorder. Each finding is counted, written to stdout as one JSON line
//! (the trace-file `finding` line: kind, severity, mm, tasks, explanation,
//! details and evidence events; journald keeps it whole) and recorded.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use monitor_detector::{
    Detector, DetectorStats, Event, Finding,
    event::DecodeError,
    finding::Severity,
    tracefile::{Line, Loss},
};

use super::{kmsg::Kmsg, metrics::Metrics, record::Recorder};
use crate::{
    journal::{self, Priority},
    loader::Counters,
    output,
    session::Sink,
    sys,
};

/// What `/healthz` reports.
pub struct Health {
    last_drain_ns: AtomicU64,
    stopping: AtomicBool,
    attached: usize,
    planned: usize,
}

/// The session drains the ring at least every second (`IDLE_DRAIN_EVERY`);
/// a loop silent for this long is stuck.
pub const STALL_NS: u64 = 5_000_000_000;

impl Health {
    pub fn new(attached: usize, planned: usize) -> Health {
        Health {
            last_drain_ns: AtomicU64::new(sys::ktime_ns()),
            stopping: AtomicBool::new(false),
            attached,
            planned,
        }
    }

    pub fn drained(&self) {
        self.last_drain_ns.store(sys::ktime_ns(), Ordering::Relaxed);
    }

    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// `Ok(message)` when healthy, `Err(reason)` otherwise.
    pub fn check(&self) -> Result<String, String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("stopping".to_owned());
        }
        let idle = sys::ktime_ns().saturating_sub(self.last_drain_ns.load(Ordering::Relaxed));
        if idle > STALL_NS {
            return Err(format!(
                "the ring buffer has not been read for {:.1}s",
                idle as f64 / 1e9
            ));
        }
        if self.attached == 0 {
            return Err("no hook is attached".to_owned());
        }
        Ok(format!(
            "ok: {} of {} hooks attached\n",
            self.attached, self.planned
        ))
    }
}

pub struct DaemonSink {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    detector: Detector,
    /// The detector's statistics at the last flush (metrics advance by the
    /// difference).
    detector_stats: DetectorStats,
    pub recorder: Option<Recorder>,
    /// Set on SIGHUP (`notify::Control`): start a new trace file at the next flush.
    pub reopen: Arc<AtomicBool>,
    /// The last counters seen (metrics advance by the difference).
    pub counters: Counters,
    pub delivered: u64,
    pub findings: u64,
    stdout_closed: bool,
    /// Violations also go to the kernel log, first (see `kmsg.rs`).
    kmsg: Kmsg,
    /// Cgroup ids → paths, containers, pods (for findings and the recording).
    cgroups: crate::cgroup::Resolver,
}

impl DaemonSink {
    pub fn new(
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        detector: Detector,
        recorder: Option<Recorder>,
        counters: Counters,
        kmsg: Kmsg,
    ) -> DaemonSink {
        DaemonSink {
            metrics,
            health,
            detector,
            detector_stats: DetectorStats::default(),
            recorder,
            counters,
            delivered: 0,
            findings: 0,
            stdout_closed: false,
            reopen: Arc::default(),
            kmsg,
            cgroups: crate::cgroup::Resolver::discover(),
        }
    }

    fn report(&mut self, findings: Vec<Finding>) {
        for mut f in findings {
            self.cgroups.annotate(&mut f);
            self.findings += 1;
            if !self.kmsg.write(&f) {
                self.metrics.kmsg_write_failures.inc();
            }
            self.metrics
                .findings
                .with_label_values(&[f.kind.name(), f.severity.name()])
                .inc();
            if let Some(serde_json::Value::Array(accessors)) = f.details.get("accessor") {
                for a in accessors.iter().filter_map(serde_json::Value::as_str) {
                    // Only the detector's own names (bounded labels).
                    if monitor_detector::Accessor::ALL
                        .iter()
                        .any(|k| k.name() == a)
                    {
                        self.metrics
                            .unstable_findings
                            .with_label_values(&[a, f.severity.name()])
                            .inc();
                    }
                }
            }
            let f_severity = f.severity;
            let line = Line::Finding(f);
            // With its wall-clock `time` and, under journald, its syslog
            // priority; queued, never blocking the loop (`crate::output`): a
            // full queue is counted, a closed stdout said once. One queued
            // line is one write, so journald never sees half a finding.
            let priority = match f_severity {
                Severity::Violation => Priority::Err,
                Severity::Uncertain => Priority::Warning,
                Severity::NearMiss => Priority::Notice,
            };
            let body = crate::tracefile::finding_line(&line);
            let text = format!("{}{body}", journal::stdout(priority));
            if !self.stdout_closed && !output::STDOUT.line(&text) && output::STDOUT.is_closed() {
                self.stdout_closed = true;
                log::warn!("stdout is closed: findings are only counted and recorded");
            }
            if let Some(r) = &mut self.recorder {
                r.push_serialized(&line, &body);
            }
        }
    }

    fn observe_detector(&mut self) {
        let now = self.detector.stats();
        self.metrics
            .observe_detector(&self.detector_stats, now, self.detector.tracked_mms());
        self.detector_stats.clone_from(now);
    }

    /// End of input: the detector closes every window still open and reports
    /// what they hold. Call after the session's final drain.
    pub fn finish_detection(&mut self) {
        let findings = self.detector.finish();
        self.report(findings);
        self.observe_detector();
        if let Some(r) = &mut self.recorder {
            r.flush(&self.counters);
        }
    }
}

impl Sink for DaemonSink {
    fn event(&mut self, ev: Event) {
        self.delivered += 1;
        // A field read: the record names its program, the catalogue its hook.
        let hook = ev.probe.get().map_or("unknown", |p| p.hook().name());
        self.metrics
            .events_delivered
            .with_label_values(&[hook])
            .inc();
        let findings = self.detector.push_event(ev);
        let windows = &self.metrics.windows;
        self.detector.drain_windows(|w, ns| {
            windows
                .with_label_values(&[w.name()])
                .observe(ns as f64 / 1e9);
        });
        // Resolved as the record arrives (its cgroup may be gone by the time
        // a finding names it); cached, so this is two lookups.
        let cgroups = self.cgroups.for_event(&ev);
        if let Some(r) = &mut self.recorder {
            r.note_cgroups(&cgroups);
            r.push(&Line::Event(ev));
        }
        self.report(findings);
    }

    fn loss(&mut self, loss: &Loss) {
        if let Some(r) = &mut self.recorder {
            r.push(&Line::Loss(loss.clone()));
        }
        let findings = self.detector.push_loss(loss);
        self.report(findings);
    }

    fn decode_error(&mut self, _err: &DecodeError) {
        self.metrics.decode_errors.inc();
        if let Some(r) = &mut self.recorder {
            r.decode_error();
        }
    }

    fn counters(&mut self, counters: &Counters) {
        self.metrics.observe_counters(&self.counters, counters);
        self.counters.clone_from(counters);
    }

    fn flush(&mut self) -> anyhow::Result<bool> {
        self.health.drained();
        self.observe_detector();
        self.metrics.observe_output();
        if let Some(r) = &mut self.recorder {
            r.flush(&self.counters);
        }
        if self.reopen.swap(false, Ordering::Relaxed) {
            match &mut self.recorder {
                Some(r) => r.reopen(&self.counters),
                None => {
                    log::warn!("SIGHUP: not recording (record.dir is unset): nothing to reopen")
                }
            }
            super::notify::reloaded();
        }
        Ok(true)
    }
}
