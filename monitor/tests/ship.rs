//! The release artifacts of `cargo xtask dist --deb --image`, checked on the
//! host as a user would meet them (`#[ignore]`: scripts/test.sh builds the
//! artifacts, then runs `cargo test --test tests ship:: -- --ignored`).
//!
//! - the tarball: complete, `sha256sum -c` clean, reproducible, its binary
//!   static with stripped-of-DWARF BPF objects that still carry BTF;
//! - that binary runs `check` in a Debian 11 chroot (glibc 2.31), where the
//!   ordinary dynamically linked build does not even start;
//! - the `.deb`: lintian clean at pedantic level (overrides explained in
//!   deploy/debian/lintian-overrides), the files and conffile in place;
//! - the container image: OCI labels, runs under podman (privileged, and
//!   with the documented capability set), is scraped on loopback, stops
//!   cleanly;
//! - the kustomize base: renders, validates against pinned Kubernetes
//!   schemas and passes checkov (skips recorded in deploy/kubernetes/.checkov.yaml).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::util::{require_root, run, serial, tempdir::TempDir};

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn dist() -> PathBuf {
    repo().join("target/dist")
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn stem() -> String {
    format!("mm-race-monitor-{VERSION}-x86_64-linux")
}

fn artifact(name: &str) -> PathBuf {
    let p = dist().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask dist --deb --image` first",
        p.display()
    );
    p
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    ok(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .expect("sum")
        .to_owned()
}

/// The tarball unpacked into a temporary directory.
fn unpacked(tmp: &TempDir) -> PathBuf {
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(artifact(&format!("{}.tar.gz", stem())))
        .arg("-C")
        .arg(tmp.path()));
    tmp.path().join(stem())
}

fn git_rev() -> String {
    ok(Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo()))
    .trim()
    .to_owned()
}

#[test]
#[ignore = "needs `cargo xtask dist --deb --image` (scripts/test.sh)"]
fn tarball_is_static_complete_and_reproducible() {
    let tmp = TempDir::new("ship-tarball");
    let dir = unpacked(&tmp);
    for f in [
        "mm-race-monitor",
        "SHA256SUMS",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "LICENSE-GPL-2.0",
        "README.md",
        "deploy/monitor.toml",
        "deploy/systemd/mm-race-monitor.service",
        "deploy/systemd/mm-race-monitor.tmpfile",
        "deploy/prometheus/mm-race-monitor.rules.yml",
        "deploy/kubernetes/kustomization.yaml",
        "dashboards/mm-race-monitor.json",
        "man/mm-race-monitor.8",
        "man/mm-race-monitor-run.8",
        "completions/mm-race-monitor.bash",
        "completions/_mm-race-monitor",
        "completions/mm-race-monitor.fish",
    ] {
        assert!(dir.join(f).is_file(), "{f} is not in the tarball");
    }
    let check = ok(Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&dir));
    assert!(
        check.lines().count() > 20 && check.lines().all(|l| l.ends_with(": OK")),
        "{check}"
    );

    // Static, and stamped with this commit and a build date.
    let bin = dir.join("mm-race-monitor");
    let file = ok(Command::new("file").arg(&bin));
    assert!(file.contains("static"), "{file}");
    let readelf = ok(Command::new("readelf").args(["-l", "-d"]).arg(&bin));
    assert!(
        !readelf.contains("INTERP") && !readelf.contains("NEEDED"),
        "{readelf}"
    );
    let version = ok(Command::new(&bin).arg("--version"));
    let rev = git_rev();
    assert!(
        version.starts_with(&format!("monitor {VERSION} (git {rev}")),
        "--version: {version:?} (HEAD is {rev})"
    );
    assert!(version.contains(", built 20") && version.contains("x86_64-unknown-linux-musl"));

    // The BPF objects embedded in it: BTF kept, DWARF gone (readelf and
    // llvm-objdump on the objects `cargo xtask dist` extracted from the binary).
    let objects: Vec<PathBuf> = (0..2)
        .map(|i| artifact(&format!("gen/bpf-object-{i}.o")))
        .collect();
    for o in &objects {
        let sections = ok(Command::new("readelf").args(["-S", "-W"]).arg(o));
        assert!(
            sections.contains(" .BTF ") && sections.contains(" .BTF.ext "),
            "{sections}"
        );
        assert!(
            !sections.contains(".debug_"),
            "{}: DWARF left:\n{sections}",
            o.display()
        );
        let size = std::fs::metadata(o).expect("object").len();
        assert!(size < 1_500_000, "{}: {size} bytes", o.display());
        if let Ok(out) = Command::new("llvm-objdump")
            .arg("--section-headers")
            .arg(o)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains(".BTF.ext") && !text.contains(".debug"),
                "{text}"
            );
        }
        let head = std::fs::read(o).expect("object");
        let in_binary = std::fs::read(&bin).expect("binary");
        assert!(
            in_binary.windows(64).any(|w| w == &head[..64]),
            "{} is not the object embedded in the shipped binary",
            o.display()
        );
    }
    // Man pages render.
    let man = ok(Command::new("man")
        .arg("-l")
        .arg(dir.join("man/mm-race-monitor-run.8"))
        .env("MANWIDTH", "80"));
    assert!(man.contains("--record"), "{man}");

    // Reproducible: the same commit and SOURCE_DATE_EPOCH give the same bytes.
    let tarball = artifact(&format!("{}.tar.gz", stem()));
    let first = sha256(&tarball);
    let xtask = ok(Command::new("cargo")
        .args(["xtask", "dist", "--no-build"])
        .current_dir(repo()));
    assert!(xtask.contains(".tar.gz"), "{xtask}");
    assert_eq!(sha256(&tarball), first, "rebuilding the tarball changed it");
    assert_eq!(
        std::fs::read_to_string(artifact(&format!("{}.tar.gz.sha256", stem()))).expect("sum"),
        format!("{first}  {}.tar.gz\n", stem())
    );
}

/// A Debian 11 (bullseye) chroot made with mmdebstrap, cached in target/.
fn bullseye() -> PathBuf {
    let dir = repo().join("target/ship-cache/bullseye-root");
    if dir.join("etc/debian_version").exists() {
        return dir;
    }
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    // mmdebstrap wants the parent to exist (a fresh checkout has no cache).
    std::fs::create_dir_all(dir.parent().expect("cache dir")).expect("create the ship cache");
    ok(Command::new("mmdebstrap")
        .args(["--variant=essential", "--mode=root", "--quiet", "bullseye"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian"));
    std::fs::rename(&tmp, &dir).expect("rename chroot");
    dir
}

#[test]
#[ignore = "needs `cargo xtask dist --deb --image` (scripts/test.sh)"]
fn static_binary_runs_on_debian_11_where_a_glibc_build_does_not() {
    require_root!();
    let _g = serial();
    let root = bullseye();
    assert!(
        std::fs::read_to_string(root.join("etc/debian_version"))
            .expect("debian_version")
            .starts_with("11."),
        "not a bullseye chroot"
    );
    let tmp = TempDir::new("ship-bullseye");
    let dir = unpacked(&tmp);
    std::fs::copy(dir.join("mm-race-monitor"), root.join("mm-race-monitor")).expect("copy");
    // The ordinary build (`cargo build --release`, glibc 2.36 here).
    let dynamic = Path::new(env!("CARGO_BIN_EXE_monitor"));
    std::fs::copy(dynamic, root.join("monitor-glibc")).expect("copy");

    let out = run(Command::new("chroot")
        .arg(&root)
        .args(["/monitor-glibc", "--version"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("GLIBC_2.3") && err.contains("not found"),
        "the dynamically linked build should not start on bullseye (glibc 2.31): {}\n{err}",
        out.status
    );
    // The static one runs the hook ladder against the host kernel from there.
    let script = format!(
        "mount -t proc proc {r}/proc && mount --rbind /sys {r}/sys && \
         chroot {r} /mm-race-monitor check --format json",
        r = root.display()
    );
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(&script));
    assert!(
        out.status.success(),
        "monitor check in the bullseye chroot: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let check = String::from_utf8_lossy(&out.stdout);
    let attached = crate::vm_systemd::hooks_attached_by_check(&check);
    assert!(attached > 0, "no hook attached from the chroot: {check}");
    for f in ["mm-race-monitor", "monitor-glibc"] {
        let _ = std::fs::remove_file(root.join(f));
    }
}

#[test]
#[ignore = "needs `cargo xtask dist --deb --image` (scripts/test.sh)"]
fn deb_is_lintian_clean_and_complete() {
    let deb = artifact(&format!("mm-race-monitor_{VERSION}-1_amd64.deb"));
    let out = run(Command::new("lintian")
        .args([
            "--display-level",
            ">=pedantic",
            "--display-experimental",
            "--fail-on",
            "error,warning,info,pedantic,experimental",
        ])
        .arg(&deb));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.lines().any(|l| l.contains(": ")),
        "lintian:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let contents = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/bin/mm-race-monitor",
        "./usr/lib/systemd/system/mm-race-monitor.service",
        "./usr/lib/tmpfiles.d/mm-race-monitor.conf",
        "./etc/mm-race-monitor/monitor.toml",
        "./usr/share/man/man8/mm-race-monitor.8.gz",
        "./usr/share/man/man8/mm-race-monitor-run.8.gz",
        "./usr/share/bash-completion/completions/mm-race-monitor",
        "./usr/share/zsh/vendor-completions/_mm-race-monitor",
        "./usr/share/fish/vendor_completions.d/mm-race-monitor.fish",
        "./usr/share/doc/mm-race-monitor/copyright",
        "./usr/share/lintian/overrides/mm-race-monitor",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(f)),
            "{f} is not in the package:\n{contents}"
        );
    }
    let conffiles = ok(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Depends"));
    assert!(conffiles.contains("adduser"), "Depends: {conffiles}");
    let tmp = TempDir::new("ship-deb");
    ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(tmp.path()));
    let conffiles = std::fs::read_to_string(tmp.path().join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/mm-race-monitor/monitor.toml");
    let postinst = std::fs::read_to_string(tmp.path().join("postinst")).expect("postinst");
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    // The unit in the package is the tested one from deploy/.
    let unit_in_deb = ok(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile {} | tar -xO ./usr/lib/systemd/system/mm-race-monitor.service",
        deb.display()
    )));
    assert_eq!(
        unit_in_deb,
        std::fs::read_to_string(repo().join("deploy/systemd/mm-race-monitor.service"))
            .expect("unit")
    );
}

/// `GET path` on 127.0.0.1:port; (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The jq filter of docs/deployment.md: podman's default seccomp profile with
/// `bpf` and `perf_event_open` allowed under CAP_BPF and CAP_PERFMON (as
/// containerd's default profile does), not only under CAP_SYS_ADMIN.
const SECCOMP_JQ: &str = r#".syscalls |= (map(.names -= ["bpf","perf_event_open"]) | map(select(.names != []))) | .syscalls += [{"names":["bpf"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_BPF"]}},{"names":["perf_event_open"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_PERFMON"]}}]"#;

/// podman, configured for this machine: it runs in a container itself,
/// without CAP_SYS_RESOURCE (so rlimits cannot be raised above ours) and with
/// cgroup v1 controllers next to v2, which crun refuses (runc is used).
fn podman(conf: &Path) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", conf);
    c
}

fn podman_conf(dir: &Path) -> PathBuf {
    // Limits that runc may set here (the daemon raises its soft open-file
    // limit up to the hard one for its metrics connections).
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime = \"runc\"\n",
    )
    .expect("containers.conf");
    conf
}

/// What one `podman run` of the image showed.
struct Container {
    /// The exposition scraped on loopback.
    metrics: String,
    /// The daemon's stderr, start to stop.
    stderr: String,
    /// `/proc/PID/status` of the daemon (the container's PID 1, seen from
    /// the host) once it served, i.e. after attach.
    status: Result<(), String>,
}

/// The user the daemon switches to in the image: `FROM scratch` has no
/// `/etc/passwd`, so the default (`mm-race-monitor`, else `nobody`)
/// resolves to nobody's numeric ids.
const IMAGE_UID: u32 = 65534;

/// Runs the image under podman with `flags` (in a private mount namespace
/// where tracefs is mounted, as systemd mounts it on most hosts); scrapes
/// it; checks its credentials; stops it.
fn podman_run(conf: &Path, image: &str, name: &str, flags: &[&str]) -> Container {
    let port = free_port();
    let _ = run(podman(conf).args(["rm", "-f", name]));
    let cmd = format!(
        "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; \
         exec podman run -d --name {name} --network host {} {image} run --listen 127.0.0.1:{port}",
        flags.join(" ")
    );
    ok(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &cmd])
        .env("CONTAINERS_CONF", conf));
    let start = Instant::now();
    let metrics = loop {
        if let Some((200, body)) = http_get(port, "/metrics") {
            break body;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let logs = run(podman(conf).args(["logs", name]));
            let _ = run(podman(conf).args(["rm", "-f", name]));
            panic!(
                "the container never served /metrics ({flags:?}):\n{}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let (status, health) = http_get(port, "/healthz").expect("/healthz");
    assert_eq!(status, 200, "{health}");
    // Serving means attached and privileges dropped (daemon/mod.rs).
    let pid: u32 = ok(podman(conf).args(["inspect", "-f", "{{.State.Pid}}", name]))
        .trim()
        .parse()
        .expect("container PID");
    let status = crate::util::unprivileged(pid, IMAGE_UID, IMAGE_UID);
    ok(podman(conf).args(["stop", "-t", "20", name]));
    let code = ok(podman(conf).args(["inspect", "-f", "{{.State.ExitCode}}", name]));
    let logs = run(podman(conf).args(["logs", name]));
    let _ = run(podman(conf).args(["rm", "-f", name]));
    let stderr = String::from_utf8_lossy(&logs.stderr).into_owned();
    assert_eq!(
        code.trim(),
        "0",
        "exit code under podman ({flags:?}):\n{stderr}"
    );
    assert!(
        stderr.contains("programs (verified)"),
        "no clean stop ({flags:?}):\n{stderr}"
    );
    Container {
        metrics,
        stderr,
        status,
    }
}

/// The daemon ran as nobody without capabilities after attach, and said so.
fn assert_unprivileged(c: &Container, flags: &str) {
    if let Err(e) = &c.status {
        panic!("{flags}: not unprivileged after attach: {e}\n{}", c.stderr);
    }
    let want = format!("monitor: user after attach: {IMAGE_UID}:{IMAGE_UID} (uid {IMAGE_UID}, ");
    assert!(
        c.stderr.contains(&want)
            && c.stderr
                .contains("monitor: capabilities after attach: none"),
        "{flags}: the daemon must say it switched to {IMAGE_UID} and holds no capability:\n{}",
        c.stderr
    );
    assert!(
        !c.stderr.contains("staying uid 0"),
        "{flags}: the user switch must not be refused:\n{}",
        c.stderr
    );
}

/// `N of M` from the daemon's `N of M hooks attached (…)` line.
fn hooks_attached(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| {
            let (n, _) = l
                .strip_prefix("monitor: ")?
                .split_once(" hooks attached (")?;
            Some(n.to_owned())
        })
        .unwrap_or_else(|| panic!("no start line:\n{stderr}"))
}

#[test]
#[ignore = "needs `cargo xtask dist --deb --image` (scripts/test.sh)"]
fn image_runs_under_podman_and_is_scraped_on_loopback() {
    require_root!();
    let _g = serial();
    let archive = artifact(&format!("{}.oci.tar", stem()));
    let image = format!("localhost/mm-race-monitor:{VERSION}");
    let tmp = TempDir::new("ship-podman");
    let conf = podman_conf(tmp.path());
    ok(podman(&conf).arg("load").arg("-i").arg(&archive));
    let inspect = ok(podman(&conf).args(["image", "inspect", &image]));
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("inspect JSON");
    let labels = &v[0]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(labels["org.opencontainers.image.title"], "mm-race-monitor");
    assert!(
        labels["org.opencontainers.image.revision"]
            .as_str()
            .is_some_and(|r| r.starts_with(&git_rev())),
        "{labels}"
    );
    for k in [
        "created",
        "source",
        "licenses",
        "description",
        "documentation",
    ] {
        assert!(
            labels[format!("org.opencontainers.image.{k}")].is_string(),
            "label {k} missing: {labels}"
        );
    }
    // FROM scratch: one layer, the binary and the license texts only.
    assert_eq!(
        v[0]["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspect}"
    );

    let privileged = podman_run(&conf, &image, "mmrace-ship-privileged", &["--privileged"]);
    assert!(
        privileged.metrics.contains("mmrace_build_info{"),
        "{}",
        privileged.metrics
    );
    assert_unprivileged(&privileged, "--privileged");
    // The documented minimal set: the four capabilities loading needs and
    // the two switching to nobody needs, read-only root, tracefs from the
    // host, and a seccomp profile that admits bpf/perf_event_open under
    // CAP_BPF/CAP_PERFMON. The same hooks attach as privileged, and the
    // daemon ends up as unprivileged.
    let profile = tmp.path().join("seccomp-bpf.json");
    let jq = ok(Command::new("jq")
        .arg(SECCOMP_JQ)
        .arg("/usr/share/containers/seccomp.json"));
    std::fs::write(&profile, jq).expect("seccomp profile");
    let seccomp = format!("seccomp={}", profile.display());
    let minimal = podman_run(
        &conf,
        &image,
        "mmrace-ship-caps",
        &[
            "--cap-drop",
            "all",
            "--cap-add",
            "BPF,PERFMON,SYSLOG,SYS_RESOURCE,SETUID,SETGID",
            "--security-opt",
            &seccomp,
            "--read-only",
            "-v",
            "/sys/kernel/tracing:/sys/kernel/tracing:ro",
        ],
    );
    assert!(
        minimal.metrics.contains("mmrace_hook_rung{"),
        "{}",
        minimal.metrics
    );
    assert_unprivileged(&minimal, "the minimal capability set");
    assert_eq!(
        hooks_attached(&minimal.stderr),
        hooks_attached(&privileged.stderr),
        "{}",
        minimal.stderr
    );
    assert!(
        !minimal
            .stderr
            .contains("warning: kernel addresses are hidden"),
        "with CAP_SYSLOG the UFFDIO_COPY hook must see kernel addresses:\n{}",
        minimal.stderr
    );
}

/// The PyPI tools installed by scripts/setup.sh --for-tests.
fn venv_tool(name: &str) -> PathBuf {
    let p = repo().join("target/ship-venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh --for-tests",
        p.display()
    );
    p
}

/// Kubernetes versions the manifests are validated against.
const KUBERNETES_VERSIONS: &[&str] = &["1.29.0", "1.31.0", "1.33.0"];

#[test]
#[ignore = "needs scripts/setup.sh --for-tests (kubernetes-validate, checkov)"]
fn kustomize_base_renders_validates_and_passes_checkov() {
    let rendered = ok(Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join("deploy/kubernetes")));
    let tmp = TempDir::new("ship-k8s");
    let file = tmp.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).expect("write");
    let docs: Vec<&str> = rendered.split("\n---\n").collect();
    let kinds: Vec<&str> = docs
        .iter()
        .filter_map(|d| d.lines().find_map(|l| l.strip_prefix("kind: ")))
        .collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "DaemonSet",
        "NetworkPolicy",
        "PodMonitor",
    ] {
        assert!(kinds.contains(&k), "{k} is not rendered: {kinds:?}");
    }
    // The dashboard ConfigMap is generated from dashboards/*.json, byte for byte.
    let cm = docs
        .iter()
        .find(|d| d.contains("kind: ConfigMap"))
        .expect("ConfigMap");
    assert!(cm.contains("grafana_dashboard: \"1\""), "{cm}");
    let json =
        std::fs::read_to_string(repo().join("dashboards/mm-race-monitor.json")).expect("json");
    let body: String = cm
        .lines()
        .skip_while(|l| !l.starts_with("  mm-race-monitor.json: |"))
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert_eq!(
        body.trim_end(),
        json.trim_end(),
        "the ConfigMap is not the dashboard JSON"
    );
    let ds = docs
        .iter()
        .find(|d| d.contains("kind: DaemonSet"))
        .expect("DaemonSet");
    for want in [
        "readOnlyRootFilesystem: true",
        "privileged: false",
        "path: /sys/kernel/tracing",
        "path: /sys/kernel/btf",
        "path: /healthz",
        "- BPF",
        "- PERFMON",
        "- SYSLOG",
        "- SYS_RESOURCE",
        "- SETUID",
        "- SETGID",
        "memory: 256Mi",
    ] {
        assert!(ds.contains(want), "the DaemonSet lacks {want}:\n{ds}");
    }

    // Schemas of several Kubernetes releases (the PodMonitor is a CRD:
    // kubernetes-validate has no schema for it and says so; it must be the
    // only such document).
    for v in KUBERNETES_VERSIONS {
        let out = run(Command::new(venv_tool("kubernetes-validate"))
            .args(["--kubernetes-version", v, "--strict"])
            .arg(&file));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| !(l.starts_with("INFO") && l.contains(" passed for resource ")))
            .filter(|l| !(l.contains("PodMonitor") || l.contains("monitoring.coreos.com")))
            .collect();
        assert!(bad.is_empty(), "kubernetes-validate {v}:\n{text}");
        assert!(
            text.lines()
                .filter(|l| l.contains(" passed for resource "))
                .count()
                == 5,
            "kubernetes-validate {v} validated too little:\n{text}"
        );
    }

    let out = run(Command::new(venv_tool("checkov"))
        .arg("--config-file")
        .arg(repo().join("deploy/kubernetes/.checkov.yaml"))
        .arg("-f")
        .arg(&file));
    assert!(
        out.status.success(),
        "checkov:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
