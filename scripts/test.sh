#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need on a fresh Debian/Ubuntu
# machine (as root), then lints, then runs every test against real servers the tests start.
#
#   scripts/test.sh            install what is missing, lint, test, fuzz
#   SKIP_INSTALL=1 scripts/test.sh   do not install anything
#   FUZZ_SECONDS=60 scripts/test.sh  fuzz each target longer (default 30 s); SKIP_FUZZ=1: not at all
#   SKIP_WINDOWS=1 scripts/test.sh   leave out the Windows cross-build and its run under Wine
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the servers the tests start, Prometheus' tools, compose validation.
# g++: libfuzzer-sys (the fuzz step) compiles libFuzzer's C++. curl and openssl: tests/tls.rs
# makes its certificates with openssl and checks TLS with curl and openssl s_client. iproute2:
# tests/three_hosts.rs makes network namespaces and veth links with `ip` (as root).
# victoria-metrics: the remote_write store the dashboards and rules are checked on too.
# chromium: tests/status.rs loads the status page in headless Chromium (DOM and screenshots).
# mingw-w64 and wine64: the Windows build (scripts/test-windows.sh, docs/windows.md) is linked
# with mingw-w64's gcc and smoke-tested under Wine.
APT_PACKAGES=(nginx redis-server mariadb-server mariadb-client postgresql prometheus
  prometheus-alertmanager docker-compose python3-yaml procps g++ curl openssl iproute2 victoria-metrics
  chromium mingw-w64 wine64)
# Python packages: the application servers the tests start. packaging: kombu 5.7's Redis
# transport imports it without declaring it, and a Celery worker on Redis dies without it.
# setproctitle: tests/services.rs checks the matchers against the titles it gives Gunicorn and Celery;
# uvloop and httptools (uvicorn[standard]): the sign of a Uvicorn-worker Gunicorn whose title says nothing.
PIP_PACKAGES=(gunicorn uvicorn celery redis packaging pyyaml setproctitle uvloop httptools)

have_all_programs() {
  local program
  for program in nginx redis-server mariadbd mariadb-install-db promtool amtool docker-compose c++ curl openssl ip \
    victoria-metrics chromium x86_64-w64-mingw32-gcc /usr/lib/wine/wine64 \
    /usr/lib/postgresql/*/bin/initdb; do
    command -v "$program" >/dev/null 2>&1 || [ -x "$program" ] || PATH="$PATH:/usr/sbin" command -v "$program" >/dev/null 2>&1 || return 1
  done
}

install_dependencies() {
  if ! have_all_programs; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "test.sh: missing servers or tools; run as root or install: ${APT_PACKAGES[*]}" >&2
      exit 1
    fi
    echo "== installing Debian packages: ${APT_PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packaged services must not start (or fail to start) during installation: the tests start
    # their own servers in temp dirs.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
  local missing=()
  python3 -c 'import gunicorn' 2>/dev/null || missing+=(gunicorn)
  python3 -c 'import uvicorn' 2>/dev/null || missing+=(uvicorn)
  python3 -c 'import celery' 2>/dev/null || missing+=(celery)
  python3 -c 'import redis' 2>/dev/null || missing+=(redis)
  python3 -c 'import packaging' 2>/dev/null || missing+=(packaging)
  python3 -c 'import yaml' 2>/dev/null || missing+=(pyyaml)
  python3 -c 'import setproctitle' 2>/dev/null || missing+=(setproctitle)
  python3 -c 'import uvloop' 2>/dev/null || missing+=(uvloop)
  python3 -c 'import httptools' 2>/dev/null || missing+=(httptools)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing Python packages: ${missing[*]}"
    if ! python3 -m pip --version >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
    fi
    # Debian's own Python refuses pip installs outside a venv (PEP 668) unless told otherwise.
    python3 -m pip install -q "${missing[@]}" ||
      python3 -m pip install -q --break-system-packages "${missing[@]}"
  fi
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  # The Windows cross-build's standard library.
  if ! rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
    echo "== rustup target add x86_64-pc-windows-gnu"
    rustup target add x86_64-pc-windows-gnu
  fi
  # The fuzz step: cargo-fuzz needs a nightly toolchain (per user, no root needed).
  if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
      echo "== installing the nightly toolchain (for cargo-fuzz)"
      rustup toolchain install nightly --profile minimal
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
      echo "== installing cargo-fuzz"
      cargo install cargo-fuzz --locked
    fi
  fi
}

[ "${SKIP_INSTALL:-0}" = 1 ] || install_dependencies

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
if [ "${SKIP_WINDOWS:-0}" != 1 ]; then
  # The Windows build's own code (collector/platform/other.rs, the sysinfo host CPU, cfg(windows)
  # shims): the tests build only for Linux.
  echo "== cargo clippy --target x86_64-pc-windows-gnu"
  cargo clippy --target x86_64-pc-windows-gnu --quiet -- -D warnings
fi

# Integration tests start servers on free ports; two at a time keeps a 2-core machine honest.
echo "== cargo test"
cargo test --quiet --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"

# The release build (fat LTO: about 3 minutes on two cores) and its code layout (build.rs).
echo "== scripts/check-code-layout.sh"
scripts/check-code-layout.sh

# Every fuzz target for FUZZ_SECONDS (30 s) from the seed corpus: about 5 minutes to build on two
# cores, then 2 minutes. Fails on a crash and names the input (docs/fuzzing.md).
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  echo "== scripts/fuzz.sh"
  scripts/fuzz.sh
fi

# The Windows cross-build (thin LTO: about 5 minutes on two cores from scratch) and its smoke run
# under Wine.
if [ "${SKIP_WINDOWS:-0}" != 1 ]; then
  echo "== scripts/test-windows.sh"
  scripts/test-windows.sh
fi

for suite in scripts/test-rules.sh scripts/test-dashboards.sh; do
  if [ -x "$suite" ]; then
    echo "== $suite"
    "$suite"
  fi
done
