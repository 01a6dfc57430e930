#!/usr/bin/env bash
# Installs what building (and, with --for-tests, testing) the monitor needs on a
# fresh Debian/Ubuntu machine with rustup. Idempotent: when everything is there
# it only checks, in about a second.
#
#   scripts/setup.sh             nightly rust-src + bpf-linker (to build and run)
#   scripts/setup.sh --for-tests also the packages the test suite uses
set -euo pipefail

for_tests=0
for arg in "$@"; do
    case "$arg" in
        --for-tests) for_tests=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
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

if [ "$for_tests" -eq 1 ]; then
    # qemu + busybox: VM tests on Debian kernels; dpkg-dev tools and xz/zstd:
    # unpacking kernel packages and modules; prometheus: the daemon's scrape
    # test (promtool too); util-linux: setpriv for the unprivileged-user test
    # and the daemon's capability tests; systemd (systemd-analyze) and strace:
    # checking the daemon's unit and its system-call filter.
    # chromium: the HTML report opened headless (monitor/tests/report.rs);
    # nodejs + npm (if the machine has no Node.js): Grafana's schema types.
    pkgs=(qemu-system-x86 busybox-static xz-utils zstd prometheus util-linux procps systemd strace chromium)
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
fi
say "ok"
