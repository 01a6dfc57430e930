//! `migrate_pages(2)`: move a process's pages between NUMA nodes (the VMs have
//! two). Migrates under the target's `mmap_lock`, so it never overlaps exec's
//! stack relocation (`docs/kernel.md`, "Reproducing the races"); it exercises the migration hooks with
//! reason `syscall_or_cpuset`.

use std::time::Instant;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::{
    hold::touch_anon,
    sys::{self, ms_since},
};

#[derive(Args)]
pub struct MigrateArgs {
    /// Anonymous memory to move, in MiB.
    #[arg(long, default_value_t = 8)]
    mb: usize,
}

/// The node each page of `p..p+len` is on (`move_pages(2)` with no target).
fn nodes(p: *mut u8, len: usize) -> Vec<i32> {
    let page = sys::page_size();
    let mut pages: Vec<*mut libc::c_void> = (0..len)
        .step_by(page)
        .map(|o| unsafe { p.add(o) }.cast())
        .collect();
    let mut status = vec![-1i32; pages.len()];
    // SAFETY: arrays of matching length; NULL nodes means "query".
    unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            pages.len(),
            pages.as_mut_ptr(),
            std::ptr::null::<i32>(),
            status.as_mut_ptr(),
            0,
        )
    };
    status
}

pub fn run(args: &MigrateArgs) -> anyhow::Result<serde_json::Value> {
    let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    if online.trim() == "0" || online.trim().is_empty() {
        return Ok(json!({"scenario": "migrate", "supported": false, "reason": "one NUMA node"}));
    }
    let start = Instant::now();
    let len = args.mb << 20;
    let p = touch_anon(len)?;
    let before = nodes(p, len);
    let src = before
        .iter()
        .copied()
        .filter(|n| *n >= 0)
        .min()
        .unwrap_or(0);
    let dst = if src == 0 { 1 } else { 0 };
    let (old, new): (u64, u64) = (1 << src, 1 << dst);
    // SAFETY: single-word node masks of 64 bits.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_migrate_pages,
            0,
            64,
            &raw const old,
            &raw const new,
        )
    };
    if rc < 0 {
        bail!("migrate_pages: {}", std::io::Error::last_os_error());
    }
    let after = nodes(p, len);
    let moved = after.iter().filter(|n| **n == dst).count();
    if moved == 0 {
        bail!("migrate_pages moved nothing from node {src} to node {dst}");
    }
    // SAFETY: unmapping our own mapping.
    unsafe { libc::munmap(p.cast(), len) };
    Ok(json!({
        "scenario": "migrate",
        "supported": true,
        "from": src,
        "to": dst,
        "pages": before.len(),
        "moved": moved,
        "not_migrated": rc,
        "elapsed_ms": ms_since(start),
    }))
}
