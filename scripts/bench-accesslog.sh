#!/usr/bin/env bash
# Throughput and memory of the nginx collector's access-log reader and parser.
#
# Generates a synthetic access log in the recommended `stack` format (LINES lines, 10 million by
# default, about 2.3 GB) in a temporary directory, then reports, on the warm page cache:
#   - `wc -l` on the same file: the I/O floor;
#   - examples/bench_accesslog (release build): the collector's Follower + parser, one thread;
#     lines per second and peak RSS (VmHWM), which must not grow with the log.
# The file is deleted afterwards. Usage: scripts/bench-accesslog.sh [LINES]
set -euo pipefail

lines="${1:-10000000}"
cd "$(dirname "$0")/.."
cargo build --release --quiet --example bench_accesslog
bench=target/release/examples/bench_accesslog

work="$(mktemp -d "${TMPDIR:-/tmp}/stack-bench-accesslog.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log="$work/access.log"

echo "generating $lines lines in $log"
"$bench" generate "$lines" "$log"
size=$(stat -c %s "$log")
echo "size $((size / 1000000)) MB"

# Warm the page cache so both readers see the same I/O.
cat "$log" > /dev/null

start=$(date +%s.%N)
wc -l "$log" > /dev/null
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$lines" -v b="$size" \
    'BEGIN { printf "wc -l: %.3f s, %.0f lines/s, %.0f MB/s\n", e - s, n / (e - s), b / (e - s) / 1e6 }'

for format in stack combined; do
    printf 'parser (%s): ' "$format"
    "$bench" parse "$log" "$format" | head -1
done
echo "per-route check (stack):"
"$bench" parse "$log" stack | tail -n +2

# Memory must not follow the log's size: a tenth of the log, same peak.
head -n "$((lines / 10))" "$log" > "$work/small.log"
rm -f "$log"
printf 'parser (stack, %s lines): ' "$((lines / 10))"
"$bench" parse "$work/small.log" stack | head -1
