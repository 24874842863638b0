#!/usr/bin/env python3
"""Writes the `group_eval_order` of every promtool test file (tests/rules/*_test.yml).

    python3 tests/rules/eval_order.py          # rewrite the block in every test file
    python3 tests/rules/eval_order.py --check  # exit 1 if a file's block is not the canonical one

Why the block exists: promtool evaluates rule groups in random order unless a test names them in
`group_eval_order`, so an alert on a recorded series would see it one evaluation late, and only
sometimes. The order written here: the recording groups (groups of recording rules only), then the
others, each in rules/*.yml file order, so alerts run after every series recorded in the same
minute. Every group must be named: promtool 2.42 sorts an unnamed group as if it were the first.
The list is derived from rules/, never written by hand: add or rename a group and rerun this
script. tests/rules/check_rules.py makes the same comparison.
Needs PyYAML.
"""
import glob
import os
import re
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The block and the comment lines right above it.
BLOCK = re.compile(r"^(?:#.*\n)*group_eval_order:\n(?:[ \t]+-.*\n)*", re.M)
NOTE = ("# Recording groups first, so alerts see this minute's recorded series (promtool orders\n"
        "# groups at random otherwise). Written by tests/rules/eval_order.py from rules/.\n")


def rule_groups(root=ROOT):
    """[(group name, [rules])] of rules/*.yml, in file order."""
    groups = []
    for path in sorted(glob.glob(os.path.join(root, "rules", "*.yml"))):
        with open(path, encoding="utf-8") as f:
            groups += [(g["name"], g["rules"]) for g in yaml.safe_load(f)["groups"]]
    return groups


def canonical_order(root=ROOT):
    """The recording groups, then the others, each in file order."""
    groups = rule_groups(root)
    recording = [name for name, rules in groups if all("record" in r for r in rules)]
    return recording + [name for name, _ in groups if name not in recording]


def block(order):
    return NOTE + "group_eval_order:\n" + "".join(f"  - {name}\n" for name in order)


def test_files(root=ROOT):
    return sorted(glob.glob(os.path.join(root, "tests", "rules", "*_test.yml")))


def rewrite(text, order):
    """The test file's text with its group_eval_order block replaced (or added after
    evaluation_interval)."""
    if BLOCK.search(text):
        return BLOCK.sub(lambda _: block(order), text, count=1)
    return re.sub(r"^(evaluation_interval:.*\n)", lambda m: m.group(1) + block(order), text,
                  count=1, flags=re.M)


def main(argv):
    order = canonical_order()
    stale = []
    for path in test_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = rewrite(text, order)
        if new == text:
            continue
        stale.append(os.path.relpath(path, ROOT))
        if "--check" not in argv:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
    for path in stale:
        print(("stale: " if "--check" in argv else "wrote: ") + path)
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
