#!/usr/bin/env bash
# Footprint benchmark: builds the release binary and prints stack_exporter beside the peers.
# Peers come from Debian: apt-get install prometheus-node-exporter prometheus-process-exporter
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/bench.py --binary target/release/stack_exporter "$@"
