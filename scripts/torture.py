#!/usr/bin/env python3
"""Replays issue 9's accidents and hostile clients against the release binary and real servers,
and prints one table: case, what was tried, crashes, lines lost, scrapes failed, recovery time.

Every finding has a case: 1 `timeout`; 2 `fifo`, `sigterm`, `mount` (a real hung FUSE mount: needs
root and /dev/fuse); 3 `directory`; 4 `idle`, `storm`; 5 `hangups`, `timeout`; 6 `unprivileged`,
`queue`; 7 `slowlog`; 8 `exec`, `rewrite` (up to 2 minutes); 9 `config`, `negotiation`, `unlistable`; 10 `asgi` (needs gunicorn, uvicorn, setproctitle). The
servers (Redis, MariaDB, Gunicorn) are throwaway ones this script starts in temp dirs on free ports
(scripts/lib/throwaway_servers.py), never the machine's own.

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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from connection_load import hold as hold_connections  # noqa: E402
from throwaway_servers import Mariadb, Redis, free_port, wait_port  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
RESULTS = []


def group_of(user):
    import grp
    import pwd
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def rss_bytes(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


class Exporter:
    """The release binary in a temp dir of its own, its log in a file."""

    def __init__(self, binary, args=(), env=None, user=None, nofile=None, preexec=None):
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
            if preexec:
                preexec()

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


def write_file(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def count_lines(exporter, pattern, recovered=False):
    """Log lines about one condition: its warnings, or (recovered=True) its recoveries."""
    return sum(("recovered" in line) == recovered for line in exporter.log_lines(pattern))


def poll_until(exporter, check, timeout):
    """Scrapes until check(body) holds: (seconds it took or None, the last body)."""
    start = time.monotonic()
    body = None
    while time.monotonic() - start < timeout:
        _, body = exporter.scrape()
        if check(body):
            return time.monotonic() - start, body
        time.sleep(0.2)
    return None, body


def seconds(took):
    return "never" if took is None else f"{took:.2f} s"


DB_PASSWORD = "Torture-Pass-5150"
# src/collector/services.rs: how long a match is trusted when /proc/PID/stat shows no change.
MATCH_MAX_AGE = 120


def case_unreadable_queue(binary):
    redis = Redis()
    work = tempfile.mkdtemp(prefix="torture-queue-")
    exporter = None
    try:
        redis.cli("ACL", "SETUSER", "monitor", "on", f">{DB_PASSWORD}", "+info", "+config|get",
                  "+llen", "+ping", "+client|setname", "%R~celery*")
        redis.cli("RPUSH", "celery", "a", "b", "c")
        redis.cli("RPUSH", "reports", "x")
        config = write_file(work, "stack.toml", (
            f'[[redis]]\nname = "cache"\nurl = "redis://monitor:{DB_PASSWORD}@127.0.0.1:'
            f'{redis.port}/0"\nqueues = ["celery", "reports"]\n'))
        exporter = Exporter(binary, args=[f"--config.file={config}", "--no-collector.services",
                                          "--no-collector.sockets"])
        queue = {"target": "cache"}

        def as_it_should_be(body):
            # Up, the readable queue measured, the other one a 0 series with no length.
            return (value(body, "stack_redis_up", **queue) == 1.0
                    and value(body, "stack_redis_queue_length", queue="celery", **queue) == 3.0
                    and value(body, "stack_redis_queue_readable", queue="reports", **queue) == 0.0
                    and value(body, "stack_redis_queue_length", queue="reports", **queue) is None)

        scrapes = 6
        failed = sum(not as_it_should_be(exporter.scrape()[1]) for _ in range(scrapes))
        warned = count_lines(exporter, "queue lengths unknown")
        # The operator widens the ACL: the queue is measured again, with one recovery line.
        redis.cli("ACL", "SETUSER", "monitor", "%R~reports")
        recovery, _ = poll_until(exporter, lambda body: value(
            body, "stack_redis_queue_length", queue="reports", **queue) == 1.0, 10)
        recovered = count_lines(exporter, "queue lengths unknown", recovered=True)
        crashes = 0 if exporter.alive() else 1
    finally:
        if exporter:
            exporter.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    record("Celery queue the ACL hides", f"{scrapes} scrapes, `reports` outside `%R~celery*`, "
           "then the ACL widened", crashes, "-", f"{failed}/{scrapes}", seconds(recovery),
           crashes == 0 and failed == 0 and warned == 1 and recovered == 1
           and recovery is not None,
           f"(stack_redis_queue_readable 0, up 1; {warned} warning, {recovered} recovery line)")


def slow_log_entries(path, user):
    marker = f"# User@Host: {user}[{user}]"
    try:
        with open(path, errors="replace") as f:
            return sum(line.startswith(marker) for line in f)
    except FileNotFoundError:
        return 0


def case_slow_log(binary):
    db = Mariadb()
    work = tempfile.mkdtemp(prefix="torture-slow-")
    os.chmod(work, 0o777)  # mariadbd may run as another user than this script
    exporter = None
    slow_log = os.path.join(work, "slow.log")
    try:
        db.sql(f"CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY); "
               f"CREATE USER 'monitor'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
               "GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'monitor'@'127.0.0.1'; "
               "GRANT SELECT ON shop.* TO 'monitor'@'127.0.0.1'; "
               f"SET GLOBAL slow_query_log_file = '{slow_log}'; SET GLOBAL log_output = 'FILE'; "
               "SET GLOBAL long_query_time = 0; SET GLOBAL log_queries_not_using_indexes = ON; "
               "SET GLOBAL slow_query_log = ON;")
        # slow_interval 0s: the schema-size query of finding 7 runs on every scrape.
        config = write_file(work, "stack.toml", (
            f'[[mysql]]\nname = "main"\nurl = "mysql://monitor:{DB_PASSWORD}@127.0.0.1:'
            f'{db.port}/"\nslow_interval = "0s"\n'))
        exporter = Exporter(binary, args=[f"--config.file={config}", "--no-collector.services",
                                          "--no-collector.sockets"])
        scrapes = 10
        failed = 0
        for _ in range(scrapes):
            _, body = exporter.scrape()
            failed += not (value(body, "stack_mysql_up", target="main") == 1.0
                           and value(body, "stack_mysql_database_size_bytes",
                                     target="main", database="shop") is not None)
        entries = slow_log_entries(slow_log, "monitor")
        # The same user's own query is logged: the count above can find entries.
        db.sql_as("monitor", DB_PASSWORD, "SELECT COUNT(*) FROM shop.items")
        control = slow_log_entries(slow_log, "monitor") - entries
        crashes = 0 if exporter.alive() else 1
    finally:
        if exporter:
            exporter.stop()
        db.stop()
        shutil.rmtree(work, ignore_errors=True)
    record("own queries in MariaDB's slow log", f"{scrapes} scrapes under global "
           "long_query_time=0 and log_queries_not_using_indexes", crashes, "-",
           f"{failed}/{scrapes}", "-", crashes == 0 and failed == 0 and entries == 0
           and control >= 1,
           f"({entries} slow-log entries from the exporter; {control} from a client as the "
           "same user)")


def interpreter():
    """The Python binary itself, not a wrapper script (pyenv's python3 is one)."""
    return subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def rematch(binary, change, wait):
    """A python3 process matched by the marker in its command line changes it to another
    service's marker (`change`: Python code run when told to, with `after` set) under the same
    kernel name. (scrapes, failed before the change, same name after it, seconds until the
    exporter counts it under the new service, crashes)."""
    work = tempfile.mkdtemp(prefix="torture-rematch-")
    marker = f"torture-{os.getpid()}-{time.monotonic_ns()}"
    before, after = f"{marker}-before", f"{marker}-after"
    go = os.path.join(work, "go")
    # Two services told apart only by a marker in the command line.
    script = (f"import os, sys, time\nafter = {after!r}\n"
              f"while not os.path.exists({go!r}):\n    time.sleep(0.02)\n{change}\n"
              "time.sleep(300)\n")
    process = subprocess.Popen([interpreter(), "-c", script, before])
    config = write_file(work, "stack.toml", (
        f"[services.before]\nmatch = [{{ cmdline = '{before}' }}]\n"
        f"[services.after]\nmatch = [{{ cmdline = '{after}' }}]\n"))
    exporter = None
    try:
        exporter = Exporter(binary, args=[f"--config.file={config}", "--no-collector.sockets"])

        def counts(body):
            return (value(body, "stack_service_processes", service="before"),
                    value(body, "stack_service_processes", service="after"))

        scrapes = 3
        failed = sum(counts(exporter.scrape()[1]) != (1.0, 0.0) for _ in range(scrapes))
        open(go, "w").close()
        cmdline = f"/proc/{process.pid}/cmdline"
        deadline = time.monotonic() + 10
        while before.encode() in open(cmdline, "rb").read() and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(f"/proc/{process.pid}/comm") as f:
            same_name = f.read().strip() == "python3"
        recovery, _ = poll_until(exporter, lambda body: counts(body) == (0.0, 1.0), wait)
        crashes = 0 if exporter.alive() else 1
    finally:
        if exporter:
            exporter.stop()
        process.kill()
        process.wait()
        shutil.rmtree(work, ignore_errors=True)
    return scrapes, failed, same_name, recovery, crashes


def record_rematch(case, tried, outcome, bound):
    scrapes, failed, same_name, recovery, crashes = outcome
    record(case, tried, crashes, "-", f"{failed}/{scrapes}", seconds(recovery),
           crashes == 0 and failed == 0 and same_name and recovery is not None,
           f"(bound: {bound})" if same_name
           else "(the kernel name changed: the case proves nothing)")


def case_exec_rematch(binary):
    # Exec moves arg_start/arg_end in /proc/PID/stat: seen at the next scrape.
    change = ("os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(300)', "
              "after])")
    record_rematch("exec under the same kernel name", "python3 execs python3 with another "
                   "service's command line", rematch(binary, change, 10), "the next scrape")


def case_rewrite_rematch(binary):
    # setproctitle rewrites the command line in place: nothing in /proc/PID/stat changes once
    # the kernel name is put back, so only the periodic recheck (within MATCH_MAX_AGE) sees it.
    change = ("import setproctitle\nsetproctitle.setproctitle('python3 ' + after)\n"
              "open('/proc/self/comm', 'w').write('python3')")
    record_rematch("command line rewritten in place", "setproctitle to another service's "
                   "command line, kernel name kept", rematch(binary, change, MATCH_MAX_AGE + 5),
                   f"MATCH_MAX_AGE {MATCH_MAX_AGE} s")


# Finding 9's nonsense: (config, line, key). Each must be refused with file:line and key.
NONSENSE = [
    ("[services.web]\ninstances = 1\nmatch = [{}]\n", 3, "services.web.match"),
    ("[services.web]\nmatch = [{ cmdline = '' }]\n", 2, "services.web.match"),
    ("[[mysql]]\nname = \"a\"\nurl = \"mysql://u:p@db/\"\ntimeout = \"0s\"\n", 4,
     "mysql.timeout"),
    ("[[redis]]\nname = \"a\"\nurl = \"redis://u:p@cache/0\"\ntimeout = 0\n", 4, "redis.timeout"),
    ("[services.redis]\nmemory_budget = \"16EiB\"\n", 2, "services.redis.memory_budget"),
    ("[services.wsgi]\ninstance_memory_budget = \"17179869184GiB\"\n", 2,
     "services.wsgi.instance_memory_budget"),
    ("[plan]\nhost_cpu_cores = 0\n", 2, "plan.host_cpu_cores"),
    ("[plan]\nhost_memory = 0\n", 2, "plan.host_memory"),
    ("[nginx]\naccess_log = \"\"\n", 2, "nginx.access_log"),
    ("[storage]\ndirectories = { backups = \"/var/backups\", logs = \"\" }\n", 2,
     "storage.directories.logs"),
    ("[[mysql]]\nname = \"a\"\nurl = \"mysql://u:p@db:99999/\"\n", 3, "mysql.url"),
    ("[[mysql]]\nname = \"a\"\nurl = \"mysql://u:p@db:3306/?colour=red\"\n", 3, "mysql.url"),
    ("[[postgres]]\nname = \"a\"\nurl = \"postgres://u:p@db:abc/app\"\n", 3, "postgres.url"),
    ("[[postgres]]\nname = \"a\"\nurl = \"postgres://u:p@db/app?colour=red\"\n", 3,
     "postgres.url"),
    ("[[redis]]\nname = \"a\"\nurl = \"redis://u:p@cache:99999/0\"\n", 3, "redis.url"),
    ("[[redis]]\nname = \"a\"\nurl = \"redis://u:p@cache:6379/0?colour=red\"\n", 3, "redis.url"),
]


def config_check(binary, path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STACK_")}
    out = subprocess.run([binary, "--config.check", f"--config.file={path}"], env=environment,
                         capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def case_config_check(binary):
    work = tempfile.mkdtemp(prefix="torture-config-")
    crashes, wrong = 0, []
    try:
        for i, (text, line, key) in enumerate(NONSENSE):
            path = write_file(work, f"nonsense{i}.toml", text)
            code, said = config_check(binary, path)
            crashes += code < 0 or code >= 128
            if code == 0 or f"{path}:{line}:" not in said or f"key `{key}`" not in said:
                wrong.append(f"{key} (exit {code})")
        # The sample config passes: the refusals above are not a checker that refuses anything.
        sample = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                              "stack.toml")
        sample_code, _ = config_check(binary, sample)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record("`--config.check` on nonsense", f"{len(NONSENSE)} nonsense configs and the sample",
           crashes, "-", f"{len(wrong)}/{len(NONSENSE)} accepted or unplaced", "-",
           crashes == 0 and not wrong and sample_code == 0,
           (f"(wrong: {', '.join(wrong)}" if wrong else "(each refused with file:line and key")
           + f"; sample exit {sample_code})")


def process_tree(root):
    """root and its descendants, from the ppid field of every /proc/PID/stat."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, changed = {root}, True
    while changed:
        grown = tree | {pid for pid, ppid in parents.items() if ppid in tree}
        changed, tree = grown != tree, grown
    return sorted(tree)


def start_gunicorn(work, extra, app):
    port = free_port()
    process = subprocess.Popen(
        ["python3", "-m", "gunicorn", "--workers", "1", "--chdir", work, "--bind",
         f"127.0.0.1:{port}", *extra, app],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=os.setpgrp)
    return process, port


def copy_into_procfs(pid, procfs):
    target = os.path.join(procfs, str(pid))
    os.makedirs(target, exist_ok=True)
    for name in ("stat", "cmdline", "smaps_rollup"):
        with open(f"/proc/{pid}/{name}", "rb") as source, open(os.path.join(target, name),
                                                               "wb") as copy:
            copy.write(source.read())


def case_asgi_under_setproctitle(binary):
    import importlib.util
    if importlib.util.find_spec("setproctitle") is None:
        raise RuntimeError("setproctitle is not installed: pip install setproctitle")
    work = tempfile.mkdtemp(prefix="torture-asgi-")
    os.mkdir(os.path.join(work, "shop"))
    write_file(work, "shop/__init__.py", "")
    write_file(work, "shop/asgi.py", "async def application(scope, receive, send):\n    pass\n")
    write_file(work, "main.py", (
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [b'ok']\n\n"
        "async def app(scope, receive, send):\n    pass\n"))
    uvicorn = ["-k", "uvicorn.workers.UvicornWorker"]
    # The two forms the built-in matchers recognise under setproctitle: Django's `*.asgi` module
    # and an explicit --name that says asgi. A sync Gunicorn beside them must stay WSGI.
    gunicorns = [start_gunicorn(work, uvicorn, "shop.asgi:application"),
                 start_gunicorn(work, uvicorn + ["--name", "shop-asgi"], "main:app"),
                 start_gunicorn(work, [], "main:application")]
    exporter = None
    try:
        for _, port in gunicorns:
            wait_port(port, 30)
        masters = [process.pid for process, _ in gunicorns]
        deadline = time.monotonic() + 20
        while not all(len(process_tree(m)) == 2 for m in masters):
            if time.monotonic() > deadline:
                raise RuntimeError("a Gunicorn worker did not start")
            time.sleep(0.1)
        pids = [pid for m in masters for pid in process_tree(m)]
        retitled = all(open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"gunicorn: ")
                       for pid in pids)
        # These six processes alone, in a /proc of their own, under the built-in definitions
        # (other Gunicorns on this machine would blur the counts).
        procfs = os.path.join(work, "proc")
        fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "fixtures", "proc")
        os.mkdir(procfs)
        for name in ("stat", "meminfo", "mounts"):
            shutil.copy(os.path.join(fixtures, name), procfs)
        write_file(procfs, "loadavg", "0.00 0.00 0.00 1/100 1\n")
        for pid in pids:
            copy_into_procfs(pid, procfs)
        exporter = Exporter(binary, args=[f"--path.procfs={procfs}", "--no-collector.sockets"])
        _, body = exporter.scrape()
        asgi = value(body, "stack_service_processes", service="asgi")
        wsgi = value(body, "stack_service_processes", service="wsgi")
        crashes = 0 if exporter.alive() else 1
    finally:
        if exporter:
            exporter.stop()
        for process, _ in gunicorns:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        shutil.rmtree(work, ignore_errors=True)
    record("Uvicorn-worker Gunicorn under setproctitle", "2 Uvicorn-worker Gunicorns "
           "(`shop.asgi:application`, `--name shop-asgi`) and 1 sync, titles rewritten",
           crashes, "-", 0 if (asgi, wsgi) == (4.0, 2.0) else 1, "-",
           crashes == 0 and retitled and (asgi, wsgi) == (4.0, 2.0),
           f"(asgi {asgi} processes, wsgi {wsgi})"
           + ("" if retitled else " (setproctitle did not rewrite: the case proves nothing)"))


def hung_fuse_mount(fuse_fd, mountpoint):
    """A preexec for the exporter: a mount namespace of its own where mountpoint is a FUSE mount
    served by fuse_fd, which nobody reads, so every call on it waits until fuse_fd is closed.
    The fd is close-on-exec: the exporter does not keep the connection alive itself."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private, ms_nosuid, ms_nodev = 0x20000, 0x4000, 0x40000, 2, 4
    options = f"fd={fuse_fd},rootmode=40000,user_id=0,group_id=0".encode()

    def enter():
        if (libc.unshare(clone_newns) != 0
                or libc.mount(None, b"/", None, ms_rec | ms_private, None) != 0
                or libc.mount(b"stuck", mountpoint.encode(), b"fuse", ms_nosuid | ms_nodev,
                              options) != 0):
            raise OSError(ctypes.get_errno(), "hung FUSE mount")
    return enter


def case_hung_mount(binary):
    try:
        fuse = os.open("/dev/fuse", os.O_RDWR)  # close-on-exec, as every fd Python opens
    except OSError as e:
        raise RuntimeError(f"a real hung mount needs root and /dev/fuse: {e}")
    work = tempfile.mkdtemp(prefix="torture-mount-")
    hung, healthy, procfs = (os.path.join(work, d) for d in ("hung", "healthy", "proc"))
    for d in (hung, healthy, procfs):
        os.mkdir(d)
    for name in ("stat", "meminfo", "loadavg"):
        os.symlink(f"/proc/{name}", os.path.join(procfs, name))
    write_file(procfs, "mounts", f"stuck {hung} fuse rw 0 0\n/dev/vdz1 {healthy} ext4 rw 0 0\n")
    exporter = None
    try:
        exporter = Exporter(binary, args=[f"--path.procfs={procfs}", "--no-collector.services",
                                          "--no-collector.sockets"],
                            preexec=hung_fuse_mount(fuse, hung))
        scrapes, failed, slowest = 5, 0, 0.0
        for _ in range(scrapes):
            took, body = exporter.scrape()
            slowest = max(slowest, took)
            failed += not (collectors_ok(body, ("host", "filesystem"))
                           and value(body, "stack_host_filesystem_stuck", mountpoint=hung) == 1.0
                           and value(body, "stack_host_filesystem_size_bytes",
                                     mountpoint=healthy) is not None)
        stuck_lines = count_lines(exporter, f"filesystem {hung}: statvfs did not return")
        # The daemon goes away: the hung call returns and the mount is measured again.
        os.close(fuse)
        fuse = None
        recovery, _ = poll_until(exporter, lambda body: value(
            body, "stack_host_filesystem_stuck", mountpoint=hung) == 0.0, 10)
        crashes = 0 if exporter.alive() else 1
        stop = exporter.stop()
    finally:
        if fuse is not None:
            os.close(fuse)
        if exporter:
            exporter.stop()
        shutil.rmtree(work, ignore_errors=True)
    record("hung FUSE mount", f"{scrapes} scrapes with a mount whose statvfs never returns, then "
           "its daemon gone", crashes, "-", f"{failed}/{scrapes}", seconds(recovery),
           crashes == 0 and failed == 0 and stuck_lines == 1 and recovery is not None
           and stop is not None,
           f"(slowest scrape {slowest:.2f} s, {stuck_lines} log line; SIGTERM took "
           f"{seconds(stop)})")


# Finding 9's content negotiation: (header, value, format wanted, gzip wanted).
NEGOTIATION = [
    ("Accept-Encoding", "gzip", "text/plain", True),
    ("Accept-Encoding", "gzip;q=0", "text/plain", False),
    ("Accept-Encoding", "gzip;q=0, identity", "text/plain", False),
    ("Accept", "application/openmetrics-text", "application/openmetrics-text", False),
    ("Accept", "application/openmetrics-text;q=0, text/plain", "text/plain", False),
    ("Accept", "application/openmetrics-text;q=0.4,text/plain;q=0.5", "text/plain", False),
]


def answer_format(port, header, value_sent):
    """(Content-Type without parameters, whether the body came gzipped) of one /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", "/metrics", headers={header: value_sent})
    response = conn.getresponse()
    response.read()
    conn.close()
    content_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
    return content_type, response.getheader("Content-Encoding") == "gzip"


def case_negotiation(binary):
    exporter = Exporter(binary, args=["--no-collector.services", "--no-collector.sockets"])
    wrong = []
    for header, sent, wanted_type, wanted_gzip in NEGOTIATION:
        got = answer_format(exporter.port, header, sent)
        if got != (wanted_type, wanted_gzip):
            wrong.append(f"{header}: {sent} -> {got}")
    crashes = 0 if exporter.alive() else 1
    exporter.stop()
    record("`Accept` and `Accept-Encoding` q-values", f"{len(NEGOTIATION)} headers with q-values",
           crashes, "-", f"{len(wrong)}/{len(NEGOTIATION)} wrongly answered", "-",
           crashes == 0 and not wrong, "; ".join(wrong))


def case_unlistable_directory(binary):
    work = tempfile.mkdtemp(prefix="torture-storage-")
    os.chmod(work, 0o755)  # the exporter runs as nobody: root would not be refused
    locked = os.path.join(work, "backups")
    os.mkdir(locked, 0o700)
    for i in range(3):
        write_file(locked, f"dump{i}.sql.gz", "x" * 100)
    config = write_file(work, "stack.toml", (
        f'[storage]\nmin_interval = "0s"\ndirectories = {{ backups = "{locked}" }}\n'))
    os.chmod(config, 0o644)
    exporter = None
    try:
        exporter = Exporter(binary, user="nobody", args=[
            f"--config.file={config}", "--no-collector.host", "--no-collector.services",
            "--no-collector.sockets"])
        backups = {"directory": "backups"}
        scrapes = 3
        failed = 0
        for _ in range(scrapes):
            _, body = exporter.scrape()
            # No figures rather than 0 files, and the error as a series.
            failed += not (value(body, "stack_directory_walk_errors", **backups) == 1.0
                           and value(body, "stack_directory_files", **backups) is None
                           and collectors_ok(body, ("storage",)))
        warned = count_lines(exporter, "storage directory backups")
        os.chmod(locked, 0o755)
        recovery, _ = poll_until(exporter, lambda body: value(
            body, "stack_directory_files", **backups) == 3.0, 10)
        crashes = 0 if exporter.alive() else 1
    finally:
        if exporter:
            exporter.stop()
        shutil.rmtree(work, ignore_errors=True)
    record("storage directory it cannot list", f"{scrapes} scrapes as `nobody` of a 0700 "
           "directory, then opened", crashes, "-", f"{failed}/{scrapes}", seconds(recovery),
           crashes == 0 and failed == 0 and warned == 1 and recovery is not None,
           f"(stack_directory_walk_errors 1, no file count; {warned} warning)")


CASES = {
    "timeout": case_timeout_header,
    "fifo": case_fifo_access_log,
    "directory": case_log_path_briefly_directory,
    "idle": case_idle_connections,
    "storm": case_connection_storm_memory,
    "hangups": case_hangups,
    "unprivileged": case_unprivileged,
    "sigterm": case_sigterm_during_scrape,
    "mount": case_hung_mount,
    "queue": case_unreadable_queue,
    "slowlog": case_slow_log,
    "exec": case_exec_rematch,
    "rewrite": case_rewrite_rematch,
    "config": case_config_check,
    "asgi": case_asgi_under_setproctitle,
    "negotiation": case_negotiation,
    "unlistable": case_unlistable_directory,
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
