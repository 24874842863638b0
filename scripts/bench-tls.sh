#!/usr/bin/env bash
# TLS + basic auth benchmark: builds the release binary and prints the cost of a scrape over HTTPS
# with basic auth beside plain HTTP, for stack_exporter and node_exporter with the same web config.
# Needs openssl; node_exporter from Debian: apt-get install prometheus-node-exporter
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/bench-tls.py --binary target/release/stack_exporter "$@"
