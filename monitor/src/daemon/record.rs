//! `--record DIR`: the daemon's trace files, rotated by size and age, at most
//! `max_files` of them kept.
//!
//! Each file is a complete trace file (docs/trace-format.md): a header, the
//! events, loss and finding lines of its period, and, when it was closed by
//! rotation or a clean stop, a summary whose counts cover that period (so the
//! counts of all files of a run add up to the run's totals). Files are named
//! `mm-race-<UTC start>-<n>.trace.jsonl`, which sorts in time order; only
//! files with that name pattern are ever deleted.
//!
//! Writing never stops the daemon: a failed write or rotation is logged (at
//! most once a minute), counted in `mmrace_record_errors_total`, and retried
//! at the next flush with the lines kept in a bounded buffer; events beyond
//! it are counted (`mmrace_record_events_dropped_total`) and a loss line
//! marks the gap in the file (see `crate::tracefile`).
//!
//! The directory is checked and locked at start-up, before anything is
//! loaded ([`RecordDir::prepare`]): owned by root or the daemon's user and
//! writable by nobody else, handed to the daemon's user if root owns it, and
//! locked (`.mm-race-monitor.lock`) so that two daemons never prune each
//! other's files. Files are created through the directory's descriptor,
//! mode 0600, `O_EXCL|O_NOFOLLOW`.

use std::{
    fs::File,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use monitor_detector::{
    tracefile::{Header, Line},
    workload::CgroupInfo,
};

use super::{caps::User, config::RecordOptions, metrics::Metrics};
use crate::{
    loader::{Counters, FaultAttach},
    secfs::{Dir, DirPolicy},
    session, sys,
    tracefile::TraceWriter,
};

pub const PREFIX: &str = "mm-race-";
pub const SUFFIX: &str = ".trace.jsonl";
/// The lock file that keeps a second daemon out of the directory.
pub const LOCK_FILE: &str = ".mm-race-monitor.lock";

/// The record directory, checked and locked.
pub struct RecordDir {
    dir: Dir,
    _lock: File,
}

impl RecordDir {
    /// Opens, checks, hands over (to `user`, when root owns the directory)
    /// and locks the record directory. Runs as root, before loading.
    pub fn prepare(opts: &RecordOptions, user: Option<&User>) -> anyhow::Result<RecordDir> {
        let shown = opts.dir.display();
        let dir = Dir::open(&opts.dir).map_err(|e| {
            anyhow::anyhow!("cannot record into {shown}: {e} (it must be an existing directory)")
        })?;
        let owners: Vec<u32> = user.map(|u| u.uid).into_iter().collect();
        dir.check(DirPolicy {
            owners: &owners,
            sticky_ok: false,
        })
        .map_err(|m| anyhow::anyhow!("cannot record into {m}"))?;
        let lock = dir
            .lock(LOCK_FILE)
            .map_err(|m| anyhow::anyhow!("cannot record into {m}"))?;
        if let Some(u) = user {
            let (owner, _) = dir.owner_mode()?;
            if owner != u.uid {
                dir.chown(u.uid, u.gid).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot hand the record directory {shown} to user {} (uid {}) who the \
                         daemon runs as after attach: {e} (chown it yourself, e.g. chown {}:{} \
                         {shown})",
                        u.name,
                        u.uid,
                        u.uid,
                        u.gid
                    )
                })?;
                log::info!(
                    "record directory {shown} handed to {} (uid {}, gid {})",
                    u.name,
                    u.uid,
                    u.gid
                );
            }
        }
        Ok(RecordDir { dir, _lock: lock })
    }
}

struct Current {
    writer: TraceWriter,
    opened: Instant,
    /// Counters when the file was opened (its summary reports the difference).
    base: Counters,
    delivered: u64,
    decode_errors: u64,
    /// Size on disk after the last flush.
    size: u64,
    /// Events the writer had dropped at the last flush.
    dropped: u64,
}

pub struct Recorder {
    dir: RecordDir,
    opts: RecordOptions,
    header: Header,
    current: Option<Current>,
    metrics: Arc<Metrics>,
    /// Counter for file names started within the same second.
    seq: u64,
    last_error_log: Option<Instant>,
    retry_rotation_at: Option<Instant>,
}

/// `YYYYmmddTHHMMSSZ` for a time since the epoch (UTC, proleptic Gregorian).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The counters accumulated between `base` and `now`.
pub fn counters_delta(now: &Counters, base: &Counters) -> Counters {
    let row = |r: usize| {
        let b = base.by_reason.get(r);
        now.by_reason[r]
            .iter()
            .enumerate()
            .map(|(i, v)| v.saturating_sub(b.and_then(|b| b.get(i)).copied().unwrap_or(0)))
            .collect()
    };
    Counters {
        by_reason: (0..now.by_reason.len()).map(row).collect(),
        hits: now
            .hits
            .iter()
            .map(|(p, v)| {
                let b = base
                    .hits
                    .iter()
                    .find(|(q, _)| q == p)
                    .map_or(0, |(_, v)| *v);
                (*p, v.saturating_sub(b))
            })
            .collect(),
        stats: now
            .stats
            .iter()
            .map(|(s, v)| {
                let b = base
                    .stats
                    .iter()
                    .find(|(q, _)| q == s)
                    .map_or(0, |(_, v)| *v);
                (*s, v.saturating_sub(b))
            })
            .collect(),
        fault_gate_open: now.fault_gate_open,
        fault_gate_opens: now.fault_gate_opens.saturating_sub(base.fault_gate_opens),
        fault_programs: FaultAttach {
            attaches: now
                .fault_programs
                .attaches
                .saturating_sub(base.fault_programs.attaches),
            failures: now
                .fault_programs
                .failures
                .saturating_sub(base.fault_programs.failures),
            delay_ns_sum: now
                .fault_programs
                .delay_ns_sum
                .saturating_sub(base.fault_programs.delay_ns_sum),
            ..now.fault_programs
        },
    }
}

/// Whether `name` is one of our trace files (the only ones ever deleted).
pub fn is_ours(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// Our files in `dir`, oldest first.
pub fn list_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_ours))
        .collect();
    files.sort();
    Ok(files)
}

impl Recorder {
    /// Opens the first file; failing here is a start-up error.
    pub fn start(
        dir: RecordDir,
        opts: RecordOptions,
        header: Header,
        metrics: Arc<Metrics>,
        counters: &Counters,
    ) -> anyhow::Result<Recorder> {
        let mut r = Recorder {
            dir,
            opts,
            header,
            current: None,
            metrics,
            seq: 0,
            last_error_log: None,
            retry_rotation_at: None,
        };
        let cur = r.open(counters)?;
        r.current = Some(cur);
        r.prune();
        Ok(r)
    }

    fn open(&mut self, counters: &Counters) -> anyhow::Result<Current> {
        let stamp = utc_stamp(SystemTime::now());
        let (name, file) = loop {
            let name = format!("{PREFIX}{stamp}-{:04}{SUFFIX}", self.seq);
            self.seq += 1;
            match self.dir.dir.create_new(&name) {
                Ok(f) => break (name, f),
                // Taken (by a file of ours, or planted): the next number.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && !self.seq.is_multiple_of(10_000) => {}
                Err(e) => anyhow::bail!(
                    "cannot create {}: {e}",
                    self.dir.dir.path().join(&name).display()
                ),
            }
        };
        let path = self.dir.dir.path().join(&name);
        let mut writer = TraceWriter::new(file, path.clone());
        let mut header = self.header.clone();
        header.start_ktime_ns = sys::ktime_ns();
        header.start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Err(e) = writer.write_header(header) {
            // An empty file is no trace file: take it back.
            drop(writer);
            let _ = self.dir.dir.remove(&name);
            return Err(e.into());
        }
        let size = writer.len();
        self.metrics.record_files.inc();
        self.metrics.record_bytes.inc_by(size);
        log::info!("recording to {}", path.display());
        Ok(Current {
            writer,
            opened: Instant::now(),
            base: counters.clone(),
            delivered: 0,
            decode_errors: 0,
            size,
            dropped: 0,
        })
    }

    /// Deletes our oldest files beyond `max_files` (the current one included
    /// in the count, never deleted).
    fn prune(&mut self) {
        let current = self.current.as_ref().map(|c| c.writer.path().to_owned());
        let mut files: Vec<String> = match self.dir.dir.names() {
            Ok(f) => f.into_iter().filter(|n| is_ours(n)).collect(),
            Err(e) => return self.error(format!("listing {}: {e}", self.opts.dir.display())),
        };
        files.sort();
        let excess = files.len().saturating_sub(self.opts.max_files as usize);
        for old in files
            .iter()
            .filter(|n| current.as_ref().and_then(|p| p.file_name()) != Some(n.as_ref()))
            .take(excess)
        {
            if let Err(e) = self.dir.dir.remove(old) {
                self.error(format!(
                    "deleting {}: {e}",
                    self.opts.dir.join(old).display()
                ));
            }
        }
    }

    fn error(&mut self, msg: String) {
        self.metrics.record_errors.inc();
        let quiet = self
            .last_error_log
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if !quiet {
            log::warn!("recording: {msg}");
            self.last_error_log = Some(Instant::now());
        }
    }

    pub fn push(&mut self, line: &Line) {
        if let Some(c) = &mut self.current {
            c.writer.push(line);
            if matches!(line, Line::Event(_)) {
                c.delivered += 1;
            }
        }
    }

    /// The `cgroup` lines the next event needs, in the current file.
    pub fn note_cgroups(&mut self, infos: &[Arc<CgroupInfo>]) {
        if let Some(c) = &mut self.current {
            for i in infos {
                c.writer.note_cgroup(i);
            }
        }
    }

    /// A line already serialised (a finding line with its `time`).
    pub fn push_serialized(&mut self, line: &Line, text: &str) {
        if let Some(c) = &mut self.current {
            c.writer.push_serialized(line, text);
        }
    }

    pub fn decode_error(&mut self) {
        if let Some(c) = &mut self.current {
            c.decode_errors += 1;
        }
    }

    /// Writes what is buffered; rotates when the file is too big or too old.
    pub fn flush(&mut self, counters: &Counters) {
        let Some(c) = &mut self.current else { return };
        let res = c.writer.flush();
        let size = c.writer.len();
        self.metrics
            .record_bytes
            .inc_by(size.saturating_sub(c.size));
        c.size = size;
        let dropped = c.writer.dropped_events();
        self.metrics
            .record_dropped
            .inc_by(dropped.saturating_sub(c.dropped));
        c.dropped = dropped;
        let due =
            c.size >= self.opts.max_file_bytes || c.opened.elapsed() >= self.opts.max_file_age;
        if let Err(e) = res {
            self.error(e.to_string());
        }
        let retry_ok = self.retry_rotation_at.is_none_or(|t| Instant::now() >= t);
        if due && retry_ok {
            self.rotate(counters, "rotated");
        }
    }

    /// SIGHUP (`systemctl reload`): close the current file with its summary
    /// and start a new one now, as a rotation does (the new file continues
    /// where the old one ended, so no record falls between them).
    pub fn reopen(&mut self, counters: &Counters) {
        if let Some(c) = &mut self.current
            && let Err(e) = c.writer.flush()
        {
            self.error(e.to_string());
        }
        self.rotate(counters, "reload");
    }

    fn rotate(&mut self, counters: &Counters, ended_by: &str) {
        let next = match self.open(counters) {
            Ok(n) => n,
            Err(e) => {
                self.retry_rotation_at = Some(Instant::now() + Duration::from_secs(10));
                return self.error(format!("starting a new trace file: {e:#}"));
            }
        };
        self.retry_rotation_at = None;
        if let Some(old) = self.current.replace(next) {
            self.close(old, counters, ended_by);
        }
        self.prune();
    }

    fn close(&mut self, c: Current, counters: &Counters, ended_by: &str) {
        let mut summary = session::summary_from(
            &counters_delta(counters, &c.base),
            c.delivered + c.decode_errors,
            c.decode_errors,
            ended_by,
            c.opened.elapsed(),
        );
        summary.filtered_out = 0;
        let mut c = c;
        let res = c.writer.finish(summary);
        self.metrics
            .record_bytes
            .inc_by(c.writer.len().saturating_sub(c.size));
        // After a failed finish, what is still buffered is never written.
        let lost = c.writer.dropped_events()
            + if res.is_err() {
                c.writer.buffered_events()
            } else {
                0
            };
        self.metrics
            .record_dropped
            .inc_by(lost.saturating_sub(c.dropped));
        if let Err(e) = res {
            self.error(e.to_string());
        }
    }

    /// Closes the current file with a summary (clean stop) and syncs it.
    pub fn finish(mut self, counters: &Counters, ended_by: &str) -> Option<PathBuf> {
        let c = self.current.take()?;
        let path = c.writer.path().to_owned();
        self.close(c, counters, ended_by);
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(utc_stamp(t), "20000229T010101Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // 2099-12-31 23:59:59
        assert_eq!(utc_stamp(t), "20991231T235959Z");
    }

    #[test]
    fn deltas_telescope() {
        use monitor_common::{catalogue::ProbeId, maps::Stat};
        let c = |v: u64| Counters {
            by_reason: vec![vec![v, 2 * v]; 4],
            hits: vec![(ProbeId::TpExitMmap, 3 * v)],
            stats: vec![(Stat::TaskMapFull, v)],
            fault_gate_open: true,
            fault_gate_opens: v,
            fault_programs: FaultAttach {
                on_demand: true,
                attached: true,
                attaches: 4 * v,
                failures: v,
                delay_ns_sum: 5 * v,
                last_delay_ns: 7,
            },
        };
        let d = counters_delta(&c(5), &c(2));
        assert_eq!(d, c(3));
        assert_eq!(counters_delta(&c(5), &Counters::default()), c(5));
    }
}
