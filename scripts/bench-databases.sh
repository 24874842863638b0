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
PATH=$PATH:/usr/sbin
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

echo "building stack_exporter (release)..." >&2
cargo build --release --quiet
STACK="$ROOT/target/release/stack_exporter"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

TMP=$(mktemp -d /tmp/bench-databases.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -n "${PG_PID:-}" ] && kill -INT "$PG_PID" 2>/dev/null || true
    [ -n "${MY_PID:-}" ] && kill -TERM "$MY_PID" 2>/dev/null || true
    [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null || true
    sleep 1
    rm -rf "$TMP"
}
trap cleanup EXIT

PW=bench-Pass-4417
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u nobody --); else RUNAS=(); fi

# --- MariaDB
MY_PORT=$(free_port)
mariadb-install-db --no-defaults --auth-root-authentication-method=normal --datadir="$TMP/my" \
    --user="$(id -un)" --skip-test-db >/dev/null 2>&1
mariadbd --no-defaults --datadir="$TMP/my" --socket="$TMP/my.sock" --pid-file="$TMP/my.pid" \
    --log-error="$TMP/my.err" --port="$MY_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
    --performance-schema=ON --innodb-buffer-pool-size=64M --user="$(id -un)" >/dev/null 2>&1 &
MY_PID=$!
wait_port "$MY_PORT"
for _ in $(seq 100); do mariadb --no-defaults --socket="$TMP/my.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
mariadb --no-defaults --socket="$TMP/my.sock" -uroot -e "
    CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, body TEXT);
    CREATE USER 'monitor'@'127.0.0.1' IDENTIFIED BY '$PW';
    GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'monitor'@'127.0.0.1';
    GRANT SELECT ON performance_schema.* TO 'monitor'@'127.0.0.1';
    GRANT SELECT ON shop.* TO 'monitor'@'127.0.0.1';"

# --- PostgreSQL
PG_PORT=$(free_port)
mkdir "$TMP/pg"
[ "$(id -u)" = 0 ] && chown nobody "$TMP/pg"
"${RUNAS[@]}" "$PGBIN/initdb" -D "$TMP/pg/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync --no-instructions >/dev/null
"${RUNAS[@]}" "$PGBIN/postgres" -D "$TMP/pg/data" -p "$PG_PORT" -k "$TMP/pg" \
    -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements -c fsync=off \
    >/dev/null 2>&1 &
PG_PID=$!
wait_port "$PG_PORT"
for _ in $(seq 100); do "${RUNAS[@]}" "$PGBIN/psql" -h "$TMP/pg" -p "$PG_PORT" -U postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
"${RUNAS[@]}" "$PGBIN/psql" -h "$TMP/pg" -p "$PG_PORT" -U postgres -q -c \
    "CREATE ROLE monitor LOGIN PASSWORD '$PW' IN ROLE pg_monitor; CREATE EXTENSION pg_stat_statements;"
# postgres is started by runuser/bash: the real postmaster is its child when run as root.
PG_PID=$(head -1 "$TMP/pg/data/postmaster.pid")

# --- Redis
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >/dev/null &
REDIS_PID=$!
wait_port "$REDIS_PORT"
redis-cli -p "$REDIS_PORT" ACL SETUSER monitor on ">$PW" +info +config\|get +llen +ping '%R~celery*' >/dev/null
redis-cli -p "$REDIS_PORT" RPUSH celery a b c >/dev/null

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
cat > "$TMP/stack.toml" <<TOML
[[mysql]]
name = "main"
url = "mysql://monitor:$PW@127.0.0.1:$MY_PORT/"
[[postgres]]
name = "main"
url = "postgres://monitor:$PW@127.0.0.1:$PG_PORT/postgres"
[[redis]]
name = "cache"
url = "redis://monitor:$PW@127.0.0.1:$REDIS_PORT/0"
TOML
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
