#!/usr/bin/env python3
"""Side-by-side footprint of stack_exporter and the peer exporters it replaces on this host.

For each exporter: RSS after N scrapes, CPU time per scrape, scrape latency median and p99,
response size and sample count; then how stack_exporter's scrape time grows with the number of
host processes (1000 and 3000 extra sleeping processes). Figures are printed, not asserted: this
is a benchmark, not a test.

    scripts/bench.sh              (builds the release binary, then runs this)
    scripts/bench.py --scrapes 500 --binary target/release/stack_exporter
"""
import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_bytes(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


def scrape(port, path="/metrics"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


def measure(name, pid, port, scrapes):
    scrape(port)  # warm up: first scrape fills caches
    cpu_before = cpu_seconds(pid)
    latencies = []
    body = b""
    for _ in range(scrapes):
        start = time.perf_counter()
        body = scrape(port)
        latencies.append(time.perf_counter() - start)
    cpu = (cpu_seconds(pid) - cpu_before) / scrapes
    latencies.sort()
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {
        "name": name,
        "rss_mb": rss_bytes(pid) / 1e6,
        "cpu_ms": cpu * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "bytes": len(body),
        "samples": samples,
    }


def start(argv):
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def peers(tmp):
    """The peer exporters that are installed, as (name, argv-for-port) pairs."""
    found = []
    node = shutil.which("prometheus-node-exporter")
    if node:
        found.append(("node_exporter", lambda p: [node, f"--web.listen-address=127.0.0.1:{p}"]))
    process = shutil.which("prometheus-process-exporter")
    if process:
        config = os.path.join(tmp, "process-exporter.yml")
        with open(config, "w") as f:
            f.write("process_names:\n  - name: '{{.Comm}}'\n    cmdline: ['.+']\n")
        found.append(("process-exporter", lambda p: [process, f"-web.listen-address=127.0.0.1:{p}", f"-config.path={config}"]))
    return found


def print_table(rows):
    header = f"{'exporter':<22}{'RSS MB':>9}{'CPU ms/scrape':>15}{'p50 ms':>9}{'p99 ms':>9}{'bytes':>9}{'samples':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<22}{r['rss_mb']:>9.1f}{r['cpu_ms']:>15.2f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['bytes']:>9}{r['samples']:>9}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/stack_exporter")
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1000/3000 process runs")
    parser.add_argument("--pss-max-age", default="60s")
    parser.add_argument("--baseline", metavar="BINARY",
                        help="an older stack_exporter build measured beside this one (before/after)")
    args = parser.parse_args()

    nproc = len([d for d in os.listdir("/proc") if d.isdigit()])
    print(f"host: {os.cpu_count()} cores, {nproc} processes, {args.scrapes} scrapes per exporter\n")
    rows, children = [], []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            variants = [
                ("stack_exporter", args.binary, [f"--collector.services.pss-max-age={args.pss_max_age}"]),
                ("stack (PSS every scrape)", args.binary, ["--collector.services.pss-max-age=0s"]),
            ]
            if args.baseline:
                variants.insert(1, ("baseline", args.baseline, [f"--collector.services.pss-max-age={args.pss_max_age}"]))
            for name, binary, extra in variants:
                port = free_port()
                child = start([binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *extra])
                children.append(child)
                wait_port(port)
                rows.append(measure(name, child.pid, port, args.scrapes))
                child.terminate()
            peer_total = {"name": "peers together", "rss_mb": 0, "cpu_ms": 0, "p50_ms": 0, "p99_ms": 0, "bytes": 0, "samples": 0}
            for name, argv in peers(tmp):
                port = free_port()
                child = start(argv(port))
                children.append(child)
                wait_port(port)
                row = measure(name, child.pid, port, args.scrapes)
                rows.append(row)
                for key in ("rss_mb", "cpu_ms", "bytes", "samples"):
                    peer_total[key] += row[key]
                child.terminate()
            if len(rows) > 2:
                rows.append(peer_total)
            print_table(rows)

            if not args.no_scaling:
                print("\nscrape time against host processes (stack_exporter, PSS every scrape = worst case):")
                sleepers = []
                for extra in (0, 1000, 3000):
                    while len(sleepers) < extra:
                        sleepers.append(subprocess.Popen(["sleep", "600"]))
                    port = free_port()
                    child = start([args.binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", "--collector.services.pss-max-age=0s"])
                    children.append(child)
                    wait_port(port)
                    row = measure(f"+{extra} processes", child.pid, port, max(50, args.scrapes // 5))
                    total = len([d for d in os.listdir("/proc") if d.isdigit()])
                    print(f"  {total:>5} processes: p50 {row['p50_ms']:.2f} ms, CPU {row['cpu_ms']:.2f} ms/scrape, "
                          f"{row['cpu_ms'] / total * 1000:.1f} us CPU per process")
                    child.terminate()
                for s in sleepers:
                    s.kill()
                for s in sleepers:
                    s.wait()
        finally:
            for child in children:
                child.kill()


if __name__ == "__main__":
    sys.exit(main())
