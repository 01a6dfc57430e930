//! `cargo xtask vm --systemd`: the Debian package under a real systemd.
//!
//! ```text
//! mmdebstrap bookworm (systemd as PID 1, Prometheus, bpftool, curl)  cached
//!   + the .deb from `cargo xtask dist --deb`, the static test binaries,
//!     a oneshot unit that runs the `vm_systemd::` tests and powers off
//!   ─► mkfs.ext4 -d → disk image (virtio-blk)
//! busybox initramfs: insmod virtio_blk/ext4 (+ deps) ─► mount /dev/vda
//!   ─► switch_root to /lib/systemd/systemd
//! ```
//!
//! The tests (monitor/tests/vm_systemd.rs) install the package with
//! `dpkg -i` and drive the unit through `systemctl`, `journalctl`, the
//! kernel's BPF program list and the guest's Prometheus.

use std::{
    fs,
    io::BufWriter,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use super::{Args, Payload, cpio::Cpio, kernels::Kernel, qemu, report::Report, workspace_root};

/// Packages of the guest besides mmdebstrap's `minbase`.
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "kmod",
    "procps",
    "curl",
    "bpftool",
    "prometheus",
    "adduser",
];

/// Modules the initramfs loads to mount the disk (those built into a kernel
/// are skipped).
const DISK_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "crc32c_intel",
    "ext4",
];

/// Guest memory: systemd, journald, Prometheus and the daemon.
const MEM_MB: u32 = 2048;

/// The bookworm root file system, built once (`target/vm-cache/bookworm-systemd`).
fn rootfs() -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target/vm-cache/bookworm-systemd");
    let stamp = dir.join(".mmdebstrap-done");
    let want = PACKAGES.join(",");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(dir.join("root"));
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let t = Instant::now();
    eprintln!("xtask vm: building the bookworm root file system with mmdebstrap ({want})");
    let root = dir.join("root");
    let st = Command::new("mmdebstrap")
        .args(["--variant=minbase", "--mode=root", "--quiet"])
        .arg(format!("--include={want}"))
        // Nothing the tests do not need at boot.
        .arg(
            "--customize-hook=chroot \"$1\" systemctl mask apt-daily.timer \
             apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
             systemd-timesyncd.service getty@tty1.service serial-getty@ttyS0.service \
             prometheus-node-exporter.service 2>/dev/null || true",
        )
        .args(["bookworm"])
        .arg(&root)
        .arg("http://deb.debian.org/debian")
        .status()
        .context("running mmdebstrap (install it: scripts/setup.sh --for-tests)")?;
    ensure!(st.success(), "mmdebstrap bookworm failed");
    fs::write(&stamp, &want)?;
    eprintln!(
        "xtask vm: root file system ready in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(root)
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    ensure!(st.success(), "{cmd:?} failed ({st})");
    Ok(())
}

/// The script the guest's oneshot unit runs: the tests, then power off.
fn runner(kernel: &str) -> String {
    format!(
        r#"#!/bin/sh
exec > /dev/ttyS1 2>&1
echo "VMH kernel {kernel} $(uname -r) systemd=$(systemctl --version | head -1)"
echo "VMH note systemd guest up for $(cut -d" " -f1 /proc/uptime)s when the tests start"
export MONITOR_BIN=/usr/bin/mm-race-monitor SCENARIO_BIN=/usr/local/bin/scenario
export VM_KERNEL={kernel} VM_SYSTEMD=1 RUST_BACKTRACE=1 DEB=/root/mm-race-monitor.deb
cd /tmp
/usr/local/bin/vm-tests --ignored --test-threads=1 --nocapture "$@"
echo "VMH exit $?"
sync
systemctl poweroff --force --force
"#
    )
}

const RUNNER_UNIT: &str = "[Unit]
Description=mm race monitor: systemd VM tests
After=multi-user.target prometheus.service
Wants=prometheus.service

[Service]
Type=oneshot
ExecStart=/usr/local/bin/mmrace-vm-tests
StandardInput=null

[Install]
WantedBy=multi-user.target
";

/// The test machine's Prometheus: the shipped scrape job and alert rules.
fn prometheus_config(root: &Path) -> anyhow::Result<String> {
    let shipped = fs::read_to_string(root.join("deploy/prometheus/prometheus.yml"))?;
    Ok(format!("global:\n  evaluation_interval: 15s\n{shipped}"))
}

/// Copies the cached root file system, adds the package, binaries and the
/// runner, and writes an ext4 image of it.
fn disk_image(
    rootfs: &Path,
    dir: &Path,
    payload: &Payload,
    deb: &Path,
    kernel: &str,
    filter: &[String],
) -> anyhow::Result<PathBuf> {
    let stage = dir.join("root");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    run_cmd(Command::new("cp").arg("-a").arg(rootfs).arg(&stage))?;
    let repo = workspace_root();
    fs::copy(deb, stage.join("root/mm-race-monitor.deb"))?;
    for (src, name) in [
        (&payload.tests, "vm-tests"),
        (&payload.scenario, "scenario"),
    ] {
        fs::copy(src, stage.join("usr/local/bin").join(name))?;
    }
    let runner_path = stage.join("usr/local/bin/mmrace-vm-tests");
    let mut script = runner(kernel);
    script = script.replace("\"$@\"", &filter.join(" "));
    fs::write(&runner_path, script)?;
    run_cmd(Command::new("chmod").arg("755").arg(&runner_path))?;
    fs::write(
        stage.join("etc/systemd/system/mmrace-vm-tests.service"),
        RUNNER_UNIT,
    )?;
    let wants = stage.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    let _ = fs::remove_file(wants.join("mmrace-vm-tests.service"));
    std::os::unix::fs::symlink(
        "/etc/systemd/system/mmrace-vm-tests.service",
        wants.join("mmrace-vm-tests.service"),
    )?;
    fs::create_dir_all(stage.join("etc/prometheus/rules"))?;
    fs::write(
        stage.join("etc/prometheus/prometheus.yml"),
        prometheus_config(&repo)?,
    )?;
    fs::copy(
        repo.join("deploy/prometheus/mm-race-monitor.rules.yml"),
        stage.join("etc/prometheus/rules/mm-race-monitor.rules.yml"),
    )?;
    fs::write(stage.join("etc/hostname"), "mmrace-systemd\n")?;
    fs::write(
        stage.join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.1.1 mmrace-systemd\n::1 localhost ip6-localhost ip6-loopback\n",
    )?;
    let image = dir.join("disk.img");
    let _ = fs::remove_file(&image);
    run_cmd(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d"])
            .arg(&stage)
            .arg(&image)
            .arg("3G"),
    )?;
    fs::remove_dir_all(&stage)?;
    Ok(image)
}

/// busybox `/init`: load the disk modules, mount the image, hand over to systemd.
fn initramfs(out: &Path, busybox: &Path, modules: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let init = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.order); do
    insmod /lib/modules/$m.ko 2>/dev/null || echo "VMH insmod failed: $m" > /dev/ttyS1
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /newroot
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "VMH exit 97 (cannot mount /dev/vda)" > /dev/ttyS1
    poweroff -f
fi
umount /proc /sys /dev
exec switch_root /newroot /lib/systemd/systemd
"#;
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cpio = Cpio::new(BufWriter::new(file));
    for d in [
        "/bin",
        "/dev",
        "/proc",
        "/sys",
        "/etc",
        "/lib",
        "/lib/modules",
        "/newroot",
    ] {
        cpio.dir(d)?;
    }
    cpio.char_dev("/dev/console", 5, 1)?;
    cpio.file("/init", init.as_bytes(), true)?;
    cpio.file("/bin/busybox", &fs::read(busybox)?, true)?;
    super::guest::finish_with_modules(cpio, modules)
}

/// Boots `kernel` with the bookworm image and runs the `vm_systemd::` tests.
pub fn run(
    args: &Args,
    kernel: &Kernel,
    payload: &Payload,
    deb: &Path,
    filter: &[String],
) -> anyhow::Result<(Option<String>, Report, PathBuf)> {
    let t = Instant::now();
    let rootfs = rootfs()?;
    let prep = super::prepare_with(kernel, DISK_MODULES)?;
    let dir = workspace_root()
        .join("target/vm-runs")
        .join(format!("{}-systemd", kernel.name));
    fs::create_dir_all(&dir)?;
    let image = disk_image(&rootfs, &dir, payload, deb, kernel.name, filter)?;
    let initrd = dir.join("initrd.cpio");
    initramfs(&initrd, &payload.busybox, &prep.modules)?;
    eprintln!(
        "xtask vm: {} systemd guest prepared in {:.1}s",
        kernel.name,
        t.elapsed().as_secs_f64()
    );
    let res = qemu::boot(&qemu::Boot {
        label: kernel.name,
        kernel: &prep.vmlinuz,
        initrd: &initrd,
        dir: &dir,
        mem_mb: args.mem.max(MEM_MB),
        timeout: Duration::from_secs(args.timeout),
        quiet: args.quiet,
        disk: Some(&image),
        append: "systemd.show_status=auto",
        forward: None,
    })?;
    let text = fs::read_to_string(&res.results).unwrap_or_default();
    let report = Report::parse(&text);
    let verdict = super::boot_failure(res.ending, args.timeout).or_else(|| report.verdict());
    super::conclude(kernel.name, "systemd ", verdict.as_deref(), &res);
    if verdict.is_none() {
        let _ = fs::remove_file(&image);
    }
    if verdict.is_none() && report.passed() == 0 {
        bail!("the systemd guest ran no test");
    }
    Ok((verdict, report, dir))
}
