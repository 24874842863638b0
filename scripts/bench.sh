#!/usr/bin/env bash
# Footprint benchmark (issue 14): builds the release binary, starts throwaway MariaDB, PostgreSQL
# and Redis (scripts/lib/throwaway-servers.sh: temp dir, free ports, never the machine's own), then
# scripts/bench.py prints stack_exporter with every collector on beside the five peers it replaces,
# scraped in turn on a host with 300 processes and 10 000 connections to a throwaway nginx; its
# scrape cost against host processes and connections; its RSS around a storm of connections.
# Arguments go to scripts/bench.py (--help); figures and how to read them: docs/performance.md.
# Needs: apt-get install nginx mariadb-server postgresql redis-server prometheus-node-exporter
#   prometheus-process-exporter prometheus-mysqld-exporter prometheus-postgres-exporter
#   prometheus-redis-exporter
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
source scripts/lib/throwaway-servers.sh
start_throwaway_servers
throwaway_stack_toml "$TMP/stack.toml"
export PW MY_PORT PG_PORT REDIS_PORT STACK_TOML="$TMP/stack.toml"
python3 scripts/bench.py --binary target/release/stack_exporter "$@"
