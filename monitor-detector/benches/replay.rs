//! Replay benchmark: detector throughput over a large synthetic trace.
//!
//! ```text
//! cargo bench -p monitor-detector --bench replay            # 1,000,000 events
//! REPLAY_EVENTS=5000000 REPLAY_LIVE_MMS=20000 cargo bench -p monitor-detector --bench replay
//! REPLAY_DETECTOR_ONLY=1 perf record -g target/release/deps/replay-…   # profile the detector
//! REPLAY_TRACE_OUT=/tmp/replay.jsonl cargo bench -p monitor-detector --bench replay  # and keep the trace
//!                                      # (then: time monitor analyze /tmp/replay.jsonl)
//! REPLAY_FINDINGS_OUT=/tmp/found.jsonl target/release/deps/replay-…   # every finding and the counters
//!                                      # (compare two builds' files: the verdicts must not move)
//! ```
//!
//! The trace mixes what a busy host produces on the function rung: process
//! lives (exec stack moves, exits, frees), kthread faults on healthy mms,
//! userfaultfd copies, migration batches with waits, occasional OOM kills
//! (some of them overlapping exit_mmap), with records of one mm from two
//! CPUs swapped now and then. It reports events per second for the detector
//! alone and for parse + detect (the `monitor analyze` path). Nothing is
//! asserted about timings.

use std::hint::black_box;

use monitor_common::{
    catalogue::{HookId, ProbeId, Rung},
    event::{fault_entry, fixed_str, hdr, reap_source},
};
use monitor_detector::{
    Detector, DetectorConfig, FileAnalyzer, ProbeRef,
    event::{
        Data, Event, Fault, MarkVictim, Migrate, MmState, Reap, StackMove, UffdCopy, VmaRange,
    },
    tracefile::{FORMAT_NAME, FORMAT_VERSION, Header, HookStatus, Line, to_line},
};

const RELEASE: &str = "6.12.117+deb12-cloud-amd64";

/// One record a script will emit: (pid, kthread, mm, generation, data, flags).
type Step = (u32, bool, u64, u64, Data, u32);

struct Gen {
    t: u64,
    rng: u64,
    seqs: std::collections::HashMap<(u64, u64), u64>,
    out: Vec<Event>,
}

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn emit(&mut self, (pid, kthread, mm, generation, data, flags): Step) {
        self.t += 700;
        let (seq, mut hdr_flags) = if mm == 0 {
            (0, hdr::UNSEQUENCED)
        } else {
            let s = self.seqs.entry((mm, generation)).or_insert(0);
            *s += 1;
            (*s, if *s == 1 { hdr::NEW_GENERATION } else { 0 })
        };
        hdr_flags |= flags;
        if flags & hdr::END_GENERATION != 0 {
            self.seqs.remove(&(mm, generation));
        }
        self.out.push(Event {
            t: self.t,
            cpu: pid % 8,
            pid,
            tgid: pid,
            comm: fixed_str(if kthread { "kworker/u8:1" } else { "worker" }),
            task_flags: if kthread { 0x0020_0000 } else { 0x0040_0000 },
            mm,
            mm_gen: if mm == 0 { 0 } else { generation },
            seq,
            cgroup_id: 0x1234,
            memcg_id: 0x2345,
            hdr_flags,
            probe: ProbeRef::known(ProbeId::FexitFault),
            data,
        });
    }
}

fn vma() -> VmaRange {
    VmaRange {
        vm_start: 0x5583_2a40_0000,
        vm_end: 0x5583_2e40_0000,
        vm_flags: 0x0010_0073,
        address: 0x5583_2a40_0010,
    }
}

fn st(flags: u64) -> MmState {
    MmState { mm_flags: flags }
}

fn copy(ret: i64) -> UffdCopy {
    UffdCopy {
        dst: 0x7f8a_4c60_0000,
        len: 4096,
        ret,
        mmap_changing: 0,
        fd: 5,
    }
}

fn migrate() -> Migrate {
    Migrate {
        succeeded: 32,
        failed: 0,
        thp_succeeded: 0,
        thp_failed: 0,
        thp_split: 0,
        large_folio_split: 0,
        mode: 1,
        reason: 0,
        ptes_set: 32,
        ptes_removed: 32,
        start_seen: 1,
        _pad0: 0,
    }
}

/// The steps of one script; `k` makes its mm and pids unique.
fn script(g: &mut Gen, k: u64) -> Vec<Step> {
    let mm = 0xffff_8880_0000_0000 + k * 0x800;
    let generation = k;
    let pid = 1000 + (k % 30_000) as u32;
    let sm = StackMove {
        vm_start: 0x7fff_ffff_0000,
        vm_end: 0x7fff_ffff_f000,
        vm_flags: 0x0011_8173,
        shift: 0x1000,
        ret: 0,
    };
    let mut s: Vec<Step> = Vec::new();
    let mut ev = |pid: u32, kthread: bool, data: Data, flags: u32| {
        s.push((pid, kthread, mm, generation, data, flags))
    };
    match g.next() % 100 {
        // A process's life, a kthread faulting on it now and then.
        0..=39 => {
            ev(pid, false, Data::StackMoveStart(sm), 0);
            ev(pid, false, Data::StackMoveEnd(sm), 0);
            for _ in 0..(g.next() % 6) {
                let f = Fault {
                    address: 0x7f3c_1b00_0000,
                    mm_flags: 0x2_00cd,
                    current_mm: mm,
                    vm_flags: 0,
                    fault_flags: 0x214,
                    ret: 0,
                    entry_flags: fault_entry::SEEN,
                };
                ev(pid + 1, true, Data::Fault(f), 0);
            }
            ev(pid, false, Data::ExitMmapStart(st(0x2_00cd)), 0);
            ev(pid, false, Data::UnmapVmasStart(vma()), 0);
            ev(pid, false, Data::UnmapVmasEnd(vma()), 0);
            ev(pid, false, Data::ExitMmapEnd(st(0x22_00cd)), 0);
            ev(pid, false, Data::MmDrop(st(0x22_00cd)), hdr::END_GENERATION);
        }
        // userfaultfd copies.
        40..=69 => {
            for _ in 0..(2 + g.next() % 8) {
                ev(pid, false, Data::MfillStart(copy(0)), 0);
                ev(pid, false, Data::MfillEnd(copy(4096)), 0);
                ev(pid, false, Data::UffdCopy(copy(0)), 0);
            }
            ev(pid, false, Data::MmDrop(st(0x22_00cd)), hdr::END_GENERATION);
        }
        // A wait on a migration entry, inside a batch (the batch itself is
        // emitted around it by the caller).
        70..=94 => {
            ev(pid, false, Data::MigrationEntryWait(vma()), 0);
            ev(pid, false, Data::MmDrop(st(0x2_00cd)), hdr::END_GENERATION);
        }
        // An OOM kill; half of them overlap exit_mmap (near misses).
        _ => {
            let victim = MarkVictim {
                victim_pid: pid,
                victim_tgid: pid,
                victim_comm: fixed_str("worker"),
                uid: 0,
                mm_flags: 0x2_00cd,
                _pad0: 0,
                victim_cgroup_id: 0x1234,
                victim_memcg_id: 0x2345,
            };
            let reap = Reap {
                victim_pid: 0,
                source: reap_source::FUNCTION,
                ret: 1,
                mm_flags: 0x42_00cd,
                _pad0: 0,
            };
            let overlap = g.next().is_multiple_of(2);
            ev(pid, false, Data::MarkVictim(victim), 0);
            ev(40, true, Data::ReapStart(reap), 0);
            if !overlap {
                ev(40, true, Data::ReapEnd(reap), 0);
            }
            ev(pid, false, Data::ExitMmapStart(st(0x42_00cd)), 0);
            if overlap {
                ev(40, true, Data::ReapEnd(reap), 0);
            }
            ev(pid, false, Data::ExitMmapEnd(st(0x62_00cd)), 0);
            ev(pid, false, Data::MmDrop(st(0x62_00cd)), hdr::END_GENERATION);
        }
    }
    s
}

/// `n` events from a pool of `live` scripts running concurrently.
fn synthetic(n: usize, live: usize) -> Vec<Event> {
    let mut g = Gen {
        t: 1_000_000_000,
        rng: 0x9e37_79b9_7f4a_7c15,
        seqs: std::collections::HashMap::new(),
        out: Vec::with_capacity(n + 64),
    };
    let mut k: u64 = 0;
    let mut pool: Vec<std::collections::VecDeque<Step>> = Vec::new();
    let mut batch_open = false;
    while g.out.len() < n {
        while pool.len() < live {
            k += 1;
            let steps = script(&mut g, k);
            pool.push(steps.into());
        }
        // Compaction runs in batches; waits only happen while one is open.
        if g.next().is_multiple_of(64) {
            let data = if batch_open {
                Data::MigrateEnd(migrate())
            } else {
                Data::MigrateStart(migrate())
            };
            batch_open = !batch_open;
            g.emit((51, true, 0, 0, data, 0));
        }
        let i = (g.next() % pool.len() as u64) as usize;
        let waits = matches!(
            pool[i].front(),
            Some((_, _, _, _, Data::MigrationEntryWait(_), _))
        );
        if waits && !batch_open {
            continue;
        }
        if let Some(step) = pool[i].pop_front() {
            g.emit(step);
            // Now and then the record just written and the previous one were
            // reserved in the other order than their sequence numbers.
            let n = g.out.len();
            if n > 2 && g.next().is_multiple_of(16) && g.out[n - 1].cpu != g.out[n - 2].cpu {
                g.out.swap(n - 1, n - 2);
            }
        }
        if pool[i].is_empty() {
            pool.swap_remove(i);
        }
    }
    g.out
}

fn hooks() -> Vec<HookStatus> {
    [
        "oom_reap",
        "mark_victim",
        "exit_mmap",
        "unmap_vmas",
        "mmdrop",
        "handle_mm_fault",
        "mfill_copy",
        "uffd_ioctl",
        "migration_entry_wait",
        "migrate_pages",
    ]
    .iter()
    .map(|h| HookStatus {
        hook: HookId::from_name(h).expect("hook"),
        rung: Rung::Fentry,
        target: None,
        programs: Vec::new(),
        refused: Vec::new(),
    })
    .collect()
}

#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time; the detector itself never reads a clock \
              (the workspace clippy.toml forbids Instant::now, which is why this needs an \
              allow rather than an expect: the lint only fires where that config is present)"
)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = std::time::Instant::now();
    let v = f();
    (v, start.elapsed().as_secs_f64())
}

/// The bench's trace (or its findings) as a file, to time `monitor
/// analyze` on it (or compare two builds' verdicts).
#[allow(
    clippy::disallowed_methods,
    reason = "the benchmark's own output file; the detector itself does no IO (the workspace \
              clippy.toml forbids std::fs, which is why this needs an allow rather than an \
              expect: the lint only fires where that config is present)"
)]
fn keep_file(path: &std::ffi::OsStr, text: &str) {
    std::fs::write(path, text).expect("REPLAY_TRACE_OUT / REPLAY_FINDINGS_OUT: write the file");
}

fn main() {
    let n: usize = std::env::var("REPLAY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let live: usize = std::env::var("REPLAY_LIVE_MMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let events = synthetic(n, live);
    let count = events.len();

    // 1. Detector alone, on decoded events (the daemon's path: the session
    // hands each decoded event over by value). The copy is made outside the
    // timed part.
    let owned = events.clone();
    let ((findings, stats), secs) = timed(|| {
        let mut d = Detector::new(DetectorConfig::new(RELEASE, hooks()));
        let mut found = 0usize;
        for ev in owned {
            found += d.push_event(ev).len();
            // What the daemon's sink does after every event (it observes
            // each window's duration in a histogram).
            d.drain_windows(|w, ns| {
                black_box((w, ns));
            });
        }
        found += d.finish().len();
        (black_box(found), d.stats().clone())
    });
    println!(
        "event size:      {} bytes (Event), {} bytes (Data)",
        size_of::<Event>(),
        size_of::<Data>()
    );
    println!(
        "detector:        {count} events in {secs:.3} s = {:.0} events/s ({findings} findings: {:?}; \
         peak {} mms, {} held for reordering)",
        count as f64 / secs,
        stats.findings,
        stats.peak_mms,
        stats.held
    );

    // Every finding and the final counters, one per line, untimed: two
    // builds given the same REPLAY_EVENTS must write the same file.
    if let Some(path) = std::env::var_os("REPLAY_FINDINGS_OUT") {
        let mut d = Detector::new(DetectorConfig::new(RELEASE, hooks()));
        let mut out = String::new();
        let mut write = |found: Vec<monitor_detector::Finding>| {
            for f in found {
                out.push_str(&to_line(&Line::Finding(f)));
                out.push('\n');
            }
        };
        for ev in &events {
            write(d.push_event(*ev));
        }
        write(d.finish());
        out.push_str(&format!("{:?}\n", d.stats()));
        keep_file(&path, &out);
    }

    if std::env::var_os("REPLAY_DETECTOR_ONLY").is_some() {
        return;
    }

    // 2. Parse + detect from JSON Lines (the `monitor analyze` path).
    let header = Header {
        format: FORMAT_NAME.to_owned(),
        version: FORMAT_VERSION,
        wire_version: monitor_common::maps::WIRE_VERSION,
        monitor_version: "bench".to_owned(),
        kernel_release: RELEASE.to_owned(),
        hostname: "bench".to_owned(),
        bpf_object: "atomic".to_owned(),
        start_ktime_ns: 0,
        start_unix_ms: 0,
        hooks: hooks(),
        filters: Default::default(),
    };
    let mut text = to_line(&Line::Header(header));
    text.push('\n');
    for ev in events {
        text.push_str(&to_line(&Line::Event(ev)));
        text.push('\n');
    }
    if let Some(path) = std::env::var_os("REPLAY_TRACE_OUT") {
        keep_file(&path, &text);
    }
    let ((), secs) = timed(|| {
        let mut a = FileAnalyzer::new("bench.jsonl");
        for line in text.lines() {
            a.feed_line(line);
        }
        black_box(a.finish().findings.len());
    });
    println!(
        "parse + detect:  {count} events in {secs:.3} s = {:.0} events/s ({:.1} MB of JSON)",
        count as f64 / secs,
        text.len() as f64 / 1e6
    );
}
