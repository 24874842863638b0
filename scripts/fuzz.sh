#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time, starting from the seed
# corpus in fuzz/corpus/<target>/. Fails on the first crash and prints the crashing input's path.
#
#   scripts/fuzz.sh                       every target, FUZZ_SECONDS (30) each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh config   one target for an hour
#   FUZZ_INSTALL=1 scripts/fuzz.sh        install the nightly toolchain and cargo-fuzz if missing
#
# Inputs that reach new code are kept in fuzz/target/corpus/<target>/ (not in git), so a later run
# goes on from there; the seeds in fuzz/corpus/ are only read. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
# No sanitizer: the targets call safe Rust, where a bug is a panic (overflow checks are on), and
# an uninstrumented build is several times faster to build and to run. FUZZ_SANITIZER=address
# for a campaign that also wants AddressSanitizer.
SANITIZER="${FUZZ_SANITIZER:-none}"

install_tools() {
  if ! command -v rustup >/dev/null 2>&1; then
    echo "fuzz.sh: rustup is needed to install the nightly toolchain (https://rustup.rs)" >&2
    exit 1
  fi
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "== installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
}

[ "${FUZZ_INSTALL:-0}" = 1 ] && install_tools
if ! rustup run nightly rustc --version >/dev/null 2>&1 || ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz; run with FUZZ_INSTALL=1 to install them" >&2
  exit 1
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

build=(--sanitizer "$SANITIZER" --codegen-units 16)
echo "== cargo fuzz build (${targets[*]})"
cargo +nightly fuzz build "${build[@]}"

for target in "${targets[@]}"; do
  work="target/corpus/$target"
  artifacts="artifacts/$target"
  mkdir -p "$work" "$artifacts" "corpus/$target"
  echo "== fuzz $target for ${SECONDS_PER_TARGET}s"
  # -timeout: one input taking longer than 10 s counts as a hang (a crash).
  if ! cargo +nightly fuzz run "${build[@]}" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"target/fuzz-$target.log" 2>&1; then
    tail -n 40 "target/fuzz-$target.log" >&2
    crash=$(ls -t "$artifacts"/* 2>/dev/null | head -n 1 || true)
    echo >&2
    echo "fuzz.sh: target $target crashed; input: fuzz/${crash:-$artifacts/ (none written)}" >&2
    echo "fuzz.sh: replay it with: cd fuzz && cargo +nightly fuzz run ${build[*]} $target ${crash:-}" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added):' "target/fuzz-$target.log" |
    sed "s/^/  $target /" || true
done
echo "== fuzzing: no crash in ${#targets[@]} targets × ${SECONDS_PER_TARGET}s"
