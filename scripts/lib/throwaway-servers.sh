# Sourced by the benchmark and load scripts: throwaway MariaDB, PostgreSQL and Redis in a temp dir
# on free ports (never the machine's own servers), each with a `monitor` user of least privilege.
#
#   source scripts/lib/throwaway-servers.sh
#   start_throwaway_servers          sets TMP, PW, MY_PORT, PG_PORT, REDIS_PORT; stopped on EXIT
#   throwaway_stack_toml FILE        writes a stack_exporter config with one target of each kind
# Needs: mariadb-server, postgresql (15), redis-server. As root, postgres runs as `nobody`.

PATH=$PATH:/usr/sbin
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

PIDS=()

start_throwaway_servers() {
    TMP=$(mktemp -d /tmp/throwaway-servers.XXXXXX)
    chmod 755 "$TMP"
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
    # Temporary tables in a directory of this server's own, not the /tmp other servers share.
    mkdir "$TMP/my-tmp"
    mariadb-install-db --no-defaults --auth-root-authentication-method=normal --datadir="$TMP/my" \
        --tmpdir="$TMP/my-tmp" --user="$(id -un)" --skip-test-db >/dev/null 2>&1
    mariadbd --no-defaults --datadir="$TMP/my" --tmpdir="$TMP/my-tmp" --socket="$TMP/my.sock" --pid-file="$TMP/my.pid" \
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
    redis-cli -p "$REDIS_PORT" ACL SETUSER monitor on ">$PW" +info +config\|get +llen +ping +client\|setname '%R~celery*' >/dev/null
    redis-cli -p "$REDIS_PORT" RPUSH celery a b c >/dev/null
}

throwaway_stack_toml() {
    cat > "$1" <<TOML
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
}
