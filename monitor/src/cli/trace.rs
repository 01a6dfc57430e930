//! `monitor trace`: attach, print race-window events for a while (or until
//! Ctrl-C/SIGTERM), optionally record a trace file, then detach and summarise.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Write as _},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use monitor_common::{
    event::EventId,
    maps::{CounterReason, WIRE_VERSION},
};
use monitor_detector::{
    Event,
    tracefile::{FORMAT_NAME, FORMAT_VERSION, Header, HookStatus, Line, Summary, to_line},
};
use tokio::signal::unix::{SignalKind, signal};

use super::args::{Format, LoadArgs, TraceArgs};
use crate::{
    ingest::{LossTracker, Ring},
    loader::{self, Counters, LoadOptions, Loaded},
    render, sys,
    tracefile::TraceWriter,
};

/// How often the reader drains the ring without a wakeup.
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// How often the loss counters are polled.
const LOSS_EVERY: Duration = Duration::from_millis(250);

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            btf_path: self.btf.clone(),
            ring_bytes: self.ring_size,
            max_rung: self.max_rung.into(),
            only_hooks: self.hooks.clone(),
        }
    }

    /// Rejects unknown hook names before anything is loaded.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(hooks) = &self.hooks {
            for h in hooks {
                if crate::plan::hook(h).is_none() {
                    let known: Vec<&str> = crate::plan::HOOKS.iter().map(|h| h.name).collect();
                    anyhow::bail!(
                        "unknown hook {h:?} in --hooks (known: {})",
                        known.join(", ")
                    );
                }
            }
        }
        Ok(())
    }
}

/// Decides which events a `--pid`/`--comm` trace shows: the task's own events,
/// events about it (it is the OOM victim, the child), and events by anyone on
/// an mm the matching task was seen using (the reaper, a kernel thread).
#[derive(Default)]
pub struct Filter {
    pid: Option<u32>,
    comm: Option<String>,
    mms: BTreeSet<(u64, u64)>,
}

impl Filter {
    pub fn new(pid: Option<u32>, comm: Option<String>) -> Filter {
        Filter {
            pid,
            comm,
            mms: BTreeSet::new(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.pid.is_some() || self.comm.is_some()
    }

    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if let Some(p) = self.pid {
            m.insert("pid".into(), p.to_string());
        }
        if let Some(c) = &self.comm {
            m.insert("comm".into(), c.clone());
        }
        m
    }

    fn task_matches(&self, ev: &Event) -> bool {
        let pid_ok = self
            .pid
            .is_none_or(|p| ev.tgid == p || ev.pid == p || ev.subject_pid() == Some(p));
        let comm_ok = self.comm.as_deref().is_none_or(|c| {
            ev.comm == c
                || matches!(&ev.data, monitor_detector::Data::MarkVictim(v) if v.victim_comm == c)
                || matches!(&ev.data, monitor_detector::Data::ExecMmSwitch(s) if s.new_comm == c)
        });
        pid_ok && comm_ok
    }

    pub fn matches(&mut self, ev: &Event) -> bool {
        if !self.is_active() {
            return true;
        }
        let key = (ev.mm, ev.mm_gen);
        if self.task_matches(ev) {
            if ev.mm != 0 {
                self.mms.insert(key);
            }
            return true;
        }
        ev.mm != 0 && self.mms.contains(&key)
    }
}

/// Everything the trace loop updates per record.
struct Session {
    format: Format,
    quiet: bool,
    filter: Filter,
    writer: Option<TraceWriter>,
    stdout: io::BufWriter<io::Stdout>,
    stdout_closed: bool,
    t0: u64,
    delivered: u64,
    decode_errors: u64,
    filtered_out: u64,
    shown: u64,
}

impl Session {
    fn record(&mut self, bytes: &[u8]) {
        self.delivered += 1;
        let ev = match Event::decode(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                self.decode_errors += 1;
                if self.decode_errors <= 5 {
                    log::warn!("dropping an undecodable record: {e}");
                }
                return;
            }
        };
        if !self.filter.matches(&ev) {
            self.filtered_out += 1;
            return;
        }
        self.shown += 1;
        if !self.quiet && !self.stdout_closed {
            let line = match self.format {
                Format::Table => render::table_row(&ev, self.t0),
                Format::Json => to_line(&Line::Event(ev.clone())),
            };
            if writeln!(self.stdout, "{line}").is_err() {
                self.stdout_closed = true;
            }
        }
        if let Some(w) = &mut self.writer {
            w.push(&Line::Event(ev));
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.stdout_closed && self.stdout.flush().is_err() {
            self.stdout_closed = true;
        }
        if let Some(w) = &mut self.writer {
            w.flush()?;
        }
        Ok(())
    }
}

fn print_plan(hooks: &[HookStatus], object: &str) {
    let attached = hooks.iter().filter(|h| h.rung != "unavailable").count();
    eprintln!(
        "monitor: {} of {} hooks attached (kernel {}, {} BPF object)",
        attached,
        hooks.len(),
        sys::kernel_release(),
        object
    );
    for h in hooks {
        match &h.target {
            Some(t) => log::info!("hook {:<22} {:<10} {}", h.hook, h.rung, t),
            None => {
                let why = h
                    .refused
                    .last()
                    .map_or("no candidate".to_owned(), |r| r.reason.clone());
                eprintln!("monitor: hook {} unavailable: {why}", h.hook);
            }
        }
    }
}

pub fn summary_from(
    counters: &Counters,
    delivered: u64,
    decode_errors: u64,
    filtered_out: u64,
    ended_by: &str,
    duration: Duration,
) -> Summary {
    let per_event = |reason: CounterReason| -> BTreeMap<String, u64> {
        EventId::ALL
            .iter()
            .filter_map(|id| {
                let v = counters.get(reason, *id);
                (v > 0).then(|| (id.name().to_owned(), v))
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
        filtered_out,
        ended_by: ended_by.to_owned(),
        duration_ms: duration.as_millis() as u64,
        produced_by_event: per_event(CounterReason::Produced),
        lost_by_event: per_event(CounterReason::RingbufFull),
        hits: counters
            .hits
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| (p.program().to_owned(), *n))
            .collect(),
        stats: counters
            .stats
            .iter()
            .map(|(s, n)| (s.name().to_owned(), *n))
            .collect(),
    }
}

pub fn run(args: TraceArgs) -> anyhow::Result<ExitCode> {
    args.load.validate()?;
    sys::check_privileges()?;
    let writer = args
        .output
        .as_deref()
        .map(TraceWriter::create)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(trace(args, writer))
}

async fn trace(args: TraceArgs, writer: Option<TraceWriter>) -> anyhow::Result<ExitCode> {
    let mut loaded: Loaded = loader::load(&args.load.options())?;
    print_plan(&loaded.hooks, loaded.object.name());
    if loaded.hooks.iter().all(|h| h.rung == "unavailable") {
        anyhow::bail!("no hook could be attached on this kernel (run with -v for the reasons)");
    }
    let mut ring = Ring::new(loaded.take_ring()?).context("registering the ring buffer")?;

    let start_ktime = sys::ktime_ns();
    let started = Instant::now();
    let filter = Filter::new(args.pid, args.comm.clone());
    let mut session = Session {
        format: args.format,
        quiet: args.quiet,
        writer,
        stdout: io::BufWriter::new(io::stdout()),
        stdout_closed: false,
        t0: start_ktime,
        delivered: 0,
        decode_errors: 0,
        filtered_out: 0,
        shown: 0,
        filter,
    };
    if let Some(w) = &mut session.writer {
        w.write_header(Header {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            wire_version: WIRE_VERSION,
            monitor_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel_release: sys::kernel_release(),
            hostname: sys::hostname(),
            bpf_object: loaded.object.name().to_owned(),
            start_ktime_ns: start_ktime,
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            hooks: loaded.hooks.clone(),
            filters: session.filter.describe(),
        })?;
    }
    if !args.quiet && args.format == Format::Table {
        let _ = writeln!(session.stdout, "{}", render::TABLE_HEADER);
    }

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
    let mut loss_tick = tokio::time::interval(LOSS_EVERY);
    let mut losses = LossTracker::default();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let sleep = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(sleep);

    enum Wake {
        Data,
        Loss,
        Stop(&'static str),
    }
    let ended_by = loop {
        let wake = tokio::select! {
            r = ring.wait_readable() => {
                r.context("waiting on the ring buffer")?;
                Wake::Data
            }
            _ = drain_tick.tick() => Wake::Data,
            _ = loss_tick.tick() => Wake::Loss,
            () = &mut sleep, if deadline.is_some() => Wake::Stop("duration"),
            _ = sigint.recv() => Wake::Stop("signal"),
            _ = sigterm.recv() => Wake::Stop("signal"),
        };
        match wake {
            Wake::Data => {
                ring.drain(|bytes| session.record(bytes));
                session.flush()?;
                if session.stdout_closed && session.writer.is_none() {
                    break "stdout closed";
                }
            }
            Wake::Loss => {
                if let Some(loss) = losses.update(&loaded.counters(), sys::ktime_ns()) {
                    log::warn!("{} records lost (ring buffer full)", loss.total());
                    if let Some(w) = &mut session.writer {
                        w.push(&Line::Loss(loss));
                    }
                }
            }
            Wake::Stop(why) => break why,
        }
    };

    // Stop producing, let in-flight programs finish, then drain what is left so
    // that produced == delivered + lost holds exactly.
    loaded.detach_all();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ring.drain(|bytes| session.record(bytes));
    let counters = loaded.counters();
    if let Some(loss) = losses.update(&counters, sys::ktime_ns()) {
        if let Some(w) = &mut session.writer {
            w.push(&Line::Loss(loss));
        }
    }
    session.flush()?;
    let summary = summary_from(
        &counters,
        session.delivered,
        session.decode_errors,
        session.filtered_out,
        ended_by,
        started.elapsed(),
    );
    eprintln!(
        "monitor: {:.1}s traced, ended by {}: produced {}, delivered {}, lost {} (ring buffer full), \
         shown {}, filtered out {}, decode errors {}",
        started.elapsed().as_secs_f64(),
        ended_by,
        summary.produced,
        summary.delivered,
        summary.lost,
        session.shown,
        session.filtered_out,
        session.decode_errors
    );
    if summary.produced != summary.delivered + summary.lost {
        log::warn!(
            "accounting mismatch: produced {} != delivered {} + lost {}",
            summary.produced,
            summary.delivered,
            summary.lost
        );
    }
    if let Some(w) = session.writer.take() {
        let path = w.path().display().to_string();
        let lines = w.finish(summary)?;
        eprintln!("monitor: wrote {lines} lines to {path}");
    }
    Ok(ExitCode::SUCCESS)
}
