#!/usr/bin/env python3
"""How many hosts one Prometheus holds: N exporters scraped with the shipped H4 config and rules.

For each N (default 10, 50, 100): N stack_exporter processes on free loopback ports, each a host
of its own to Prometheus (instance 127.0.0.1:PORT; role app, db, cache in turn, each with its role's
profile; env production), listed in a file_sd targets file as prometheus/targets/ lists the three
H4 servers. Then a real Prometheus (Debian's) in a temp dir on a free port, with the shipped
prometheus/prometheus-h4.yml (its scrape and evaluation interval, its rules/*.yml; its Alertmanagers
left out: none run here), for --minutes. At the end it prints per N: series in Prometheus's head and
per host, what one exporter of each role serves, the rules' evaluation time (the sum of every
group's last duration and the slowest group), scrape durations, Prometheus's RSS (and per host), and
the exporters' RSS. Figures are printed, not asserted: a benchmark, not a test.

Every exporter watches this host (its /proc, disks, interfaces, mounts, services), so its series
are a real host's. With PG_PORT, REDIS_PORT and PW in the environment (scripts/bench-capacity.sh
starts throwaway servers and sets them), app hosts watch the throwaway PostgreSQL and Redis, db
hosts the PostgreSQL, cache hosts the Redis, as H4's do; app hosts also follow a small nginx access
log, so the traffic histograms exist.

    scripts/bench-capacity.sh                         (throwaway servers, then this)
    scripts/bench-capacity.py --hosts 10,50 --minutes 3 --binary target/release/stack_exporter

Figures and how to read them: docs/performance.md#capacity-how-many-hosts-one-prometheus-holds.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  free_port, wait_port, rss_bytes, scrape

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = ["app", "db", "cache"]

# A few requests of each route and status class, in nginx's `stack` format (docs/traffic.md).
ACCESS_LOG_LINES = [
    '10.0.0.{n} - - [{t}] "GET {path} HTTP/1.1" {status} 512 "-" "bench" rt=0.{ms:03d} urt="0.{ms:03d}" upgrade="{up}"'
    .format(n=n, t="28/Nov/2026:05:00:00 +0000", path=path, status=status, ms=n * 7 % 1000, up=up)
    for n, (path, status, up) in enumerate(
        [("/", 200, "-"), ("/api/items", 201, "-"), ("/static/app.css", 304, "-"),
         ("/login", 302, "-"), ("/missing", 404, "-"), ("/boom", 500, "-"),
         ("/ws/chat", 101, "websocket"), ("/media/a.png", 200, "-")] * 4)
]


def role_config(path, role, access_log):
    """The exporter config of a host of `role`: its H4 profile and the targets its role watches."""
    lines = [f'profile = "production-{role}"']
    pw, pg, redis = (os.environ.get(k) for k in ("PW", "PG_PORT", "REDIS_PORT"))
    if pg and role in ("app", "db"):
        lines += ["[[postgres]]", 'name = "main"',
                  f'url = "postgres://monitor:{pw}@127.0.0.1:{pg}/postgres"']
    if redis and role in ("app", "cache"):
        lines += ["[[redis]]", 'name = "cache"', f'url = "redis://monitor:{pw}@127.0.0.1:{redis}/0"']
    if role == "app":
        lines += ["[nginx]", f'access_log = "{access_log}"', 'format = "stack"']
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def prometheus_config(tmp, targets_file, port):
    """prometheus/prometheus-h4.yml as shipped, but for the targets here: the `stack` job reads
    `targets_file`, the self-scrape is this Prometheus's port, and no Alertmanager is named."""
    with open(os.path.join(REPO, "prometheus/prometheus-h4.yml")) as f:
        config = yaml.safe_load(f)
    config["rule_files"] = [os.path.join(REPO, "rules/*.yml")]
    config.pop("alerting", None)
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] == "stack":
            job["file_sd_configs"] = [{"files": [targets_file], "refresh_interval": "1m"}]
        elif job["job_name"] == "prometheus":
            job["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
        else:
            continue  # the Alertmanagers: none run here
        jobs.append(job)
    config["scrape_configs"] = jobs
    path = os.path.join(tmp, "prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path, config["global"]


def query(port, promql):
    """The value of a one-series instant query, or the list of (labels, value) for several."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=30) as response:
        result = json.load(response)["data"]["result"]
    return [(r["metric"], float(r["value"][1])) for r in result]


def scalar(port, promql):
    result = query(port, promql)
    return result[0][1] if result else float("nan")


def samples(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def wait_ready(port, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"Prometheus on {port} not ready after {timeout}s")


def start_exporters(binary, tmp, hosts):
    """`hosts` exporters, role by role in turn: [(process, port, role)]."""
    access_log = os.path.join(tmp, "access.log")
    with open(access_log, "w") as f:
        f.write("\n".join(ACCESS_LOG_LINES) + "\n")
    configs = {}
    for role in ROLES:
        configs[role] = os.path.join(tmp, f"{role}.toml")
        role_config(configs[role], role, access_log)
    exporters = []
    for i in range(hosts):
        role = ROLES[i % len(ROLES)]
        port = bench.free_port()
        process = bench.start([binary, f"--web.listen-address=127.0.0.1:{port}",
                               f"--config.file={configs[role]}", "--log.level=warn"])
        exporters.append((process, port, role))
    for _, port, _ in exporters:
        bench.wait_port(port, 60)
    return exporters


def write_targets(path, exporters):
    groups = [{"targets": [f"127.0.0.1:{port}"], "labels": {"role": role, "env": "production"}}
              for _, port, role in exporters]
    with open(path, "w") as f:
        yaml.safe_dump(groups, f)


def run(binary, hosts, minutes):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        raise SystemExit("missing prometheus: apt-get install prometheus")
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        exporters = start_exporters(binary, tmp, hosts)
        prom = None
        try:
            per_role = {}
            for _, port, role in exporters[:len(ROLES)]:
                bench.scrape(port)  # the first scrape starts the slow figures
                per_role[role] = samples(bench.scrape(port))
            targets = os.path.join(tmp, "targets.yml")
            write_targets(targets, exporters)
            port = bench.free_port()
            config, interval = prometheus_config(tmp, targets, port)
            prom = bench.start([prometheus, f"--config.file={config}",
                                f"--storage.tsdb.path={tmp}/tsdb",
                                f"--web.listen-address=127.0.0.1:{port}"])
            wait_ready(port)
            cpu_before = sum(bench.cpu_seconds(p.pid) for p, _, _ in exporters)
            timeline = rss_over(prom.pid, minutes * 60)
            result = measure(port, prom.pid, exporters, hosts, minutes, interval, per_role)
            result["rss_timeline"] = timeline
            result["exporters_cores"] = (sum(bench.cpu_seconds(p.pid) for p, _, _ in exporters)
                                         - cpu_before) / (minutes * 60)
            return result
        finally:
            if prom:
                prom.terminate()
                prom.wait(60)
            for process, _, _ in exporters:
                process.terminate()
            for process, _, _ in exporters:
                process.wait(30)


def rss_over(pid, seconds):
    """Prometheus's RSS once a minute while it runs: its head grows as chunks fill."""
    timeline, start = [], time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        time.sleep(min(60.0, seconds - elapsed))
        timeline.append((round((time.monotonic() - start) / 60, 1), bench.rss_bytes(pid)))
    return timeline


def measure(port, pid, exporters, hosts, minutes, interval, per_role):
    window = f"{int(minutes * 60)}s"
    groups = query(port, "prometheus_rule_group_last_duration_seconds")
    slowest = max(groups, key=lambda g: g[1]) if groups else ({"rule_group": "-"}, float("nan"))
    stack = 'job="stack"'
    return {
        "hosts": hosts,
        "minutes": minutes,
        "interval": interval["scrape_interval"],
        "up": scalar(port, f"sum(up{{{stack}}})"),
        "head_series": scalar(port, "prometheus_tsdb_head_series"),
        "top": [(m["__name__"], v) for m, v in
                query(port, f'topk(6, count by (__name__) ({{{stack}}}))')],
        "own_series": scalar(port, 'count({job="prometheus"})'),
        "scraped_per_host": scalar(port, f"avg(scrape_samples_scraped{{{stack}}})"),
        "recorded": scalar(port, 'count({__name__=~".+:.+"}) or vector(0)'),
        "alerts": scalar(port, 'count(ALERTS{alertstate="firing"}) or vector(0)'),
        "per_role": per_role,
        "rules_sum_s": sum(v for _, v in groups),
        "rules_sum_max_s": scalar(port, "max_over_time(sum(prometheus_rule_group_last_duration_seconds)"
                                        f"[{window}:{interval['evaluation_interval']}])"),
        "slowest_group": slowest[0].get("rule_group", "-").rsplit(";", 1)[-1],
        "slowest_group_s": slowest[1],
        "missed": scalar(port, "sum(prometheus_rule_group_iterations_missed_total)"),
        "evaluations": scalar(port, "max(prometheus_rule_group_iterations_total)"),
        "scrape_avg_s": scalar(port, f"avg(avg_over_time(scrape_duration_seconds{{{stack}}}[{window}]))"),
        "scrape_max_s": scalar(port, f"max(max_over_time(scrape_duration_seconds{{{stack}}}[{window}]))"),
        "prom_cores": scalar(port, f'rate(process_cpu_seconds_total{{job="prometheus"}}[{window}])'),
        "prom_rss": bench.rss_bytes(pid),
        "prom_peak": peak_rss(pid),
        "prom_heap": scalar(port, 'go_memstats_heap_inuse_bytes{job="prometheus"}'),
        "exporters_rss": sum(bench.rss_bytes(p.pid) for p, _, _ in exporters),
    }


def peak_rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return float("nan")


def report(r):
    mb = 1e6
    hosts = r["hosts"]
    print(f"\n== {hosts} hosts, {r['minutes']} min at {r['interval']} "
          f"({r['evaluations']:.0f} rule evaluations, {r['up']:.0f}/{hosts} up)")
    print(f"series in the head     {r['head_series']:.0f}: {r['own_series']:.0f} of Prometheus's own job, "
          f"{r['recorded']:.0f} recorded by rules, {r['alerts']:.0f} firing alerts; "
          f"{(r['head_series'] - r['own_series']) / hosts:.0f} per host without Prometheus's own")
    print("most series per host   " + ", ".join(f"{name} {n / hosts:.0f}" for name, n in
                                       sorted(r["top"], key=lambda t: -t[1])))
    print(f"scraped per host       {r['scraped_per_host']:.0f} samples  (one scrape: "
          + ", ".join(f"{role} {n}" for role, n in r["per_role"].items()) + ")")
    print(f"rule evaluation        {r['rules_sum_s'] * 1000:.1f} ms all groups (max in the run "
          f"{r['rules_sum_max_s'] * 1000:.1f} ms); slowest group {r['slowest_group']} "
          f"{r['slowest_group_s'] * 1000:.1f} ms; missed iterations {r['missed']:.0f}")
    print(f"scrape duration        avg {r['scrape_avg_s'] * 1000:.1f} ms, max {r['scrape_max_s'] * 1000:.1f} ms")
    print(f"Prometheus RSS         {r['prom_rss'] / mb:.0f} MB (peak {r['prom_peak'] / mb:.0f} MB, "
          f"Go heap in use {r['prom_heap'] / mb:.0f} MB): {r['prom_rss'] / hosts / mb:.2f} MB per host")
    print("Prometheus RSS by minute " + ", ".join(f"{m:g}: {rss / mb:.0f}" for m, rss in r["rss_timeline"]))
    print(f"exporters' RSS         {r['exporters_rss'] / mb:.0f} MB in all, "
          f"{r['exporters_rss'] / hosts / mb:.1f} MB each")
    print(f"CPU                    Prometheus {r['prom_cores']:.3f} cores, the exporters "
          f"{r['exporters_cores']:.3f} cores in all")


def marginal(results):
    """What one more host costs, between consecutive runs: the baseline (Prometheus's own series,
    its empty heap, the rules) is paid once whatever N is."""
    print("\nper extra host, between runs:")
    for a, b in zip(results, results[1:]):
        extra = b["hosts"] - a["hosts"]
        print(f"  {a['hosts']:>4} -> {b['hosts']:<4} series {(b['head_series'] - a['head_series']) / extra:.0f}, "
              f"Prometheus RSS {(b['prom_rss'] - a['prom_rss']) / extra / 1e6:.2f} MB, "
              f"rule evaluation {(b['rules_sum_s'] - a['rules_sum_s']) / extra * 1000:.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/stack_exporter")
    parser.add_argument("--hosts", default="10,50,100", help="comma-separated N, one run each")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long Prometheus runs per N")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each N's figures as soon as they are measured
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"{args.binary}: not an executable (cargo build --release)")
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; exporters watch this host")
    results = []
    for hosts in (int(n) for n in args.hosts.split(",")):
        results.append(run(args.binary, hosts, args.minutes))
        report(results[-1])
    if len(results) > 1:
        marginal(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
