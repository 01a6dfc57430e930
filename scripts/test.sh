#!/usr/bin/env bash
# The whole test suite, from a fresh machine: setup, format, lint (host and BPF
# crates), unit and integration tests (the real host kernel as root, and a real
# Prometheus), a fuzz smoke run, the release artifacts (static tarball on
# Debian 11, .deb with lintian, podman image, kustomize manifests), then the VM
# matrix: Debian 5.10, 6.1, 6.12 and 6.18 kernels under QEMU, after a self-test of
# the VM harness, and the .deb under systemd as PID 1 in a Debian bookworm guest.
# The soak (cargo xtask soak, docs/soak.md) runs on demand: under TCG its
# scrape criterion does not hold yet.
#
#   scripts/test.sh            everything
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "test: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)" >&2; }
start=$(date +%s)

step setup
./scripts/setup.sh --for-tests

step "format"
cargo fmt --all --check

step "lint (host crates and the BPF crate)"
cargo xtask clippy

step "build"
cargo build --release --locked --bin monitor
cargo build --locked -p xtask --bin scenario
cargo build --release --locked -p xtask --bin scenario

step "unit and integration tests (host kernel $(uname -r), as root)"
# Root-only tests skip themselves under a plain `cargo test`; here a missing
# root is an error, so CI runs every one of them.
MONITOR_ROOT_TESTS=1 cargo test --locked

step "the same tests as an unprivileged user: what needs root skips with a reason, the rest pass"
cargo xtask unprivileged --user nobody

step "fuzz smoke: each libFuzzer target from its seeds, 20000 runs (long runs: cargo xtask fuzz, docs/fuzzing.md)"
cargo xtask fuzz --runs 20000

step "release artifacts: static tarball, .deb, container image (cargo xtask dist)"
cargo xtask dist --deb --image

step "release artifacts: Debian 11 chroot, lintian, podman, kustomize + kubernetes-validate + checkov"
cargo test --locked -p monitor --test tests ship:: -- --ignored --test-threads=1

step "VM harness self-test (a wrong expectation, a panic, a hang, a silent guest must each fail)"
cargo xtask vm --kernel 6.1 --self-test --quiet

step "mutant kernel patch: applies to the pinned linux-source-6.1, names each fix, off by default"
cargo xtask mutant --check-patch

step "VM matrix: Debian 5.10, 6.1, 6.12, 6.18 under QEMU (TCG, two NUMA nodes)"
cargo xtask vm --kernel all --quiet

step "systemd guest: Debian bookworm, systemd as PID 1, the .deb installed with dpkg -i (kernel 6.1)"
cargo xtask vm --kernel 6.1 --systemd --quiet

echo "test: all passed in $(( $(date +%s) - start ))s" >&2
