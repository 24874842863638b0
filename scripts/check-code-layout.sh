#!/usr/bin/env bash
# Checks that the release binary's code is laid out as link/hot-functions.rustc-VERSION.txt says
# (build.rs; docs/performance.md, "Code layout"): the file names functions this build has (it
# goes stale with another compiler or other locked dependencies), and they come first in the
# code, before every function it does not name. Fails with what to run when either is not so.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(rustc --version | awk '{print $2}')
order="link/hot-functions.rustc-$version.txt"
if [ ! -f "$order" ]; then
    echo "no $order for this compiler: run scripts/order-hot-functions.sh" >&2
    exit 1
fi
cargo build --release --quiet
python3 - "$order" target/release/stack_exporter <<'PY'
import subprocess, sys
order_file, binary = sys.argv[1], sys.argv[2]
wanted = [line.strip() for line in open(order_file) if line.strip()]
address = {}
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tT":
        address.setdefault(parts[2], int(parts[0], 16))
if not address:
    sys.exit(f"{binary} has no symbols: the release profile must keep them (strip = \"debuginfo\")")
found = [name for name in wanted if name in address]
share = len(found) / len(wanted)
if share < 0.9:
    sys.exit(f"{order_file}: only {len(found)} of its {len(wanted)} functions are in this build "
             f"(another compiler or other dependencies): run scripts/order-hot-functions.sh")
hot = set(found)
end = max(address[name] for name in found)
start = min(address[name] for name in found)
mixed = sum(1 for name, at in address.items() if name not in hot and start <= at <= end)
print(f"code layout: {len(found)} of {len(wanted)} ordered functions found, in "
      f"{(end - start) / 1024:.0f} KB at the start of the code; {mixed} other functions among them")
if mixed > len(found) // 20:
    sys.exit("the ordered functions are not laid out together: is the linker LLD (build.rs)?")
PY
