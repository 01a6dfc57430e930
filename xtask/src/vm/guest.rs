//! The initramfs: busybox, a small `/init`, the monitor, the scenario and
//! test binaries (all static: no shared library is copied), and modules.
//!
//! The guest writes machine-readable output only to the second serial port
//! (`/dev/ttyS1`), so kernel messages on the console never interleave with it.

use std::{
    collections::BTreeSet,
    fs,
    io::BufWriter,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::cpio::Cpio;

/// What the guest does after boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run the test binary with the filter.
    Tests,
    /// Run a shell command (development: `cargo xtask vm --run 'monitor check'`).
    Command(String),
    /// Run this script (`/etc/guest-script.sh`, stress-ng in the image):
    /// `cargo xtask soak`.
    Script(String),
    /// Harness self-tests: each must make the run fail.
    Panic,
    Hang,
    Silent,
}

pub struct Payload {
    pub monitor: PathBuf,
    pub scenario: PathBuf,
    pub tests: PathBuf,
    pub busybox: PathBuf,
}

/// stress-ng (the benchmark workload, `cargo xtask bench --only stress`), if
/// the host has it: the one dynamic binary of the guest, with the shared libraries `ldd`
/// names at their host paths (the scenario runs it with `LD_LIBRARY_PATH`).
fn add_stress_ng(
    cpio: &mut Cpio<BufWriter<fs::File>>,
    dirs: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    const BIN: &str = "/usr/bin/stress-ng";
    if !Path::new(BIN).exists() {
        return Ok(());
    }
    let out = std::process::Command::new("ldd")
        .arg(BIN)
        .output()
        .context("ldd stress-ng")?;
    let mut files = vec![BIN.to_owned()];
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match l.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push(p.to_owned());
        }
    }
    for f in files {
        let data = fs::read(&f).with_context(|| format!("reading {f}"))?;
        add_parents(cpio, dirs, &f)?;
        cpio.file(&f, &data, true)?;
    }
    Ok(())
}

/// `/init`: mount the pseudo filesystems, load modules, run, power off.
fn init_script(mode: &Mode, filter: &[String], kernel: &str) -> String {
    let run = match mode {
        Mode::Tests => format!(
            "/bin/vm-tests --ignored --test-threads=1 --nocapture {} > /dev/ttyS1 2>&1\n\
             echo \"VMH exit $?\" > /dev/ttyS1\n",
            filter.join(" ")
        ),
        Mode::Command(cmd) => format!(
            "echo \"VMH command: {}\" > /dev/ttyS1\n\
             sh -c '{}' > /dev/ttyS1 2>&1\n\
             echo \"VMH exit $?\" > /dev/ttyS1\n",
            cmd.replace('"', "'"),
            cmd.replace('\'', "'\\''")
        ),
        Mode::Script(_) => "sh /etc/guest-script.sh > /dev/ttyS1 2>&1\n\
                             echo \"VMH exit $?\" > /dev/ttyS1\n"
            .to_owned(),
        Mode::Panic => "echo 'VMH selftest: crashing the kernel' > /dev/console\n\
                        echo c > /proc/sysrq-trigger\n"
            .to_owned(),
        Mode::Hang => {
            "echo 'VMH selftest: hanging' > /dev/console\nwhile :; do sleep 60; done\n".to_owned()
        }
        Mode::Silent => "echo 'VMH selftest: no output' > /dev/console\n".to_owned(),
    };
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t cgroup2 none /sys/fs/cgroup
mount -t debugfs none /sys/kernel/debug
mount -t tracefs none /sys/kernel/tracing 2>/dev/null || mount -t tracefs none /sys/kernel/debug/tracing
mount -t bpf bpf /sys/fs/bpf
echo "VMH kernel {kernel} $(uname -r) nodes=$(ls -d /sys/devices/system/node/node* | wc -l) cpus=$(nproc)" > /dev/console
echo "VMH kernel {kernel} $(uname -r)" > /dev/ttyS1
for m in $(cat /etc/modules.order); do
    insmod /lib/modules/$m.ko || echo "VMH insmod failed: $m" > /dev/ttyS1
done
# The monitor and scenarios run as root; userfaultfd needs no sysctl then.
export MONITOR_BIN=/bin/monitor SCENARIO_BIN=/bin/scenario VM_KERNEL={kernel} RUST_BACKTRACE=1
cd /tmp
{run}sync
poweroff -f
"#
    )
}

fn add_parents(
    cpio: &mut Cpio<BufWriter<fs::File>>,
    dirs: &mut BTreeSet<String>,
    path: &str,
) -> anyhow::Result<()> {
    let mut acc = String::new();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        acc.push('/');
        acc.push_str(part);
        if dirs.insert(acc.clone()) {
            cpio.dir(&acc)?;
        }
    }
    Ok(())
}

/// Adds the modules (in load order, listed in `/etc/modules.order` for
/// `/init`) and writes the archive out.
pub fn finish_with_modules(
    mut cpio: Cpio<BufWriter<fs::File>>,
    modules: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let mut order = String::new();
    for (name, ko) in modules {
        cpio.file(&format!("/lib/modules/{name}.ko"), ko, false)?;
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("/etc/modules.order", order.as_bytes(), false)?;
    let mut w = cpio.finish()?;
    std::io::Write::flush(&mut w)?;
    Ok(())
}

/// Writes the initramfs to `out`.
pub fn write_initramfs(
    out: &Path,
    payload: &Payload,
    modules: &[(String, Vec<u8>)],
    mode: &Mode,
    filter: &[String],
    kernel: &str,
) -> anyhow::Result<()> {
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cpio = Cpio::new(BufWriter::new(file));
    let mut dirs = BTreeSet::new();
    for d in [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/etc",
        "/lib",
        "/lib/modules",
        "/root",
    ] {
        dirs.insert(d.to_owned());
        cpio.dir(d)?;
    }
    cpio.char_dev("/dev/console", 5, 1)?;
    cpio.file("/init", init_script(mode, filter, kernel).as_bytes(), true)?;
    cpio.file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        false,
    )?;
    cpio.file("/etc/group", b"root:x:0:\nnogroup:x:65534:\n", false)?;
    let busybox = fs::read(&payload.busybox).with_context(|| {
        format!(
            "reading {} (install busybox-static)",
            payload.busybox.display()
        )
    })?;
    cpio.file("/bin/busybox", &busybox, true)?;

    // Static binaries only: the guest has no shared libraries at all.
    for (src, dst) in [
        (&payload.monitor, "/bin/monitor"),
        (&payload.scenario, "/bin/scenario"),
        (&payload.tests, "/bin/vm-tests"),
    ] {
        let data = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        crate::dist::check_static(&data).with_context(|| {
            format!(
                "{} must be static (built for {})",
                src.display(),
                crate::dist::TARGET
            )
        })?;
        add_parents(&mut cpio, &mut dirs, dst)?;
        cpio.file(dst, &data, true)?;
    }
    // Only for commands that run it (`cargo xtask bench --only stress`): its
    // libraries triple the initramfs.
    if matches!(mode, Mode::Command(c) if c.contains("stress")) {
        add_stress_ng(&mut cpio, &mut dirs)?;
    }
    if let Mode::Script(script) = mode {
        cpio.file("/etc/guest-script.sh", script.as_bytes(), true)?;
        add_stress_ng(&mut cpio, &mut dirs)?;
    }
    finish_with_modules(cpio, modules)?;
    if fs::metadata(out)?.len() < 1024 {
        bail!("initramfs {} is implausibly small", out.display());
    }
    Ok(())
}
