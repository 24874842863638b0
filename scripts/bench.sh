#!/usr/bin/env bash
# Footprint benchmark: builds the release binary and prints stack_exporter beside the peers, its
# scrape cost against host processes and established connections, and its RSS around a storm of
# connections (scripts/bench.py --help; figures in docs/performance.md).
# Peers come from Debian: apt-get install prometheus-node-exporter prometheus-process-exporter;
# the connection part needs redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/bench.py --binary target/release/stack_exporter "$@"
