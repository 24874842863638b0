#!/usr/bin/env python3
"""Replays issue 9's accidents and hostile clients against the release binary and real servers,
and prints one table: case, what was tried, crashes, lines lost, scrapes failed, recovery time.

A scrape "failed" when it got no answer or when a collector that should work (host, services)
reported success 0. Figures are printed; the script exits non-zero if any case crashed the
exporter, lost a line or failed a scrape it should not have, so it can also gate a release.

    scripts/torture.sh                 (builds the release binary, then runs this)
    scripts/torture.py --binary target/release/stack_exporter [--only CASE ...]
"""
import argparse
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
RESULTS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return time.monotonic()
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def group_of(user):
    import grp
    import pwd
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def rss_bytes(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


class Exporter:
    """The release binary in a temp dir of its own, its log in a file."""

    def __init__(self, binary, args=(), env=None, user=None, nofile=None):
        self.dir = tempfile.mkdtemp(prefix="torture-")
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "exporter.log")
        command = [binary, f"--web.listen-address=127.0.0.1:{self.port}", *args]
        if user:
            command = ["setpriv", f"--reuid={user}", f"--regid={group_of(user)}", "--clear-groups",
                       *command]

        def limits():
            os.setpgrp()
            if nofile:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                limit = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

        environment = {k: v for k, v in os.environ.items() if not k.startswith("STACK_")}
        environment.update(env or {})
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=open(self.log_path, "w"), env=environment,
                                        preexec_fn=limits)
        try:
            self.ready = wait_port(self.port) - self.started
        except RuntimeError:
            # It never bound its port (the old FIFO case): end it, or it outlives the script.
            self.process.kill()
            self.process.wait()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def scrape(self, headers=None, timeout=15.0):
        """(seconds, body) or (seconds, None) when no answer came."""
        start = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            conn.request("GET", "/metrics", headers=headers or {})
            response = conn.getresponse()
            body = response.read().decode(errors="replace") if response.status == 200 else None
            conn.close()
        except OSError:
            body = None
        return time.monotonic() - start, body

    def alive(self):
        return self.process.poll() is None

    def log_lines(self, pattern=""):
        with open(self.log_path, errors="replace") as f:
            return [line for line in f if pattern in line]

    def stop(self, grace=10.0):
        """Seconds SIGTERM took to end the process (None if it had to be killed)."""
        if not self.alive():
            return 0.0
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
            return time.monotonic() - start
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def value(body, name, **labels):
    """The value of one series in the text format, or None."""
    if body is None:
        return None
    for line in body.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest.startswith("{"):
            label_text, _, number = rest[1:].partition("} ")
        elif rest.startswith(" "):
            label_text, number = "", rest[1:]
        else:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(number.split()[0])
    return None


def collectors_ok(body, names=("host", "services")):
    return body is not None and all(
        value(body, "stack_scrape_collector_success", collector=n) == 1.0 for n in names)


def record(case, tried, crashes, lost, failed, recovery, ok, note=""):
    RESULTS.append((case, tried, crashes, lost, failed, recovery, ok, note))
    mark = "ok" if ok else "FAIL"
    print(f"  [{mark}] {case}: {tried}; crashes {crashes}, lines lost {lost}, "
          f"scrapes failed {failed}, recovery {recovery} {note}", flush=True)


# --- the cases -----------------------------------------------------------------------------------

def case_timeout_header(binary):
    exporter = Exporter(binary)
    values = ["1e20", "1e300", "1.79e308", "inf", "nan", "-1", "0", "0.000001", "x", "1e-320"]
    failed = 0
    for v in values:
        _, body = exporter.scrape({"X-Prometheus-Scrape-Timeout-Seconds": v})
        failed += body is None
    crashes = 0 if exporter.alive() else 1
    # A flood of tiny timeouts: how many log lines does it cause?
    before = len(exporter.log_lines())
    end = time.monotonic() + 3
    sent = 0
    while time.monotonic() < end and exporter.alive():
        exporter.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "0.000001"})
        sent += 1
    lines = len(exporter.log_lines()) - before
    _, body = exporter.scrape()
    normal_ok = collectors_ok(body)
    crashes += 0 if exporter.alive() else 1
    exporter.stop()
    record("timeout header", f"{len(values)} odd values, then {sent} scrapes with 1 µs",
           crashes, "-", f"{failed}/{len(values)}", "-",
           crashes == 0 and failed == 0 and normal_ok and lines <= 10,
           f"({lines} log lines in 3 s)")


def case_fifo_access_log(binary):
    work = tempfile.mkdtemp(prefix="torture-fifo-")
    log = os.path.join(work, "access.log")
    os.mkfifo(log)
    exporter = Exporter(binary, env={"STACK_NGINX_ACCESS_LOG": log})
    failed, slow = 0, 0
    for _ in range(12):
        took, body = exporter.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "5"})
        failed += not collectors_ok(body, ("host", "services", "sockets"))
        slow += took > 2.0
    # The path heals: a regular file with lines in it.
    os.unlink(log)
    lines = 50
    with open(log, "w") as f:
        for i in range(lines):
            f.write(f'127.0.0.1 - - [27/Nov/2026:10:00:00 +0000] "GET /x{i} HTTP/1.1" 200 5 "-" "t"\n')
    healed = time.monotonic()
    recovery = None
    counted = 0
    while time.monotonic() - healed < 15:
        _, body = exporter.scrape()
        counted = value(body, "stack_nginx_log_lines_total") or 0
        if counted >= lines:
            recovery = time.monotonic() - healed
            break
        time.sleep(0.2)
    crashes = 0 if exporter.alive() else 1
    stop = exporter.stop()
    shutil.rmtree(work, ignore_errors=True)
    record("FIFO at access-log path", f"12 scrapes, then the FIFO replaced by a file of {lines} lines",
           crashes, int(lines - counted), f"{failed}/12 ({slow} slow)",
           f"{recovery:.1f} s" if recovery is not None else "never",
           crashes == 0 and failed == 0 and recovery is not None and stop is not None,
           f"(bound in {exporter.ready:.2f} s, SIGTERM took {stop if stop is None else round(stop, 2)} s)")


def case_log_path_briefly_directory(binary):
    work = tempfile.mkdtemp(prefix="torture-dir-")
    log = os.path.join(work, "access.log")
    line = '127.0.0.1 - - [27/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "t"\n'
    writer = open(log, "a", buffering=1)
    exporter = Exporter(binary, env={"STACK_NGINX_ACCESS_LOG": log})
    written = 0
    for _ in range(10):
        writer.write(line)
        written += 1
    exporter.scrape()
    # Rotation in which the path is a directory for a while: the old file keeps getting lines.
    os.rename(log, log + ".1")
    os.mkdir(log)
    for _ in range(3):
        for _ in range(10):
            writer.write(line)
            written += 1
        exporter.scrape()
        time.sleep(0.3)
    os.rmdir(log)
    writer.close()
    writer = open(log, "a", buffering=1)
    healed = time.monotonic()
    for _ in range(10):
        writer.write(line)
        written += 1
    recovery, counted, failed = None, 0, 0
    while time.monotonic() - healed < 15:
        _, body = exporter.scrape()
        failed += body is None
        counted = value(body, "stack_nginx_log_lines_total") or 0
        if counted >= written and value(body, "stack_nginx_log_file_open") == 1.0:
            recovery = time.monotonic() - healed
            break
        time.sleep(0.2)
    writer.close()
    crashes = 0 if exporter.alive() else 1
    exporter.stop()
    shutil.rmtree(work, ignore_errors=True)
    record("log path briefly a directory", f"{written} lines across a rotation",
           crashes, int(written - counted), failed,
           f"{recovery:.1f} s" if recovery is not None else "never",
           crashes == 0 and counted >= written and recovery is not None)


def raise_own_nofile():
    """This script holds thousands of sockets itself."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hold_connections(port, count):
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return held


def case_idle_connections(binary):
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    exporter = Exporter(binary, nofile=1024)  # the usual default, as a user without the unit has
    held = hold_connections(exporter.port, 1050)
    slowloris = hold_connections(exporter.port, 200)
    for s in slowloris:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-a: ")
    latencies, failed = [], 0
    for i in range(10):
        for s in slowloris:
            try:
                s.sendall(b"a")
            except OSError:
                pass
        took, body = exporter.scrape(timeout=10)
        latencies.append(took)
        failed += not collectors_ok(body)
        time.sleep(0.2)
    accept_lines = len(exporter.log_lines("accept"))
    for s in held + slowloris:
        s.close()
    crashes = 0 if exporter.alive() else 1
    exporter.stop()
    latencies.sort()
    record("1050 idle + 200 slowloris", f"{len(held)} idle and {len(slowloris)} slowloris held",
           crashes, "-", f"{failed}/10", "-", crashes == 0 and failed == 0,
           f"(scrape p50 {latencies[5] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
           f"{accept_lines} accept log lines)")


def case_connection_storm_memory(binary):
    raise_own_nofile()
    exporter = Exporter(binary, nofile=65536)
    exporter.scrape()
    start = rss_bytes(exporter.process.pid)
    opened = 0
    for _ in range(4):
        held = hold_connections(exporter.port, 2000)
        opened += len(held)
        for s in held:
            s.close()
    time.sleep(2)
    _, body = exporter.scrape()
    after = rss_bytes(exporter.process.pid)
    crashes = 0 if exporter.alive() else 1
    exporter.stop()
    grown = (after - start) / 1e6
    record("connection storm", f"{opened} connections opened and closed", crashes, "-",
           0 if collectors_ok(body) else 1, "-", crashes == 0 and grown < 2.0,
           f"(RSS {start / 1e6:.1f} → {after / 1e6:.1f} MB)")


def case_hangups(binary):
    exporter = Exporter(binary)
    stop = threading.Event()

    def hang_up_client():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", exporter.port), timeout=1)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.005)
                s.close()
            except OSError:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=hang_up_client)
    thread.start()
    failed, tried = 0, 0
    end = time.monotonic() + 8
    while time.monotonic() < end:
        _, body = exporter.scrape()
        failed += not collectors_ok(body, ("host", "services", "sockets"))
        tried += 1
        time.sleep(0.3)
    stop.set()
    thread.join()
    crashes = 0 if exporter.alive() else 1
    lines = len(exporter.log_lines())
    exporter.stop()
    record("clients that hang up", "20/s hang up after 5 ms", crashes, "-", f"{failed}/{tried}",
           "-", crashes == 0 and failed == 0, f"({lines} log lines)")


def case_unprivileged(binary):
    if not shutil.which("setpriv"):
        record("without root", "setpriv missing", "-", "-", "-", "-", False)
        return
    exporter = Exporter(binary, user="nobody")
    time.sleep(0.3)
    _, body = exporter.scrape()
    crashes = 0 if exporter.alive() else 1
    degraded = [line for line in (body or "").splitlines()
                if line.startswith(("stack_exporter_degraded", "stack_sockets_unreadable",
                                    "stack_service_pss_fallback_processes"))
                and not line.endswith(" 0")]
    logged = exporter.log_lines("CAP_SYS_PTRACE")
    exporter.stop()
    record("without root or capabilities", "run as nobody", crashes, "-",
           0 if collectors_ok(body) else 1, "-", crashes == 0 and bool(degraded) and bool(logged),
           f"({len(degraded)} degraded series, {len(logged)} capability log lines)")


def case_sigterm_during_scrape(binary):
    # A procfs whose meminfo is a FIFO nobody writes: the host collector's thread hangs in
    # open(2), which no timeout can interrupt; SIGTERM must end the process anyway.
    work = tempfile.mkdtemp(prefix="torture-term-")
    procfs = os.path.join(work, "proc")
    os.mkdir(procfs)
    os.symlink("/proc/stat", os.path.join(procfs, "stat"))
    os.mkfifo(os.path.join(procfs, "meminfo"))
    exporter = Exporter(binary, args=[f"--path.procfs={procfs}", "--no-collector.services",
                                      "--no-collector.sockets", "--web.max-scrape-timeout=1s"])
    _, body = exporter.scrape()
    stuck = value(body, "stack_scrape_collector_success", collector="host") == 0.0
    threading.Thread(target=exporter.scrape, daemon=True).start()
    time.sleep(0.3)
    took = exporter.stop(grace=10)
    shutil.rmtree(work, ignore_errors=True)
    record("SIGTERM with a stuck collector", "SIGTERM while the host collector hangs in open(2)",
           0 if took is not None else "-", "-", "-",
           "-" if took is None else f"exit in {took:.2f} s",
           stuck and took is not None and took < 5,
           "" if stuck else "(the collector did not get stuck: the case proves nothing)")


CASES = {
    "timeout": case_timeout_header,
    "fifo": case_fifo_access_log,
    "directory": case_log_path_briefly_directory,
    "idle": case_idle_connections,
    "storm": case_connection_storm_memory,
    "hangups": case_hangups,
    "unprivileged": case_unprivileged,
    "sigterm": case_sigterm_during_scrape,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/stack_exporter")
    parser.add_argument("--only", nargs="*", choices=sorted(CASES))
    args = parser.parse_args()
    for name in args.only or CASES:
        print(f"== {name}", flush=True)
        try:
            CASES[name](args.binary)
        except Exception as e:  # a case that cannot run is a failed case, never a skipped one
            record(name, "could not run", "-", "-", "-", "-", False, f"({e})")
    print()
    print("| case | tried | crashes | lines lost | scrapes failed | recovery | verdict |")
    print("|---|---|---|---|---|---|---|")
    for case, tried, crashes, lost, failed, recovery, ok, note in RESULTS:
        verdict = ("ok " if ok else "FAIL ") + note
        print(f"| {case} | {tried} | {crashes} | {lost} | {failed} | {recovery} | {verdict.strip()} |")
    sys.exit(0 if all(r[6] for r in RESULTS) else 1)


if __name__ == "__main__":
    main()
