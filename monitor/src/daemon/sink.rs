//! The daemon's [`Sink`]: every record the session delivers updates the
//! metrics and the window histograms, and goes to the recorder.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use monitor_detector::{
    Event,
    event::DecodeError,
    tracefile::{Line, Loss},
};

use super::{hooks, metrics::Metrics, record::Recorder, windows::WindowTracker};
use crate::{loader::Counters, session::Sink, sys};

/// What `/healthz` reports.
pub struct Health {
    last_drain_ns: AtomicU64,
    stopping: AtomicBool,
    attached: usize,
    planned: usize,
}

/// The session drains the ring at least every 100 ms; a loop silent for this
/// long is stuck.
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
    windows: WindowTracker,
    pub recorder: Option<Recorder>,
    /// The last counters seen (metrics advance by the difference).
    pub counters: Counters,
    pub delivered: u64,
}

impl DaemonSink {
    pub fn new(
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        recorder: Option<Recorder>,
        counters: Counters,
    ) -> DaemonSink {
        DaemonSink {
            metrics,
            health,
            windows: WindowTracker::default(),
            recorder,
            counters,
            delivered: 0,
        }
    }
}

impl Sink for DaemonSink {
    fn event(&mut self, ev: Event) {
        self.delivered += 1;
        let hook = hooks::probe_by_name(&ev.probe)
            .and_then(hooks::probe_hook)
            .unwrap_or(hooks::UNPLANNED);
        self.metrics
            .events_delivered
            .with_label_values(&[hook])
            .inc();
        if let Some((w, ns)) = self.windows.observe(&ev) {
            self.metrics
                .windows
                .with_label_values(&[w.name()])
                .observe(ns as f64 / 1e9);
        }
        if let Some(r) = &mut self.recorder {
            r.push(&Line::Event(ev));
        }
    }

    fn loss(&mut self, loss: &Loss) {
        if let Some(r) = &mut self.recorder {
            r.push(&Line::Loss(loss.clone()));
        }
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
        if let Some(r) = &mut self.recorder {
            r.flush(&self.counters);
        }
        Ok(true)
    }
}
