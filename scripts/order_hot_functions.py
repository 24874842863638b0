#!/usr/bin/env python3
"""Writes the order in which the linker lays out the exporter's functions: those a scrape runs
first, then those start-up runs, so that the pages of code the exporter keeps resident hold only
code it runs (docs/performance.md, "Code layout").

The kernel maps a binary's code 64 KB around each page fault: with the hot functions spread over
the whole 4 MB of code, nearly all of it is resident after a few scrapes. Run by
scripts/order-hot-functions.sh, which builds the binary with its symbols and starts the servers;
this part runs it under callgrind in every collector's scenario and lists the functions it ran.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from throwaway_servers import free_port, wait_port  # noqa: E402


def functions(dump):
    """The functions a callgrind dump has costs for, in the order it lists them."""
    names, order, seen = {}, [], set()
    for line in open(dump, errors="replace"):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, ident, name = m.groups()
        if name:
            names[ident] = name
        name = names.get(ident)
        if kind == "fn" and name and name not in seen:
            seen.add(name)
            order.append(name)
    return order


def text_symbols(binary):
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    return {p[2] for p in (line.split() for line in out.splitlines()) if len(p) == 3 and p[1] in "tT"}


def scrape_every_way(port):
    """/metrics as Prometheus asks for it (gzip, OpenMetrics), as a plain client does, and /."""
    for headers in ({}, {"Accept-Encoding": "gzip"},
                    {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"}):
        conn = bench.http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", "/metrics", headers=headers)
        conn.getresponse().read()
        conn.close()
    bench.scrape(port, "/")


def main():
    binary, out = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        nginx, nginx_port = bench.start_nginx(tmp, 1000)
        config = bench.side_config(tmp, nginx_port)
        dumps = os.path.join(tmp, "callgrind.out")
        port = free_port()
        child = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={dumps}", binary,
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", f"--config.file={config}",
             "--web.max-scrape-timeout=120s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with bench.Connections(nginx_port, 1000):
                wait_port(port, timeout=300)
                for _ in range(2):
                    scrape_every_way(port)
                subprocess.run(["callgrind_control", "-d", str(child.pid)], check=True, capture_output=True)
                for _ in range(5):
                    scrape_every_way(port)
                subprocess.run(["callgrind_control", "-d", str(child.pid)], check=True, capture_output=True)
        finally:
            child.terminate()
            child.wait()
            nginx.terminate()  # SIGTERM: the master stops its workers (SIGKILL would orphan them)
            nginx.wait()
        start, scrapes = functions(dumps + ".1"), functions(dumps + ".2")
    present = text_symbols(binary)
    # Each group sorted by name: the order within a group matters little, and a file regenerated
    # after a small change then differs by that change.
    hot = sorted(set(scrapes) & present)
    ordered = hot + sorted(set(start) & present - set(hot))
    with open(out, "w") as f:
        f.write("\n".join(ordered) + "\n")
    print(f"{out}: {len(ordered)} functions ({len(scrapes)} run by scrapes, {len(start)} by start-up)")


if __name__ == "__main__":
    main()
