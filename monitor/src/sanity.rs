//! The attach-time sanity read: do the offsets resolved from the BTF the
//! loader was given describe the running kernel?
//!
//! `btfcheck.rs` compares a `--btf` file with the kernel's own BTF, or with
//! `/proc/kallsyms` when the kernel exports none; a file of another build of
//! the same kernel version passes the second test. This one asks the kernel
//! itself: the BPF program `sanity_read` (`monitor-ebpf/src/sanity.rs`) is
//! run once with `BPF_PROG_TEST_RUN` in this thread's own context, and reads
//! `current`'s fields at the resolved offsets. What it read is compared with
//! what needs no offset:
//!
//! | field | expected |
//! |---|---|
//! | `task_struct.pid`, `.tgid` | `bpf_get_current_pid_tgid()` (and `gettid`/`getpid`) |
//! | `task_struct.comm` | `bpf_get_current_comm()` |
//! | `task_struct.flags` | `PF_KTHREAD`, `PF_FORKNOEXEC`, `PF_RANDOMIZE` as `/proc/thread-self/stat` has them |
//! | `task_struct.mm` → `mm_struct.flags` | bits 0–10: `prctl(PR_GET_DUMPABLE)` and `/proc/self/coredump_filter` (`MMF_DUMPABLE`, `MMF_DUMP_FILTER`, include/linux/sched/coredump.h) |
//! | `task_struct.cgroups` → `css_set.dfl_cgrp` → `cgroup.kn` → `kernfs_node.id` | `bpf_get_current_cgroup_id()` |
//! | … `css_set.subsys[memory_cgrp_id]` → `cgroup_subsys_state.cgroup` … | the inode number of this thread's memory cgroup directory |
//!
//! A disagreement refuses the BTF. A check whose field this BTF lacks, or
//! whose expectation cannot be known here (no cgroup mount visible), is
//! skipped; a kernel that cannot run the program (no `BPF_PROG_TEST_RUN` for
//! raw tracepoints before 5.10) gets a warning.

use std::os::unix::fs::MetadataExt as _;

use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{RawTracePoint, RawTracePointRunOptions, TestRun as _},
};
use monitor_common::{
    config::{Config, Field},
    maps::{self as names, sanity},
    pf,
};

use crate::cgroup::Mounts;

/// Bits of `task_struct.flags` that stay put while a thread makes system
/// calls (unlike `PF_SUPERPRIV`, `PF_MEMALLOC*`).
const STABLE_PF: u64 = (pf::PF_KTHREAD | PF_FORKNOEXEC | PF_RANDOMIZE) as u64;
const PF_FORKNOEXEC: u32 = 0x0000_0040;
const PF_RANDOMIZE: u32 = 0x0040_0000;

/// `MMF_DUMPABLE_BITS` (2) plus `MMF_DUMP_FILTER_BITS` (9).
const MM_DUMP_BITS: u64 = 0x7ff;

/// What the test run found.
pub enum Outcome {
    /// Every check that could be made agreed; how many were made.
    Agrees(usize),
    /// The kernel could not run the program (reason).
    NotRun(String),
}

fn word_bytes(lo: u64, hi: u64) -> String {
    let mut b = lo.to_le_bytes().to_vec();
    b.extend_from_slice(&hi.to_le_bytes());
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// `task_struct.flags` of this thread as `/proc/thread-self/stat` has it.
fn proc_task_flags() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The comm is in parentheses and may hold anything: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // state ppid pgrp session tty_nr tpgid flags
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// The low bits of this process's `mm->flags`: dumpable, coredump filter.
fn expected_mm_bits() -> Option<u64> {
    // SAFETY: prctl(PR_GET_DUMPABLE) has no arguments that point anywhere.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
    let filter = std::fs::read_to_string("/proc/self/coredump_filter").ok()?;
    let filter = u64::from_str_radix(filter.trim(), 16).ok()?;
    (dumpable >= 0).then_some((dumpable as u64 | filter << 2) & MM_DUMP_BITS)
}

/// Runs the sanity read and compares. `Err` names every disagreement.
pub fn check(ebpf: &mut Ebpf, config: &Config, mounts: &Mounts) -> Result<Outcome, String> {
    let Some(prog) = ebpf.program_mut(names::SANITY_PROGRAM) else {
        return Ok(Outcome::NotRun(
            "the program is missing from the BPF object".into(),
        ));
    };
    let prog: &mut RawTracePoint = match prog.try_into() {
        Ok(p) => p,
        Err(e) => return Ok(Outcome::NotRun(e.to_string())),
    };
    if let Err(e) = prog.load() {
        return Ok(Outcome::NotRun(format!("loading it failed: {e}")));
    }
    let ran = prog.test_run(RawTracePointRunOptions::new());
    let _ = prog.unload();
    if let Err(e) = ran {
        return Ok(Outcome::NotRun(format!("BPF_PROG_TEST_RUN failed: {e}")));
    }
    // SAFETY: gettid and getpid have no preconditions.
    let (tid, pid) = (unsafe { libc::gettid() } as u64, unsafe { libc::getpid() }
        as u64);
    let Some(map) = ebpf.map(names::SANITY) else {
        return Ok(Outcome::NotRun("its map is missing".into()));
    };
    let a: Array<&MapData, u64> = Array::try_from(map).map_err(|e| e.to_string())?;
    let v = |i: u32| a.get(&i, 0).unwrap_or(0);
    if v(sanity::RAN) != 1 {
        return Ok(Outcome::NotRun("the program did not run".into()));
    }
    let helper = v(sanity::HELPER_PID_TGID);
    if helper != (pid << 32 | tid) {
        return Ok(Outcome::NotRun(format!(
            "it ran in another context (pid/tgid {}/{}, this thread is {tid}/{pid})",
            helper & 0xffff_ffff,
            helper >> 32
        )));
    }
    let has = |f: Field| config.offset(f).is_some();
    let at = |f: Field| {
        config
            .offset(f)
            .map_or_else(|| "absent".to_owned(), |o| format!("byte {o}"))
    };
    let mut bad = Vec::new();
    let mut made = 0usize;
    let mut compare = |what: String, got: String, want: String| {
        made += 1;
        if got != want {
            bad.push(format!("{what} reads {got}, the kernel says {want}"));
        }
    };
    let got = v(sanity::PID_TGID);
    compare(
        format!("task_struct.pid ({})", at(Field::TaskPid)),
        (got & 0xffff_ffff).to_string(),
        tid.to_string(),
    );
    if has(Field::TaskTgid) {
        compare(
            format!("task_struct.tgid ({})", at(Field::TaskTgid)),
            (got >> 32).to_string(),
            pid.to_string(),
        );
    }
    if has(Field::TaskComm) {
        compare(
            format!("task_struct.comm ({})", at(Field::TaskComm)),
            format!("{:?}", word_bytes(v(sanity::COMM), v(sanity::COMM + 1))),
            format!(
                "{:?}",
                word_bytes(v(sanity::HELPER_COMM), v(sanity::HELPER_COMM + 1))
            ),
        );
    }
    if let Some(flags) = proc_task_flags() {
        compare(
            format!("task_struct.flags ({})", at(Field::TaskFlags)),
            format!("{:#x}", v(sanity::TASK_FLAGS) & STABLE_PF),
            format!("{:#x}", flags & STABLE_PF),
        );
    }
    if let Some(want) = expected_mm_bits() {
        compare(
            format!(
                "mm_struct.flags ({}, through task_struct.mm at {})",
                at(Field::MmFlags),
                at(Field::TaskMm)
            ),
            format!("{:#x}", v(sanity::MM_FLAGS) & MM_DUMP_BITS),
            format!("{want:#x}"),
        );
    }
    let cgroup_chain = [Field::TaskCgroups, Field::CgroupKn, Field::KernfsNodeId];
    let helper_cgroup = v(sanity::HELPER_CGROUP_ID);
    if cgroup_chain.iter().all(|f| has(*f)) && has(Field::CssSetDflCgrp) && helper_cgroup != 0 {
        compare(
            "the cgroup v2 id (task_struct.cgroups → css_set.dfl_cgrp → cgroup.kn → \
             kernfs_node.id)"
                .to_owned(),
            v(sanity::CGROUP_ID).to_string(),
            helper_cgroup.to_string(),
        );
    }
    if cgroup_chain.iter().all(|f| has(*f))
        && has(Field::CssSetSubsys)
        && has(Field::CssCgroup)
        && config.memory_cgrp_id != monitor_common::config::OFFSET_NONE
        && let Some(dir) = mounts.own_memcg_dir()
        && let Ok(meta) = std::fs::metadata(&dir)
    {
        compare(
            format!(
                "the memory cgroup id (css_set.subsys[{}] → cgroup_subsys_state.cgroup → …, \
                 this thread's is {})",
                config.memory_cgrp_id,
                dir.display()
            ),
            v(sanity::MEMCG_ID).to_string(),
            meta.ino().to_string(),
        );
    }
    if bad.is_empty() {
        Ok(Outcome::Agrees(made))
    } else {
        Err(bad.join("; "))
    }
}
