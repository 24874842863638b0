#!/usr/bin/env bash
# Issue 9's accidents and hostile clients replayed against the release binary: builds it, then runs
# scripts/torture.py and prints its table. Exits non-zero if any case crashed, lost a line or failed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/torture.py --binary target/release/stack_exporter "$@"
