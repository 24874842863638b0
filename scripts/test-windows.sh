#!/usr/bin/env bash
# The Windows build (issue 16, docs/windows.md): cross-compiles the exporter with Debian's
# mingw-w64 and runs it under Wine: /metrics must answer with the host's memory and the services
# collector's figures, both on sysinfo. Needs: rustup target x86_64-pc-windows-gnu, mingw-w64,
# wine64 (scripts/test.sh installs them).
#
#   scripts/test-windows.sh                 build (profile windows-release) and smoke-test
#   WINDOWS_PROFILE=release scripts/test-windows.sh   the fat-LTO release build instead
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
PROFILE="${WINDOWS_PROFILE:-windows-release}"
WINE="${WINE:-/usr/lib/wine/wine64}"

echo "== cargo build --profile $PROFILE --target $TARGET"
cargo build --quiet --profile "$PROFILE" --target "$TARGET"
exe="target/$TARGET/$PROFILE/stack_exporter.exe"
ls -l "$exe"

if [ ! -x "$WINE" ]; then
  echo "test-windows.sh: no $WINE: apt-get install wine64" >&2
  exit 1
fi

# A prefix of our own (made in ~20 s the first time), its wineserver ended with it.
work="$(mktemp -d)"
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
exporter_pid=""
cleanup() {
  [ -n "$exporter_pid" ] && kill "$exporter_pid" 2>/dev/null || true
  "$(dirname "$WINE")/wineserver" -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The exe in a directory of its own, beside the bcryptprimitives.dll that Debian 12's Wine 8 lacks
# (scripts/lib/wine-bcryptprimitives.c says why); a Wine that has one uses its own.
cp "$exe" "$work/stack_exporter.exe"
x86_64-w64-mingw32-gcc -shared -O2 -Wl,--kill-at -o "$work/bcryptprimitives.dll" \
  scripts/lib/wine-bcryptprimitives.c -ladvapi32
exe="$work/stack_exporter.exe"

# The dev profile, as on the developer's machine (Wine maps the Unix path through its Z: drive).
echo 'profile = "dev"' >"$work/stack.toml"
"$WINE" "$exe" --web.listen-address="127.0.0.1:$port" --config.file="$work/stack.toml" \
  >"$work/stdout" 2>"$work/log" &
exporter_pid=$!

metrics=""
for _ in $(seq 1 120); do
  if metrics="$(curl -sf "http://127.0.0.1:$port/metrics")"; then
    break
  fi
  if ! kill -0 "$exporter_pid" 2>/dev/null; then
    echo "test-windows.sh: the exporter exited under Wine:" >&2
    cat "$work/log" >&2
    exit 1
  fi
  sleep 1
done
if [ -z "$metrics" ]; then
  echo "test-windows.sh: /metrics did not answer within 120 s; the exporter's log:" >&2
  cat "$work/log" >&2
  exit 1
fi

failed=0
expect() {
  if ! grep -Eq "$1" <<<"$metrics"; then
    echo "test-windows.sh: /metrics has no line matching: $1" >&2
    failed=1
  fi
}
expect '^stack_host_memory_total_bytes [1-9]'
expect '^stack_host_memory_available_bytes [0-9]'
expect '^stack_host_cpu_cores [1-9]'
expect '^stack_scrape_collector_success\{collector="host"\} 1'
expect '^stack_scrape_collector_success\{collector="services"\} 1'
expect '^stack_scrape_collector_success\{collector="filesystem"\} 1'
expect '^stack_service_up\{service="postgresql"\} [01]'
expect '^stack_plan_info\{profile="dev"\} 1'
if grep -q 'collector="sockets"' <<<"$metrics"; then
  echo "test-windows.sh: a sockets collector ran on Windows" >&2
  failed=1
fi
expect_log() {
  if ! grep -q "$1" "$work/log"; then
    echo "test-windows.sh: the start-up log does not say: $1" >&2
    failed=1
  fi
}
expect_log 'sockets collector: off on this system'
expect_log 'services collector: on sysinfo'
if [ "$failed" = 1 ]; then
  echo "--- log" >&2
  cat "$work/log" >&2
  exit 1
fi
# What a scrape costs once sysinfo's state is warm (the first lists and matches every process).
for _ in 1 2 3 4 5; do
  metrics="$(curl -sf "http://127.0.0.1:$port/metrics")"
done
echo "after 6 scrapes:"
grep -E '^stack_scrape_collector_duration_seconds\{collector="(host|services|filesystem)"\}' <<<"$metrics"
grep -E '^stack_service_processes\{service="monitoring"\}' <<<"$metrics"
echo "test-windows.sh: the Windows build answers under Wine"
