#!/usr/bin/env python3
"""The application metrics the rules read are spelled one way, in one place: the app-side section
of docs/metrics.md ("App-side metrics the rules expect"). Checks that

- every Celery task or app metric named in rules/*.yml (expressions and comments) is one of that
  section's, with only its labels, and every metric of that section is read by some rule;
- every one named in docs/*.md and README.md is one of that section's, with only its labels
  (`celery_task_runtime{task}` or `celery_task_runtime_seconds` elsewhere fail).

A name counts when it starts `celery_task` or `stack_app_`; a histogram's _bucket, _sum and
_count are its own name, and a recorded name (`task:celery_task_runtime:p95_5m`) names the metric
inside it. One line per check, then `app-metrics: N passed, M failed`; exits 1 on any failure.
"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashlib  # noqa: E402

# A name of the application's families, and the {labels} written right after it, if any.
APP_NAME_RE = re.compile(r"\b(celery_task\w*|stack_app_\w+)(?:\{([^}]*)\})?")


def spellings(path):
    """[(line number, name, labels or None)] of the application metric names in a file."""
    found = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            for m in APP_NAME_RE.finditer(line):
                labels = None
                if m.group(2) is not None:
                    labels = {re.split(r"\s*[=!~]", part.strip())[0]
                              for part in m.group(2).split(",") if part.strip()}
                found.append((number, m.group(1), labels))
    return found


def misspelled(paths, canonical, root):
    """Errors for every name or label that is not the canonical one."""
    errors = []
    for path in paths:
        where = os.path.relpath(path, root)
        for number, name, labels in spellings(path):
            base = dashlib.base_metric(name)
            if base not in canonical:
                errors.append("%s:%d: %s is not an application metric of docs/metrics.md (%s)"
                              % (where, number, name, ", ".join(sorted(canonical))))
            elif labels and not labels <= canonical[base] | {"le"}:
                errors.append("%s:%d: %s{%s}: %s has no label %s (docs/metrics.md)"
                              % (where, number, name, ",".join(sorted(labels)), base,
                                 ", ".join(sorted(labels - canonical[base] - {"le"}))))
    return errors


def rule_files(root):
    return sorted(glob.glob(os.path.join(root, "rules", "*.yml")))


def doc_files(root):
    return sorted(glob.glob(os.path.join(root, "docs", "*.md"))) + [os.path.join(root, "README.md")]


def check_rules(root, canonical):
    errors = misspelled(rule_files(root), canonical, root)
    read = {dashlib.base_metric(name) for path in rule_files(root)
            for _, name, _ in spellings(path)}
    errors += ["docs/metrics.md lists %s, which no rule in rules/ reads" % name
               for name in sorted(set(canonical) - read)]
    return errors


def check_docs(root, canonical):
    return misspelled([p for p in doc_files(root) if os.path.exists(p)], canonical, root)


def main(root=dashlib.REPO):
    canonical = dashlib.app_metrics(os.path.join(root, "docs", "metrics.md"))
    checks = [("docs/metrics.md has an app-side section", lambda: [] if canonical else [
                  'no "%s" section with a `metric` row' % dashlib.APP_SECTION]),
              ("rules read the application metrics as docs/metrics.md spells them",
               lambda: check_rules(root, canonical)),
              ("docs spell the application metrics as docs/metrics.md does",
               lambda: check_docs(root, canonical))]
    return dashlib.report("app-metrics", ((name, run()) for name, run in checks))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
