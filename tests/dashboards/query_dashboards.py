#!/usr/bin/env python3
"""Runs every query of every dashboard against a Prometheus, as Grafana would.

    query_dashboards.py http://127.0.0.1:9090 [--job REGEX] [--instance REGEX] [--app-job REGEX]
                        [--require TITLE_REGEX]... [--require-preset host|services|app]...
                        [--require-variable NAME]... [--wait SECONDS]

Each query gets the dashboard variables expanded ($job, $role, $instance, $service, $app_job: the
given regexes, ".+" by default, ".*" for $role; $__rate_interval: 1m, $__range: 1h, $__interval:
15s) and goes to /api/v1/query. The query variables' own queries run too, as Grafana runs them:
label_values(SELECTOR, LABEL) is /api/v1/label/LABEL/values?match[]=SELECTOR. Fails when
Prometheus rejects any query, or when a variable named by --require-variable lists no value.
Reports the queries that return no data; that is only a failure for panels named by --require (a
regex searched in the panel title) or a preset: `host` = the host panels, `services` = the
service panels that have data whenever the exporter runs with a profile (planned services' up and
expected counts, system memory), `app` = the panels of the application's own metrics (with a
Celery exporter or the ASGI app scraped). A panel has data when at least one of its queries
returns a series. A pattern that matches no panel is a failure too, so a renamed panel cannot
silently drop out of the check. The failure panels that need a fault or a target the test does
not run are listed in EXPECTED_EMPTY with the reason, printed beside them when empty; their
patterns must match a panel as well. With --wait, queries are rerun until the required panels have
data and the required variables values, or the time is up (rates need two scrapes, recording
rules one evaluation).
"""
import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashlib  # noqa: E402

# The failure panels (issue 11) of host and services are required too: their counters are
# published at 0 on a healthy host (no OOM kill, no restart, no overflow yet), so increase() and
# rate() return a 0 series, not nothing; an empty one means a name or a label is wrong.
# PSI needs a kernel that has it (4.20+, not booted with psi=0): required where the exporter of the
# test, which runs on this machine, can read it.
PSI_FILE = "/proc/pressure/memory"
PRESETS = {
    "host": [r"^Plan profile$", r"^Host memory used$", r"^CPU busy$", r"^Fullest filesystem$",
             r"^Host memory: used vs total$", r"^Disk used per filesystem$",
             r"^Collectors OK$", r"^CPU busy per core vs ", r"^Disk busy per device$",
             r"^Network errors and drops vs ", r"^OOM kills$", r"^Swap traffic vs ",
             r"^TCP listen overflows$"]
            + ([r"^Pressure: memory, IO and CPU stalls$"] if os.access(PSI_FILE, os.R_OK) else []),
    "services": [r"^Planned services up$", r"^Services against the plan$",
                 r"^System memory vs allowance$", r"^\$service processes and instances vs plan$",
                 r"^Service starts in the last hour vs ", r"^\$service starts in the last hour vs "],
    "app": [r"^WebSocket latency p95 vs ", r"^Celery task runtime p95 vs "],
}
# Failure panels no preset requires, and why each may be empty on the healthy test host. Each
# pattern must match a panel (a renamed one fails, as a required one does); an empty panel is
# reported with its reason.
EXPECTED_EMPTY = {
    r"^Connections refused in the last 5 minutes$":
        "needs a MySQL or Redis target: the test runs none (a target that never refused shows 0)",
    r"^Database and Redis restarts in the last hour vs ":
        "needs a database or Redis target: the test runs none",
    r"^Uptime$": "needs a database or Redis target: the test runs none",
    r"^Deadlocks and row lock waits vs ": "needs a MySQL or PostgreSQL target",
    r"^InnoDB buffer pool hit ratio vs ":
        "needs a MySQL target with InnoDB page reads in the last 30 minutes (an idle server "
        "with none has no ratio)",
    r"^MySQL temporary tables on disk vs ":
        "needs a MySQL target that made temporary tables in the last hour",
    r"^Redis persistence$": "needs a Redis target; the AOF status only while AOF is on",
    r"^Redis last snapshot age vs ": "needs a Redis target",
    r"^Pressure: memory, IO and CPU stalls$":
        "needs PSI (%s): required where this machine has it" % PSI_FILE,
}
LABEL_VALUES_RE = re.compile(r"^label_values\((?:(.*),\s*)?([a-zA-Z_]\w*)\)$", re.DOTALL)


def api(base_url, path, params, timeout=10, post=True):
    """(data, None) or (None, error message) of a request to the Prometheus HTTP API. Label
    values take GET only."""
    data = urllib.parse.urlencode(params)
    url = base_url.rstrip("/") + path
    if post:
        req = urllib.request.Request(url, data=data.encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded"})
    else:
        req = urllib.request.Request(url + ("?" + data if data else ""))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except ValueError:
            return None, "HTTP %d" % e.code
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, str(e)
    if body.get("status") != "success":
        return None, "%s: %s" % (body.get("errorType"), body.get("error"))
    return body["data"], None


def run_query(base_url, expr, timeout=10):
    """(series count, None) or (None, error message)."""
    data, error = api(base_url, "/api/v1/query", {"query": expr}, timeout)
    if error:
        return None, error
    if data["resultType"] in ("scalar", "string"):
        return 1, None
    return len(data["result"]), None


def run_variable(base_url, query, timeout=10):
    """(values, None) or (None, error message) of a label_values(...) variable query."""
    m = LABEL_VALUES_RE.match(query.strip())
    if not m:
        return None, "not label_values(...): cannot be run outside Grafana"
    selector, label = m.groups()
    return api(base_url, "/api/v1/label/%s/values" % label,
               [("match[]", selector)] if selector else [], timeout, post=False)


def collect_variables(files, values):
    """[(dashboard file, variable name, expanded query)] of every query variable."""
    found = []
    for path in files:
        for v in (dashlib.load(path).get("templating") or {}).get("list") or []:
            if v.get("type") == "query":
                query = v.get("query")
                query = query.get("query") if isinstance(query, dict) else query
                found.append((os.path.basename(path), v.get("name"),
                              dashlib.expand(query or "", values)))
    return found


def collect(files, values):
    """[(dashboard file, panel title, refId, expanded expr)] of every query."""
    queries = []
    for path in files:
        d = dashlib.load(path)
        for p, t in dashlib.targets(d):
            queries.append((os.path.basename(path), p.get("title", ""), t.get("refId"),
                            dashlib.expand(t.get("expr", ""), values)))
    return queries


def expected_empty(title):
    """" (expected: why)" for a panel of EXPECTED_EMPTY, else ""."""
    reasons = [why for p, why in EXPECTED_EMPTY.items() if re.search(p, title)]
    return " (expected: %s)" % reasons[0] if reasons else ""


def run_all(url, queries):
    """{(file, title): [(refId, count, error)]}"""
    results = {}
    for file, title, ref, expr in queries:
        count, error = run_query(url, expr)
        results.setdefault((file, title), []).append((ref, count, error))
    return results


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--job", default=".+", help="value of $job (a regex; default .+)")
    ap.add_argument("--role", default=".*",
                    help="value of $role (default .*, its All: a host without the label too)")
    ap.add_argument("--instance", default=".+", help="value of $instance (default .+)")
    ap.add_argument("--service", default=".+", help="value of $service (default .+)")
    ap.add_argument("--app-job", default=".+", help="value of $app_job (default .+)")
    ap.add_argument("--rate-interval", default="1m", help="value of $__rate_interval")
    ap.add_argument("--require", action="append", default=[], metavar="TITLE_REGEX",
                    help="panels whose title matches must return data (repeatable)")
    ap.add_argument("--require-preset", action="append", default=[], choices=sorted(PRESETS),
                    help="a named set of --require patterns (repeatable)")
    ap.add_argument("--require-variable", action="append", default=[], metavar="NAME",
                    help="this query variable must list at least one value (repeatable)")
    ap.add_argument("--wait", type=float, default=0,
                    help="rerun for up to this many seconds until required panels have data")
    ap.add_argument("--dashboards", nargs="*", default=None, help="files (default: all)")
    ap.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    args = ap.parse_args(argv)

    values = dict(dashlib.DEFAULT_VALUES, job=args.job, role=args.role, instance=args.instance,
                  service=args.service, app_job=args.app_job,
                  __rate_interval=args.rate_interval)
    files = args.dashboards or dashlib.dashboard_files()
    queries = collect(files, values)
    variables = collect_variables(files, values)
    patterns = list(args.require)
    for preset in args.require_preset:
        patterns += PRESETS[preset]
    titles = {(f, t) for f, t, _, _ in queries}
    unmatched = [p for p in patterns + list(EXPECTED_EMPTY)
                 if not any(re.search(p, t) for _, t in titles)]
    required = {k for k in titles if any(re.search(p, k[1]) for p in patterns)}

    unknown_vars = sorted(set(args.require_variable) - {name for _, name, _ in variables})

    deadline = time.monotonic() + args.wait
    while True:
        results = run_all(args.url, queries)
        missing = sorted(k for k in required
                         if not any(count for _, count, _ in results[k]))
        var_results = [(file, name, run_variable(args.url, query))
                       for file, name, query in variables]
        vars_empty = sorted({(file, name) for file, name, (found, _) in var_results
                             if name in args.require_variable and not found})
        if not (missing or vars_empty) or time.monotonic() >= deadline:
            break
        time.sleep(min(5, max(0.5, deadline - time.monotonic())))

    errors = empty = 0
    for (file, title), rows in sorted(results.items()):
        for ref, count, error in rows:
            where = "%s / %s / %s" % (file, title, ref)
            if error:
                errors += 1
                print("ERROR %s: %s" % (where, error))
            elif not count:
                empty += 1
                if not args.quiet:
                    print("empty %s%s" % (where, expected_empty(title)))
            elif not args.quiet:
                print("ok    %s (%d series)" % (where, count))
    for file, name, (found, error) in var_results:
        where = "%s / variable %s" % (file, name)
        if error:
            errors += 1
            print("ERROR %s: %s" % (where, error))
        elif not args.quiet:
            print("%s %s: %s" % ("ok   " if found else "empty", where, ", ".join(found)))
    for file, title in missing:
        print("NO DATA (required) %s / %s" % (file, title))
    for file, name in vars_empty:
        print("NO VALUES (required) %s / variable %s" % (file, name))
    for p in unmatched:
        print("NO PANEL matches required pattern %r" % p)
    for name in unknown_vars:
        print("NO VARIABLE named %r" % name)
    print("queries: %d run, %d errors, %d empty; variables: %d run; required panels: %d with "
          "data, %d without; required variables without values: %d"
          % (len(queries), errors, empty, len(var_results), len(required) - len(missing),
             len(missing), len(vars_empty)))
    return 1 if errors or missing or unmatched or vars_empty or unknown_vars else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
