#!/usr/bin/env python3
"""Runs every alert and recording rule expression of rules/*.yml against a Prometheus-compatible
query API (Prometheus itself, or a store it remote-writes to, such as VictoriaMetrics) and fails on
any expression the store refuses. With --compare PROMETHEUS_URL, a recording rule's expression
that returns series on Prometheus must return series on the store too (the store holds the same
data, so an empty answer there means it evaluates the expression differently).

    query_rules.py http://127.0.0.1:8428 --compare http://127.0.0.1:9090
"""
import argparse
import glob
import os
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from query_dashboards import run_query  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def rule_expressions():
    """[(file, "alert" or "record", rule name, expr)] of every rule in rules/*.yml."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "rules", "*.yml"))):
        with open(path) as f:
            for group in yaml.safe_load(f).get("groups", []):
                for rule in group.get("rules", []):
                    kind = "alert" if "alert" in rule else "record"
                    found.append((os.path.basename(path), kind, rule[kind], rule["expr"]))
    return found


# How long a sample Prometheus has (a recording rule's latest result among them) may take to reach
# the store: remote_write sends in batches every few seconds, and VictoriaMetrics leaves out the
# last second (-search.latencyOffset).
ARRIVAL = 20


def arrived(url, expr):
    """The store's answer to `expr` once it has series, or its last empty answer after ARRIVAL s."""
    deadline = time.monotonic() + ARRIVAL
    while True:
        count, error = run_query(url, expr, timeout=30)
        if error or count or time.monotonic() >= deadline:
            return count, error
        time.sleep(1)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="the store's Prometheus-compatible base URL")
    ap.add_argument("--compare", metavar="PROMETHEUS_URL",
                    help="Prometheus holding the same data: where it answers series, so must the store")
    args = ap.parse_args(argv)
    passed = failed = 0
    for path, kind, name, expr in rule_expressions():
        count, error = run_query(args.url, expr, timeout=30)
        problem = error
        # Recorded series only: an alert's answer moves with the data at the moment of the
        # query, and the two stores are asked a moment apart.
        if not problem and args.compare and count == 0 and kind == "record":
            theirs, their_error = run_query(args.compare, expr, timeout=30)
            if not their_error and theirs:
                count, problem = arrived(args.url, expr)
                if not problem and count == 0:
                    problem = f"no series within {ARRIVAL}s, where Prometheus answers {theirs}"
        if problem:
            failed += 1
            print(f"FAIL {path} {name}: {problem}")
        else:
            passed += 1
    print(f"rule expressions: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
