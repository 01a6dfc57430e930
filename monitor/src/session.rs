//! One monitoring session: the loaded BPF object and its ring buffer, driven
//! until a stop condition, then shut down so that every record is accounted
//! for. `monitor trace` and the daemon both run on this; they differ only in
//! their [`Sink`].

use std::{
    future::Future,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use monitor_common::{
    catalogue::{EventId, HookId, Rung},
    maps::{CounterReason, state},
};
use monitor_detector::{
    Event,
    tracefile::{HookStatus, Loss, Summary},
};

use crate::{
    dying::{self, Dying},
    gate::{Decision, FaultGate},
    ingest::{LossTracker, Ring},
    loader::{self, Counters, FaultAttach, FaultPrograms, LoadOptions, Loaded},
    sys,
};

/// How often the reader drains the ring without a wakeup while records flow.
/// The BPF side wakes the reader only once `wakeup_bytes` are pending, so
/// this bounds the latency of a trickle of records.
pub const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// After drains that found nothing the interval doubles up to this, so an
/// idle monitor wakes about once a second (the first record after a quiet
/// spell waits at most this long; a burst still wakes the reader at once).
pub const IDLE_DRAIN_EVERY: Duration = Duration::from_secs(1);
/// How often the BPF counters are polled (loss, hits, stats) while records
/// flow. Reading them is a few hundred map lookups (one system call each).
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How often they are polled when no record arrived since the last poll:
/// ring-buffer loss needs records, so only the slow counters (hits, map
/// full, read errors) can move, and an idle daemon stays near zero CPU.
pub const IDLE_POLL_EVERY: Duration = Duration::from_secs(2);

/// Where decoded records go.
pub trait Sink {
    /// One decoded record, in ring order.
    fn event(&mut self, ev: Event);
    /// Records were lost (ring buffer full) since the previous call.
    fn loss(&mut self, _loss: &Loss) {}
    /// A record that could not be decoded (already counted by the session).
    fn decode_error(&mut self, _err: &monitor_detector::event::DecodeError) {}
    /// Called after each counter poll with the current totals.
    fn counters(&mut self, _counters: &Counters) {}
    /// Called after each drain; return `false` to stop the session.
    fn flush(&mut self) -> anyhow::Result<bool> {
        Ok(true)
    }
}

pub struct Session {
    pub loaded: Loaded,
    ring: Ring,
    losses: LossTracker,
    pub start_ktime: u64,
    started: Instant,
    pub delivered: u64,
    pub decode_errors: u64,
    /// When the counters were last polled, and `delivered` then.
    polled: (Instant, u64),
    gate: FaultGate,
    /// Processes found dying at start that are still alive (`dying.rs`).
    dying: Vec<Dying>,
    faults: FaultAttach,
    /// Kernel time the fault programs were last detached.
    faults_detached_at: u64,
    /// No attach retry before this (after a refused one).
    faults_retry_at: Option<Instant>,
}

/// After the kernel refused to attach the fault programs, the session tries
/// again no sooner than this.
pub const FAULT_ATTACH_RETRY: Duration = Duration::from_secs(1);

/// Whether the fault programs can attach on demand where `loaded` attached
/// them, and why not. The session attaches them again after the daemon
/// dropped its capabilities, which only a BPF link on a loaded program
/// allows (docs/kernel.md, "Attaching again after the capability drop"),
/// and only where the OOM reaper waits `OOM_REAPER_DELAY` (5.18+), which
/// covers the delay from the gate's opening to the attach
/// (docs/detection.md, "Fault programs attached on demand").
pub fn fault_programs_on_demand(
    loaded: &Loaded,
    policy: FaultPrograms,
    release: &str,
) -> Result<(), &'static str> {
    if policy == FaultPrograms::Always {
        return Err("bpf.fault_programs = always");
    }
    let rung = loaded
        .hooks
        .iter()
        .find(|h| h.hook == HookId::HandleMmFault)
        .map_or(Rung::Unavailable, |h| h.rung);
    match rung {
        Rung::Fentry | Rung::Tracepoint => match sys::release_at_least(release, 5, 18) {
            Some(true) => Ok(()),
            Some(false) => Err(
                "before Linux 5.18 the OOM reaper does not wait OOM_REAPER_DELAY, which covers \
                 the attach",
            ),
            None => Err("the kernel release does not parse"),
        },
        Rung::Kprobe => Err("a kprobe attach needs CAP_PERFMON, dropped after attach"),
        Rung::Unavailable => Err("handle_mm_fault is not hooked"),
    }
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Duration,
    Signal,
    /// The sink asked to stop (e.g. stdout closed).
    Sink,
}

impl Ended {
    pub const fn name(self) -> &'static str {
        match self {
            Ended::Duration => "duration",
            Ended::Signal => "signal",
            Ended::Sink => "sink closed",
        }
    }
}

impl Session {
    /// Loads and attaches. Fails if no hook at all could be attached.
    pub fn start(opts: &LoadOptions) -> anyhow::Result<Session> {
        let mut loaded = loader::load(opts)?;
        if !loaded.hooks.iter().any(HookStatus::is_attached) {
            anyhow::bail!("no hook could be attached on this kernel (run with -v for the reasons)");
        }
        let ring = Ring::new(loaded.take_ring()?).context("registering the ring buffer")?;
        Ok(Session {
            loaded,
            ring,
            losses: LossTracker::default(),
            start_ktime: sys::ktime_ns(),
            started: Instant::now(),
            delivered: 0,
            decode_errors: 0,
            polled: (Instant::now(), 0),
            gate: FaultGate::with_hold(
                sys::ktime_ns(),
                u64::try_from(opts.fault_gate_hold.as_nanos()).unwrap_or(u64::MAX),
            ),
            dying: Vec::new(),
            faults: FaultAttach::default(),
            faults_detached_at: 0,
            faults_retry_at: None,
        }
        .open_gate_for_dying()
        .fault_programs_on_demand(opts.fault_programs))
    }

    /// Detaches the fault programs while the gate is closed, if they can
    /// attach again (`fault_programs_on_demand`).
    fn fault_programs_on_demand(mut self, policy: FaultPrograms) -> Session {
        match fault_programs_on_demand(&self.loaded, policy, &sys::kernel_release()) {
            Ok(()) => {
                self.faults.on_demand = true;
                self.faults.attached = true;
                log::info!("page-fault programs attach only while the fault gate is open");
                if !self.fault_gate_open() {
                    self.detach_fault_programs();
                }
            }
            Err(why) => {
                self.faults.attached = self
                    .loaded
                    .hooks
                    .iter()
                    .any(|h| h.hook == HookId::HandleMmFault && h.is_attached());
                if self.faults.attached {
                    log::info!("page-fault programs stay attached: {why}");
                }
            }
        }
        self
    }

    fn fault_gate_open(&self) -> bool {
        self.loaded.state(state::FAULT_GATE).is_none_or(|v| v != 0)
    }

    fn detach_fault_programs(&mut self) {
        if let Err(e) = self.loaded.detach_hook(HookId::HandleMmFault) {
            log::warn!("detaching the page-fault programs: {e}");
        }
        // Even after an error: what did detach is attached again at the next
        // opening, and a program left attached only costs its gate check.
        self.faults.attached = false;
        self.faults_detached_at = sys::ktime_ns();
    }

    /// Attaches the fault programs if they are detached and the gate is open
    /// (one map read while detached). Called after every drain: a
    /// gate-opening record wakes the reader at once.
    fn attach_fault_programs_if_open(&mut self) {
        if !self.faults.on_demand || self.faults.attached || !self.fault_gate_open() {
            return;
        }
        if self.faults_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let asked = sys::ktime_ns();
        match self.loaded.attach_hook(HookId::HandleMmFault) {
            Ok(_) => {
                let done = sys::ktime_ns();
                // From the opening the programs recorded, unless it predates
                // the last detach (then the opening came from userspace or
                // raced the detach: count from when it was seen).
                let opened = self.loaded.state(state::GATE_OPENED_AT).unwrap_or(0);
                let from = if opened > self.faults_detached_at && opened <= done {
                    opened
                } else {
                    asked
                };
                let delay = done - from;
                self.faults.attached = true;
                self.faults.attaches += 1;
                self.faults.delay_ns_sum += delay;
                self.faults.last_delay_ns = delay;
                self.faults_retry_at = None;
                log::info!(
                    "fault gate open: page-fault programs attached {:.3} s after the opening",
                    delay as f64 / 1e9
                );
            }
            Err(e) => {
                self.faults.failures += 1;
                self.faults_retry_at = Some(Instant::now() + FAULT_ATTACH_RETRY);
                if self.faults.failures <= 5 || self.faults.failures.is_power_of_two() {
                    log::error!(
                        "attaching the page-fault programs failed ({} times; retrying every \
                         {} s): {e}",
                        self.faults.failures,
                        FAULT_ATTACH_RETRY.as_secs()
                    );
                }
            }
        }
    }

    /// Opens the fault gate for processes already dying at start (the gate's
    /// blind spot: `dying.rs`) through the store that reopens it.
    fn open_gate_for_dying(mut self) -> Session {
        self.dying = dying::scan(Path::new("/proc"));
        if self.dying.is_empty() {
            return self;
        }
        let names: Vec<String> = self
            .dying
            .iter()
            .take(8)
            .map(|d| format!("{} ({})", d.pid, d.comm))
            .collect();
        match self.loaded.set_state(state::FAULT_GATE, 1) {
            Ok(()) => log::info!(
                "fault gate opened at start: {} process(es) killed before the monitor \
                 started are still dying: {}",
                self.dying.len(),
                names.join(", ")
            ),
            Err(e) => log::warn!("opening the fault gate for dying processes: {e:#}"),
        }
        self.gate.hold(sys::ktime_ns());
        self
    }

    fn drain(&mut self, sink: &mut dyn Sink) {
        let (delivered, decode_errors, gate) =
            (&mut self.delivered, &mut self.decode_errors, &mut self.gate);
        self.ring.drain(|bytes| {
            *delivered += 1;
            match Event::decode(bytes) {
                Ok(ev) => {
                    if !ev.probe.get().is_some_and(|p| p.emits(ev.id())) {
                        // The catalogue says which program emits what; a record
                        // that disagrees is a bug in the BPF code or the table.
                        log::warn!(
                            "record {} from program {} contradicts the catalogue",
                            ev.kind(),
                            ev.probe
                        );
                    }
                    gate.observe(&ev);
                    sink.event(ev);
                }
                Err(e) => {
                    *decode_errors += 1;
                    if *decode_errors <= 5 {
                        log::warn!("dropping an undecodable record: {e}");
                    }
                    sink.decode_error(&e);
                }
            }
        });
    }

    /// Closes the fault gate when no victim mm is alive (see `gate.rs`), from
    /// the gate state just read with the counters; returns whether the gate
    /// is open afterwards.
    fn update_gate(&mut self, counters: &Counters) -> bool {
        let now = sys::ktime_ns();
        if !self.dying.is_empty() {
            self.dying
                .retain(|d| dying::still_dying(Path::new("/proc"), d));
            if !self.dying.is_empty() {
                self.gate.hold(now);
            }
        }
        let open = counters.fault_gate_open;
        if self.gate.decide(now, open, counters.fault_gate_opens) != Decision::Close {
            return open;
        }
        if let Err(e) = self.loaded.set_state(state::FAULT_GATE, 0) {
            log::warn!("closing the fault gate: {e:#}");
            return open;
        }
        // A program may have opened the gate between the read and the close.
        let reopen = self
            .loaded
            .state(state::GATE_OPENS)
            .is_none_or(|opens| self.gate.closed(now, opens));
        if reopen {
            let _ = self.loaded.set_state(state::FAULT_GATE, 1);
            true
        } else {
            log::info!("fault gate closed: no OOM victim's mm is alive");
            if self.faults.on_demand && self.faults.attached {
                self.detach_fault_programs();
            }
            false
        }
    }

    fn poll_counters(&mut self, sink: &mut dyn Sink) -> Counters {
        self.polled = (Instant::now(), self.delivered);
        let mut counters = self.loaded.counters();
        counters.fault_gate_open = self.update_gate(&counters);
        counters.fault_programs = self.faults;
        if let Some(loss) = self.losses.update(&counters, sys::ktime_ns()) {
            log::warn!("{} records lost (ring buffer full)", loss.total());
            sink.loss(&loss);
        }
        sink.counters(&counters);
        counters
    }

    /// Runs until `stop` resolves (returning why) or the sink asks to stop.
    pub async fn run(
        &mut self,
        sink: &mut dyn Sink,
        stop: impl Future<Output = Ended>,
    ) -> anyhow::Result<Ended> {
        tokio::pin!(stop);
        let mut drain_every = DRAIN_EVERY;
        loop {
            tokio::select! {
                r = self.ring.wait_readable() => {
                    r.context("waiting on the ring buffer")?;
                }
                () = tokio::time::sleep(drain_every) => {}
                why = &mut stop => return Ok(why),
            }
            let before = self.delivered;
            self.drain(sink);
            self.attach_fault_programs_if_open();
            drain_every = if self.delivered == before {
                (drain_every * 2).min(IDLE_DRAIN_EVERY)
            } else {
                DRAIN_EVERY
            };
            if !sink.flush()? {
                return Ok(Ended::Sink);
            }
            let since_poll = self.polled.0.elapsed();
            if since_poll >= IDLE_POLL_EVERY
                || (since_poll >= POLL_EVERY && self.delivered != self.polled.1)
            {
                self.poll_counters(sink);
            }
        }
    }

    /// Detaches every program, lets in-flight programs finish, drains what is
    /// left and reads the final counters, so `produced == delivered + lost`.
    pub async fn shutdown(&mut self, sink: &mut dyn Sink, ended: Ended) -> anyhow::Result<Summary> {
        self.loaded.detach_all();
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.drain(sink);
        let counters = self.poll_counters(sink);
        sink.flush()?;
        Ok(summary_from(
            &counters,
            self.delivered,
            self.decode_errors,
            ended.name(),
            self.started.elapsed(),
        ))
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A summary from the final counters (`filtered_out` is filled by the caller).
pub fn summary_from(
    counters: &Counters,
    delivered: u64,
    decode_errors: u64,
    ended_by: &str,
    duration: Duration,
) -> Summary {
    let per_event = |reason: CounterReason| {
        EventId::ALL
            .iter()
            .filter_map(|id| {
                let v = counters.get(reason, *id);
                (v > 0).then_some((*id, v))
            })
            .collect()
    };
    Summary {
        produced: counters.total(CounterReason::Produced),
        delivered,
        lost: counters.total(CounterReason::RingbufFull),
        seq_map_full: counters.total(CounterReason::SeqMapFull),
        read_errors: counters.total(CounterReason::ReadError),
        decode_errors,
        filtered_out: 0,
        ended_by: ended_by.to_owned(),
        duration_ms: duration.as_millis() as u64,
        produced_by_event: per_event(CounterReason::Produced),
        lost_by_event: per_event(CounterReason::RingbufFull),
        hits: counters
            .hits
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| (*p, *n))
            .collect(),
        stats: counters.stats.iter().copied().collect(),
        // Filled by the writer (`written`, `recorder_dropped`).
        ..Summary::default()
    }
}

/// SIGINT/SIGTERM handlers, installed before the session announces itself so
/// that a signal arriving right after attach still ends it cleanly. SIGHUP
/// ends `trace` too ([`Signals::install_with_hangup`]); the daemon gives it
/// its own meaning.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            hup: None,
        })
    }

    /// Also ends on SIGHUP (the terminal went away).
    pub fn install_with_hangup() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut s = Signals::install()?;
        s.hup = Some(signal(SignalKind::hangup()).context("installing the SIGHUP handler")?);
        Ok(s)
    }

    /// Resolves on SIGINT or SIGTERM (or SIGHUP, when installed).
    pub async fn recv(&mut self) -> Ended {
        let Signals { int, term, hup } = self;
        let hup = async {
            match hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup => {}
        }
        Ended::Signal
    }
}
