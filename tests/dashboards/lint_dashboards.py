#!/usr/bin/env python3
"""Lints grafana/dashboards/*.json (or the files given) against the conventions of Grafana's
dashboard-linter and of this project:

- a `datasource` variable (type datasource, query prometheus, label "Data source") and no
  hard-coded datasource anywhere: every panel and query uses ${datasource};
- `job` and `instance` variables: label_values queries on ${datasource}, multi-select, allValue
  ".+", refreshed on time range change; a `role` variable (H4's app, db, cache) whose allValue
  is ".*", which keeps a host without the label; every selector of every query has job=~"$job",
  role=~"$role" and instance=~"$instance", but those of the application's own series;
- application series (the metrics of docs/metrics.md's "App-side metrics the rules expect", the
  rules recorded from them and ALERTS of the alerts on those) come from the app's or a Celery
  exporter's job: their selectors have job=~"$app_job" and no $job or $instance (which would empty
  the panel once an exporter instance is picked), and the dashboard has an `app_job` variable
  listing the jobs that serve those metrics;
- rate() and irate() take [$__rate_interval]; counters (_total) appear only inside rate, irate or
  increase; every query selects at least one series (no threshold written as a bare number);
  every variable a query uses is defined; every metric is in docs/metrics.md or recorded in rules/;
  every alertname="..." names an alert of rules/;
- every threshold a panel draws (a threshold step, a table column's step, a dashed `0.85 * ...`
  line) is a number some alert compares against (`> 0.85`, grafana/build_dashboards.py's
  COMPARISON) among the alerts whose plan_ref names a row the panel cites (`M2-M7` cites M2 to
  M7). 0 and 1 are exempt: they bound states (up/down) and shares of a budget (100 %);
- every panel has a title, a description citing at least one THRESHOLDS.md row (A1, S1, M4, ...)
  and no unknown row, a valid unit in fieldConfig.defaults.unit, at least one query, a grid
  position that overlaps no other panel, a title no other panel of the dashboard has; table columns "Value #X" refer to an existing query;
- uid = file name without .json, `stack-` + lowercase words, unique; schemaVersion 36-39;
  editable false; the dashboard cites the rows it is meant to cover; the scaling table lists
  every scaling signal (S1-S5, W1-W3, X1-X3);
- with promtool on PATH, every query (variables expanded) parses as PromQL.

Prints one line per dashboard, then `lint: N passed, M failed`; exits 1 on any failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashlib  # noqa: E402

sys.path.insert(0, os.path.join(dashlib.REPO, "grafana"))
from build_dashboards import COMPARISON, number  # noqa: E402  (the convention for a threshold)

THRESHOLD_IDS = {
    *("A%d" % i for i in range(1, 6)), *("S%d" % i for i in range(1, 6)),
    *("W%d" % i for i in range(1, 4)), *("X%d" % i for i in range(1, 4)),
    *("P%d" % i for i in range(1, 7)), *("M%d" % i for i in range(1, 10)),
    *("H%d" % i for i in range(0, 5)), *("C%d" % i for i in range(1, 8)),
    *("D%d" % i for i in range(1, 6)), *("K%d" % i for i in range(1, 4)),
}
ID_RE = re.compile(r"\b([ASWXPMHCDK]\d{1,2})\b")
ID_RANGE_RE = re.compile(r"\b([ASWXPMHCDK])(\d{1,2})-\1(\d{1,2})\b")   # M2-M7
STATE_BOUNDS = (0, 1)
REF_FACTOR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\*")   # a dashed line "0.85 * total"
SCALING_IDS = ["S1", "S2", "S3", "S4", "S5", "W1", "W2", "W3", "X1", "X2", "X3"]

# The rows each dashboard must show (cite in some panel description).
COVERAGE = {
    "stack-overview": {"A1", "A2", "A3", "A5", "S1", "S2", "S3", "M1", "M8", "C7", "K1", "K3"},
    "stack-services": {"A5", "M4", "H2", "C3", "C4", "W1", "X3"},
    "stack-databases": {"A4", "P6", "P3", "D2", "M3", "C1", "C2", "K2", "H0"},
    "stack-traffic": {"P1", "P2", "P4", "P5", "S4", "S5", "W1", "W2", "W3", "X1", "X2", "X3"},
}

# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts), the usual ones.
UNITS = {
    "none", "string", "short", "percent", "percentunit", "hex", "hex0x", "sci", "locale",
    "bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes", "decmbytes",
    "gbytes", "decgbytes", "tbytes", "dectbytes", "binBps", "Bps", "binbps", "bps", "KiBs",
    "KBs", "MiBs", "MBs", "GiBs", "GBs", "dateTimeAsIso", "dateTimeAsSystem", "dateTimeFromNow",
    "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms",
    "dtdhms", "clockms", "clocks", "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm",
    "rpm", "wpm", "bool", "bool_yes_no", "bool_on_off",
}
TEMPLATED_DS = {"${datasource}", "$datasource"}
BUILTIN_VARS = set(dashlib.DEFAULT_VALUES) | {"__name", "__org", "__user", "__dashboard",
                                              "__from", "__to", "__timeFilter"}
UID_RE = re.compile(r"^stack-[a-z0-9]+(-[a-z0-9]+)*$")
COUNTER_FUNCS = {"rate", "irate", "increase"}
KNOWN_EXTRA_METRICS = {"ALERTS", "ALERTS_FOR_STATE", "up"}


def cited_rows(text):
    """The THRESHOLDS.md rows a text names, ranges (M2-M7) spelled out."""
    rows = set(ID_RE.findall(text))
    for letter, first, last in ID_RANGE_RE.findall(text):
        rows |= {"%s%d" % (letter, i) for i in range(int(first), int(last) + 1)}
    return rows


def drawn_thresholds(p):
    """[(value, what)] of the lines a panel draws: threshold steps (but the base), a table
    column's steps, dashed reference lines that are a number times a series."""
    fc = p.get("fieldConfig") or {}
    steps = ((fc.get("defaults") or {}).get("thresholds") or {}).get("steps") or []
    found = [(s.get("value"), "threshold step") for s in steps[1:]]
    for o in fc.get("overrides") or []:
        column = (o.get("matcher") or {}).get("options")
        for prop in o.get("properties") or []:
            if prop.get("id") == "thresholds":
                found += [(s.get("value"), "column %r step" % column)
                          for s in ((prop.get("value") or {}).get("steps") or [])[1:]]
    dashed = {(o.get("matcher") or {}).get("options") for o in fc.get("overrides") or []
              if (o.get("matcher") or {}).get("id") == "byFrameRefID"}
    for t in p.get("targets") or []:
        m = REF_FACTOR_RE.match(t.get("expr") or "")
        if m and t.get("refId") in dashed:
            found.append((number(m.group(1)), "dashed line %s" % t.get("refId")))
    return found


def alert_limits(rules_dir):
    """{alert: (rows of its plan_ref, numbers its expression compares against)}."""
    import yaml
    limits = {}
    for name in sorted(os.listdir(rules_dir)):
        if name.endswith((".yml", ".yaml")):
            with open(os.path.join(rules_dir, name), encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
            for group in doc.get("groups") or []:
                for rule in group.get("rules") or []:
                    if "alert" in rule:
                        refs = str((rule.get("labels") or {}).get("plan_ref", "")).split(",")
                        numbers = [number(n) for n in COMPARISON.findall(rule["expr"])]
                        limits[rule["alert"]] = ({r.strip() for r in refs}, numbers)
    return limits


IDENT_RE = re.compile(r"[a-zA-Z_:][\w:]*")


def app_side(rules_dir, metrics):
    """(names recorded from the application metrics, alerts on those or on the metrics), followed
    through rules that read other such rules."""
    import yaml
    rules = []
    for name in sorted(os.listdir(rules_dir)):
        if name.endswith((".yml", ".yaml")):
            with open(os.path.join(rules_dir, name), encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
            for group in doc.get("groups") or []:
                rules += group.get("rules") or []
    reads = [(r, {dashlib.base_metric(n) for n in IDENT_RE.findall(str(r.get("expr", "")))})
             for r in rules]
    app, recorded = set(metrics), set()
    while True:
        new = {r["record"] for r, names in reads
               if "record" in r and names & app and r["record"] not in recorded}
        if not new:
            break
        recorded |= new
        app |= new
    alerts = {r["alert"] for r, names in reads if "alert" in r and names & app}
    return recorded, alerts


def known_metrics():
    """(metric names of docs/metrics.md, recorded names and alert names of rules/*.yml; both
    None without rules/)."""
    names = set(KNOWN_EXTRA_METRICS)
    with open(os.path.join(dashlib.REPO, "docs", "metrics.md"), encoding="utf-8") as f:
        names |= set(re.findall(r"`((?:stack|process|celery)_[a-z0-9_]+)`", f.read()))
    rules_dir = os.path.join(dashlib.REPO, "rules")
    if not os.path.isdir(rules_dir):
        return names, None, None
    import yaml
    recorded, alerts = set(), set()
    for name in sorted(os.listdir(rules_dir)):
        if name.endswith((".yml", ".yaml")):
            with open(os.path.join(rules_dir, name), encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
            for group in doc.get("groups") or []:
                for rule in group.get("rules") or []:
                    if "record" in rule:
                        recorded.add(rule["record"])
                    if "alert" in rule:
                        alerts.add(rule["alert"])
    return names, recorded, alerts


class Linter:
    def __init__(self):
        self.metrics, self.recorded, self.alerts = known_metrics()
        rules_dir = os.path.join(dashlib.REPO, "rules")
        self.limits = alert_limits(rules_dir) if os.path.isdir(rules_dir) else None
        self.app_metrics = set(dashlib.app_metrics())
        self.app_recorded, self.app_alerts = (app_side(rules_dir, self.app_metrics)
                                              if os.path.isdir(rules_dir) else (set(), set()))
        self.uids = {}
        self.queries = []   # (record name, expr, file, where) for promtool

    def lint(self, path):
        errors = []
        err = errors.append
        try:
            d = dashlib.load(path)
        except (OSError, ValueError) as e:
            return ["cannot read: %s" % e]
        stem = os.path.basename(path)[:-len(".json")]
        title = d.get("title") or ""
        if not title:
            err("dashboard has no title")
        uid = d.get("uid") or ""
        if uid != stem or not UID_RE.match(uid) or len(uid) > 40:
            err("uid %r: must be the file name (%r), 'stack-' + lowercase words, at most 40 "
                "characters" % (uid, stem))
        if uid in self.uids:
            err("uid %r is also used by %s" % (uid, self.uids[uid]))
        self.uids[uid] = os.path.basename(path)
        if not 36 <= (d.get("schemaVersion") or 0) <= 39:
            err("schemaVersion %r: Grafana 10 writes 36-39" % d.get("schemaVersion"))
        if d.get("editable") is not False:
            err("dashboard is editable: set \"editable\": false (provisioned from files)")
        if d.get("id") is not None:
            err("id must be null in a provisioned dashboard")

        defined = self.lint_variables(d, err)
        self.lint_datasources(d, err)

        cited = set()
        seen_ids, seen_titles = set(), set()
        boxes = []
        for p in dashlib.panels(d):
            where = "panel %r" % p.get("title")
            if p.get("id") in seen_ids:
                err("%s: duplicate panel id %r" % (where, p.get("id")))
            seen_ids.add(p.get("id"))
            self.lint_grid(p, where, boxes, err)
            if p.get("type") == "row":
                continue
            if p.get("title") in seen_titles:
                err("%s: another panel has the same title" % where)
            seen_titles.add(p.get("title"))
            cited |= self.lint_panel(p, where, err)
            for t in p.get("targets") or []:
                self.lint_target(stem, p, t, "%s query %s" % (where, t.get("refId")), defined,
                                 err)
        self.lint_app_job_variable(d, err)
        missing = COVERAGE.get(uid, set()) - cited
        if missing:
            err("no panel cites %s, which this dashboard is meant to show"
                % ", ".join(sorted(missing)))
        if uid == "stack-traffic":
            self.lint_scaling_table(d, err)
        return errors

    def lint_variables(self, d, err):
        tlist = (d.get("templating") or {}).get("list") or []
        by_name = {v.get("name"): v for v in tlist}
        ds = by_name.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            err("needs a variable `datasource` of type datasource with query prometheus")
        elif ds.get("label") != "Data source":
            err("variable datasource: label should be 'Data source'")
        role = by_name.get("role")
        if not role:
            err("needs a `role` variable")
        elif role.get("allValue") != ".*":
            err("variable role: allValue must be \".*\" (a host without the label)")
        for name in ("job", "instance"):
            v = by_name.get(name)
            if not v:
                err("needs a `%s` variable" % name)
                continue
            query = v.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            problems = []
            if v.get("type") != "query":
                problems.append("type must be query")
            if (v.get("datasource") or {}).get("uid") not in TEMPLATED_DS:
                problems.append("datasource must be ${datasource}")
            if not (query or "").startswith("label_values("):
                problems.append("query must be label_values(...)")
            if v.get("label") != name.capitalize():
                problems.append("label must be %r" % name.capitalize())
            if not v.get("multi") or not v.get("includeAll") or v.get("allValue") != ".+":
                problems.append("must be multi-select with All = '.+'")
            if problems:
                err("variable %s: %s" % (name, "; ".join(problems)))
        for v in tlist:
            if v.get("type") == "query":
                if v.get("refresh") != 2:
                    err("variable %s: refresh must be 2 (on time range change)" % v.get("name"))
                if (v.get("datasource") or {}).get("uid") not in TEMPLATED_DS:
                    err("variable %s: datasource must be ${datasource}" % v.get("name"))
        return set(by_name) | BUILTIN_VARS

    def lint_datasources(self, d, err):
        """No datasource other than ${datasource} anywhere in the file (the built-in Grafana
        annotation excepted)."""
        def walk(node, path):
            if isinstance(node, dict):
                builtin = node.get("builtIn") == 1
                for k, v in node.items():
                    if k == "datasource" and not builtin:
                        uid = v.get("uid") if isinstance(v, dict) else v
                        if uid not in TEMPLATED_DS:
                            err("%s: datasource %r is not ${datasource}" % (path, v))
                    walk(v, path + "." + k)
                if node.get("type") == "prometheus" and "uid" in node \
                        and node["uid"] not in TEMPLATED_DS:
                    err("%s: hard-coded Prometheus uid %r" % (path, node["uid"]))
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, "%s[%d]" % (path, i))
        walk(d, "$")

    def lint_grid(self, p, where, boxes, err):
        g = p.get("gridPos") or {}
        try:
            x, y, w, h = g["x"], g["y"], g["w"], g["h"]
        except KeyError:
            err("%s: gridPos needs x, y, w, h" % where)
            return
        if x < 0 or w <= 0 or h <= 0 or x + w > 24:
            err("%s: gridPos %r is outside the 24 columns" % (where, g))
        for other, (ox, oy, ow, oh) in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                err("%s overlaps %s" % (where, other))
        boxes.append((where, (x, y, w, h)))

    def lint_panel(self, p, where, err):
        title, desc = p.get("title") or "", p.get("description") or ""
        if not title.strip():
            err("%s: no title" % where)
        if not desc.strip():
            err("%s: no description" % where)
        ids = set(ID_RE.findall(desc))
        unknown = ids - THRESHOLD_IDS
        if unknown:
            err("%s: description cites unknown rows %s" % (where, ", ".join(sorted(unknown))))
        if not ids & THRESHOLD_IDS:
            err("%s: description cites no THRESHOLDS.md row (A1, S1, M4, ...)" % where)
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if unit not in UNITS:
            err("%s: fieldConfig.defaults.unit %r is not a Grafana unit" % (where, unit))
        for o in (p.get("fieldConfig") or {}).get("overrides") or []:
            for prop in o.get("properties") or []:
                if prop.get("id") == "unit" and prop.get("value") not in UNITS:
                    err("%s: override unit %r is not a Grafana unit" % (where, prop.get("value")))
        targets = p.get("targets") or []
        if not targets:
            err("%s: no queries" % where)
        if (p.get("datasource") or {}).get("uid") not in TEMPLATED_DS:
            err("%s: panel datasource must be ${datasource}" % where)
        refids = {t.get("refId") for t in targets}
        if len(refids) != len(targets):
            err("%s: refIds are not unique" % where)
        for o in (p.get("fieldConfig") or {}).get("overrides") or []:
            name = (o.get("matcher") or {}).get("options")
            if isinstance(name, str) and name.startswith("Value #") and name[7:] not in refids:
                err("%s: column %r has no query %s" % (where, name, name[7:]))
        if self.limits is not None:
            self.lint_thresholds(p, where, err)
        return ids & THRESHOLD_IDS

    def lint_thresholds(self, p, where, err):
        """Each line the panel draws is a threshold of an alert on a row it cites."""
        rows = cited_rows((p.get("title") or "") + " " + (p.get("description") or ""))
        allowed = {n: alert for alert, (refs, numbers) in self.limits.items() if refs & rows
                   for n in numbers}
        for value, what in drawn_thresholds(p):
            if not isinstance(value, (int, float)) or value in STATE_BOUNDS:
                continue
            if not any(abs(value - n) <= 1e-9 * max(1, abs(n)) for n in allowed):
                rules = ", ".join("%s %g" % (a, n) for n, a in sorted(allowed.items())) or "none"
                err("%s: %s %g is no threshold of an alert on rows %s (rules/*.yml: %s); "
                    "take it from the rule (grafana/build_dashboards.py limit())"
                    % (where, what, value, ",".join(sorted(rows)), rules))

    def lint_target(self, stem, p, t, where, defined, err):
        expr = t.get("expr") or ""
        if not expr.strip():
            err("%s: empty expr" % where)
            return
        if (t.get("datasource") or {}).get("uid") not in TEMPLATED_DS:
            err("%s: datasource must be ${datasource}" % where)
        undefined = dashlib.variables_used(expr) - defined
        if undefined:
            err("%s: undefined variables %s" % (where, ", ".join(sorted(undefined))))
        try:
            sels = dashlib.selectors(expr)
        except dashlib.PromQLError as e:
            err("%s: %s" % (where, e))
            return
        if not sels:
            err("%s: selects no series (a threshold must be a fieldConfig threshold or a "
                "query on a budget series, not a number)" % where)
        for s in sels:
            what = "%s: selector %s" % (where, s.metric or "{...}")
            if self.is_app_series(s):
                self.lint_app_selector(s, what, err)
            else:
                if not s.has("job", "=~", "$job"):
                    err('%s lacks job=~"$job"' % what)
                if not s.has("instance", "=~", "$instance"):
                    err('%s lacks instance=~"$instance"' % what)
                if not s.has("role", "=~", "$role"):
                    err('%s lacks role=~"$role"' % what)
            if s.function in ("rate", "irate") and s.range != "$__rate_interval":
                err("%s: %s() must use [$__rate_interval], not [%s]" % (what, s.function, s.range))
            if s.metric and s.metric.endswith("_total") and \
                    (s.range is None or s.function not in COUNTER_FUNCS):
                err("%s: a counter must be inside rate, irate or increase" % what)
            if s.metric:
                self.lint_metric(s, what, err)
        record = "lint:%s_p%s_%s" % (stem.replace("-", "_"), p.get("id"), t.get("refId"))
        self.queries.append((record, expr, stem + ".json", where))

    def is_app_series(self, s):
        """A series the application (or a Celery exporter) serves, not stack_exporter."""
        if not s.metric:
            return False
        if s.metric == "ALERTS":
            return any(label == "alertname" and op == "=" and value in self.app_alerts
                       for label, op, value in s.matchers)
        return dashlib.base_metric(s.metric) in self.app_metrics or s.metric in self.app_recorded

    def lint_app_selector(self, s, what, err):
        if not s.has("job", "=~", "$app_job"):
            err('%s is an application series (docs/metrics.md, "App-side metrics the rules '
                'expect"): select it with job=~"$app_job"' % what)
        exporter_vars = {"job", "instance"} & set().union(
            *(dashlib.variables_used(value) for _, _, value in s.matchers))
        if exporter_vars:
            err("%s is an application series filtered by the exporter's %s: the panel goes "
                "empty once an exporter instance is picked; use $app_job"
                % (what, " and ".join("$" + v for v in sorted(exporter_vars))))

    def lint_app_job_variable(self, d, err):
        """A dashboard that selects $app_job has it as a variable listing the jobs that serve
        the application metrics its queries read, independent of $job and $instance."""
        used = {dashlib.base_metric(s.metric) for _, t in dashlib.targets(d)
                if "app_job" in dashlib.variables_used(t.get("expr") or "")
                for s in self._selectors(t) if s.metric}
        if not used:
            return
        v = next((v for v in (d.get("templating") or {}).get("list") or []
                  if v.get("name") == "app_job"), None)
        if v is None:
            return   # lint_target reports the undefined variable
        query = v.get("query")
        query = (query.get("query") if isinstance(query, dict) else query) or ""
        m = re.match(r"^label_values\((.*),\s*job\)$", query)
        problems = []
        if v.get("type") != "query" or not m:
            problems.append("must be a query variable label_values(<app metrics>, job)")
        else:
            listed = {dashlib.base_metric(n) for n in IDENT_RE.findall(m.group(1))}
            missing = sorted(used & self.app_metrics - listed)
            if missing:
                problems.append("its query does not list the jobs serving %s"
                                % ", ".join(missing))
            if dashlib.variables_used(query) & {"job", "instance"}:
                problems.append("must not depend on $job or $instance (the exporter's)")
        if not v.get("multi") or not v.get("includeAll") or v.get("allValue") != ".+":
            problems.append("must be multi-select with All = '.+'")
        if problems:
            err("variable app_job: %s" % "; ".join(problems))

    @staticmethod
    def _selectors(t):
        try:
            return dashlib.selectors(t.get("expr") or "")
        except dashlib.PromQLError:
            return []

    def lint_metric(self, s, what, err):
        name = s.metric
        if ":" in name:
            if self.recorded is not None and name not in self.recorded:
                err("%s: no recording rule in rules/ records it" % what)
        elif name not in self.metrics and dashlib.base_metric(name) not in self.metrics:
            err("%s: not a metric of docs/metrics.md" % what)
        if name == "ALERTS" and self.alerts is not None:
            for label, op, value in s.matchers:
                if label == "alertname" and op == "=" and value not in self.alerts:
                    err("%s: no alert %s in rules/" % (what, value))

    def lint_scaling_table(self, d, err):
        tables = [p for p in dashlib.panels(d) if p.get("title", "").startswith("Scaling signals")]
        if len(tables) != 1:
            err("needs one table titled 'Scaling signals ...'")
            return
        for t in tables[0].get("targets") or []:
            missing = [i for i in SCALING_IDS if '"id", "%s"' % i not in t.get("expr", "")]
            if missing:
                err("scaling table query %s lacks rows %s" % (t.get("refId"), ", ".join(missing)))

    def promtool_parse(self):
        """Every query, variables expanded, through `promtool check rules`: {file: [errors]}.
        Empty without promtool."""
        promtool = shutil.which("promtool")
        if not promtool or not self.queries:
            return {}
        values = dict(dashlib.DEFAULT_VALUES, job=".+", instance=".+", service=".+",
                      app_job=".+")
        lines = ["groups:", "  - name: dashboards", "    rules:"]
        for record, expr, _, _ in self.queries:
            lines.append("      - record: %s" % record)
            lines.append("        expr: |")
            lines.extend("          " + line for line in dashlib.expand(expr, values).split("\n"))
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write("\n".join(lines) + "\n")
        try:
            r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        finally:
            os.unlink(f.name)
        if r.returncode == 0:
            return {}
        out = (r.stdout + r.stderr).strip()
        errors = {}
        for record, _, file, where in self.queries:
            if '"%s"' % record in out:
                errors.setdefault(file, []).append("%s: does not parse as PromQL" % where)
        if not errors:   # promtool failed without naming a query: blame them all
            errors = {file: [] for _, _, file, _ in self.queries}
        for file in errors:
            errors[file].append("promtool check rules said: " + out.replace("\n", " | "))
        return errors


def main(argv):
    files = argv or dashlib.dashboard_files()
    if not files:
        print("lint: no dashboards found", file=sys.stderr)
        return 1
    linter = Linter()
    if linter.recorded is None:
        print("note: rules/ not found: recording rule and alert names not checked")
    results = {f: linter.lint(f) for f in files}
    parse_errors = linter.promtool_parse()
    named = ((os.path.basename(f), errors) for f, errors in results.items())
    return dashlib.report(
        "lint", ((name, errors + parse_errors.get(name, [])) for name, errors in named))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
