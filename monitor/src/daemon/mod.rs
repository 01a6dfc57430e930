//! `monitor run`: the long-running daemon.
//!
//! ```text
//! config (file + flags) ─► check + lock the record directory ─► bind the
//!   listener ─► Session::start (load, attach) ─► unmount tracefs, dup
//!   map/program fds ─► drop capabilities, switch user ─► start the output
//!   threads ─► serve /metrics and /healthz ─► Session::run(DaemonSink) until SIGTERM
//!   ─► Session::shutdown (detach, drain, account) ─► verify nothing is left
//!   ─► close the trace file with its summary ─► exit 0
//! ```
//!
//! Ingestion is the session's (shared with `monitor trace`); the daemon adds a
//! [`sink::DaemonSink`] (the race detector, metrics, windows, finding log
//! lines, recording), the HTTP endpoints and a slow timer for map fill and
//! program statistics.

pub mod caps;
pub mod config;
pub mod http;
pub mod kmsg;
pub mod kstats;
pub mod metrics;
pub mod notify;
pub mod record;
pub mod sink;

use std::{
    io,
    net::SocketAddr,
    os::fd::OwnedFd,
    process::ExitCode,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use monitor_common::maps::WIRE_VERSION;
use monitor_detector::{
    Detector, DetectorConfig,
    tracefile::{FORMAT_NAME, FORMAT_VERSION, Header},
};

use self::{
    config::DaemonConfig,
    http::{Handler, Response},
    kstats::KernelStats,
    metrics::{CONTENT_TYPE, Metrics, StaticInfo},
    record::{RecordDir, Recorder},
    sink::{DaemonSink, Health},
};
use crate::{
    cli::args::RunArgs,
    output, plan, render, say,
    session::{Session, Signals},
    sys,
};

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::resolve(args)?;
    if args.check_config {
        output::STDOUT.bytes(cfg.effective.to_toml().into_bytes());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(r) = &cfg.record
        && !r.dir.is_dir()
    {
        anyhow::bail!(
            "cannot record into {}: not a directory (create it first)",
            r.dir.display()
        );
    }
    sys::check_privileges()?;
    sys::raise_fd_limit(4096);
    let mut cfg = cfg;
    // Why the daemon stays root, for the line after attach.
    let root_because = match &cfg.user {
        None => "security.user = \"root\"".to_owned(),
        Some(u) => format!("switching to {} needs CAP_SETUID and CAP_SETGID", u.name),
    };
    if cfg.drop_capabilities {
        cfg.user = caps::usable_user(cfg.user.as_ref(), cfg.user_explicit)
            .map_err(anyhow::Error::msg)?
            .cloned();
    }
    // Checked, handed to the daemon's user and locked before anything is
    // loaded: a directory in use by another daemon, or writable by others,
    // is refused at once.
    let record_dir = cfg
        .record
        .as_ref()
        .map(|r| RecordDir::prepare(r, cfg.user.as_ref()))
        .transpose()?;
    if !cfg.listen.ip().is_loopback() {
        log::warn!(
            "serving /metrics and /healthz on {} without authentication or TLS: restrict who \
             can reach it (firewall, IPAddressAllow= in the unit)",
            cfg.listen
        );
    }
    // Bind before loading anything: a taken port is reported at once and
    // leaves the kernel untouched.
    let listener = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    listener
        .set_nonblocking(true)
        .context("configuring the listening socket")?;
    http::widen_backlog(&listener).context("configuring the listening socket")?;
    // The monitor of OOM races must outlive the OOM kills it watches: the
    // global OOM killer once chose it in the soak, its 15 MB being all that
    // was left once the load's workers were gone.
    let adj = std::path::Path::new("/proc/self/oom_score_adj");
    match sys::lower_oom_score_adj(adj, cfg.oom_score_adj) {
        Ok(sys::OomAdj::Set { from }) => {
            say!("monitor: oom_score_adj {} (was {from})", cfg.oom_score_adj);
        }
        Ok(sys::OomAdj::Kept(now)) => say!(
            "monitor: oom_score_adj {now} (kept: already at or below {})",
            cfg.oom_score_adj
        ),
        Err(e) => log::warn!(
            "cannot set oom_score_adj to {} ({e}): the OOM killer may choose the monitor; set \
             OOMScoreAdjust= in the unit, or grant CAP_SYS_RESOURCE",
            cfg.oom_score_adj
        ),
    }
    // One runtime thread: capabilities and credentials are per thread, and
    // dropping them must cover the whole process; the endpoint's thread and
    // the output writer threads start only after the drop
    // (`caps::drop_after_attach` checks).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon(cfg, listener, record_dir, root_because))
}

/// The HTTP endpoints.
struct Endpoints {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Handler for Endpoints {
    fn get(&self, path: &str) -> Response {
        match path {
            "/metrics" => Response {
                status: 200,
                content_type: CONTENT_TYPE,
                body: self.metrics.render(),
            },
            "/healthz" => match self.health.check() {
                Ok(msg) => Response::text(200, msg),
                Err(why) => Response::text(503, format!("unhealthy: {why}\n")),
            },
            "/" => Response::text(
                200,
                "mm race monitor\n/metrics  Prometheus metrics\n/healthz  health check\n",
            ),
            _ => Response::text(404, "not found (try /metrics or /healthz)\n"),
        }
    }
}

/// BPF objects this process still holds: programs, links and perf events
/// (how tracepoint programs are attached), from `/proc/self/fd`.
pub fn bpf_attachments_held() -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if t == "anon_inode:bpf-prog"
            || t == "anon_inode:bpf_link"
            || t == "anon_inode:[perf_event]"
        {
            n += 1;
        }
    }
    Ok(n)
}

async fn daemon(
    cfg: DaemonConfig,
    listener: std::net::TcpListener,
    record_dir: Option<RecordDir>,
    root_because: String,
) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::install()?;
    let mut control = notify::Control::install()?;
    let mut session = Session::start(&cfg.load)?;
    sys::wall_offset_ns();
    for line in render::plan_lines(&session.loaded.hooks, session.loaded.object.name()) {
        say!("monitor: {line}");
    }
    let attached = session
        .loaded
        .hooks
        .iter()
        .filter(|h| h.target.is_some())
        .count();
    session.loaded.release_tracefs();
    // Loading parsed the kernel's BTF (several MB, twice) into memory that
    // is free now; hand it back so the daemon's resident size reflects what
    // it keeps, not its start-up peak.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }

    let mut kstats =
        KernelStats::new(&session.loaded).context("reading BPF map and program info")?;
    let program_ids = kstats.program_ids();
    let stats_fd: Option<OwnedFd> = if cfg.bpf_stats {
        Some(aya::sys::enable_stats(aya::sys::Stats::RunTime).context(
            "bpf.run_stats: BPF_ENABLE_STATS failed (needs kernel 5.8+ and CAP_SYS_ADMIN)",
        )?)
    } else {
        None
    };

    let kernel_release = sys::kernel_release();
    let detector = Detector::new(DetectorConfig::new(
        kernel_release.clone(),
        session.loaded.hooks.clone(),
    ));
    // The UFFDIO_COPY hook identifies userfaultfd files by the address of
    // userfaultfd_ioctl, which the kernel hides without CAP_SYSLOG
    // (kptr_restrict, perf_event_paranoid): its records then have no mm.
    let mut impaired: Vec<&str> = Vec::new();
    let uffd_attached = session
        .loaded
        .hooks
        .iter()
        .any(|h| h.hook == monitor_common::catalogue::HookId::UffdIoctl && h.is_attached());
    if uffd_attached && session.loaded.config.userfaultfd_ioctl == 0 {
        say!(
            "{}monitor: warning: kernel addresses are hidden (no CAP_SYSLOG?): UFFDIO_COPY records \
             cannot be attributed to an mm (hook uffd_ioctl reported degraded)",
            crate::journal::stderr(crate::journal::Priority::Warning)
        );
        impaired.push("uffd_ioctl");
    }
    let metrics = Arc::new(Metrics::new(&StaticInfo {
        hooks: &session.loaded.hooks,
        bpf_object: session.loaded.object.name(),
        kernel_release: &kernel_release,
        ring_bytes: cfg.load.ring_bytes,
        maps: &kstats.map_capacities(),
        recursion_misses: kstats.recursion_misses,
        coverage: detector.coverage(),
        impaired_hooks: &impaired,
    })?);
    let run_stats = move || stats_fd.is_some() || kstats::sysctl_run_stats_enabled();
    metrics.run_stats_enabled.set(i64::from(run_stats()));

    notify::connect_early();
    // Opened while still root: /dev/kmsg is root's to write, and the daemon
    // is not once it switched user.
    let kmsg = kmsg::Kmsg::open(kmsg::KMSG);
    if cfg.drop_capabilities {
        let dropped = caps::drop_after_attach(|| kstats.reads_work(), cfg.user.as_ref())
            .context("dropping privileges after attach")?;
        say!(
            "monitor: capabilities after attach: {}{}",
            caps::names(dropped.after.effective),
            if dropped.kept_bpf {
                " (this kernel needs it to read BPF maps: kernel.unprivileged_bpf_disabled)"
            } else {
                ""
            }
        );
        say!(
            "monitor: user after attach: {}",
            dropped.user.as_ref().map_or_else(
                || format!("root ({root_because})"),
                |u| format!(
                    "{} (uid {}, gid {}, no supplementary groups)",
                    u.name, u.uid, u.gid
                )
            )
        );
        if !kstats.reads_work() {
            log::warn!("reading BPF maps or program info fails after dropping privileges");
        }
    } else {
        say!(
            "monitor: capabilities kept after attach (--keep-capabilities): {}; running as root",
            caps::names(caps::get().map_or(0, |c| c.effective))
        );
    }
    // Threads start only now: they inherit the reduced credentials.
    output::STDOUT
        .start_writer()
        .and_then(|()| output::STDERR.start_writer())
        .context("starting the output threads")?;

    // The first trace file is created with the privileges the daemon keeps,
    // so a directory it could not write to later fails now.
    let counters = session.loaded.counters();
    let recorder = match (&cfg.record, record_dir) {
        (Some(opts), Some(dir)) => {
            let header = Header {
                format: FORMAT_NAME.to_owned(),
                version: FORMAT_VERSION,
                wire_version: WIRE_VERSION,
                monitor_version: env!("CARGO_PKG_VERSION").to_owned(),
                kernel_release: kernel_release.clone(),
                hostname: sys::hostname(),
                bpf_object: session.loaded.object.name().to_owned(),
                start_ktime_ns: session.start_ktime,
                start_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                hooks: session.loaded.hooks.clone(),
                filters: Default::default(),
            };
            // The first file covers the session from attach: records produced
            // since then are still in the ring and will be delivered into it,
            // so its summary counts from zero, not from the counters now.
            Some(Recorder::start(
                dir,
                opts.clone(),
                header,
                metrics.clone(),
                &Default::default(),
            )?)
        }
        _ => None,
    };
    metrics.observe_counters(&Default::default(), &counters);
    kstats.refresh(&metrics);

    let health = Arc::new(Health::new(attached, session.loaded.hooks.len()));
    let addr: SocketAddr = listener.local_addr().context("listener address")?;
    // Its own thread, started after the privilege drop like the output
    // threads: a scrape never waits behind the ring drain.
    let server = http::ServerThread::spawn(
        listener,
        Arc::new(Endpoints {
            metrics: metrics.clone(),
            health: health.clone(),
        }),
        http::Limits::default(),
    )
    .context("starting the metrics endpoint")?;
    say!(
        "monitor: serving metrics on http://{addr}/metrics (and /healthz); {} programs attached",
        program_ids.len()
    );
    notify::ready(&format!(
        "{attached} of {} hooks attached, serving http://{addr}/metrics",
        plan::HOOKS.len()
    ));
    control.health = Some(health.clone());

    let mut sink = DaemonSink::new(
        metrics.clone(),
        health.clone(),
        detector,
        recorder,
        counters,
        kmsg,
    );
    control.reopen = sink.reopen.clone();
    let every = cfg.map_fill_every;
    let slow_metrics = metrics.clone();
    // The slow timer lives in the stop future, which the session drops when
    // it returns: the program fds the collector holds are closed before the
    // programs are detached and the detach is verified.
    let stop = async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    kstats.refresh(&slow_metrics);
                    slow_metrics.run_stats_enabled.set(i64::from(run_stats()));
                }
                () = control.step() => {}
                why = signals.recv() => return why,
            }
        }
    };
    let ended = session.run(&mut sink, stop).await?;
    notify::stopping();
    health.stopping();
    let summary = session.shutdown(&mut sink, ended).await?;
    sink.finish_detection();

    // Detach is checked, not assumed: the object must hold no program and
    // the process no program, link or perf event descriptor.
    let still_loaded = session.loaded.loaded_program_names();
    let held = bpf_attachments_held().context("listing /proc/self/fd")?;
    if !still_loaded.is_empty() || held != 0 {
        anyhow::bail!(
            "detach incomplete: programs still loaded: [{}], BPF program/link/perf descriptors \
             still open: {held}",
            still_loaded.join(", ")
        );
    }
    drop(server);
    let recorded = sink
        .recorder
        .take()
        .and_then(|r| r.finish(&sink.counters, ended.name()));
    metrics.observe_output();
    let not_logged = output::STDOUT.dropped();
    say!(
        "monitor: {:.1}s, ended by {}: produced {}, delivered {}, lost {} (ring buffer full), \
         decode errors {}, findings {}{}; detached {} programs (verified){}{}",
        session.elapsed().as_secs_f64(),
        ended.name(),
        summary.produced,
        summary.delivered,
        summary.lost,
        summary.decode_errors,
        sink.findings,
        if not_logged > 0 {
            format!(" ({not_logged} not logged: stdout reader too slow)")
        } else {
            String::new()
        },
        program_ids.len(),
        recorded.map_or(String::new(), |p| format!("; closed {}", p.display())),
        match metrics.record_dropped.get() {
            0 => String::new(),
            n => format!("; {n} events could not be recorded (see the files' loss lines)"),
        },
    );
    drop(session);
    Ok(ExitCode::SUCCESS)
}
