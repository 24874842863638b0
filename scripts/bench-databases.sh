#!/usr/bin/env bash
# Side-by-side cost of the database collectors: Debian's prometheus-mysqld-exporter,
# prometheus-postgres-exporter and prometheus-redis-exporter against stack_exporter (release build,
# only its mysql, postgres and redis collectors), all scraping the same throwaway MariaDB,
# PostgreSQL and Redis started here in a temp dir on free ports (never the machine's own servers).
#
# Prints, per exporter: RSS after N scrapes, CPU per scrape (utime+stime delta from /proc/PID/stat
# divided by N), scrape latency median and p99 (curl's time_total), and samples per scrape.
#
# Usage: scripts/bench-databases.sh [N]      (N scrapes per exporter, default 300)
# Needs: mariadb-server, postgresql (15), redis-server, the three prometheus-*-exporter packages,
# curl. Runs as root (postgres then runs as `nobody`) or as a normal user.
set -euo pipefail

N=${1:-300}
cd "$(dirname "$0")/.."
ROOT=$(pwd)

for bin in mariadb-install-db mariadbd mariadb redis-server redis-cli curl \
    prometheus-mysqld-exporter prometheus-postgres-exporter prometheus-redis-exporter; do
    command -v "$bin" >/dev/null || PATH=$PATH:/usr/sbin command -v "$bin" >/dev/null || {
        echo "missing $bin: apt-get install mariadb-server postgresql redis-server curl prometheus-mysqld-exporter prometheus-postgres-exporter prometheus-redis-exporter" >&2
        exit 1
    }
done
echo "building stack_exporter (release)..." >&2
cargo build --release --quiet
STACK="$ROOT/target/release/stack_exporter"

source scripts/lib/throwaway-servers.sh
start_throwaway_servers

# --- Exporters
MYSQLD_EXP_PORT=$(free_port); PG_EXP_PORT=$(free_port); REDIS_EXP_PORT=$(free_port); STACK_PORT=$(free_port)
DATA_SOURCE_NAME="monitor:$PW@(127.0.0.1:$MY_PORT)/" prometheus-mysqld-exporter \
    --web.listen-address="127.0.0.1:$MYSQLD_EXP_PORT" --collect.info_schema.processlist \
    --collect.info_schema.tables --collect.perf_schema.eventsstatementssum >/dev/null 2>&1 &
PIDS+=($!)
DATA_SOURCE_NAME="postgresql://monitor:$PW@127.0.0.1:$PG_PORT/postgres?sslmode=disable" \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$PG_EXP_PORT" >/dev/null 2>&1 &
PIDS+=($!)
prometheus-redis-exporter -redis.addr="redis://127.0.0.1:$REDIS_PORT" -redis.user=monitor \
    -redis.password="$PW" -web.listen-address="127.0.0.1:$REDIS_EXP_PORT" >/dev/null 2>&1 &
PIDS+=($!)
throwaway_stack_toml "$TMP/stack.toml"
"$STACK" --web.listen-address="127.0.0.1:$STACK_PORT" --config.file="$TMP/stack.toml" \
    --no-collector.host --no-collector.services >/dev/null 2>"$TMP/stack.log" &
PIDS+=($!)
STACK_PID=$!
for p in "$MYSQLD_EXP_PORT" "$PG_EXP_PORT" "$REDIS_EXP_PORT" "$STACK_PORT"; do wait_port "$p"; done
sleep 0.5

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

bench() { # name port pid
    local name=$1 port=$2 pid=$3
    curl -s "http://127.0.0.1:$port/metrics" >/dev/null   # first scrape connects
    local samples
    samples=$(curl -s "http://127.0.0.1:$port/metrics" | grep -vc '^#')
    local before; before=$(cpu_ticks "$pid")
    for _ in $(seq "$N"); do
        curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics"
    done | sort -n > "$TMP/$name.times"
    local after; after=$(cpu_ticks "$pid")
    local median p99
    median=$(awk -v n="$N" 'NR == int((n + 1) / 2) {printf "%.2f", $1 * 1000}' "$TMP/$name.times")
    p99=$(awk -v n="$N" 'NR == int(n * 0.99 + 0.999) {printf "%.2f", $1 * 1000}' "$TMP/$name.times")
    local cpu
    cpu=$(awk -v d=$((after - before)) -v hz="$HZ" -v n="$N" 'BEGIN {printf "%.2f", d * 1000 / hz / n}')
    printf '| %-28s | %8s MB | %8s ms | %8s ms | %8s ms | %7s |\n' \
        "$name" "$(rss_mb "$pid")" "$cpu" "$median" "$p99" "$samples"
}

echo "N=$N scrapes each; MariaDB $(mariadbd --version | awk '{print $3}'), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
printf '| %-28s | %11s | %11s | %11s | %11s | %7s |\n' exporter "RSS after" "CPU/scrape" "median" "p99" samples
echo '|---|---|---|---|---|---|'
bench mysqld_exporter "$MYSQLD_EXP_PORT" "${PIDS[0]}"
bench postgres_exporter "$PG_EXP_PORT" "${PIDS[1]}"
bench redis_exporter "$REDIS_EXP_PORT" "${PIDS[2]}"
bench "stack_exporter (all three)" "$STACK_PORT" "$STACK_PID"
if grep -q 'level=warn' "$TMP/stack.log"; then
    echo "stack_exporter warnings:" >&2
    grep 'level=warn' "$TMP/stack.log" >&2
fi
