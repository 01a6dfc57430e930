//! Exec's temporary stack under targeted migration (kernel-notes §4.3, §5.4):
//! a child exec's with a large argv (its temporary stack spans many pages)
//! while a thread on the other CPU calls `move_pages(2)` on the child's pid
//! for the pages just below `STACK_TOP_MAX`, in a loop, towards the other
//! node. Once `exec_mmap` has made the new mm the child's, those pages are
//! the temporary stack until `setup_arg_pages` has moved it; `move_pages`
//! isolates under the mmap lock but migrates after dropping it, so its rmap
//! walk meets the temporary VMA — which `try_to_migrate` must skip
//! (`invalid_migration_vma`). Far likelier per exec than compaction finding
//! those pages by chance.

use std::{
    ffi::CString,
    sync::{
        Arc,
        atomic::{AtomicI32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use crate::{
    hold::pin,
    sys::{self, ms_since, wait_child},
};

const MPOL_MF_MOVE: libc::c_int = 1 << 1;
static FROM_NODE0: u64 = 1;
static TO_NODE1: u64 = 1 << 1;

#[derive(Args)]
pub struct ExecMigrateArgs {
    /// Number of execs.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Program to exec.
    #[arg(long, default_value = "/bin/true")]
    exe: String,
    /// Extra argv: this many arguments of 32 KiB each.
    #[arg(long, default_value_t = 8)]
    big_args: u32,
    /// The migrating system call.
    #[arg(long, value_enum, default_value = "move-pages")]
    with: Migrator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Migrator {
    /// `move_pages(2)` on the pages below `STACK_TOP_MAX`: isolates under the
    /// mmap lock, migrates after dropping it, so exec's stack move can run in
    /// the middle of a migration (without the fix: a left-behind entry).
    MovePages,
    /// `migrate_pages(2)` node 0 → 1: the whole migration under the mmap
    /// read lock, so it can meet the temporary stack only before
    /// `setup_arg_pages` takes the write lock, never during the move.
    MigratePages,
}

/// `STACK_TOP_MAX` (x86-64: `TASK_SIZE_MAX`, 47 or 56 bits with LA57),
/// told apart by asking for a mapping above 47 bits: only a 5-level kernel
/// gives one.
fn stack_top_max() -> u64 {
    let page = sys::page_size();
    let hint = 1usize << 52;
    // SAFETY: an anonymous mapping at a hint, unmapped at once.
    let p = unsafe {
        libc::mmap(
            hint as *mut _,
            page,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    let la57 = p != libc::MAP_FAILED && (p as usize) >= (1usize << 47);
    if p != libc::MAP_FAILED {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(p, page) };
    }
    let bits = if la57 { 56 } else { 47 };
    (1u64 << bits) - page as u64
}

pub fn run(args: &ExecMigrateArgs) -> anyhow::Result<serde_json::Value> {
    let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    if !online.contains('1') {
        bail!(
            "exec-migrate needs two NUMA nodes (online: {:?})",
            online.trim()
        );
    }
    let page = sys::page_size() as u64;
    let top = stack_top_max();
    // The argv and environment strings sit right below the top.
    let span = u64::from(args.big_args) * 32 * 1024 + 64 * 1024;
    let pages: Vec<u64> = (1..=span / page).map(|i| top - i * page).collect();

    let exe = CString::new(args.exe.as_str()).context("exe path")?;
    let big = CString::new("x".repeat(32 * 1024 - 1)).unwrap_or_default();
    let mut argv: Vec<*const libc::c_char> = vec![exe.as_ptr()];
    argv.extend((0..args.big_args).map(|_| big.as_ptr()));
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];

    let target = Arc::new(AtomicI32::new(0));
    let done = Arc::new(AtomicI32::new(0));
    let (calls, moved, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let migrator = {
        let (target, done, calls, moved, errors, pages) = (
            target.clone(),
            done.clone(),
            calls.clone(),
            moved.clone(),
            errors.clone(),
            pages.clone(),
        );
        let with = args.with;
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = pin(unsafe { libc::gettid() }, 1);
            let mut ptrs: Vec<*mut libc::c_void> = pages.iter().map(|a| *a as *mut _).collect();
            let nodes = vec![1i32; ptrs.len()];
            let mut status = vec![0i32; ptrs.len()];
            while done.load(Ordering::Relaxed) == 0 {
                let pid = target.load(Ordering::Acquire);
                if pid == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                let rc = match with {
                    // SAFETY: arrays of matching length.
                    Migrator::MovePages => unsafe {
                        libc::syscall(
                            libc::SYS_move_pages,
                            pid,
                            ptrs.len(),
                            ptrs.as_mut_ptr(),
                            nodes.as_ptr(),
                            status.as_mut_ptr(),
                            MPOL_MF_MOVE,
                        )
                    },
                    // SAFETY: single-word node masks of 64 bits.
                    Migrator::MigratePages => unsafe {
                        libc::syscall(
                            libc::SYS_migrate_pages,
                            pid,
                            64,
                            &raw const FROM_NODE0,
                            &raw const TO_NODE1,
                        )
                    },
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if rc < 0 {
                    errors.fetch_add(1, Ordering::Relaxed);
                } else if with == Migrator::MovePages {
                    let n = status.iter().filter(|s| **s == 1).count() as u64;
                    moved.fetch_add(n, Ordering::Relaxed);
                }
            }
        })
    };

    // The execs run on CPU 0 (their pages on node 0), the migrator on CPU 1.
    // SAFETY: gettid has no preconditions.
    pin(unsafe { libc::gettid() }, 0)?;
    let start = Instant::now();
    let mut failed = 0u32;
    for _ in 0..args.count {
        // SAFETY: the child only calls execve and _exit (async-signal-safe);
        // every argument was built before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
        }
        target.store(pid, Ordering::Release);
        let status = wait_child(pid, Duration::from_secs(30))?;
        target.store(0, Ordering::Release);
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failed += 1;
        }
    }
    done.store(1, Ordering::Relaxed);
    migrator
        .join()
        .map_err(|_| anyhow::anyhow!("migrator panicked"))?;
    if failed == args.count {
        bail!("every exec of {} failed", args.exe);
    }
    Ok(json!({
        "scenario": "exec-migrate",
        "with": format!("{:?}", args.with),
        "count": args.count,
        "failed": failed,
        "stack_top_max": format!("{top:#x}"),
        "pages_targeted": pages.len(),
        "move_pages_calls": calls.load(Ordering::Relaxed),
        "pages_on_node1": moved.load(Ordering::Relaxed),
        "move_pages_errors": errors.load(Ordering::Relaxed),
        "elapsed_ms": ms_since(start),
    }))
}
