#!/usr/bin/env python3
"""Side-by-side footprint of stack_exporter and the peer exporters it replaces on this host.

For each exporter: RSS after N scrapes, CPU time per scrape, scrape latency median and p99,
response size and sample count; then how stack_exporter's scrape time grows with the number of
host processes (1000 and 3000 extra sleeping processes) and with the number of established
connections on the host (0, 1000 and 10000 loopback connections to a throwaway Redis that is a
watched service), and the exporter's RSS around a storm of 8000 connections to its own port.
Figures are printed, not asserted: this is a benchmark, not a test.

    scripts/bench.sh              (builds the release binary, then runs this)
    scripts/bench.py --scrapes 500 --binary target/release/stack_exporter
    scripts/bench.py --only connections --baseline /tmp/old/stack_exporter
    scripts/bench.py --only connections --callgrind   (instructions per scrape, under valgrind)

--callgrind names functions, so it needs a binary with symbols (the release profile strips them):
    CARGO_PROFILE_RELEASE_DEBUG=true CARGO_PROFILE_RELEASE_STRIP=false cargo build --release
"""
import argparse
import http.client
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from throwaway_servers import free_port, wait_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")




def cpu_times(pid):
    """User and kernel CPU seconds of a process."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS  # utime, stime


def cpu_seconds(pid):
    return sum(cpu_times(pid))


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
    sys_before = cpu_times(pid)[1]
    latencies = []
    body = b""
    for _ in range(scrapes):
        start = time.perf_counter()
        body = scrape(port)
        latencies.append(time.perf_counter() - start)
    cpu = (cpu_seconds(pid) - cpu_before) / scrapes
    kernel = (cpu_times(pid)[1] - sys_before) / scrapes
    latencies.sort()
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {
        "name": name,
        "rss_mb": rss_bytes(pid) / 1e6,
        "cpu_ms": cpu * 1000,
        "kernel_ms": kernel * 1000,
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
        print(f"{r['name']:<22}{r['rss_mb']:>9.2f}{r['cpu_ms']:>15.2f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['bytes']:>9}{r['samples']:>9}")


# A child that opens `count` connections to a port and holds them until its stdin closes. A process
# of its own: the connections' both ends on one host need twice the descriptors, and the client
# ends must not be in a watched service's fd table.
HOLDER = r"""
import resource, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard < count + 64:
    sys.exit(f"holding {count} connections needs {count + 64} descriptors; the hard limit is {hard}")
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, hard))
held = []
for i in range(count):
    if i % 256 == 255:
        time.sleep(0.02)  # within the listener's backlog: a dropped SYN costs a 1 s retry
    held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
print("ready", flush=True)
sys.stdin.read()
"""


class Connections:
    """`count` established loopback connections to `port` while the block runs, then closed."""

    def __init__(self, port, count):
        self.port, self.count, self.child = port, count, None

    def __enter__(self):
        if self.count:
            self.child = subprocess.Popen([sys.executable, "-c", HOLDER, str(self.port), str(self.count)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            line = self.child.stdout.readline()
            if line.strip() != b"ready":
                raise SystemExit(f"could not open {self.count} connections to port {self.port}")
        return self

    def __exit__(self, *exc):
        if self.child:
            self.child.stdin.close()
            self.child.wait(timeout=60)


def established(port):
    """Established TCP connections on the host whose local port is `port` (the server ends)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def start_redis(tmp, maxclients):
    """A throwaway Redis on a free loopback port that takes `maxclients` clients."""
    redis = shutil.which("redis-server")
    if not redis:
        raise SystemExit("the connection scenario needs redis-server: apt-get install redis-server")
    port = free_port()
    child = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", tmp, "--maxclients", str(maxclients)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return child, port


BUILT_IN_SERVICES = ["nginx", "wsgi", "asgi", "celery_worker", "celery_beat", "mysql", "postgresql", "redis"]


def redis_only_config(tmp, redis_port):
    """The throwaway Redis as the only watched service: the machine's other servers (and other
    benchmarks' or tests') stay out of the figures."""
    path = os.path.join(tmp, "connections.toml")
    with open(path, "w") as f:
        for name in BUILT_IN_SERVICES:
            matcher = f"{{ comm = 'redis-server', cmdline = ':{redis_port}$' }}" if name == "redis" \
                else "{ comm = 'no-such-process' }"
            f.write(f"[services.{name}]\nmatch = [{matcher}]\n")
    return path


def callgrind_per_scrape(binary, argv, scrapes, tmp):
    """Instructions per scrape under callgrind: in total, in the sockets collector, and in the
    /proc snapshot of the services' processes it shares with the services collector. Counts of
    user-space instructions, stable on a noisy machine (the kernel's share is not in them)."""
    out = os.path.join(tmp, "callgrind.out")
    port = free_port()
    child = start(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                   "--web.max-scrape-timeout=60s", *argv])
    try:
        wait_port(port, timeout=120)
        for _ in range(2):
            scrape(port)  # warm up: caches filled, first-sight work done
        subprocess.run(["callgrind_control", "-z", str(child.pid)], check=True, capture_output=True)
        for _ in range(scrapes):
            scrape(port)
        subprocess.run(["callgrind_control", "-d", str(child.pid)], check=True, capture_output=True)
    finally:
        child.terminate()
        child.wait()
    dumps = sorted((f for f in os.listdir(tmp) if f.startswith("callgrind.out.")),
                   key=lambda f: os.path.getmtime(os.path.join(tmp, f)))
    dump = os.path.join(tmp, dumps[-2] if len(dumps) > 1 else dumps[-1])  # the -d dump, not the exit one
    # Run outside the source tree: there callgrind_annotate shortens the absolute source paths
    # and merges a function's entries from two units into the smaller.
    annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                              capture_output=True, text=True, check=True, cwd=tmp).stdout
    for f in os.listdir(tmp):
        if f.startswith("callgrind.out"):
            os.remove(os.path.join(tmp, f))
    def instructions(pattern):
        # A function inlined into several units is listed once per source file: the outermost
        # (largest) inclusive count is the function's.
        counts = [int(line.split()[0].replace(",", "")) for line in annotate.splitlines()
                  if re.search(pattern, line)]
        return max(counts, default=0)
    total = instructions(r"PROGRAM TOTALS")
    sockets = instructions(r"sockets::Sockets::collect \[")
    snapshot = instructions(r"services::Services::instance_pids \[")
    return total / scrapes, sockets / scrapes, snapshot / scrapes


def measure_redis_count(name, binary, argv, scrapes, children):
    """One exporter started with `argv`, scraped `scrapes` times: its figures, and the Redis
    connections it counted at the end ('?' when it published none)."""
    port = free_port()
    child = start([binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *argv])
    children.append(child)
    wait_port(port)
    row = measure(name, child.pid, port, scrapes)
    body = scrape(port).decode()
    counted = re.search(r'^stack_service_connections\{service="redis"\} (\S+)$', body, re.M)
    child.terminate()
    child.wait()
    return row, counted.group(1) if counted else "?"


def connection_scenario(args, tmp, children):
    """Scrape cost at 0, 1000 and 10000 established connections to a watched service's port."""
    counts = [int(c) for c in args.connections.split(",")]
    binaries = [("stack_exporter", args.binary)] + ([("baseline", args.baseline)] if args.baseline else [])
    redis, redis_port = start_redis(tmp, max(counts) + 100)
    children.append(redis)
    config = redis_only_config(tmp, redis_port)
    argv = [f"--config.file={config}", f"--collector.services.pss-max-age={args.pss_max_age}"]
    if args.callgrind:
        argv += ["--no-collector.host", "--no-collector.filesystem", "--no-collector.services"]
        print(f"\ninstructions per scrape against established connections to a watched Redis "
              f"(callgrind, sockets collector alone, {args.callgrind_scrapes} scrapes):")
    else:
        print(f"\nscrape cost against established connections to a watched Redis "
              f"(default collectors, Redis the only watched service, {args.connection_scrapes} scrapes):")
    for count in counts:
        with Connections(redis_port, count):
            seen = established(redis_port)
            for name, binary in binaries:
                if args.callgrind:
                    total, sockets, snapshot = callgrind_per_scrape(binary, argv, args.callgrind_scrapes, tmp)
                    print(f"  {count:>6} connections: {name:<15} {total / 1e6:6.2f} M instructions per scrape, "
                          f"{sockets / 1e6:6.2f} M in Sockets::collect, of which {snapshot / 1e6:.2f} M "
                          f"the /proc snapshot shared with the services collector")
                    continue
                row, counted = measure_redis_count(name, binary, argv, args.connection_scrapes, children)
                print(f"  {count:>6} connections: {name:<15} CPU {row['cpu_ms']:6.2f} ms/scrape "
                      f"({row['kernel_ms']:5.2f} in the kernel), "
                      f"p50 {row['p50_ms']:6.2f} ms, p99 {row['p99_ms']:6.2f} ms, RSS {row['rss_mb']:.1f} MB "
                      f"(counted {counted} of {seen})")


def unrelated_scenario(args, tmp, children):
    """Scrape cost of counting a watched Redis's 5 connections while the host holds 0, 1000 and
    10000 connections nobody watches: every count walks all of the host's TCP sockets."""
    counts = [int(c) for c in args.connections.split(",")]
    binaries = [("stack_exporter", args.binary)] + ([("baseline", args.baseline)] if args.baseline else [])
    redis, redis_port = start_redis(tmp, 100)
    children.append(redis)
    other_dir = os.path.join(tmp, "unwatched")
    os.makedirs(other_dir, exist_ok=True)
    other, other_port = start_redis(other_dir, max(counts) + 100)
    children.append(other)
    config = redis_only_config(tmp, redis_port)
    argv = [f"--config.file={config}", f"--collector.services.pss-max-age={args.pss_max_age}"]
    print(f"\nscrape cost of 5 watched connections beside unrelated ones (default collectors, Redis "
          f"the only watched service, {args.connection_scrapes} scrapes):")
    for count in counts:
        with Connections(redis_port, 5), Connections(other_port, count):
            for name, binary in binaries:
                row, counted = measure_redis_count(name, binary, argv, args.connection_scrapes, children)
                print(f"  {count:>6} unrelated: {name:<15} CPU {row['cpu_ms']:6.2f} ms/scrape "
                      f"({row['kernel_ms']:5.2f} in the kernel), p50 {row['p50_ms']:6.2f} ms, "
                      f"p99 {row['p99_ms']:6.2f} ms (counted {counted} of 5)")


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        raise SystemExit(f"the storm needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))


def storm_scenario(args, children):
    """RSS at start, after `--scrapes` scrapes, and after a storm of `--storm` connections to the
    exporter's own port (opened at once, then closed), default collectors and config: under the
    default connection cap (older connections are closed as new ones come) and under a cap above
    the storm (every connection open at once)."""
    print(f"\nRSS around a storm of {args.storm} connections to the exporter's own port:")
    binaries = [("stack_exporter", args.binary)] + ([("baseline", args.baseline)] if args.baseline else [])
    for cap in (128, args.storm + 100):
        for name, binary in binaries:
            port = free_port()
            child = start([binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                           f"--web.max-connections={cap}",
                           f"--collector.services.pss-max-age={args.pss_max_age}"])
            children.append(child)
            wait_port(port)
            scrape(port)
            start_rss = rss_bytes(child.pid)
            for _ in range(args.scrapes):
                scrape(port)
            scraped_rss = rss_bytes(child.pid)
            with Connections(port, args.storm):
                time.sleep(1)
                during_rss = rss_bytes(child.pid)
            time.sleep(1)
            for _ in range(5):
                scrape(port)
            time.sleep(0.5)
            after_rss = rss_bytes(child.pid)
            print(f"  cap {cap:>5} {name:<15} RSS {start_rss / 1e6:.1f} MB at start, {scraped_rss / 1e6:.1f} MB "
                  f"after {args.scrapes} scrapes, {during_rss / 1e6:.1f} MB during the storm, "
                  f"{after_rss / 1e6:.1f} MB after it ({(after_rss - start_rss) / 1e6:+.1f} MB from the start)")
            child.terminate()
            child.wait()

# --- The issue-14 scenario: every collector of stack_exporter and the five peers it replaces,
# scraped in turn against the same servers, on a host made busy on purpose.

NGINX_CONF = """
daemon off;
worker_processes 1;
worker_rlimit_nofile {files};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections {connections}; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    client_header_timeout 600s;
    keepalive_timeout 600s;
    server {{
        listen 127.0.0.1:{port};
        location = /stub_status {{ stub_status; access_log off; }}
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def start_nginx(tmp, connections):
    """A throwaway nginx that holds `connections` idle keep-alive clients, with stub_status."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise SystemExit("the side-by-side scenario needs nginx: apt-get install nginx")
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port, connections=connections + 256, files=connections + 512))
    child = subprocess.Popen([nginx, "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return child, port


def side_config(tmp, nginx_port):
    """bench.sh's throwaway database targets plus the nginx and storage collectors: every
    collector on."""
    for d in ("backups", "logs"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    path = os.path.join(tmp, "side.toml")
    with open(os.environ["STACK_TOML"]) as f:
        targets = f.read()
    with open(path, "w") as f:
        f.write(targets)
        f.write(f'[nginx]\naccess_log = "{tmp}/access.log"\n'
                f'stub_status_url = "http://127.0.0.1:{nginx_port}/stub_status"\n'
                f'[storage]\ndirectories = {{ backups = "{tmp}/backups", logs = "{tmp}/logs" }}\n')
    return path


def side_exporters(binary, config, tmp, pss_max_age):
    """(name, argv) of stack_exporter and each peer, every one pointed at the same servers."""
    env = os.environ
    pw, my, pg, redis = env["PW"], env["MY_PORT"], env["PG_PORT"], env["REDIS_PORT"]
    peer_bins = {name: shutil.which(f"prometheus-{name}") for name in
                 ("node-exporter", "process-exporter", "mysqld-exporter", "postgres-exporter", "redis-exporter")}
    missing = [f"prometheus-{n}" for n, b in peer_bins.items() if not b]
    if missing:
        raise SystemExit(f"the side-by-side scenario needs the peers: apt-get install {' '.join(missing)}")
    process_config = os.path.join(tmp, "process-exporter.yml")
    with open(process_config, "w") as f:
        f.write("process_names:\n  - name: '{{.Comm}}'\n    cmdline: ['.+']\n")
    return [
        ("stack_exporter", {}, lambda p: [binary, f"--web.listen-address=127.0.0.1:{p}", "--log.level=warn",
                                          f"--config.file={config}", f"--collector.services.pss-max-age={pss_max_age}"]),
        ("node_exporter", {}, lambda p: [peer_bins["node-exporter"], f"--web.listen-address=127.0.0.1:{p}"]),
        ("process-exporter", {}, lambda p: [peer_bins["process-exporter"], f"-web.listen-address=127.0.0.1:{p}",
                                            f"-config.path={process_config}"]),
        ("mysqld_exporter", {"DATA_SOURCE_NAME": f"monitor:{pw}@(127.0.0.1:{my})/"},
         lambda p: [peer_bins["mysqld-exporter"], f"--web.listen-address=127.0.0.1:{p}",
                    "--collect.info_schema.processlist", "--collect.info_schema.tables",
                    "--collect.perf_schema.eventsstatementssum"]),
        ("postgres_exporter", {"DATA_SOURCE_NAME": f"postgresql://monitor:{pw}@127.0.0.1:{pg}/postgres?sslmode=disable"},
         lambda p: [peer_bins["postgres-exporter"], f"--web.listen-address=127.0.0.1:{p}"]),
        ("redis_exporter", {}, lambda p: [peer_bins["redis-exporter"], f"-redis.addr=redis://127.0.0.1:{redis}",
                                          "-redis.user=monitor", f"-redis.password={pw}",
                                          f"-web.listen-address=127.0.0.1:{p}"]),
    ]


def measure_interleaved(running, scrapes):
    """Scrape every exporter in turn, `scrapes` rounds: each sees the same host at the same time."""
    for _, pid, port in running:
        scrape(port)
        scrape(port)  # warm up: connections made, caches filled
    before = {name: (cpu_times(pid), rss_bytes(pid)) for name, pid, _ in running}
    latencies = {name: [] for name, _, _ in running}
    bodies = {}
    for round_ in range(scrapes):
        # With a baseline, the two builds swap places every round: the one scraped right after
        # the other finds the kernel's and the servers' caches warm, worth 0.1-0.4 ms of CPU.
        order = running
        if running[1][0] == "baseline" and round_ % 2:
            order = [running[1], running[0], *running[2:]]
        for name, _, port in order:
            start = time.perf_counter()
            bodies[name] = scrape(port)
            latencies[name].append(time.perf_counter() - start)
    rows = []
    for name, pid, _ in running:
        (user0, kernel0), _ = before[name]
        user1, kernel1 = cpu_times(pid)
        lat = sorted(latencies[name])
        rows.append({
            "name": name,
            "rss_mb": rss_bytes(pid) / 1e6,
            "cpu_ms": (user1 + kernel1 - user0 - kernel0) / scrapes * 1000,
            "kernel_ms": (kernel1 - kernel0) / scrapes * 1000,
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
            "bytes": len(bodies[name]),
            "samples": sum(1 for line in bodies[name].splitlines() if line and not line.startswith(b"#")),
        })
    return rows


# The services collector reads every scrape the stat of processes started less than 30 s before
# (src/collector/services/listing.rs): a host's processes are older than that, the sleepers
# below are not until this long after they start.
SETTLE = 32


def busy_host(processes):
    """Sleeping processes until the host has `processes` of them; returns the sleepers."""
    sleepers = []
    while len([d for d in os.listdir("/proc") if d.isdigit()]) < processes:
        sleepers.append(subprocess.Popen(["sleep", "3600"]))
    return sleepers


def settle(started):
    """Waits until processes started at `started` (time.monotonic()) are as old as a host's."""
    time.sleep(max(0.0, started + SETTLE - time.monotonic()))


def side_scenario(args, tmp, children):
    """stack_exporter with every collector on beside node_exporter, process-exporter,
    mysqld_exporter, postgres_exporter and redis_exporter, interleaved, on a host with
    `--side-processes` processes and `--side-connections` established connections to nginx."""
    if "STACK_TOML" not in os.environ:
        raise SystemExit("the side-by-side scenario needs bench.sh's throwaway servers: run scripts/bench.sh")
    nginx, nginx_port = start_nginx(tmp, args.side_connections)
    children.append(nginx)
    config = side_config(tmp, nginx_port)
    sleepers = busy_host(args.side_processes)
    started = time.monotonic()
    children.extend(sleepers)
    exporters = side_exporters(args.binary, config, tmp, args.pss_max_age)
    if args.baseline:
        # The older build right after this one, on the same config: a before/after in one run.
        exporters.insert(1, ("baseline", {}, lambda p: [
            args.baseline, f"--web.listen-address=127.0.0.1:{p}", "--log.level=warn",
            f"--config.file={config}", f"--collector.services.pss-max-age={args.pss_max_age}"]))
    running = []
    for name, env, argv in exporters:
        port = free_port()
        child = subprocess.Popen(argv(port), env={**os.environ, **env},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children.append(child)
        wait_port(port)
        running.append((name, child.pid, port))
    with Connections(nginx_port, args.side_connections):
        settle(started)
        processes = len([d for d in os.listdir("/proc") if d.isdigit()])
        connections = established(nginx_port)
        print(f"\nside by side, every collector on, interleaved ({args.side_scrapes} rounds): "
              f"{processes} processes, {connections} established connections to nginx")
        rows = measure_interleaved(running, args.side_scrapes)
    body = scrape(running[0][2]).decode()
    failed = re.findall(r'^stack_scrape_collector_success\{collector="([^"]+)"\} 0$', body, re.M)
    if failed:
        print(f"  warning: stack_exporter collectors failing: {', '.join(failed)}")
    stack = rows[0]
    peers_rows = [r for r in rows[1:] if r["name"] != "baseline"]
    total = {"name": "five peers", "rss_mb": sum(r["rss_mb"] for r in peers_rows),
             "cpu_ms": sum(r["cpu_ms"] for r in peers_rows), "p50_ms": float("nan"),
             "p99_ms": sum(r["p99_ms"] for r in peers_rows), "bytes": sum(r["bytes"] for r in peers_rows),
             "samples": sum(r["samples"] for r in peers_rows)}
    print_table(rows + [total])
    redis_p99 = next(r["p99_ms"] for r in peers_rows if r["name"] == "redis_exporter")
    print(f"  stack_exporter / five peers: RSS {stack['rss_mb'] / total['rss_mb']:.3f}, "
          f"CPU {stack['cpu_ms'] / total['cpu_ms']:.3f}; CPU per scrape {stack['cpu_ms']:.2f} ms "
          f"({stack['kernel_ms']:.2f} in the kernel); p99 {stack['p99_ms']:.1f} ms against "
          f"redis_exporter's {redis_p99:.1f} ms")
    for s in sleepers:
        s.kill()
        s.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/stack_exporter")
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1000/3000 process runs")
    parser.add_argument("--only", choices=["side", "footprint", "processes", "connections", "unrelated", "storm"], action="append",
                        help="run only these parts (repeatable); all of them by default")
    parser.add_argument("--connections", default="0,1000,10000",
                        help="established connections to measure at (comma-separated)")
    parser.add_argument("--connection-scrapes", type=int, default=200)
    parser.add_argument("--callgrind", action="store_true",
                        help="connection part: instructions per scrape under valgrind instead of timings")
    parser.add_argument("--callgrind-scrapes", type=int, default=20)
    parser.add_argument("--storm", type=int, default=8000, help="connections of the RSS storm")
    parser.add_argument("--side-scrapes", type=int, default=200, help="rounds of the side-by-side scenario")
    parser.add_argument("--side-connections", type=int, default=10000,
                        help="established connections to nginx in the side-by-side scenario")
    parser.add_argument("--side-processes", type=int, default=300,
                        help="processes on the host in the side-by-side scenario")
    parser.add_argument("--pss-max-age", default="60s")
    parser.add_argument("--baseline", metavar="BINARY",
                        help="an older stack_exporter build measured beside this one (before/after)")
    args = parser.parse_args()
    parts = set(args.only or ["side", "footprint", "processes", "connections", "unrelated", "storm"])
    if args.no_scaling:
        parts.discard("processes")
    # Both ends of the storm's connections are on this host: the exporter inherits this limit.
    raise_fd_limit(max(args.storm, args.side_connections) + 256)

    nproc = len([d for d in os.listdir("/proc") if d.isdigit()])
    print(f"host: {os.cpu_count()} cores, {nproc} processes, {args.scrapes} scrapes per exporter\n")
    rows, children = [], []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if "side" in parts:
                side_scenario(args, tmp, children)
            variants = [
                ("stack_exporter", args.binary, [f"--collector.services.pss-max-age={args.pss_max_age}"]),
                ("stack (PSS every scrape)", args.binary, ["--collector.services.pss-max-age=0s"]),
            ]
            if args.baseline:
                variants.insert(1, ("baseline", args.baseline, [f"--collector.services.pss-max-age={args.pss_max_age}"]))
            for name, binary, extra in variants if "footprint" in parts else []:
                port = free_port()
                child = start([binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *extra])
                children.append(child)
                wait_port(port)
                rows.append(measure(name, child.pid, port, args.scrapes))
                child.terminate()
            peer_total = {"name": "peers together", "rss_mb": 0, "cpu_ms": 0, "p50_ms": 0, "p99_ms": 0, "bytes": 0, "samples": 0}
            for name, argv in peers(tmp) if "footprint" in parts else []:
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
            if rows:
                print_table(rows)

            if "processes" in parts:
                print("\nscrape time against host processes (stack_exporter, PSS every scrape = worst case):")
                sleepers = []
                for processes in (300, 1000, 3000):
                    sleepers += busy_host(processes)
                    settle(time.monotonic())
                    port = free_port()
                    child = start([args.binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", "--collector.services.pss-max-age=0s"])
                    children.append(child)
                    wait_port(port)
                    row = measure(f"{processes} processes", child.pid, port, max(50, args.scrapes // 5))
                    total = len([d for d in os.listdir("/proc") if d.isdigit()])
                    print(f"  {total:>5} processes: p50 {row['p50_ms']:.2f} ms, CPU {row['cpu_ms']:.2f} ms/scrape, "
                          f"{row['cpu_ms'] / total * 1000:.1f} us CPU per process")
                    child.terminate()
                for s in sleepers:
                    s.kill()
                for s in sleepers:
                    s.wait()
            if "connections" in parts:
                connection_scenario(args, tmp, children)
            if "unrelated" in parts:
                unrelated_scenario(args, tmp, children)
            if "storm" in parts:
                storm_scenario(args, children)
        finally:
            # SIGTERM first: nginx's master stops its workers then (SIGKILL would orphan them).
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    child.kill()


if __name__ == "__main__":
    sys.exit(main())
