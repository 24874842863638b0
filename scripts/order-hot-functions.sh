#!/usr/bin/env bash
# Regenerates link/hot-functions.rustc-VERSION.txt, the linker's order for the exporter's
# functions (docs/performance.md, "Code layout"): builds the release binary with its symbols,
# starts throwaway MariaDB, PostgreSQL, Redis and nginx, runs the exporter under callgrind with
# every collector on, and lists the functions scrapes and start-up run. Run it after changing the
# toolchain or Cargo.lock, or when scripts/check-code-layout.sh says the order is stale.
# Needs: valgrind, nginx, mariadb-server, postgresql, redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(rustc --version | awk '{print $2}')
out="link/hot-functions.rustc-$version.txt"
# Without an order (STACK_CODE_ORDER=none), so that nothing of an old one shapes the new.
STACK_CODE_ORDER=none CARGO_TARGET_DIR=target/code-order cargo build --release --quiet
source scripts/lib/throwaway-servers.sh
start_throwaway_servers
throwaway_stack_toml "$TMP/stack.toml"
export PW MY_PORT PG_PORT REDIS_PORT STACK_TOML="$TMP/stack.toml"
python3 scripts/order_hot_functions.py target/code-order/release/stack_exporter "$out"
