#!/usr/bin/env bash
# Load figures for docs/reliability.md: the release binary with every collector on (host, services,
# sockets, nginx access log, storage, MariaDB, PostgreSQL, Redis against throwaway servers), then
#   wrk -t2 -c100 -d60s on /metrics   requests, errors, latency, RSS after the run
#   1000 idle + 200 slowloris          a normal scrape's latency while they are held
#   8000 connections opened and closed RSS before and after
#   IDLE_MINUTES of idle (default 10)  RSS after them
# Figures are printed, not asserted: scripts/torture.py is the pass/fail part.
#
# Usage: scripts/load.sh [DURATION]    (wrk duration, default 60s); IDLE_MINUTES=0 skips the wait
# Needs: wrk, mariadb-server, postgresql, redis-server.
set -euo pipefail
DURATION=${1:-60s}
IDLE_MINUTES=${IDLE_MINUTES:-10}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "missing wrk: apt-get install wrk" >&2; exit 1; }

echo "building stack_exporter (release)..." >&2
cargo build --release --quiet
STACK="$(pwd)/target/release/stack_exporter"
source scripts/lib/throwaway-servers.sh
start_throwaway_servers

mkdir -p "$TMP/backups" "$TMP/logs"
for i in $(seq 2000); do
    echo "127.0.0.1 - - [27/Nov/2026:10:00:00 +0000] \"GET /api/$i HTTP/1.1\" 200 5 \"-\" \"load\""
done > "$TMP/access.log"
throwaway_stack_toml "$TMP/stack.toml"
cat >> "$TMP/stack.toml" <<TOML
[nginx]
access_log = "$TMP/access.log"
[storage]
directories = { backups = "$TMP/backups", logs = "$TMP/logs" }
TOML
PORT=$(free_port)
"$STACK" --web.listen-address="127.0.0.1:$PORT" --config.file="$TMP/stack.toml" 2>"$TMP/stack.log" &
STACK_PID=$!
PIDS+=("$STACK_PID")
wait_port "$PORT"
curl -s "http://127.0.0.1:$PORT/metrics" >/dev/null
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

echo "collectors: $(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^stack_scrape_collector_success/ {printf "%s ", $0}')"
echo "RSS before: $(rss_mb "$STACK_PID") MB"
wrk -t2 -c100 -d"$DURATION" --latency "http://127.0.0.1:$PORT/metrics" | sed 's/^/  /'
echo "RSS after wrk: $(rss_mb "$STACK_PID") MB"
python3 scripts/lib/connection_load.py "$PORT" "$STACK_PID" | sed 's/^/  /'
if [ "$IDLE_MINUTES" -gt 0 ]; then
    echo "RSS before the idle minutes: $(rss_mb "$STACK_PID") MB"
    sleep $((IDLE_MINUTES * 60))
    echo "RSS after $IDLE_MINUTES idle minutes: $(rss_mb "$STACK_PID") MB"
    curl -s "http://127.0.0.1:$PORT/metrics" >/dev/null
    echo "RSS after one more scrape: $(rss_mb "$STACK_PID") MB"
fi
echo "warnings logged: $(grep -c 'level=warn' "$TMP/stack.log" || true)"
grep 'level=warn' "$TMP/stack.log" | sort | uniq -c | sort -rn | head -5 >&2 || true
