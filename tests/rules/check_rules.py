#!/usr/bin/env python3
"""Checks of rules/ that promtool does not make. Needs PyYAML (python3-yaml / pip install pyyaml).

    python3 tests/rules/check_rules.py [repo root]

Prints one line per check ("ok ..." or "FAIL ...: why") and exits 1 if any failed:
  - every alert: name `Stack` + CamelCase; labels severity (critical|warning|info) and plan_ref;
    annotations plan_ref (same as the label), summary, description, runbook_url; the runbook_url
    is RUNBOOK_URL filled in with the alert's anchor (docs/runbook.md#<alert name in lower case>,
    relative to the repository, never a guessed host), and docs/runbook.md has that heading
    (why each alert spells it out: docs/architecture.md, "Runbook links"); a promtool test in
    tests/rules/*.yml expects it to fire (a non-empty exp_alerts), with instance and job labels;
    plan_ref lists THRESHOLDS row IDs (or "meta");
  - every THRESHOLDS row ID is in some alert's plan_ref (rows are read from
    /work/shared/THRESHOLDS.md if present, else docs/thresholds.md; env THRESHOLDS overrides);
  - every recording rule is named level:metric:operations;
  - every rule, alert or recording, is listed in docs/thresholds.md;
  - every test file's group_eval_order is the one tests/rules/eval_order.py writes (the recording
    groups; promtool evaluates groups in random order otherwise, and alerts on recorded series
    would flap by one interval), and no recording group reads a series recorded by a later one;
  - every alert name in alertmanager/alertmanager.yml's inhibit rules exists.
  - every Stack* alert docs/coverage.md names exists.
"""
import glob
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_order  # noqa: E402  (tests/rules/eval_order.py)

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
# The one spelling of every alert's runbook_url; relative to the repository: see docs/runbook.md's top.
RUNBOOK_URL = "docs/runbook.md#{anchor}"
SEVERITIES = {"critical", "warning", "info"}
ROW_ID = re.compile(r"^\|\s*([A-Z][0-9]+)\s*\|", re.M)

results = []


def check(name, problems):
    results.append((name, problems))
    if problems:
        print(f"FAIL {name}: " + "; ".join(problems))
    else:
        print(f"ok   {name}")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def github_anchor(heading):
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def threshold_ids():
    path = os.environ.get("THRESHOLDS")
    if not path:
        shared = "/work/shared/THRESHOLDS.md"
        path = shared if os.path.exists(shared) else os.path.join(ROOT, "docs", "thresholds.md")
    with open(path, encoding="utf-8") as f:
        return path, ROW_ID.findall(f.read())


# --- load everything -------------------------------------------------------------------------
groups, alerts, records = [], [], []
for path in sorted(glob.glob(os.path.join(ROOT, "rules", "*.yml"))):
    for group in yaml.safe_load(open(path, encoding="utf-8"))["groups"]:
        groups.append(group["name"])
        for rule in group["rules"]:
            (alerts if "alert" in rule else records).append(rule)

tested = {}  # alert name -> list of expected alerts' label sets
test_files = sorted(glob.glob(os.path.join(ROOT, "tests", "rules", "*.yml")))
eval_orders = {}
for path in test_files:
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    eval_orders[os.path.relpath(path, ROOT)] = doc.get("group_eval_order")
    for test in doc.get("tests") or []:
        for art in test.get("alert_rule_test") or []:
            for exp in art.get("exp_alerts") or []:
                tested.setdefault(art["alertname"], []).append(exp.get("exp_labels") or {})

runbook = read("docs/runbook.md")
anchors = {github_anchor(h) for h in re.findall(r"^#+\s+(.+)$", runbook, re.M)}
thresholds_doc = read("docs/thresholds.md")
ids_path, row_ids = threshold_ids()

# --- alerts ----------------------------------------------------------------------------------
refs_seen = set()
for rule in alerts:
    name, labels, ann = rule["alert"], rule.get("labels") or {}, rule.get("annotations") or {}
    problems = []
    if not re.fullmatch(r"Stack(?:[A-Z][a-z0-9]*)+", name):
        problems.append("name is not Stack + CamelCase")
    if labels.get("severity") not in SEVERITIES:
        problems.append(f"severity {labels.get('severity')!r} not one of {sorted(SEVERITIES)}")
    if not labels.get("plan_ref"):
        problems.append("no plan_ref label")
    if ann.get("plan_ref") != labels.get("plan_ref"):
        problems.append("plan_ref annotation differs from the label")
    for key in ("summary", "description", "runbook_url"):
        if not str(ann.get(key, "")).strip():
            problems.append(f"no {key} annotation")
    anchor = github_anchor(name)
    url = RUNBOOK_URL.format(anchor=anchor)
    if ann.get("runbook_url", "") != url:
        problems.append(f"runbook_url is not {url}")
    if anchor not in anchors:
        problems.append(f"docs/runbook.md has no heading {name} (#{anchor})")
    for ref in str(labels.get("plan_ref", "")).split(","):
        ref = ref.strip()
        refs_seen.add(ref)
        if ref != "meta" and ref not in row_ids:
            problems.append(f"plan_ref {ref!r} is not a row of {ids_path}")
    if name not in tested:
        problems.append("no promtool test expects it to fire (non-empty exp_alerts)")
    elif not all("instance" in l and "job" in l for l in tested[name]):
        problems.append("a test expects it without instance and job labels")
    check(f"alert {name}", problems)

# --- every THRESHOLDS row in some plan_ref -----------------------------------------------------
for row in row_ids:
    check(f"row {row} in a plan_ref", [] if row in refs_seen else ["no alert names it"])

# --- recording rules -------------------------------------------------------------------------
for rule in records:
    name = rule["record"]
    problems = []
    if not re.fullmatch(r"[a-z_]+:[a-zA-Z0-9_]+:[a-z0-9_]+", name):
        problems.append("not named level:metric:operations")
    check(f"record {name}", problems)

# --- every rule listed in docs/thresholds.md ---------------------------------------------------
missing = [n for n in [r["alert"] for r in alerts] + [r["record"] for r in records] if f"`{n}`" not in thresholds_doc]
check("docs/thresholds.md lists every rule", [f"{n} not listed" for n in missing])

# --- group_eval_order ----------------------------------------------------------------------
canonical = eval_order.canonical_order(ROOT)
for path, order in eval_orders.items():
    problems = [] if order == canonical else [
        f"is {order}, not {canonical}: run python3 tests/rules/eval_order.py"]
    check(f"{path} group_eval_order", problems)
rules_of = dict(eval_order.rule_groups(ROOT))
problems = []
for i, group in enumerate(canonical):
    later = {r["record"]: g for g in canonical[i + 1:] for r in rules_of[g] if "record" in r}
    for rule in rules_of[group]:
        problems += [f"{group} reads {name}, recorded later by {g}" for name, g in later.items()
                     if re.search(re.escape(name) + r"(?![\w:])", rule["expr"])]
check("recording groups read only series recorded before them", problems)

# --- Alertmanager inhibit rules name existing alerts ---------------------------------------------
am = yaml.safe_load(read("alertmanager/alertmanager.yml"))
names = {r["alert"] for r in alerts}
problems = []
for inhibit in am.get("inhibit_rules") or []:
    for matcher in (inhibit.get("source_matchers") or []) + (inhibit.get("target_matchers") or []):
        m = re.fullmatch(r'\s*alertname\s*(=~|!~|!=|=)\s*"?([^"]*)"?\s*', matcher)
        if m:
            problems += [f"{n} is no alert" for n in m.group(2).split("|") if n not in names]
check("alertmanager inhibit rules name existing alerts", problems)

# --- docs/coverage.md maps the peers' alerts to alerts that exist ---------------------------------
coverage = read("docs/coverage.md")
problems = sorted({n for n in re.findall(r"\bStack[A-Z]\w+", coverage) if n not in names})
check("docs/coverage.md names only existing alerts", problems)

failed = sum(1 for _, p in results if p)
print(f"check_rules: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
