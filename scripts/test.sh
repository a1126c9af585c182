#!/usr/bin/env bash
# Runs every check and test Filestore has: formatting, lints, unit, property and end-to-end
# tests. Installs what a fresh Debian machine lacks. The embedded mode needs no servers; the
# tests of the production backends run against throwaway PostgreSQL, RabbitMQ, S3 (s3s-fs) and
# clamd instances that scripts/services.sh installs, starts on loopback and stops afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update -qq && apt-get install -y -qq "${missing[@]}"
    }
  fi
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install a Rust toolchain (rustup) first" >&2
  exit 1
fi
# C compilers for the zstd and ring crates; curl for the scripts and the README tour.
apt_install gcc libc6-dev curl ca-certificates python3

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A CI run builds once: incremental caches would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
disk_free() { echo "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free, target/ $(du -sh target 2>/dev/null | cut -f1)"; }
disk_free
echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
# Build progress lines are dropped so that a CI log keeps what matters: warnings, errors, results.
quiet_build() { grep --line-buffered -v -E '^ +(Compiling|Checking|Downloaded|Downloading) ' || true; }
cargo clippy --workspace --all-targets --locked -- -D warnings 2>&1 | quiet_build
echo "== manifests (helm lint, helm template, kubernetes-validate, CRD schema)"
scripts/validate-manifests.sh
echo "== test services (PostgreSQL, RabbitMQ, S3, clamd on loopback)"
services=$(mktemp -d)
log=$(mktemp)
trap 'scripts/services.sh stop "$services" >/dev/null 2>&1 || true; rm -f "$log"' EXIT
scripts/services.sh start "$services" >/dev/null
export FILESTORE_TEST_SERVICES="$services"
echo "== cargo test"
status=0
cargo test --workspace --locked 2>&1 | quiet_build | tee "$log" || status=$?
disk_free
echo "== schemathesis (the OpenAPI document against filestore dev, every check)"
fuzz=0
scripts/schemathesis.sh || { fuzz=1; status=1; }
# One closing line for the whole run, last (cargo prints one per test binary, the last often a
# doc-test run with nothing in it; Schemathesis closes with a pytest-like line of its own): the
# cargo tests, and the Schemathesis run counted as one.
awk -v fuzz="$fuzz" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p + 1 - fuzz, f + fuzz }' "$log"
exit "$status"
