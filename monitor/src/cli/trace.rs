//! `monitor trace`: attach, print race-window events for a while (or until
//! Ctrl-C/SIGTERM), optionally record a trace file, then detach and summarise.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::ExitCode,
};

use anyhow::Context as _;
use monitor_common::maps::{WIRE_VERSION, state};
use monitor_detector::{
    Data, Event,
    event::c_str,
    tracefile::{FORMAT_NAME, FORMAT_VERSION, Header, Line, Loss, to_line},
};

use super::args::{Format, LoadArgs, TraceArgs};
use crate::{
    daemon::caps,
    loader::LoadOptions,
    output, render, say,
    session::{Ended, Session, Signals, Sink},
    sys,
    tracefile::{TraceFileError, TraceWriter},
};

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            btf_path: self.btf.clone(),
            ring_bytes: self.ring_size,
            max_rung: self.max_rung.into(),
            only_hooks: self.hooks.clone(),
            break_hooks: self.test_break_hook.clone(),
            fault_programs: self.fault_programs.into(),
            ..LoadOptions::default()
        }
    }

    /// Rejects unknown hook names before anything is loaded.
    pub fn validate(&self) -> anyhow::Result<()> {
        for h in self.hooks.iter().flatten().chain(&self.test_break_hook) {
            if crate::plan::hook(h).is_none() {
                let known: Vec<&str> = crate::plan::HOOKS.iter().map(|h| h.id.name()).collect();
                anyhow::bail!(
                    "unknown hook {h:?} in --hooks (known: {})",
                    known.join(", ")
                );
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
            ev.comm() == c
                || matches!(&ev.data, Data::MarkVictim(v) if c_str(&v.victim_comm) == c)
                || matches!(&ev.data, Data::ExecMmSwitch(s) if c_str(&s.new_comm) == c)
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

/// Prints and records what the filter lets through.
struct TraceSink {
    format: Format,
    quiet: bool,
    filter: Filter,
    writer: Option<TraceWriter>,
    /// The trace file could not be written: the trace ends, and the error
    /// is reported after the summary.
    write_error: Option<TraceFileError>,
    t0: u64,
    filtered_out: u64,
    shown: u64,
    /// Cgroup ids → paths for the trace file's `cgroup` lines.
    cgroups: crate::cgroup::Resolver,
}

impl TraceSink {
    fn stdout_open(&self) -> bool {
        !self.quiet && !output::STDOUT.is_closed()
    }
}

impl Sink for TraceSink {
    fn event(&mut self, ev: Event) {
        if !self.filter.matches(&ev) {
            self.filtered_out += 1;
            return;
        }
        self.shown += 1;
        if self.stdout_open() {
            // Queued (`crate::output`): a slow reader costs lines, counted,
            // never the ring buffer or the signals.
            let line = match self.format {
                Format::Table => render::table_row(&ev, self.t0),
                Format::Json => to_line(&Line::Event(ev)),
            };
            output::STDOUT.line(&line);
        }
        if let Some(w) = &mut self.writer {
            for c in self.cgroups.for_event(&ev) {
                w.note_cgroup(&c);
            }
            w.push(&Line::Event(ev));
        }
    }

    fn loss(&mut self, loss: &Loss) {
        if let Some(w) = &mut self.writer {
            w.push(&Line::Loss(loss.clone()));
        }
    }

    fn flush(&mut self) -> anyhow::Result<bool> {
        if let Some(w) = &mut self.writer
            && let Err(e) = w.flush()
        {
            self.writer = None;
            self.write_error = Some(e);
            return Ok(false);
        }
        // Stop when the output asked for is gone: stdout's reader went away
        // and there is no trace file. A `--quiet` trace without one writes
        // only its summary (stderr) and runs to its end.
        let stdout_gone = !self.quiet && output::STDOUT.is_closed();
        Ok(!stdout_gone || self.writer.is_some())
    }
}

pub fn run(args: TraceArgs) -> anyhow::Result<ExitCode> {
    args.load.validate()?;
    warn_about_filters(&args);
    sys::check_privileges()?;
    let writer = args
        .output
        .as_deref()
        .map(|p| TraceWriter::create(p, args.force))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(trace(args, writer))
}

/// A filter that can never match is a mistake worth a line (U12).
fn warn_about_filters(args: &TraceArgs) {
    if let Some(pid) = args.pid
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        log::warn!(
            "--pid {pid}: no such process now; only a process started later with that pid \
             can match"
        );
    }
    if let Some(comm) = &args.comm
        && comm.len() > 15
    {
        log::warn!(
            "--comm {comm:?} is {} bytes: the kernel keeps 15 (TASK_COMM_LEN), so it can never \
             match; use {:?}",
            comm.len(),
            comm.chars()
                .scan(0, |n, c| {
                    *n += c.len_utf8();
                    (*n <= 15).then_some(c)
                })
                .collect::<String>()
        );
    }
}

async fn trace(args: TraceArgs, writer: Option<TraceWriter>) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::install_with_hangup()?;
    let mut session = Session::start(&args.load.options())?;
    // Classic tracepoints needed tracefs only to attach: unmount it now if
    // it was mounted for us, so that no kill leaves it behind.
    session.loaded.release_tracefs();
    sys::wall_offset_ns();
    let dropped = caps::drop_after_attach(|| session.loaded.state(state::FLAGS).is_some(), None)
        .context("dropping capabilities after attach")?;
    log::info!(
        "capabilities after attach: {}",
        caps::names(dropped.after.effective)
    );
    // Threads start only now, with no capability to inherit.
    output::STDOUT
        .start_writer()
        .and_then(|()| output::STDERR.start_writer())
        .context("starting the output threads")?;
    let filter = Filter::new(args.pid, args.comm.clone());
    let mut sink = TraceSink {
        format: args.format,
        quiet: args.quiet,
        writer,
        write_error: None,
        t0: session.start_ktime,
        filtered_out: 0,
        shown: 0,
        filter,
        cgroups: crate::cgroup::Resolver::discover(),
    };
    if let Some(w) = &mut sink.writer {
        w.write_header(Header {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            wire_version: WIRE_VERSION,
            monitor_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel_release: sys::kernel_release(),
            hostname: sys::hostname(),
            bpf_object: session.loaded.object.name().to_owned(),
            start_ktime_ns: session.start_ktime,
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            hooks: session.loaded.hooks.clone(),
            filters: sink.filter.describe(),
        })?;
    }
    if !args.quiet && args.format == Format::Table {
        output::STDOUT.line(render::TABLE_HEADER);
    }
    for line in render::plan_lines(&session.loaded.hooks, session.loaded.object.name()) {
        say!("monitor: {line}");
    }
    for h in session.loaded.hooks.iter().filter(|h| h.target.is_some()) {
        log::info!(
            "hook {:<22} {:<10} {}",
            h.hook,
            h.rung,
            h.target.as_deref().unwrap_or("")
        );
    }

    let duration = args.duration;
    let stop = async move {
        match duration {
            Some(d) => {
                tokio::select! {
                    () = tokio::time::sleep(d) => Ended::Duration,
                    why = signals.recv() => why,
                }
            }
            None => signals.recv().await,
        }
    };
    let ended = session.run(&mut sink, stop).await?;
    let mut summary = session.shutdown(&mut sink, ended).await?;
    summary.filtered_out = sink.filtered_out;
    let stdout_dropped = output::STDOUT.dropped();
    // `sink.shown` counts the records that passed the filters; under -q none
    // was printed.
    let shown = if sink.quiet {
        format!("matched {} (not shown: --quiet)", sink.shown)
    } else {
        format!("shown {}", sink.shown)
    };
    say!(
        "monitor: {:.1}s traced, ended by {}: produced {}, delivered {}, lost {} (ring buffer full), \
         {shown}, filtered out {}, decode errors {}{}",
        session.elapsed().as_secs_f64(),
        ended.name(),
        summary.produced,
        summary.delivered,
        summary.lost,
        sink.filtered_out,
        summary.decode_errors,
        if stdout_dropped > 0 {
            format!("; {stdout_dropped} lines not printed (stdout reader too slow)")
        } else {
            String::new()
        }
    );
    if summary.produced != summary.delivered + summary.lost {
        log::warn!(
            "accounting mismatch: produced {} != delivered {} + lost {}",
            summary.produced,
            summary.delivered,
            summary.lost
        );
    }
    if let Some(e) = sink.write_error.take() {
        return Err(anyhow::Error::new(e)
            .context("the trace stopped: the file holds every line written before the error"));
    }
    if let Some(mut w) = sink.writer.take() {
        let path = w.path().display().to_string();
        let lines = w.finish(summary)?;
        say!("monitor: wrote {lines} lines to {path}");
    }
    Ok(ExitCode::SUCCESS)
}
