//! `cargo xtask dist`: the release artifacts, from one static build.
//!
//! ```text
//! cargo build --release --target x86_64-unknown-linux-musl   (static, no glibc floor)
//!   ─► check: no ELF interpreter, the two embedded BPF objects have .BTF,
//!      .BTF.ext, no DWARF and the GPL-compatible license string
//!   ─► monitor generate: man pages (section 8) and bash/zsh/fish completions
//!   ─► target/dist/mm-race-monitor-<version>-x86_64-linux.tar.gz (+ .sha256)
//!      binary, deploy/, dashboards/, man/, completions/, LICENSE-*, README.md,
//!      SHA256SUMS over every file in it
//!   ─► --deb: cargo deb (monitor/Cargo.toml [package.metadata.deb])
//!   ─► --image: buildah FROM scratch → OCI archive (+ podman-loadable tag)
//! ```
//!
//! Reproducible: `SOURCE_DATE_EPOCH` (default: the commit's time) dates the
//! build and every file in the tarball; names are sorted, owners are 0.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use crate::vm::{cargo_with_env, workspace_root};

/// The static target of every release artifact.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The installed command's name.
pub const NAME: &str = "mm-race-monitor";
/// The BPF objects' license section, and the SPDX expression the BPF crate's
/// Cargo metadata must carry for it (the kernel accepts "Dual MIT/GPL" as
/// GPL-compatible: `license_is_gpl_compatible()`, include/linux/license.h).
pub const BPF_LICENSE: &str = "Dual MIT/GPL";
pub const BPF_SPDX: &str = "MIT OR GPL-2.0-only";

#[derive(clap::Args)]
pub struct Args {
    /// Also build the Debian package (needs cargo-deb: scripts/setup.sh --for-tests).
    #[arg(long)]
    deb: bool,
    /// Also build the container image (needs buildah): an OCI archive in target/dist.
    #[arg(long)]
    image: bool,
    /// Do not rebuild the static binary (use what is in target/x86_64-unknown-linux-musl).
    #[arg(long)]
    no_build: bool,
}

/// Where the artifacts go.
pub fn dist_dir() -> PathBuf {
    workspace_root().join("target/dist")
}

/// The static release binary (built by [`build_static`]).
pub fn static_binary() -> PathBuf {
    workspace_root().join(format!("target/{TARGET}/release/monitor"))
}

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub fn tarball_stem() -> String {
    format!("{NAME}-{}-x86_64-linux", version())
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .context("running git")?;
    ensure!(out.status.success(), "git {} failed", args.join(" "));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The commit (with `-dirty` when the work tree has changes) and the build
/// time: `SOURCE_DATE_EPOCH`, else the commit's time.
pub fn stamp() -> anyhow::Result<(String, u64)> {
    let mut rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        rev.push_str("-dirty");
    }
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number"))?,
        _ => git(&["log", "-1", "--format=%ct"])?
            .parse()
            .context("commit time")?,
    };
    Ok((rev, epoch))
}

/// `cargo build --release --target x86_64-unknown-linux-musl` of the monitor,
/// the scenario binary and the integration tests (what the VM guests run),
/// stamped with the commit and `SOURCE_DATE_EPOCH`. One invocation for all
/// of them, so that features unify once and the monitor is compiled once.
pub fn build_static() -> anyhow::Result<std::process::Output> {
    let (rev, epoch) = stamp()?;
    let epoch = epoch.to_string();
    let args = [
        "build",
        "--release",
        "--locked",
        "--target",
        TARGET,
        "-p",
        "monitor",
        "--bin",
        "monitor",
        "--test",
        "tests",
        "-p",
        "xtask",
        "--bin",
        "scenario",
        "--message-format=json-render-diagnostics",
    ];
    cargo_with_env(
        &args,
        &[("MMRACE_GIT_REV", &rev), ("SOURCE_DATE_EPOCH", &epoch)],
    )
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let made = make(args.deb, args.image, args.no_build)?;
    for p in [Some(made.tarball), made.deb, made.image]
        .into_iter()
        .flatten()
    {
        println!("{}", p.display());
    }
    Ok(())
}

/// What [`make`] produced.
pub struct Artifacts {
    pub tarball: PathBuf,
    pub deb: Option<PathBuf>,
    pub image: Option<PathBuf>,
}

/// Builds the tarball and, if asked, the package and the image.
pub fn make(with_deb: bool, with_image: bool, no_build: bool) -> anyhow::Result<Artifacts> {
    let (rev, epoch) = stamp()?;
    if !no_build {
        build_static()?;
    }
    let bin = static_binary();
    let data = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    check_static(&data).with_context(|| bin.display().to_string())?;
    let objects = check_embedded_bpf(&data).with_context(|| bin.display().to_string())?;
    check_bpf_crate_license()?;
    eprintln!(
        "xtask dist: {} is static ({} bytes); embedded BPF objects: {}",
        bin.display(),
        data.len(),
        objects
            .iter()
            .map(|o| format!("{} bytes", o.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let dist = dist_dir();
    let gen_dir = dist.join("gen");
    let _ = fs::remove_dir_all(&gen_dir);
    generate(&bin, &gen_dir)?;
    for (i, o) in objects.iter().enumerate() {
        fs::write(gen_dir.join(format!("bpf-object-{i}.o")), o)?;
    }

    let stem = tarball_stem();
    let stage = dist.join(&stem);
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage)?;
    let root = workspace_root();
    copy(&bin, &stage.join(NAME))?;
    for tree in ["deploy", "dashboards"] {
        copy_tree(&root.join(tree), &stage.join(tree))?;
    }
    copy_tree(&gen_dir.join("man"), &stage.join("man"))?;
    copy_tree(&gen_dir.join("completions"), &stage.join("completions"))?;
    for f in [
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "LICENSE-GPL-2.0",
        "README.md",
    ] {
        copy(&root.join(f), &stage.join(f))?;
    }
    sha256sums(&stage)?;
    let tarball = dist.join(format!("{stem}.tar.gz"));
    tar(&dist, &stem, &tarball, epoch)?;
    let sum = sha256(&tarball)?;
    fs::write(
        dist.join(format!("{stem}.tar.gz.sha256")),
        format!("{sum}  {stem}.tar.gz\n"),
    )?;
    eprintln!(
        "xtask dist: {} ({} bytes, git {rev}, SOURCE_DATE_EPOCH={epoch})",
        tarball.display(),
        fs::metadata(&tarball)?.len()
    );
    Ok(Artifacts {
        tarball,
        deb: if with_deb { Some(deb(epoch)?) } else { None },
        image: if with_image {
            Some(image(&rev, epoch)?)
        } else {
            None
        },
    })
}

/// A static executable has no `PT_INTERP`: nothing from the host's libc is
/// loaded, so no glibc version floor.
pub fn check_static(elf: &[u8]) -> anyhow::Result<()> {
    ensure!(
        elf.len() > 64 && elf[..4] == *b"\x7fELF" && elf[4] == 2,
        "not a 64-bit ELF"
    );
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36) as usize;
    let phnum = u16_at(elf, 0x38) as usize;
    for i in 0..phnum {
        let p_type = u32_at(elf, phoff + i * phentsize);
        ensure!(
            p_type != 3,
            "has an ELF interpreter (PT_INTERP): dynamically linked"
        );
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
    })
}

/// The BPF ELF objects embedded in `binary` (`EM_BPF` relocatable files).
pub fn embedded_bpf_objects(binary: &[u8]) -> Vec<&[u8]> {
    let magic = b"\x7fELF\x02\x01\x01";
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(pos) = binary[at..]
        .windows(magic.len())
        .position(|w| w == magic)
        .map(|p| p + at)
    {
        at = pos + 1;
        let o = &binary[pos..];
        // e_type ET_REL (1), e_machine EM_BPF (247)
        if u16_at(o, 0x10) != 1 || u16_at(o, 0x12) != 247 {
            continue;
        }
        let end = u64_at(o, 0x28) as usize + u16_at(o, 0x3c) as usize * u16_at(o, 0x3a) as usize;
        if end <= o.len() {
            found.push(&o[..end]);
            at = pos + end;
        }
    }
    found
}

/// Section names and contents of a 64-bit little-endian ELF.
pub fn sections(o: &[u8]) -> Vec<(String, &[u8])> {
    let shoff = u64_at(o, 0x28) as usize;
    let shentsize = u16_at(o, 0x3a) as usize;
    let shnum = u16_at(o, 0x3c) as usize;
    let shstrndx = u16_at(o, 0x3e) as usize;
    let header = |i: usize| shoff + i * shentsize;
    let body = |i: usize| -> &[u8] {
        let (off, size) = (
            u64_at(o, header(i) + 0x18) as usize,
            u64_at(o, header(i) + 0x20) as usize,
        );
        o.get(off..off + size).unwrap_or(&[])
    };
    let names = body(shstrndx);
    (0..shnum)
        .map(|i| {
            let at = u32_at(o, header(i)) as usize;
            let name = names
                .get(at..)
                .and_then(|s| s.split(|b| *b == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            (name, body(i))
        })
        .collect()
}

/// Both BPF objects are embedded, each with BTF (`.BTF`, `.BTF.ext`), no
/// DWARF, and the license string the kernel needs for GPL-only helpers.
pub fn check_embedded_bpf(binary: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let objects = embedded_bpf_objects(binary);
    ensure!(
        objects.len() == 2,
        "expected 2 embedded BPF objects (atomic, compat), found {}",
        objects.len()
    );
    for (i, o) in objects.iter().enumerate() {
        let secs = sections(o);
        let has = |n: &str| secs.iter().any(|(name, _)| name == n);
        ensure!(
            has(".BTF") && has(".BTF.ext"),
            "BPF object {i} lacks .BTF or .BTF.ext"
        );
        let dwarf: Vec<&str> = secs
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.starts_with(".debug") || n.starts_with(".rel.debug"))
            .collect();
        ensure!(
            dwarf.is_empty(),
            "BPF object {i} still has DWARF: {dwarf:?}"
        );
        let license = secs
            .iter()
            .find(|(n, _)| n == "license")
            .map(|(_, b)| String::from_utf8_lossy(b).trim_end_matches('\0').to_owned());
        ensure!(
            license.as_deref() == Some(BPF_LICENSE),
            "BPF object {i} license is {license:?}, want {BPF_LICENSE:?}"
        );
    }
    Ok(objects.into_iter().map(<[u8]>::to_vec).collect())
}

/// The BPF crate's Cargo `license` is the SPDX form of its license string.
pub fn check_bpf_crate_license() -> anyhow::Result<()> {
    let path = workspace_root().join("monitor-ebpf/Cargo.toml");
    let text = fs::read_to_string(&path)?;
    let license = text
        .lines()
        .find_map(|l| l.strip_prefix("license = "))
        .map(|v| v.trim().trim_matches('"'));
    ensure!(
        license == Some(BPF_SPDX),
        "{}: license is {license:?}, but the BPF objects declare {BPF_LICENSE:?} (= {BPF_SPDX:?})",
        path.display()
    );
    Ok(())
}

/// Man pages (plain and gzipped for the package) and completions.
fn generate(bin: &Path, dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    let st = Command::new(bin)
        .arg("generate")
        .arg("--man")
        .arg(&man)
        .arg("--completions")
        .arg(&completions)
        .status()
        .context("running monitor generate")?;
    ensure!(st.success(), "monitor generate failed");
    let gz = dir.join("man-gz");
    fs::create_dir_all(&gz)?;
    for e in fs::read_dir(&man)? {
        let p = e?.path();
        let name = p.file_name().context("man page name")?.to_owned();
        let out = Command::new("gzip")
            .args(["-9n", "-c"])
            .arg(&p)
            .output()
            .context("running gzip")?;
        ensure!(out.status.success(), "gzip {}", p.display());
        let mut dst = gz.join(name);
        dst.as_mut_os_string().push(".gz");
        fs::write(dst, out.stdout)?;
    }
    Ok(())
}

fn copy(src: &Path, dst: &Path) -> anyhow::Result<()> {
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p)?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    for e in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        let p = e.path();
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&p, &to)?;
        } else {
            copy(&p, &to)?;
        }
    }
    Ok(())
}

fn files_under(dir: &Path, base: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files_under(&p, base, out)?;
        } else {
            out.push(p.strip_prefix(base)?.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    ensure!(out.status.success(), "sha256sum {}", path.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// `SHA256SUMS` over every file of the staged tree (`sha256sum -c` format).
fn sha256sums(stage: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    files_under(stage, stage, &mut files)?;
    files.sort();
    let mut text = String::new();
    for f in &files {
        text.push_str(&format!("{}  {f}\n", sha256(&stage.join(f))?));
    }
    fs::write(stage.join("SHA256SUMS"), text)?;
    Ok(())
}

/// A reproducible tarball: sorted names, fixed times and owners, no gzip
/// timestamp.
fn tar(dir: &Path, stem: &str, out: &Path, epoch: u64) -> anyhow::Result<()> {
    let tar = Command::new("tar")
        .current_dir(dir)
        .args([
            "--sort=name",
            &format!("--mtime=@{epoch}"),
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mode=go-w",
            "--format=gnu",
            "-cf",
            "-",
            stem,
        ])
        .output()
        .context("running tar")?;
    ensure!(tar.status.success(), "tar failed");
    let mut gz = Command::new("gzip")
        .args(["-9n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    let mut stdin = gz.stdin.take().context("gzip stdin")?;
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &tar.stdout));
    let gzipped = gz.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("gzip writer panicked"))??;
    ensure!(gzipped.status.success(), "gzip failed");
    fs::write(out, gzipped.stdout).with_context(|| format!("writing {}", out.display()))
}

/// `cargo deb` on the static binary and the generated files (the package's
/// layout is in monitor/Cargo.toml, `[package.metadata.deb]`).
fn deb(epoch: u64) -> anyhow::Result<PathBuf> {
    let dist = dist_dir();
    let out = Command::new("cargo")
        .args([
            "deb",
            "--locked",
            "-p",
            "monitor",
            "--no-build",
            "--target",
            TARGET,
        ])
        .arg("--output")
        .arg(&dist)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo deb (install it: scripts/setup.sh --for-tests)")?;
    ensure!(out.status.success(), "cargo deb failed");
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| PathBuf::from(l.trim()))
        .context("cargo deb did not print the package path")?;
    eprintln!(
        "xtask dist: {} ({} bytes)",
        path.display(),
        fs::metadata(&path)?.len()
    );
    Ok(path)
}

/// The image's reference in local container storage.
pub fn image_ref() -> String {
    format!("localhost/{NAME}:{}", version())
}

/// `buildah from scratch` + the static binary + OCI labels, committed to
/// local storage as `localhost/mm-race-monitor:<version>` and saved as an
/// OCI archive next to the tarball.
fn image(rev: &str, epoch: u64) -> anyhow::Result<PathBuf> {
    let buildah = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new("buildah")
            .args(args)
            .output()
            .context("running buildah (install it: scripts/setup.sh --for-tests)")?;
        if !out.status.success() {
            bail!(
                "buildah {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let ctr = buildah(&["from", "scratch"])?;
    let result =
        (|| -> anyhow::Result<PathBuf> {
            let bin = static_binary();
            let root = workspace_root();
            buildah(&[
                "copy",
                "--chmod",
                "0755",
                &ctr,
                &bin.to_string_lossy(),
                &format!("/usr/bin/{NAME}"),
            ])?;
            for f in ["LICENSE-MIT", "LICENSE-APACHE", "LICENSE-GPL-2.0"] {
                buildah(&[
                    "copy",
                    &ctr,
                    &root.join(f).to_string_lossy(),
                    &format!("/usr/share/doc/{NAME}/{f}"),
                ])?;
            }
            let created = rfc3339(epoch);
            let labels = [
            ("org.opencontainers.image.title", NAME.to_owned()),
            (
                "org.opencontainers.image.description",
                "eBPF race monitor for Linux memory management (Prometheus daemon)".to_owned(),
            ),
            ("org.opencontainers.image.version", version().to_owned()),
            ("org.opencontainers.image.revision", rev.to_owned()),
            ("org.opencontainers.image.created", created.clone()),
            (
                "org.opencontainers.image.source",
                "https://github.com/mm-race-monitor/mm-race-monitor".to_owned(),
            ),
            (
                "org.opencontainers.image.documentation",
                "https://github.com/mm-race-monitor/mm-race-monitor/blob/main/docs/deployment.md"
                    .to_owned(),
            ),
            (
                "org.opencontainers.image.licenses",
                "(MIT OR Apache-2.0) AND (MIT OR GPL-2.0-only)".to_owned(),
            ),
            ("org.opencontainers.image.vendor", "mm race monitor".to_owned()),
        ];
            let mut cfg: Vec<String> = vec![
                "config".into(),
                "--entrypoint".into(),
                format!("[\"/usr/bin/{NAME}\"]"),
                "--cmd".into(),
                "run".into(),
                "--port".into(),
                "10416/tcp".into(),
                "--stop-signal".into(),
                "SIGTERM".into(),
                "--created-by".into(),
                "cargo xtask dist --image".into(),
            ];
            for (k, v) in &labels {
                cfg.push("--label".into());
                cfg.push(format!("{k}={v}"));
            }
            cfg.push(ctr.clone());
            buildah(&cfg.iter().map(String::as_str).collect::<Vec<_>>())?;
            let reference = image_ref();
            buildah(&[
                "commit",
                "--rm",
                "--timestamp",
                &epoch.to_string(),
                &ctr,
                &reference,
            ])?;
            let archive = dist_dir().join(format!("{}.oci.tar", tarball_stem()));
            let _ = fs::remove_file(&archive);
            buildah(&[
                "push",
                &reference,
                &format!("oci-archive:{}:{reference}", archive.display()),
            ])?;
            eprintln!(
                "xtask dist: image {reference}, {} ({} bytes)",
                archive.display(),
                fs::metadata(&archive)?.len()
            );
            Ok(archive)
        })();
    if result.is_err() {
        let _ = buildah(&["rm", &ctr]);
    }
    result
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output();
    out.ok().filter(|o| o.status.success()).map_or_else(
        || secs.to_string(),
        |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bpf_objects_inside_a_blob() {
        // A minimal EM_BPF ET_REL header: no sections, e_shoff = 64.
        let mut obj = vec![0u8; 64];
        obj[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        obj[0x10] = 1;
        obj[0x12] = 247;
        obj[0x28] = 64;
        let mut blob = b"prefix\x7fELF\x02\x01\x01junk".to_vec();
        blob.extend_from_slice(&obj);
        blob.extend_from_slice(b"suffix");
        let found = embedded_bpf_objects(&blob);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), 64);
    }

    #[test]
    fn an_interpreter_means_dynamic() {
        // ELF64 header + one program header (phoff 64, phentsize 56, phnum 1).
        let exe = |p_type: u8| {
            let mut e = vec![0u8; 64 + 56];
            e[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
            e[0x20] = 64;
            e[0x36] = 56;
            e[0x38] = 1;
            e[64] = p_type;
            e
        };
        assert!(check_static(&exe(1)).is_ok(), "PT_LOAD only: static");
        assert!(check_static(&exe(3)).is_err(), "PT_INTERP: dynamic");
        assert!(check_static(b"not an elf").is_err());
    }
}
