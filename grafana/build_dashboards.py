#!/usr/bin/env python3
"""Writes grafana/dashboards/*.json, the four stack_exporter dashboards.

The JSON files are generated: edit this file, then run it (`python3 grafana/build_dashboards.py`).
`--check` writes nothing and fails when a JSON file differs from what this script would write, or
when an action in the scaling table differs from the `action` annotation of the alert named beside
it in rules/*.yml (scripts/test-dashboards.sh runs it).

Every panel cites the THRESHOLDS.md row(s) it shows (A1, S1, M4, ...). Threshold lines are either
fieldConfig thresholds drawn as dashed lines (fixed numbers of the plans: 85 %, 500 ms, 150, ...)
or a query on the exporter's budget series (stack_service_memory_budget_bytes, ...), never a
budget written here: budgets differ by profile and live in the exporter.

The fixed numbers are not written here either: each is read from the alert that acts on it in
rules/*.yml (`limit("StackHostMemoryHigh")` is the 0.85 of its `> 0.85`), and titles and
descriptions print them. To change a threshold, change the alert's expression (and its summary),
then run this script. tests/dashboards/lint_dashboards.py fails when a dashboard draws a line that
is not the threshold of an alert on a row the panel cites. Needs PyYAML.
"""
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "dashboards")

DS = {"type": "prometheus", "uid": "${datasource}"}
# $role: the `role` label of prometheus/targets/*.yml (H4: app, db, cache); a single host has
# none, hence its "All" of ".*", which also matches a series without the label.
SEL = 'job=~"$job", role=~"$role", instance=~"$instance"'
TAG = "stack_exporter"
GIB = 1024 ** 3     # sizes are binary, as in the profiles and rules/storage.yml (5 GB = 5 GiB)


# The application's own metrics (docs/metrics.md, "App-side metrics the rules expect") come from
# the app's or a Celery exporter's job, not from stack_exporter's: they are selected by `$app_job`,
# never by the exporter's `$job`/`$instance`, which would empty their panels once one is picked.
APP_SEL = 'job=~"$app_job"'
APP_METRICS = ("celery_task_runtime_bucket", "stack_app_websocket_latency_seconds_bucket")


def sel(metric, extra="", app=False):
    """`metric{extra, job=~"$job", instance=~"$instance"}`; with app, `metric{extra,
    job=~"$app_job"}`."""
    return "%s{%s}" % (metric, (extra + ", " if extra else "") + (APP_SEL if app else SEL))


def app_sel(metric, extra=""):
    return sel(metric, extra, app=True)


def rate(metric, extra="", app=False):
    return "rate(%s[$__rate_interval])" % sel(metric, extra, app)


# ---------------------------------------------------------------------------------------------
# Thresholds, read from the alerts of rules/*.yml

# A comparison with a number: `> 0.85`, `>= 1`, `< 0.90`, `> 5 * 1024^3`, `> 26 * 3600`.
COMPARISON = re.compile(r"(?:[<>]=?|[=!]=)\s*(?:bool\s+)?(\d+(?:\.\d+)?(?:\s*[*^]\s*\d+(?:\.\d+)?)*)"
                        r"(?![\w.])")


def number(text):
    """The value of `5 * 1024^3`: factors joined by *, each a number or a power."""
    value = 1.0
    for factor in text.split("*"):
        base, _, power = factor.partition("^")
        value *= float(base) ** (float(power) if power else 1)
    return int(value) if value == int(value) and "." not in text else value


def rule_limits(rules_dir=os.path.join(REPO, "rules")):
    """{alert: [each number its expression compares against, in order]} of rules_dir/*.yml."""
    limits = {}
    for name in sorted(os.listdir(rules_dir)):
        if name.endswith((".yml", ".yaml")):
            with open(os.path.join(rules_dir, name), encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
            for group in doc.get("groups") or []:
                for rule in group.get("rules") or []:
                    if "alert" in rule:
                        limits[rule["alert"]] = [number(n) for n in COMPARISON.findall(rule["expr"])]
    return limits


RULE_LIMITS = rule_limits()


def limits(alert, count):
    """The `count` numbers the alert's expression compares against, in order."""
    if alert not in RULE_LIMITS:
        raise SystemExit("%s is not an alert of rules/*.yml" % alert)
    if len(RULE_LIMITS[alert]) != count:
        raise SystemExit("%s compares against %s, not %d number(s): say which one the "
                         "dashboards draw" % (alert, RULE_LIMITS[alert], count))
    return RULE_LIMITS[alert]


def limit(alert):
    """The threshold of `alert`: the one number its expression compares against."""
    return limits(alert, 1)[0]


# Named by the THRESHOLDS.md row they encode; the alert is the place to change each.
A1 = limit("StackHostMemoryHigh")
A2 = limit("StackHostCpuBusy")
A3 = limit("StackHostFilesystemUsageHigh")      # S3, D1 too
A4 = limit("StackDatabasePoolExhausted")        # P6 too
S1 = limit("StackHostMemoryScaleUp")
S2 = limit("StackHostCpuScaleUp")
S4 = limit("StackResponseTimeScaleUp")
S5 = limit("StackConcurrentUsersScaleOut")
W1 = limit("StackWsgiScaleOutCpu")
W2 = limit("StackWsgiScaleOutLatency")
W3 = limit("StackWsgiScaleOutQueue")
X1 = limit("StackAsgiScaleOutConnections")
X2 = limit("StackAsgiScaleOutWebsocketLatency")
X3 = limit("StackAsgiScaleOutMemory")
P1 = limit("StackApiLatencyHigh")
P2 = limit("StackStaticLatencyHigh")
P3 = limit("StackDatabaseQueriesSlow")
P4 = limit("StackCeleryTaskSlow")
P5 = limit("StackThroughputAbovePlan")
M_BUDGET = limit("StackServiceMemoryOverBudget")  # a share of the budget: 1 = 100 %
C7_LOW, C7_HIGH = limits("StackSwapDrift", 2)
D2 = limit("StackDatabaseSizeOverPlan")
K1 = limit("StackHostCpuSteal")
# The failure signals (issue 11). Where an alert compares against more than one number, the first
# is the one drawn; the others (a minimum rate, the host average) are printed in the description.
A2_CORE, _ = limits("StackHostCpuCoreSaturated", 2)               # one core busy; A2 average
A5_RESTARTS, _ = limits("StackServiceRestartLoop", 2)              # starts in 1h; service up
A5_DB_RESTARTS, _, _ = limits("StackDatabaseRestarted", 3)         # MySQL, PostgreSQL; service up
A5_REDIS_RESTARTS, _ = limits("StackRedisRestarted", 2)
S1_PRESSURE = limit("StackHostMemoryPressure")                     # PSI memory full
S1_SWAP_IO, S1_SWAP_PRESSURE, _ = limits("StackHostSwapThrashing", 3)
C2_HIT, C2_MIN_READS = limits("StackMysqlBufferPoolHitRatioLow", 2)
P3_DEADLOCKS = limit("StackDatabaseDeadlocks")                     # per minute
P3_TMP_DISK, P3_TMP_DISK_RATE = limits("StackMysqlTmpDiskTablesHigh", 2)
D4_SAVE_AGE = limits("StackRedisNotPersisting", 4)[0]
if A5_REDIS_RESTARTS != A5_DB_RESTARTS:
    raise SystemExit("StackDatabaseRestarted and StackRedisRestarted count different restarts: "
                     "the databases board draws one line for both")
_, H4_NET_ERRORS, _, _ = limits("StackHostNetworkErrors", 4)       # receive, transmit: the same


def pct(ratio):
    """0.85 -> "85 %"."""
    return "%g %%" % round(ratio * 100, 6)


def secs(seconds):
    """0.5 -> "500 ms", 2 -> "2 s"."""
    return "%g ms" % round(seconds * 1000, 6) if seconds < 1 else "%g s" % seconds


def hours(seconds):
    """7200 -> "2 h"."""
    return "%g h" % (seconds / 3600)


def gib(size):
    return "%g GiB" % (size / GIB)


# ---------------------------------------------------------------------------------------------
# Panel building blocks


def target(expr, legend="", instant=False, table=False, ref=None):
    """A query. `ref` makes it a reference line (budget, plan figure): dashed, in that colour."""
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
    if table:
        t.update(format="table", instant=True, range=False)
    elif instant:
        t.update(instant=True, range=False)
    else:
        t.update(instant=False, range=True)
    if ref:
        t["_ref"] = ref
    return t


def ref(expr, legend, color="red"):
    return target(expr, legend, ref=color)


def steps(*pairs):
    """Threshold steps: steps("green", A1, "orange", S1, "red"); numbers come from limit()."""
    out = [{"color": pairs[0], "value": None}]
    for i in range(1, len(pairs), 2):
        out.append({"color": pairs[i + 1], "value": pairs[i]})
    return {"mode": "absolute", "steps": out}


def _finish_targets(panel, targets):
    overrides = panel["fieldConfig"]["overrides"]
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
        color = t.pop("_ref", None)
        if color:
            overrides.append({
                "matcher": {"id": "byFrameRefID", "options": t["refId"]},
                "properties": [
                    {"id": "color", "value": {"fixedColor": color, "mode": "fixed"}},
                    {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                    {"id": "custom.fillOpacity", "value": 0},
                    {"id": "custom.lineWidth", "value": 2},
                    {"id": "custom.stacking", "value": {"group": "A", "mode": "none"}},
                ],
            })
    panel["targets"] = targets


def panel(kind, title, description, unit, targets, w, h, thresholds=None, **fc):
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    d = p["fieldConfig"]["defaults"]
    d["thresholds"] = thresholds or steps("green")
    for k, v in fc.items():
        if v is not None:
            d[k] = v
    _finish_targets(p, targets)
    return p


def timeseries(title, description, unit, targets, w=12, h=8, thresholds=None, stack=False,
               min=None, max=None, decimals=None):
    p = panel("timeseries", title, description, unit, targets, w, h, thresholds,
              min=min, max=max, decimals=decimals)
    d = p["fieldConfig"]["defaults"]
    d["color"] = {"mode": "palette-classic"}
    d["custom"] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 25 if stack else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        # Threshold steps are the plan's lines: draw them dashed; without steps draw nothing.
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
    }
    p["options"] = {
        "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                   "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def stat(title, description, unit, targets, w=4, h=4, thresholds=None, mappings=None,
         text_mode="auto", fields="", color_mode="background", decimals=None):
    p = panel("stat", title, description, unit, targets, w, h, thresholds, decimals=decimals)
    d = p["fieldConfig"]["defaults"]
    d["color"] = {"mode": "thresholds"}
    if mappings:
        d["mappings"] = mappings
    p["options"] = {
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
        "textMode": text_mode,
    }
    return p


def bargauge(title, description, unit, targets, w=12, h=8, thresholds=None, min=0, max=None):
    p = panel("bargauge", title, description, unit, targets, w, h, thresholds, min=min, max=max)
    p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    p["options"] = {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "valueMode": "color",
    }
    return p


def table(title, description, targets, columns, hidden=(), w=24, h=9):
    """An instant table of several queries merged on their labels. `columns` maps each column
    (a label or "Value #<refId>") to (header, unit-or-None, extra properties)."""
    p = panel("table", title, description, "none", targets, w, h)
    p["fieldConfig"]["defaults"]["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}}
    overrides = p["fieldConfig"]["overrides"]
    order = {}
    for i, (name, (header, unit, props)) in enumerate(columns.items()):
        order[name] = i
        properties = [{"id": "displayName", "value": header}]
        if unit:
            properties.append({"id": "unit", "value": unit})
        properties.extend({"id": k, "value": v} for k, v in props.items())
        overrides.append({"matcher": {"id": "byName", "options": name}, "properties": properties})
    p["options"] = {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True}
    p["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": {name: True for name in ("Time", "job", *hidden)},
            "indexByName": order,
            "renameByName": {},
        }},
    ]
    return p


def row(title, repeat=None):
    r = {"type": "row", "title": title, "collapsed": False, "panels": [],
         "gridPos": {"w": 24, "h": 1}}
    if repeat:
        r["repeat"] = repeat
    return r


def up_mappings(down="DOWN", up="up"):
    return [{"type": "value", "options": {
        "0": {"text": down, "color": "red", "index": 0},
        "1": {"text": up, "color": "green", "index": 1},
    }}]


def labels(expr, **pairs):
    """Wraps expr in one label_replace per pair: label_replace(expr, "k", "v", "", "")."""
    for k, v in pairs.items():
        expr = 'label_replace(%s, "%s", "%s", "", "")' % (expr, k, v)
    return expr


# ---------------------------------------------------------------------------------------------
# Dashboard skeleton


def query_var(name, query, all_value=".+"):
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": query,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def app_job_var():
    """The jobs that serve an application metric (a Celery exporter, the ASGI app), whatever
    the exporter's $job and $instance say."""
    v = query_var("app_job", 'label_values({__name__=~"%s"}, job)' % "|".join(APP_METRICS))
    v["label"] = "App job"
    return v


def variables(*extra):
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "refresh": 1,
            "regex": "",
        },
        query_var("job", "label_values(stack_exporter_build_info, job)"),
        query_var("role", 'label_values(stack_exporter_build_info{job=~"$job"}, role)', ".*"),
        query_var("instance",
                  'label_values(stack_exporter_build_info{job=~"$job", role=~"$role"}, instance)'),
        *extra,
    ]


def layout(panels):
    """Flows panels left to right in lines of 24 columns; a row starts a new line."""
    x = y = line_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        g = p["gridPos"]
        if p["type"] == "row" or x + g["w"] > 24:
            x, y, line_h = 0, y + line_h, 0
        g["x"], g["y"] = x, y
        x += g["w"]
        line_h = max(line_h, g["h"])
        if p["type"] == "row":
            x, y, line_h = 0, y + 1, 0
    return panels


def dashboard(uid, title, description, panels, extra_vars=()):
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{
            "asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
            "tags": [TAG], "targetBlank": False, "title": "stack_exporter", "type": "dashboards",
        }],
        "liveNow": False,
        "panels": layout(panels),
        "refresh": "1m",
        "schemaVersion": 38,
        "tags": [TAG],
        "templating": {"list": variables(*extra_vars)},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# ---------------------------------------------------------------------------------------------
# Overview: does the box still fit the plan?


def host_devices():
    """Per core, per disk and per interface: what the host averages above hide."""
    return [
        timeseries("CPU busy per core vs %s" % pct(A2_CORE),
                   "Each core's busy share, 5-minute rate, counted as A2 counts it (idle and "
                   "iowait are not busy). A single-threaded process (Redis, the solo Celery "
                   "worker, C4) pins one core while the host average of a 2-core box reads 50 %%. "
                   "Dashed at %s: StackHostCpuCoreSaturated warns after 15m with one core above "
                   "it and the host average at or under A2's %s."
                   % (pct(A2_CORE), pct(A2)),
                   "percentunit",
                   [target(sel("instance_core:stack_host_cpu_core_busy:ratio_rate5m"),
                           "core {{core}} {{instance}}")],
                   thresholds=steps("green", A2_CORE, "red"), min=0, max=1, w=8),
        timeseries("Disk busy per device",
                   "Share of time each whole disk had I/O in flight (%util, /proc/diskstats). "
                   "Near 100 % the disk is the bottleneck: logs (D3), backups (D4) and the "
                   "databases share the plan's single 50 GB disk (D1); H4's database server has "
                   "its own. No alert: a busy disk is a cause to look at, not a failure.",
                   "percentunit",
                   [target(rate("stack_host_disk_io_time_seconds_total"),
                           "{{device}} {{instance}}")],
                   min=0, max=1, w=8),
        timeseries("Network errors and drops vs %s" % pct(H4_NET_ERRORS),
                   "Packets with errors and packets dropped as a share of the packets of each "
                   "interface, each direction. The three-server production talks over the "
                   "network (H4); dashed at %s of packets with errors, where "
                   "StackHostNetworkErrors warns after 15m (a bad link, NIC or driver). Drops "
                   "are a full queue or an unknown protocol, not always a fault. An idle "
                   "interface reads 0 (0/0 would be NaN, which Prometheus draws as nothing and "
                   "VictoriaMetrics drops)."
                   % pct(H4_NET_ERRORS),
                   "percentunit",
                   [target("%s / clamp_min(%s, 1e-9)"
                           % (rate("stack_host_network_%s_%s_total" % (way, what)),
                              rate("stack_host_network_%s_packets_total" % way)),
                           "{{interface}} %s %s {{instance}}" % (way, what))
                    for what in ("errors", "drops") for way in ("receive", "transmit")],
                   thresholds=steps("green", H4_NET_ERRORS, "red"), min=0, w=8),
    ]


def failures():
    """The failure signals the averages miss: kills, restarts, stalls, swapping, refusals."""
    return [
        row("Failures"),
        stat("OOM kills",
             "Processes the kernel's OOM killer killed in the dashboard's time range, cgroup "
             "memory limits included. The plan's budgets (M1-M8) exist to keep the box out of "
             "the OOM killer; the victim (MariaDB, a Gunicorn worker) may be back before the "
             "next scrape, so A5 sees nothing. StackHostOomKill pages at each kill "
             "(`journalctl -k | grep -i \"killed process\"` names the victim). Empty on a "
             "kernel before 4.13.",
             "none",
             [target("sum by (instance) (increase(%s[$__range]))"
                     % sel("stack_host_oom_kills_total"), "{{instance}}", instant=True)],
             w=4, h=8, thresholds=steps("green", 1, "red"), decimals=0),
        timeseries("Service starts in the last hour vs %g" % A5_RESTARTS,
                   "Instances of each service seen starting in the last hour: a restart by "
                   "systemd or Docker between two scrapes counts (a worker recycled by its "
                   "master does not), so a crash loop that is up at every scrape shows here "
                   "while A5's up stays green. Dashed at %g: above it StackServiceRestartLoop "
                   "pages (a deploy restarts once, a change and its rollback twice)."
                   % A5_RESTARTS,
                   "short",
                   [target("sum by (instance, service) (increase(%s[1h]))"
                           % sel("stack_service_instance_starts_total"),
                           "{{service}} {{instance}}")],
                   thresholds=steps("green", A5_RESTARTS, "red"), min=0, decimals=1, w=10),
        timeseries("Pressure: memory, IO and CPU stalls",
                   "Share of time tasks stalled on each resource (PSI, 5-minute rate): `some`, "
                   "at least one task; `full`, every non-idle task at once. Memory stalls are "
                   "what S1's \"consistently > 90 %%\" memory costs and MemAvailable cannot "
                   "show (M8). Dashed at %s: StackHostMemoryPressure warns after 10m of memory "
                   "`full` above it; memory `some` above it with swap traffic is "
                   "StackHostSwapThrashing. Empty on a kernel without PSI." % pct(S1_PRESSURE),
                   "percentunit",
                   [target(sel("instance:stack_host_pressure_waiting:ratio_rate5m"),
                           "{{resource}} {{kind}} {{instance}}")],
                   thresholds=steps("green", S1_PRESSURE, "red"), min=0, w=10),
        timeseries("Swap traffic vs %s/s" % ("%g MiB" % (S1_SWAP_IO / 1024 ** 2)),
                   "Bytes read back from swap and written out to it per second, and both "
                   "together over 5 minutes as the thrashing alert reads them. The plan's 2 GB "
                   "swap is \"for safety\" (M9, C7): swap in steady use means memory is short "
                   "(S1). Dashed at %g MiB/s: with tasks stalled on memory more than %s of the "
                   "time for 10m, StackHostSwapThrashing warns."
                   % (S1_SWAP_IO / 1024 ** 2, pct(S1_SWAP_PRESSURE)),
                   "binBps",
                   [target(rate("stack_host_swap_in_bytes_total"), "swap in {{instance}}"),
                    target(rate("stack_host_swap_out_bytes_total"), "swap out {{instance}}"),
                    target(sel("instance:stack_host_swap_io_bytes:rate5m"),
                           "in + out, 5m {{instance}}")],
                   thresholds=steps("green", S1_SWAP_IO, "red"), min=0),
        timeseries("TCP listen overflows",
                   "Connection requests refused per second because a listening socket's accept "
                   "queue was full (host-wide TcpExt ListenOverflows), and all dropped "
                   "(ListenDrops, overflows included): the counter complement of W3's sampled "
                   "queue depth, which misses a burst between scrapes. Any overflow for 5m: "
                   "StackHostListenOverflows; the Traffic dashboard's WSGI queue says which "
                   "service.",
                   "cps",
                   [target(rate("stack_host_tcp_listen_overflows_total"),
                           "overflows {{instance}}"),
                    target(rate("stack_host_tcp_listen_drops_total"), "drops {{instance}}")],
                   min=0),
    ]


def overview():
    mem_total = sel("stack_host_memory_total_bytes")
    panels = [
        # One row per server picked ($instance): on H4's three servers, each its own line.
        row("Host against the plan: $instance", repeat="instance"),
        stat("Plan profile",
             "The exporter's active plan profile (vps-2gb, dev, staging, production, ...): every "
             "budget and expected count on these dashboards comes from it (M8, H1-H4).",
             "none", [target(sel("stack_plan_info"), table=True)], w=4,
             fields="/^profile$/", color_mode="none"),
        stat("Host memory used",
             "MemTotal - MemAvailable as a share of MemTotal. A1 alerts above %s; S1 scales up "
             "(vertical: 4 GB RAM, 4 cores) when it stays above %s." % (pct(A1), pct(S1)),
             "percentunit", [target(sel("instance:stack_host_memory_used:ratio"), "{{instance}}")],
             thresholds=steps("green", A1, "orange", S1, "red"), decimals=1),
        stat("CPU busy",
             "Share of all cores busy (not idle, not iowait), 5-minute rate. A2 alerts above %s "
             "for more than 5 minutes; S2 scales up when it stays above %s." % (pct(A2), pct(S2)),
             "percentunit",
             [target(sel("instance:stack_host_cpu_busy:ratio_rate5m"), "{{instance}}")],
             thresholds=steps("green", A2, "red"), decimals=1),
        stat("Fullest filesystem",
             "Used share of the fullest real filesystem (space left to unprivileged users). A3 "
             "alerts and S3 scales up above %s; D1 plans 12-30 GB on a 50 GB disk." % pct(A3),
             "percentunit",
             [target("max by (instance) (%s)" % sel("instance:stack_host_filesystem_used:ratio"),
                     "{{instance}}")],
             thresholds=steps("green", A3, "red"), decimals=1),
        stat("Swap configured vs plan",
             "SwapTotal as a share of the swap the plan prescribes (C7, M9: a 2 GB swap file "
             "\"for safety\"). Green from %s to %s of it, where the StackSwapDrift alert is "
             "quiet." % (pct(C7_LOW), pct(C7_HIGH)),
             "percentunit",
             [target("%s / on (instance, job) %s" % (sel("stack_host_swap_total_bytes"),
                                                      sel("stack_plan_swap_bytes")),
                     "{{instance}}")],
             thresholds=steps("red", C7_LOW, "green", C7_HIGH, "red"), decimals=0),
        stat("Alerts firing",
             "Stack* alerts firing now (A1-A5 and the S, W, X, P, M, H, C rows behind them); "
             "the table at the bottom lists them.",
             "none",
             [target('count(%s) or vector(0)'
                     % sel("ALERTS", 'alertstate="firing", alertname=~"Stack.*"'),
                     "firing", instant=True)],
             thresholds=steps("green", 1, "red")),
        stat("Planned services up",
             "1 when at least one process of the service runs. Only services the active profile "
             "plans; A5 alerts when one is down.",
             "none",
             [target("%s and on (instance, job, service) %s"
                     % (sel("stack_service_up"), sel("stack_service_expected_instances")),
                     "{{service}}")],
             w=6, h=8, thresholds=steps("red", 1, "green"), mappings=up_mappings(),
             text_mode="value_and_name"),
        bargauge("Service memory: share of budget",
                 "Each service's PSS (all instances, shared pages of forked workers counted once) "
                 "as a share of its budget from the profile (M2-M7, H1-H4). Past %s the "
                 "service is outside the plan; %s is where X3 adds an ASGI container."
                 % (pct(M_BUDGET), pct(X3)),
                 "percentunit",
                 [target(sel("service:stack_service_memory_budget_used:ratio"), "{{service}}")],
                 w=9, h=8, thresholds=steps("green", X3, "orange", M_BUDGET, "red"), max=1.25),
        stat("Collectors OK",
             "1 when the collector ran to the end in the last scrape. A failed collector leaves "
             "its rows unmeasured: host (A1-A3), services (A5, M, H), databases (A4, P3).",
             "none", [target(sel("stack_scrape_collector_success"), "{{collector}}")],
             w=5, h=8, thresholds=steps("red", 1, "green"),
             mappings=up_mappings("FAILED", "ok"), text_mode="value_and_name"),
        stat("Memory the plan leaves free",
             "Host RAM minus every memory budget of the profile and its system allowance: the "
             "plan's buffer (M8: 160-360 MB on vps-2gb; headroom on H2, H3). Below zero the plan "
             "does not fit this host even before anything runs.",
             "bytes", [target(sel("instance:stack_plan_memory_unallocated:bytes"), "{{instance}}")],
             w=4, h=8, thresholds=steps("red", 0, "green"), text_mode="value"),
        timeseries("Host memory: used vs total",
                   "Used = MemTotal - MemAvailable. Dashed: A1 alert line at %s of total, S1 "
                   "scale-up line at %s of total, and the RAM the plan assumes (M8, H1-H4)."
                   % (pct(A1), pct(S1)),
                   "bytes",
                   [target("%s - %s" % (mem_total, sel("stack_host_memory_available_bytes")),
                           "used {{instance}}"),
                    target(mem_total, "total {{instance}}"),
                    ref("%g * %s" % (A1, mem_total), "A1 alert: %s of total" % pct(A1), "orange"),
                    ref("%g * %s" % (S1, mem_total), "S1 scale up: %s of total" % pct(S1), "red"),
                    ref(sel("stack_plan_host_memory_bytes"), "plan: host RAM (M8, H)", "blue")],
                   min=0),
        timeseries("CPU busy vs %s" % pct(A2),
                   "Share of all cores busy, 5-minute rate. Dashed line at %s: A2 alerts after "
                   "5 minutes above it; S2 scales up (vertical: 4 GB RAM, 4 cores; or horizontal) "
                   "when it stays above %s." % (pct(A2), pct(S2)),
                   "percentunit",
                   [target(sel("instance:stack_host_cpu_busy:ratio_rate5m"), "{{instance}}")],
                   thresholds=steps("green", A2, "red"), min=0, max=1),
        timeseries("Disk used per filesystem",
                   "Used share of each real filesystem. Dashed line at %s: A3 alerts, S3 "
                   "scales up. D1 plans 12-30 GB of use on a 50 GB disk (24-60 %%)." % pct(A3),
                   "percentunit",
                   [target(sel("instance:stack_host_filesystem_used:ratio"),
                           "{{mountpoint}} {{instance}}")],
                   thresholds=steps("green", A3, "red"), min=0, max=1),
        timeseries("Swap: used vs configured and planned",
                   "Swap in use and configured. Dashed: the swap the plan prescribes (C7, M9: "
                   "2 GB \"for safety\"). Swap in steady use means memory is short (A1, S1).",
                   "bytes",
                   [target("%s - %s" % (sel("stack_host_swap_total_bytes"),
                                        sel("stack_host_swap_free_bytes")), "used {{instance}}"),
                    target(sel("stack_host_swap_total_bytes"), "configured {{instance}}"),
                    ref(sel("stack_plan_swap_bytes"), "plan: swap (C7)", "blue")],
                   min=0),
        timeseries("Memory by service vs host and plan",
                   "Stacked: each watched service's PSS and everything else (OS and unwatched "
                   "processes, M1). Dashed: host RAM and the sum of every budget the plan hands "
                   "out (M8, H1-H4). Does the box still fit the plan?",
                   "bytes",
                   [target(sel("stack_service_proportional_memory_bytes"), "{{service}}"),
                    target(sel("stack_system_memory_bytes"), "system (everything else)"),
                    ref(mem_total, "host RAM", "red"),
                    ref(sel("instance:stack_plan_memory_budget:sum"), "plan: all budgets (M8)",
                        "blue")],
                   stack=True, min=0),
        timeseries("System memory vs allowance",
                   "Memory used outside the watched services (OS, sshd, cron ...; the monitoring "
                   "stack has its own panel). Dashed: the plan's allowance for it (M1: 200-300 MB "
                   "on vps-2gb; H2, H3: the OS's 512 MiB of the hybrid profiles' headroom).",
                   "bytes",
                   [target(sel("stack_system_memory_bytes"), "system {{instance}}"),
                    ref(sel("stack_system_memory_budget_bytes"), "plan: system allowance (M1)")],
                   min=0),
        timeseries("Monitoring stack memory vs its budget",
                   "PSS of the service `monitoring` (Prometheus, Alertmanager, Grafana, "
                   "stack_exporter, peer exporters, log shippers). Dashed: its budget in the "
                   "profile (K3): staging and production, their headroom \"for OS and "
                   "monitoring\" less the OS's 512 MiB; vps-2gb, 160 MiB of the plan's buffer. "
                   "Over it for 15m: StackMonitoringMemoryOverPlan.",
                   "bytes",
                   [target(sel("stack_service_proportional_memory_bytes", 'service="monitoring"'),
                           "monitoring {{instance}}"),
                    ref(sel("stack_service_memory_budget_bytes", 'service="monitoring"'),
                        "plan: monitoring budget (K3)")]),
        timeseries("CPU steal vs %s" % pct(K1),
                   "CPU time the hypervisor took from this guest, share of all cores, 5-minute "
                   "rate. On the plan's burstable t3 instances (K1) sustained steal means the CPU "
                   "credits ran out; dashed at %s, where StackHostCpuSteal warns after 15m."
                   % pct(K1),
                   "percentunit",
                   [target(sel("instance:stack_host_cpu_steal:ratio_rate5m"), "{{instance}}")],
                   w=8, thresholds=steps("green", K1, "red"), min=0),
        stat("Cores: host vs plan",
                   "Online cores as a share of the cores the profile assumes. K1: the plan's own "
                   "t3.large staging has 2 where H2 plans 4, t3.xlarge production 4 where H3 "
                   "plans 8; below 100 % the host is smaller than the plan.",
                   "percentunit",
                   [target("%s / on (instance, job) %s" % (sel("stack_host_cpu_cores"),
                                                            sel("stack_plan_host_cpu_cores")),
                           "{{instance}}")],
                   w=4, h=8, thresholds=steps("red", 1, "green"), decimals=0),
        *host_devices(),
        *failures(),
        row("Alerts"),
        table("Firing alerts",
              "Every firing Stack* alert with its severity and plan_ref (the THRESHOLDS.md rows: "
              "A1-A5, S, W, X, P, M, H, C). Alerts whose expression drops the job or instance "
              "label do not match the variables and are not listed.",
              [target(sel("ALERTS", 'alertstate="firing", alertname=~"Stack.*"'), table=True)],
              {"alertname": ("Alert", None, {}), "severity": ("Severity", None, {}),
               "plan_ref": ("Plan rows", None, {}), "instance": ("Instance", None, {}),
               "service": ("Service", None, {})},
              hidden=("__name__", "alertstate", "Value"), h=8),
    ]
    return dashboard("stack-overview", "Stack / Overview",
                     "Does the box still fit the plan: host memory, CPU, disk and swap against the "
                     "plan's alert and scale-up lines, every service against its memory budget, "
                     "services up, the failures averages miss (OOM kills, restarts, stalls, swap "
                     "traffic, listen overflows), firing alerts.", panels)


# ---------------------------------------------------------------------------------------------
# Services: which service is over its budget?


def services():
    svc = 'service=~"$service"'

    def s(metric):
        return sel(metric, svc)

    def by_service(metric):
        return "max by (instance, job, service) (%s)" % s(metric)

    summary = table(
        "Services against the plan",
        "One row per watched service: running instances and processes against the counts the "
        "plan implies (A5, C3, C4, H1-H4), PSS against the memory budget (M2-M7, H1-H4), CPU "
        "against the core budget (H2-H4, W1): orange from %s (X3 adds an ASGI container), red "
        "past %s. Swap: the service's pages in swap, which PSS leaves out (M9, C7). Starts in "
        "1 h: instances seen starting in the last hour, red from %g; above it "
        "StackServiceRestartLoop pages (A5: a crash loop is up at every scrape). Budget and "
        "expected columns are empty for services the profile does not plan."
        % (pct(X3), pct(M_BUDGET), A5_RESTARTS),
        [target(by_service("stack_service_up"), table=True),
         target(by_service("stack_service_instances"), table=True),
         target(by_service("stack_service_expected_instances"), table=True),
         target(by_service("stack_service_processes"), table=True),
         target(by_service("stack_service_expected_processes"), table=True),
         target(by_service("stack_service_proportional_memory_bytes"), table=True),
         target(by_service("stack_service_memory_budget_bytes"), table=True),
         target(by_service("service:stack_service_memory_budget_used:ratio"), table=True),
         target(by_service("service:stack_service_cpu:rate5m"), table=True),
         target(by_service("stack_service_cpu_budget_cores"), table=True),
         target(by_service("stack_service_pss_fallback_processes"), table=True),
         target(by_service("stack_service_swap_bytes"), table=True),
         target("max by (instance, job, service) (increase(%s[1h]))"
                % s("stack_service_instance_starts_total"), table=True)],
        {
            "service": ("Service", None, {}),
            "instance": ("Host", None, {}),
            "Value #A": ("Up", "none", {"mappings": up_mappings(),
                                        "custom.cellOptions": {"type": "color-text"}}),
            "Value #B": ("Instances", "none", {}),
            "Value #C": ("Planned instances", "none", {}),
            "Value #D": ("Processes", "none", {}),
            "Value #E": ("Planned processes per instance", "none", {}),
            "Value #F": ("PSS", "bytes", {}),
            "Value #G": ("Memory budget", "bytes", {}),
            "Value #H": ("Share of budget", "percentunit", {
                "custom.cellOptions": {"type": "color-background"},
                "color": {"mode": "thresholds"},
                "thresholds": steps("green", X3, "orange", M_BUDGET, "red")}),
            "Value #I": ("CPU (cores, 5m)", "none", {"decimals": 2}),
            "Value #J": ("CPU budget (cores)", "none", {}),
            "Value #K": ("Processes at RSS (no PSS)", "none", {}),
            "Value #L": ("Swap", "bytes", {}),
            "Value #M": ("Starts in 1 h", "none", {
                "decimals": 0, "custom.cellOptions": {"type": "color-text"},
                "color": {"mode": "thresholds"},
                "thresholds": steps("green", A5_RESTARTS, "red")}),
        }, h=9)

    panels = [
        summary,
        row("$service", repeat="service"),
        timeseries("$service memory: PSS, swap and RSS vs budget",
                   "PSS counts pages shared by forked workers once; RSS counts them in every "
                   "process. Swap is the service's pages in swap (SwapPss), which PSS leaves "
                   "out: a service pushed into swap looks within budget by PSS alone, so the "
                   "budget share adds them (M9, C7: the plan's swap is for safety). Dashed: the "
                   "service's memory budget for all instances, from the "
                   "profile (M2-M7 on vps-2gb, H1-H4 on the hybrid profiles), and what the "
                   "memory warning holds it to: the budget, or for MySQL what its configuration "
                   "implies where that is more (M2 budgets the buffer pool alone).",
                   "bytes",
                   [target(s("stack_service_proportional_memory_bytes"), "PSS {{instance}}"),
                    target(s("stack_service_swap_bytes"), "swap {{instance}}"),
                    target(s("stack_service_resident_memory_bytes"), "RSS {{instance}}"),
                    ref(s("stack_service_memory_budget_bytes"), "budget (M, H)"),
                    ref(s("service:stack_service_memory_budget_effective:bytes"),
                        "held to (M2: MySQL's configured memory)", "orange")],
                   min=0),
        timeseries("$service largest instance and process vs their budgets",
                   "PSS of the largest instance (a container, one process tree) against the "
                   "per-instance budget (H2-H4), with the X3 line at %s of it (ASGI: add 1 ASGI "
                   "container); PSS of the largest process against the per-process budget (M4: "
                   "300 MB per Gunicorn worker)." % pct(X3),
                   "bytes",
                   [target(s("stack_service_instance_max_memory_bytes"), "largest instance"),
                    ref(s("stack_service_instance_memory_budget_bytes"), "per-instance budget (H)"),
                    ref("%g * %s" % (X3, s("stack_service_instance_memory_budget_bytes")),
                        "X3: %s of per-instance budget" % pct(X3), "orange"),
                    target(s("stack_service_process_max_memory_bytes"), "largest process"),
                    ref(s("stack_service_process_memory_budget_bytes"), "per-process budget (M4)",
                        "purple")],
                   min=0),
        timeseries("$service CPU vs budget",
                   "Cores used by the service's processes (5-minute rate). Dashed: its core "
                   "budget (H2-H4), the W1 line at %s of it (WSGI: add 1 WSGI container), and "
                   "the host's cores where the profile gives no budget (vps-2gb)." % pct(W1),
                   "short",
                   [target(s("service:stack_service_cpu:rate5m"), "cores used"),
                    ref(s("stack_service_cpu_budget_cores"), "budget (H)"),
                    ref("%g * %s" % (W1, s("stack_service_cpu_budget_cores")),
                        "W1: %s of budget" % pct(W1), "orange"),
                    ref(sel("stack_host_cpu_cores"), "host cores", "blue")],
                   min=0, decimals=2),
        timeseries("$service processes and instances vs plan",
                   "Running processes and instances (process trees, containers). Dashed: the "
                   "instances the plan runs (A5, H1-H4) and the processes it implies in all "
                   "(C3: Gunicorn master + 2 workers; C4: one Celery --pool=solo process).",
                   "short",
                   [target(s("stack_service_processes"), "processes"),
                    target(s("stack_service_instances"), "instances"),
                    ref(s("stack_service_expected_instances"), "planned instances (A5, H)",
                        "blue"),
                    ref("%s * on (instance, job, service) %s"
                        % (s("stack_service_expected_processes"),
                           s("stack_service_expected_instances")),
                        "planned processes (C3, C4)")],
                   min=0, decimals=0),
        timeseries("$service starts in the last hour vs %g" % A5_RESTARTS,
                   "Instances (process trees) of the service seen starting in the last hour: "
                   "a restart by systemd or Docker between two scrapes counts (new PID and start "
                   "time), a worker its master respawns does not, nor an instance running at "
                   "the exporter's first scrape. A crash loop is up at every scrape, so A5's up "
                   "stays green; dashed at %g, above which StackServiceRestartLoop pages while "
                   "the service is up (a deploy restarts once, a change and its rollback twice)."
                   % A5_RESTARTS,
                   "short",
                   [target("increase(%s[1h])" % s("stack_service_instance_starts_total"),
                           "starts {{instance}}")],
                   thresholds=steps("green", A5_RESTARTS, "red"), min=0, decimals=1),
    ]
    service_var = query_var(
        "service", 'label_values(stack_service_up{job=~"$job", instance=~"$instance"}, service)')
    return dashboard("stack-services", "Stack / Services",
                     "Which service is over its budget: each service's RSS and PSS against its "
                     "memory budget, its largest instance and process against theirs, CPU "
                     "against its core budget, processes and instances against the plan.",
                     panels, extra_vars=(service_var,))


# ---------------------------------------------------------------------------------------------
# Databases and Redis


def per_target_rate(metric):
    return "sum by (instance, target) (%s)" % rate(metric)


def databases():
    panels = [
        row("MySQL / MariaDB and PostgreSQL"),
        stat("Databases and Redis answering",
             "1 when the exporter's last query round to the target succeeded. A5: the database "
             "and Redis are planned services; DOWN here with the process up means refused "
             "connections or a broken grant.",
             "none",
             [target(sel("stack_mysql_up"), "MySQL {{target}}"),
              target(sel("stack_postgres_up"), "PostgreSQL {{target}}"),
              target(sel("stack_redis_up"), "Redis {{target}}")],
             w=8, thresholds=steps("red", 1, "green"), mappings=up_mappings(),
             text_mode="value_and_name"),
        stat("Connection pool used",
             "Open connections as a share of the plan's ceiling (P6: max 20 concurrent). A4 "
             "alerts when the pool is exhausted (%s)." % pct(A4),
             "percentunit",
             [target(sel("target:stack_database_pool_used:ratio"), "{{dbms}} {{target}}")],
             w=8, thresholds=steps("green", A4, "red"), text_mode="value_and_name"),
        stat("Database size",
             "Data and index size of all databases of the target. D2 plans 1-5 GB (binary, like "
             "the profiles: 5 GiB); beyond it the storage plan (D1, D4 backups) no longer holds.",
             "bytes",
             [target(sel("target:stack_database_size_bytes:sum"), "{{dbms}} {{target}}")],
             w=8, thresholds=steps("green", D2, "red"), text_mode="value_and_name"),
        stat("Planned datastores answering from elsewhere",
             "1 for a datastore the profile plans on this host that answered within the last "
             "day while none of its processes ran here: managed (K2: RDS PostgreSQL, ElastiCache "
             "Redis), another server, or Docker Desktop's VM on the Windows dev machine (H0). "
             "A5's service-down alert is silent for it; its outage shows as DOWN above. Empty: "
             "every planned datastore runs here.",
             "none",
             [target("%s and on (instance, job, service) %s"
                     % (sel("service:stack_datastore_remote:max1d"),
                        sel("stack_service_expected_instances")),
                     "{{service}} {{instance}}")],
             w=24, h=3, thresholds=steps("blue"),
             mappings=[{"type": "value", "options": {"1": {"text": "elsewhere", "color": "blue", "index": 0}}}],
             text_mode="value_and_name"),
        timeseries("Connections vs pool ceiling",
                   "Open connections (MySQL Threads_connected; PostgreSQL backends in every "
                   "state). Dashed: the plan's ceiling (P6: max 20 concurrent; A4 alerts when it "
                   "is reached) and each server's own max_connections.",
                   "short",
                   [target(sel("target:stack_database_connections:count"), "{{dbms}} {{target}}"),
                    target(sel("stack_mysql_max_used_connections"),
                           "MySQL max used since start {{target}}"),
                    ref(sel("stack_plan_database_pool_connections"), "plan: pool ceiling (P6)"),
                    ref(sel("stack_mysql_max_connections"), "MySQL max_connections", "blue"),
                    ref(sel("stack_postgres_max_connections"), "PostgreSQL max_connections",
                        "blue")],
                   min=0, decimals=0),
        timeseries("Connections by state",
                   "PostgreSQL backends by state and MySQL threads running a query. Many idle in "
                   "transaction backends hold pool slots without doing work (A4, P6).",
                   "short",
                   [target("sum by (state) (%s)" % sel("stack_postgres_connections"),
                           "PostgreSQL {{state}}"),
                    target(sel("stack_mysql_connections_running"), "MySQL running {{target}}")],
                   stack=True, min=0, decimals=0),
        timeseries("Mean statement latency vs %s" % secs(P3),
                   "Total statement time / statements, 5-minute rate (performance_schema, "
                   "pg_stat_statements). P3 targets a p95 below %s (dashed); the mean is "
                   "below the p95, so a mean above the line means P3 is missed for certain."
                   % secs(P3),
                   "s",
                   [target(sel("target:stack_database_statement_latency_seconds:mean_rate5m"),
                           "{{dbms}} {{target}}")],
                   thresholds=steps("green", P3, "red"), min=0),
        timeseries("Query throughput and slow queries",
                   "MySQL questions and slow queries (over long_query_time, P3) per second; "
                   "PostgreSQL commits and rollbacks per second. Compare with the request rate "
                   "the plan is sized for (P5: 10-50 req/s).",
                   "ops",
                   [target(per_target_rate("stack_mysql_questions_total"), "MySQL questions"),
                    target(per_target_rate("stack_mysql_slow_queries_total"),
                           "MySQL slow queries (P3)"),
                    target(per_target_rate("stack_postgres_commits_total"), "PostgreSQL commits"),
                    target(per_target_rate("stack_postgres_rollbacks_total"),
                           "PostgreSQL rollbacks")],
                   min=0),
        timeseries("InnoDB buffer pool vs plan",
                   "innodb_buffer_pool_size and the data in it. Dashed: the plan's MySQL budget "
                   "(C2, M2: innodb_buffer_pool_size = 512M on vps-2gb); a pool that differs "
                   "from it is configuration drift.",
                   "bytes",
                   [target(sel("stack_mysql_innodb_buffer_pool_size_bytes"),
                           "buffer pool size {{target}}"),
                    target(sel("stack_mysql_innodb_buffer_pool_data_bytes"),
                           "data in buffer pool {{target}}"),
                    ref(sel("stack_service_memory_budget_bytes", 'service="mysql"'),
                        "plan: MySQL budget (C2, M2)"),
                    ref(sel("target:stack_mysql_configured_memory:bytes"),
                        "configured: pool + buffers + performance_schema + 20 connections",
                        "orange")],
                   min=0),
        timeseries("PostgreSQL buffer cache hit ratio",
                   "Blocks found in shared buffers / all blocks read, per target. PostgreSQL's "
                   "memory is planned at 200 MB-8 GB (H1-H4); a falling ratio means its working "
                   "set no longer fits that share.",
                   "percentunit",
                   [target("%s / (%s + %s)" % (per_target_rate("stack_postgres_blocks_hit_total"),
                                               per_target_rate("stack_postgres_blocks_hit_total"),
                                               per_target_rate("stack_postgres_blocks_read_total")),
                           "{{target}}")],
                   max=1),
        timeseries("Database size vs %s" % gib(D2),
                   "Size of each database (data + indexes). Dashed: %s, where "
                   "StackDatabaseSizeOverPlan says the plan's 1-5 GB (D2) is outgrown; backups "
                   "grow with it (D4: one backup 100-500 MB compressed)." % gib(D2),
                   "bytes",
                   [target("sum by (instance, target, database) (%s)"
                           % sel("stack_mysql_database_size_bytes"),
                           "MySQL {{target}} {{database}}"),
                    target("sum by (instance, target, database) (%s)"
                           % sel("stack_postgres_database_size_bytes"),
                           "PostgreSQL {{target}} {{database}}")],
                   thresholds=steps("green", D2, "red"), min=0),
        timeseries("InnoDB buffer pool hit ratio vs %s" % pct(C2_HIT),
                   "Share of InnoDB page reads the buffer pool served without reading the disk, "
                   "over 30 minutes (a nightly dump or a cold start reads past the pool for "
                   "minutes). Does C2's innodb_buffer_pool_size = 512M (M2) suffice? Dashed at "
                   "%s: below it for 30m, with more than %g page reads a second (an idle server "
                   "reads few pages, mostly from disk), StackMysqlBufferPoolHitRatioLow warns."
                   % (pct(C2_HIT), C2_MIN_READS),
                   "percentunit",
                   [target(sel("target:stack_mysql_innodb_buffer_pool_hit:ratio_rate30m"),
                           "{{target}}")],
                   thresholds=steps("red", C2_HIT, "green"), max=1),
        timeseries("MySQL temporary tables on disk vs %s" % pct(P3_TMP_DISK),
                   "Share of the internal temporary tables of queries (GROUP BY, DISTINCT, "
                   "ORDER BY on large results, TEXT columns) written to disk, over 1 hour: each "
                   "is a slow statement (P3). Dashed at %s: above it for 15m, with more than "
                   "%g a second on disk, StackMysqlTmpDiskTablesHigh warns."
                   % (pct(P3_TMP_DISK), P3_TMP_DISK_RATE),
                   "percentunit",
                   [target(sel("target:stack_mysql_tmp_tables_on_disk:ratio_rate1h"),
                           "{{target}}")],
                   thresholds=steps("green", P3_TMP_DISK, "red"), min=0, max=1),
        timeseries("Deadlocks and row lock waits vs %g a minute" % P3_DEADLOCKS,
                   "Deadlocks a minute (5-minute rate; InnoDB and PostgreSQL) and InnoDB row "
                   "lock waits a minute. Each deadlock rolls a transaction back (a failed "
                   "request or a retried task) and the waits before it slow every statement "
                   "involved (P3). Dashed at %g a minute: above it for 5m StackDatabaseDeadlocks "
                   "warns: a steady stream is a bug in the order rows are locked." % P3_DEADLOCKS,
                   "opm",
                   [target("60 * %s" % sel("target:stack_database_deadlocks:rate5m"),
                           "{{dbms}} deadlocks {{target}}"),
                    target("60 * %s" % per_target_rate("stack_mysql_innodb_row_lock_waits_total"),
                           "MySQL row lock waits {{target}}")],
                   thresholds=steps("green", P3_DEADLOCKS, "red"), min=0, w=24),
        row("Failures: refusals and restarts"),
        timeseries("Connections refused in the last 5 minutes",
                   "MySQL connections refused because max_connections was reached, MySQL "
                   "connections dropped without closing (Aborted_clients: a killed client, "
                   "wait_timeout, the network) and Redis connections refused at maxclients. A "
                   "burst between two scrapes that the sampled connection count misses shows "
                   "here: A4/P6's pool exhausted, with clients failing. Any MySQL refusal: "
                   "StackDatabaseConnectionsRefused; any Redis one: StackRedisConnectionsRefused "
                   "(A5). PostgreSQL counts no refusals (its log says \"too many clients "
                   "already\"). MariaDB counts only those refused before the handshake.",
                   "short",
                   [target("sum by (instance, target) (increase(%s[5m]))"
                           % sel("stack_mysql_connection_errors_max_connections_total"),
                           "MySQL refused at max_connections {{target}}"),
                    target("sum by (instance, target) (increase(%s[5m]))"
                           % sel("stack_mysql_aborted_clients_total"),
                           "MySQL aborted clients {{target}}"),
                    target("sum by (instance, target) (increase(%s[5m]))"
                           % sel("stack_redis_rejected_connections_total"),
                           "Redis refused at maxclients {{target}}")],
                   min=0, decimals=0, w=8),
        timeseries("Database and Redis restarts in the last hour vs %g" % A5_DB_RESTARTS,
                   "Restarts of each server in the last hour: MySQL's Uptime and Redis's "
                   "uptime_in_seconds dropping, PostgreSQL's postmaster start time changing. A "
                   "server that keeps restarting is up at nearly every scrape (A5). Dashed at "
                   "%g: above it StackDatabaseRestarted or StackRedisRestarted pages for a "
                   "server that does not run here (a local one is StackServiceRestartLoop's, "
                   "Services dashboard)." % A5_DB_RESTARTS,
                   "short",
                   [target("resets(%s[1h])" % sel("stack_mysql_uptime_seconds"),
                           "MySQL {{target}}"),
                    target("changes(%s[1h])" % sel("stack_postgres_start_time_seconds"),
                           "PostgreSQL {{target}}"),
                    target("resets(%s[1h])" % sel("stack_redis_uptime_seconds"),
                           "Redis {{target}}")],
                   thresholds=steps("green", A5_DB_RESTARTS, "red"), min=0, decimals=0, w=8),
        stat("Uptime",
             "Time since each server started (MySQL Uptime, PostgreSQL's postmaster start time, "
             "Redis uptime_in_seconds). Minutes here while A5's up stayed green: it restarted "
             "(the OOM killer, a crash; `systemctl status` says which).",
             "dtdurations",
             [target(sel("stack_mysql_uptime_seconds"), "MySQL {{target}}", instant=True),
              target("time() - %s" % sel("stack_postgres_start_time_seconds"),
                     "PostgreSQL {{target}}", instant=True),
              target(sel("stack_redis_uptime_seconds"), "Redis {{target}}", instant=True)],
             w=8, h=8, thresholds=steps("blue"), text_mode="value_and_name"),
        row("Redis and Celery queues"),
        timeseries("Redis memory vs budget and maxmemory",
                   "used_memory and RSS. Dashed: Redis's budget from the profile (M3: 128 MB on "
                   "vps-2gb) and maxmemory (C1). On vps-2gb the plan contradicts itself: budget "
                   "128 MB, maxmemory 512mb, so Redis may outgrow its budget before it evicts.",
                   "bytes",
                   [target(sel("stack_redis_memory_used_bytes"), "used {{target}}"),
                    target(sel("stack_redis_memory_rss_bytes"), "RSS {{target}}"),
                    ref(sel("stack_service_memory_budget_bytes", 'service="redis"'),
                        "plan: Redis budget (M3)"),
                    ref("%s > 0" % sel("stack_redis_maxmemory_bytes"), "maxmemory {{target}} (C1)",
                        "orange")],
                   min=0),
        stat("Redis eviction policy",
             "maxmemory-policy of each target: green when it is the plan's allkeys-lru (C1), red "
             "otherwise (noeviction makes writes fail once maxmemory is reached).",
             "none",
             [target("(%s) or (0 * %s)"
                     % (sel("stack_redis_maxmemory_policy_info", 'policy="allkeys-lru"'),
                        sel("stack_redis_maxmemory_policy_info")),
                     "{{target}}: {{policy}}")],
             w=6, h=8, thresholds=steps("red", 1, "green"), text_mode="name"),
        stat("Redis maxmemory",
             "The maxmemory limit of each target. C1 wants a limit set (red when 0, no limit); "
             "M3 budgets 128 MB while the same plan writes maxmemory 512mb.",
             "bytes",
             [target(sel("stack_redis_maxmemory_bytes"), "{{target}}")],
             w=6, h=8, thresholds=steps("red", 1, "green"),
             mappings=[{"type": "value", "options": {"0": {"text": "no limit", "color": "red"}}}],
             text_mode="value_and_name"),
        timeseries("Redis evictions and expirations",
                   "Keys evicted because of maxmemory and keys expired, per second. Steady "
                   "evictions under allkeys-lru (C1) mean the cache is smaller than its working "
                   "set (M3: budget 128 MB).",
                   "ops",
                   [target("sum by (instance, target) (%s)" % rate("stack_redis_evicted_keys_total"),
                           "evicted {{target}}"),
                    target("sum by (instance, target) (%s)" % rate("stack_redis_expired_keys_total"),
                           "expired {{target}}")],
                   min=0),
        timeseries("Redis keyspace hit ratio",
                   "Hits / (hits + misses) of key lookups. The plan uses Redis as a cache to take "
                   "load off the database (M3); a low ratio means it does little of that.",
                   "percentunit",
                   [target("%s / (%s + %s)"
                           % (per_target_rate("stack_redis_keyspace_hits_total"),
                              per_target_rate("stack_redis_keyspace_hits_total"),
                              per_target_rate("stack_redis_keyspace_misses_total")),
                           "{{target}}")],
                   max=1),
        timeseries("Celery queue lengths",
                   "Tasks waiting in each configured Celery queue (a Redis list). The plan runs "
                   "one --pool=solo worker (C4, M5); a queue that keeps growing means it cannot "
                   "keep up, and inference slower than %s (P4) makes that likely." % secs(P4),
                   "short",
                   [target(sel("stack_redis_queue_length"), "{{queue}} ({{target}})")],
                   min=0, decimals=0),
        stat("Redis persistence",
             "Whether Redis's last BGSAVE and its last append-only file write succeeded (the "
             "latter only while AOF is on). FAILED: Redis refuses writes (MISCONF) where save "
             "points are set, so Celery stops enqueuing (A5), and the snapshot a backup copies "
             "is stale (D4); on 2 GB a fork that fails under memory pressure is the usual "
             "cause. StackRedisBgsaveFailed and StackRedisAofWriteFailed page after 2m.",
             "none",
             [target(sel("stack_redis_rdb_last_bgsave_success"), "BGSAVE {{target}}"),
              target(sel("stack_redis_aof_last_write_success"), "AOF write {{target}}")],
             w=6, h=8, thresholds=steps("red", 1, "green"),
             mappings=up_mappings("FAILED", "ok"), text_mode="value_and_name"),
        stat("Redis last snapshot age vs %s" % hours(D4_SAVE_AGE),
             "Time since Redis last saved a snapshot (or started). Orange past %s: with "
             "writes pending and save points set, StackRedisNotPersisting warns after 15m "
             "(a restart would lose them; backups, D4, copy a stale file). A Redis without save "
             "points (a cache that persists nothing on purpose) grows old here by design."
             % hours(D4_SAVE_AGE),
             "dtdurations",
             [target("time() - %s" % sel("stack_redis_rdb_last_save_timestamp_seconds"),
                     "{{target}}", instant=True)],
             w=6, h=8, thresholds=steps("green", D4_SAVE_AGE, "orange"),
             text_mode="value_and_name"),
    ]
    return dashboard("stack-databases", "Stack / Databases & Redis",
                     "MySQL/MariaDB and PostgreSQL (panels show whichever is present) and Redis: "
                     "connections against the plan's pool of 20, statement latency against "
                     "%s, buffer pool, database size against 1-5 GB, Redis memory against its "
                     "budget and maxmemory, evictions, Celery queues; refusals, deadlocks, buffer "
                     "pool hit ratio, restarts and Redis persistence." % secs(P3), panels)


# ---------------------------------------------------------------------------------------------
# Traffic and scaling: should I scale, and how?

# (ID, signal, expression in the threshold's unit, that unit, alert, action). The threshold is
# the alert's (scale_threshold), the action must be its `action` annotation (check_actions).
# The expressions use the same windows as the alerts in rules/traffic.yml and rules/host.yml:
# "consistently" (S) = 1-hour figures, "sustained" (W, X) = 5-minute figures.
VERTICAL = "vertical: 4 GB RAM, 4 cores"
HORIZONTAL = "horizontal: load balancer + app servers"
SCALING = [
    ("S1", "host memory used, 1 h average (%)",
     "100 * avg_over_time(%s[1h])" % sel("instance:stack_host_memory_used:ratio"),
     "%", "StackHostMemoryScaleUp", VERTICAL),
    ("S2", "host CPU busy, 1 h average (%)",
     "100 * avg_over_time(%s[1h])" % sel("instance:stack_host_cpu_busy:ratio_rate5m"),
     "%", "StackHostCpuScaleUp", VERTICAL + "; or " + HORIZONTAL),
    ("S3", "fullest filesystem used (%)",
     "100 * %s" % sel("instance:stack_host_filesystem_used:ratio"),
     "%", "StackHostFilesystemUsageHigh",
     "scale up (the plan names no option for disk; D3, D4: rotate logs, prune backups)"),
    ("S4", "response time p95, last hour (s)",
     sel("instance:stack_nginx_http_request_duration_seconds:p95_1h"),
     "s", "StackResponseTimeScaleUp", VERTICAL + "; or " + HORIZONTAL),
    ("S5", "concurrent users, 1 h average",
     "avg_over_time(%s[1h])" % sel("stack_nginx_recent_clients"),
     "", "StackConcurrentUsersScaleOut", HORIZONTAL),
    ("W1", "WSGI CPU, share of its cores (%)",
     "100 * %s" % sel("service:stack_service_cpu_budget_used:ratio_rate5m", 'service="wsgi"'),
     "%", "StackWsgiScaleOutCpu", "add 1 WSGI container"),
    ("W2", "WSGI upstream response time p95 (s)",
     sel("route:stack_nginx_upstream_response_duration_seconds:p95_5m", 'route="wsgi"'),
     "s", "StackWsgiScaleOutLatency", "add 1 WSGI container"),
    ("W3", "WSGI request queue depth, 5 m average",
     "sum by (instance, job) (avg_over_time(%s[5m]))"
     % sel("stack_service_listen_queue_length", 'service="wsgi"'),
     "", "StackWsgiScaleOutQueue", "add 1 WSGI container"),
    ("X1", "ASGI connections, busiest container",
     "avg_over_time(%s[5m])" % sel("stack_service_instance_max_connections", 'service="asgi"'),
     " per container", "StackAsgiScaleOutConnections", "add 1 ASGI container"),
    ("X2", "WebSocket latency p95 (s)",
     app_sel("instance:stack_app_websocket_latency_seconds:p95_5m"),
     "s", "StackAsgiScaleOutWebsocketLatency", "add 1 ASGI container"),
    ("X3", "ASGI memory, largest container, share of budget (%)",
     "100 * (%s or on (instance, job, service) %s)"
     % (sel("service:stack_service_instance_memory_budget_used:ratio", 'service="asgi"'),
        sel("service:stack_service_memory_budget_used:ratio", 'service="asgi"')),
     "%", "StackAsgiScaleOutMemory", "add 1 ASGI container"),
]




def scale_threshold(alert, unit):
    """The alert's threshold in the row's unit, and as text: ("StackHostMemoryScaleUp", "%") ->
    (90, "> 90 %")."""
    value = limit(alert)
    if unit == "%":
        return round(100 * value, 6), "> " + pct(value)
    if unit == "s":
        return value, "> " + secs(value)
    return value, "> %g%s" % (value, unit)


def scaling_table():
    def union(make):
        parts = []
        for sid, signal, expr, unit, alert, action in SCALING:
            threshold, text = scale_threshold(alert, unit)
            parts.append(labels("max by (instance) (%s)" % make(expr, threshold, alert),
                                id=sid, signal=signal, threshold=text, action=action))
        return "\n  or\n".join(parts)

    current = union(lambda expr, thr, alert: expr)
    share = union(lambda expr, thr, alert: "(%s) / %g" % (expr, thr))
    # An alert on an app-side series carries the app's job, as its value does.
    firing = union(lambda expr, thr, alert: sel(
        "ALERTS", 'alertname="%s", alertstate="firing"' % alert, app=APP_SEL in expr))
    state = [{"type": "range", "options": {"from": -1e12, "to": 0.9, "result":
                                           {"text": "ok", "color": "green", "index": 0}}},
             {"type": "range", "options": {"from": 0.9, "to": 1, "result":
                                           {"text": "near", "color": "orange", "index": 1}}},
             {"type": "range", "options": {"from": 1, "to": 1e12, "result":
                                           {"text": "over", "color": "red", "index": 2}}}]
    advisory = [{"type": "value", "options": {"1": {"text": "firing: act", "color": "red"}}},
                {"type": "special", "options": {"match": "null", "result": {"text": "-"}}}]
    return table(
        "Scaling signals of the plans",
        "Every scale signal of the two plans (S1-S5 vps-2gb \"When to Scale Up\"; W1-W3, X1-X3 "
        "hybrid \"Scaling Guidelines\") with its current value in the threshold's unit, the "
        "threshold, the state (ok; near: within 10 % of the threshold; over) and the plan's "
        "action in its own words. Advisory shows the Stack* alert of the row once the value has "
        "stayed over for its window (1 h for S, 30 m for W and X). A row is missing where its "
        "signal is not measured (no nginx log, no ASGI service, no app-side WebSocket metric).",
        [target(current, table=True), target(share, table=True), target(firing, table=True)],
        {
            "id": ("ID", None, {}),
            "signal": ("Signal", None, {}),
            "instance": ("Instance", None, {}),
            "Value #A": ("Current", "none", {"decimals": 2}),
            "threshold": ("Threshold", None, {}),
            "Value #B": ("State", "none", {"mappings": state,
                                           "custom.cellOptions": {"type": "color-background"}}),
            "Value #C": ("Advisory", "none", {"mappings": advisory,
                                              "custom.cellOptions": {"type": "color-text"}}),
            "action": ("Plan's action", None, {}),
        }, h=12)


def traffic():
    dur = "stack_nginx_http_request_duration_seconds_bucket"

    def p95(metric, by, extra, app=False):
        return "histogram_quantile(0.95, sum by (%s, le) (%s))" % (by, rate(metric, extra, app))

    panels = [
        scaling_table(),
        row("Traffic"),
        timeseries("Request rate by route",
                   "Requests per second in nginx's access log by route class (static, wsgi, asgi, "
                   "websocket) and in all. The plan is sized for 10-50 req/s (P5); dashed at "
                   "%g req/s, above which StackThroughputAbovePlan says it is outgrown." % P5,
                   "reqps",
                   [target("sum by (route) (%s)" % rate("stack_nginx_http_requests_total"),
                           "{{route}}"),
                    target("sum(%s)" % rate("stack_nginx_http_requests_total"), "all")],
                   thresholds=steps("green", P5, "red"), min=0),
        timeseries("Requests by status class",
                   "Requests per second by HTTP status class, stacked. Errors (5xx) count toward "
                   "the throughput the plan is sized for (P5) but serve nobody.",
                   "reqps",
                   [target("sum by (status_class) (%s)" % rate("stack_nginx_http_requests_total"),
                           "{{status_class}}")],
                   stack=True, min=0),
        timeseries("Concurrent users",
                   "Distinct client addresses in the last 5 minutes (the exporter's estimate of "
                   "concurrent users) and nginx's active connections. The plan expects 10-50 "
                   "users (P5); dashed at %g, above which S5 scales out (horizontal: load "
                   "balancer + app servers)." % S5,
                   "short",
                   [target(sel("stack_nginx_recent_clients"), "distinct clients {{instance}}"),
                    target(sel("stack_nginx_connections", 'state="active"'),
                           "nginx active connections {{instance}}")],
                   thresholds=steps("green", S5, "red"), min=0, w=24),
        row("Response times"),
        timeseries("Static files p95 vs %s" % secs(P2),
                   "95th percentile of nginx's request time for static files. Dashed: the P2 "
                   "target, below %s." % secs(P2),
                   "s", [target(p95(dur, "instance", 'route="static"'), "static {{instance}}")],
                   thresholds=steps("green", P2, "red"), min=0, w=8),
        timeseries("API p95 vs %s" % secs(P1),
                   "95th percentile of the request time of API routes (wsgi, asgi) as nginx sees "
                   "it, and of the upstream's own response time. Dashed: P1 targets below %s; "
                   "W2 adds 1 WSGI container when the wsgi upstream p95 stays above %s."
                   % (secs(P1), secs(W2)),
                   "s",
                   [target(p95(dur, "route", 'route=~"wsgi|asgi"'), "{{route}} (request)"),
                    target(p95("stack_nginx_upstream_response_duration_seconds_bucket", "route",
                               'route=~"wsgi|asgi"'), "{{route}} (upstream)")],
                   thresholds=steps("green", P1, "red"), min=0, w=8),
        timeseries("All requests p95 vs %s" % secs(S4),
                   "95th percentile of every request but WebSockets (their request time is the "
                   "connection's life), and over the last hour. Dashed: S4 scales up when the "
                   "p95 is above %s consistently." % secs(S4),
                   "s",
                   [target(p95(dur, "instance", 'route!="websocket"'), "p95 {{instance}}"),
                    target(sel("instance:stack_nginx_http_request_duration_seconds:p95_1h"),
                           "p95 over the last hour {{instance}}")],
                   thresholds=steps("green", S4, "red"), min=0, w=8),
        row("WSGI and ASGI scaling signals"),
        timeseries("WSGI CPU vs budget",
                   "Cores used by WSGI as a share of its core budget (all host cores where the "
                   "profile gives none). Dashed: W1 adds 1 WSGI container above %s sustained."
                   % pct(W1),
                   "percentunit",
                   [target(sel("service:stack_service_cpu_budget_used:ratio_rate5m",
                               'service="wsgi"'), "wsgi {{instance}}")],
                   thresholds=steps("green", W1, "red"), min=0, w=8),
        timeseries("WSGI request queue vs %g" % W3,
                   "Connections waiting in the accept queues of WSGI's listening sockets. "
                   "Dashed: W3 adds 1 WSGI container above %g. The backlog limit is where new "
                   "connections start being refused." % W3,
                   "short",
                   [target("sum by (instance) (%s)"
                           % sel("stack_service_listen_queue_length", 'service="wsgi"'),
                           "queued {{instance}}"),
                    ref("sum by (instance) (%s)"
                        % sel("stack_service_listen_queue_limit", 'service="wsgi"'),
                        "backlog limit {{instance}}", "blue")],
                   thresholds=steps("green", W3, "red"), min=0, decimals=0, w=8),
        timeseries("ASGI connections per instance vs %g" % X1,
                   "Established connections of the busiest ASGI instance (container) and the "
                   "mean per instance. Dashed: X1 adds 1 ASGI container above %g per container."
                   % X1,
                   "short",
                   [target(sel("stack_service_instance_max_connections", 'service="asgi"'),
                           "busiest instance {{instance}}"),
                    target("%s / on (instance, job, service) %s"
                           % (sel("stack_service_connections", 'service="asgi"'),
                              sel("stack_service_instances", 'service="asgi"')),
                           "mean per instance {{instance}}")],
                   thresholds=steps("green", X1, "red"), min=0, decimals=0, w=8),
        timeseries("WebSocket latency p95 vs %s" % secs(X2),
                   "95th percentile of the ping/pong round trip the ASGI app measures "
                   "(stack_app_websocket_latency_seconds, scraped from the app: chosen by App job, "
                   "not by Job and Instance). Dashed: X2 adds 1 ASGI container above %s. Empty "
                   "until the app exports it." % secs(X2),
                   "s",
                   [target(p95("stack_app_websocket_latency_seconds_bucket", "instance", "",
                               app=True),
                           "p95 {{instance}}")],
                   thresholds=steps("green", X2, "red"), min=0, w=8),
        timeseries("ASGI memory vs budget",
                   "PSS of the largest ASGI instance as a share of the per-instance budget, or "
                   "all of ASGI against its total budget where the profile gives no per-instance "
                   "one. Dashed: X3 adds 1 ASGI container above %s." % pct(X3),
                   "percentunit",
                   [target("%s or on (instance, job, service) %s"
                           % (sel("service:stack_service_instance_memory_budget_used:ratio",
                                  'service="asgi"'),
                              sel("service:stack_service_memory_budget_used:ratio",
                                  'service="asgi"')),
                           "asgi {{instance}}")],
                   thresholds=steps("green", X3, "orange", M_BUDGET, "red"), min=0, w=8),
        timeseries("Celery task runtime p95 vs %s" % secs(P4),
                   "95th percentile of Celery task runtime per task (celery_task_runtime{name} "
                   "from celery-exporter, scraped as its own job: chosen by App job, not by Job "
                   "and Instance). "
                   "Dashed: P4 targets ML inference below %s. Empty until that exporter is "
                   "scraped." % secs(P4),
                   "s",
                   [target(p95("celery_task_runtime_bucket", "name", "", app=True), "{{name}}")],
                   thresholds=steps("green", P4, "red"), min=0, w=8),
    ]
    return dashboard("stack-traffic", "Stack / Traffic & scaling",
                     "Should I scale, and how: request rate, p95 per route class against %s, "
                     "%s and %s, WSGI queue depth, ASGI connections per instance, and every "
                     "scaling signal of the plans with the plan's action."
                     % (secs(P1), secs(P2), secs(S4)), panels, extra_vars=(app_job_var(),))


DASHBOARDS = [overview, services, databases, traffic]


def render(build):
    d = build()
    return d["uid"] + ".json", json.dumps(d, indent=2, ensure_ascii=False) + "\n"


def rule_actions():
    """{alert name: its `action` annotation} from rules/*.yml; None if rules/ is absent."""
    rules_dir = os.path.join(REPO, "rules")
    if not os.path.isdir(rules_dir):
        return None
    import yaml  # only needed for --check
    actions = {}
    for name in sorted(os.listdir(rules_dir)):
        if not name.endswith((".yml", ".yaml")):
            continue
        with open(os.path.join(rules_dir, name)) as f:
            doc = yaml.safe_load(f) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    actions[rule["alert"]] = (rule.get("annotations") or {}).get("action")
    return actions


def check_actions():
    """Each scaling row names an alert that exists, and says what its `action` annotation says."""
    actions = rule_actions()
    if actions is None:
        return ["rules/ not found: scaling actions not compared with the alerts"], []
    errors = []
    for sid, _, _, _, alert, action in SCALING:
        if alert not in actions:
            errors.append("%s: alert %s is not in rules/*.yml" % (sid, alert))
        elif actions[alert] is not None and actions[alert] != action:
            errors.append("%s: action %r differs from %s's annotation %r"
                          % (sid, action, alert, actions[alert]))
    return [], errors


def main(argv):
    check = "--check" in argv
    stale = []
    for build in DASHBOARDS:
        name, text = render(build)
        path = os.path.join(OUT, name)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
        else:
            os.makedirs(OUT, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if not check:
        return 0
    notes, errors = check_actions()
    for n in notes:
        print("note: " + n)
    for name in stale:
        errors.append("grafana/dashboards/%s is not what grafana/build_dashboards.py writes: "
                      "run it" % name)
    for e in errors:
        print("FAIL: " + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
