#!/usr/bin/env bash
# Installs what building (and, with --for-tests, testing) the monitor needs on a
# fresh Debian/Ubuntu machine with rustup. Idempotent: when everything is there
# it only checks, in about a second.
#
#   scripts/setup.sh             nightly rust-src + bpf-linker (to build and run),
#                                the musl target (static release binary)
#   scripts/setup.sh --for-tests also the packages and tools the test suite uses
#   scripts/setup.sh --mutant    also what `cargo xtask mutant` needs: a kernel
#                                build (gcc, make, bc, flex, bison, libelf,
#                                libssl, pahole for BTF) and the VM harness
set -euo pipefail

for_tests=0
mutant=0
for arg in "$@"; do
    case "$arg" in
        --for-tests) for_tests=1 ;;
        --mutant) mutant=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "setup: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "setup: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
    command -v sudo >/dev/null || { say "run as root (apt packages are installed)"; exit 2; }
else
    SUDO=
fi

command -v rustup >/dev/null || { say "rustup is required (https://rustup.rs)"; exit 2; }
command -v cargo >/dev/null || { say "cargo is required"; exit 2; }

# BPF programs are built with nightly (build-std=core) by aya-build.
if ! rustup toolchain list | grep -q '^nightly'; then
    say "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    say "installing rust-src for nightly"
    rustup component add rust-src --toolchain nightly
fi

# bpf-linker 0.10.2 links with rustc's own LLVM (newer ones want a system LLVM).
BPF_LINKER_VERSION=0.10.2
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
    say "installing bpf-linker $BPF_LINKER_VERSION (about 2 minutes)"
    cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked
fi

# The release binary (cargo xtask dist) and the VM guests' binaries are
# static, built for musl (docs/deployment.md, "Why musl").
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    say "installing the x86_64-unknown-linux-musl target"
    rustup target add x86_64-unknown-linux-musl
fi

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
        $SUDO apt-get update -qq
        $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

if [ "$mutant" -eq 1 ]; then
    apt_install build-essential bc flex bison libelf-dev libssl-dev dwarves perl patch \
        xz-utils dpkg-dev kmod cpio qemu-system-x86 busybox-static
fi

if [ "$for_tests" -eq 1 ]; then
    # cargo-fuzz: the fuzz smoke run (libFuzzer, nightly).
    CARGO_FUZZ_VERSION=0.13.2
    if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
        say "installing cargo-fuzz $CARGO_FUZZ_VERSION (about 2 minutes)"
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi

    # qemu + busybox: VM tests on Debian kernels; dpkg-dev tools and xz/zstd:
    # unpacking kernel packages and modules; prometheus: the daemon's scrape
    # test (promtool too); util-linux: setpriv for the unprivileged-user test
    # and the daemon's capability tests; systemd (systemd-analyze) and strace:
    # checking the daemon's unit and its system-call filter. The release
    # artifacts' tests: mmdebstrap (Debian 11 chroot, bookworm systemd guest),
    # e2fsprogs (its disk image), lintian, buildah, podman, runc and jq (the
    # image and its seccomp profile),
    # file, binutils (readelf), llvm (llvm-objdump), man-db, python3-venv
    # (kubernetes-validate and checkov below), curl.
    # chromium: the HTML report opened headless (monitor/tests/report.rs);
    # nodejs + npm (if the machine has no Node.js): Grafana's schema types.
    # stress-ng: the benchmark workloads (`cargo xtask bench`, host and guest).
    pkgs=(qemu-system-x86 busybox-static xz-utils zstd prometheus util-linux procps systemd strace stress-ng
          mmdebstrap e2fsprogs lintian buildah podman runc jq file binutils llvm man-db python3-venv curl
          chromium)
    command -v npm >/dev/null || pkgs+=(nodejs npm)
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
            $SUDO apt-get update -qq
            $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
        fi
        # Debian enables and starts the packaged Prometheus; the tests run
        # their own instance on a private port.
        if printf '%s\n' "${missing[@]}" | grep -qx prometheus; then
            $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
        fi
    fi
    # Grafana's published dashboard schema types and the TypeScript compiler,
    # pinned in dashboards/schema/package.json (monitor/tests/grafana.rs).
    schema="$(cd "$(dirname "$0")/.." && pwd)/dashboards/schema"
    want=$(sed -n 's/.*"@grafana\/schema": "\(.*\)".*/\1/p' "$schema/package.json")
    have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$schema/node_modules/@grafana/schema/package.json" 2>/dev/null || true)
    if [ "$want" != "$have" ] || [ ! -f "$schema/node_modules/typescript/bin/tsc" ]; then
        say "installing @grafana/schema $want and typescript (npm ci in dashboards/schema)"
        npm ci --prefix "$schema" --no-audit --no-fund --loglevel=error
    fi

    # cargo-deb builds the Debian package (cargo xtask dist --deb).
    CARGO_DEB_VERSION=3.6.2
    if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
        say "installing cargo-deb $CARGO_DEB_VERSION (about 3 minutes)"
        cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
    fi

    # PyPI tools of the Kubernetes manifest test, pinned, in a venv under target/.
    venv="$(cd "$(dirname "$0")/.." && pwd)/target/ship-venv"
    pins="kubernetes-validate==1.37.0 checkov==3.3.30"
    if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
        say "installing $pins into $venv (about 2 minutes)"
        rm -rf "$venv"
        /usr/bin/python3 -m venv "$venv"
        # shellcheck disable=SC2086 # the pins are separate words
        "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
        echo "$pins" > "$venv/.pins"
    fi

    # kubectl (with kustomize) is not packaged by Debian; the CI image has it.
    command -v kubectl >/dev/null || say "warning: kubectl is missing: the kustomize test (ship::) will fail"
fi
say "ok"
