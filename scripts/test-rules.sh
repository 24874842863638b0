#!/usr/bin/env bash
# Lints and tests the Prometheus rules (rules/), their promtool tests (tests/rules/) and the
# Alertmanager configuration (alertmanager/). Exits non-zero if any check fails; the last line is
# "rules: N passed, M failed".
#
# Needs: promtool (Prometheus >= 2.42), amtool (Alertmanager), and python3 with PyYAML
# (Debian: apt-get install prometheus prometheus-alertmanager python3-yaml; or pip install pyyaml).
set -u
cd "$(dirname "$0")/.." || exit 1

passed=0
failed=0

# run DESCRIPTION COMMAND...: one check; its output is shown only when it fails.
run() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "ok   $what"
    else
        failed=$((failed + 1))
        echo "FAIL $what"
        printf '%s\n' "$out" | sed 's/^/     /'
    fi
}

for file in rules/*.yml; do
    run "promtool check rules $file" promtool check rules "$file"
done
for file in tests/rules/*.yml; do
    run "promtool test rules $file" promtool test rules "$file"
done
run "amtool check-config alertmanager/alertmanager.yml" \
    amtool check-config alertmanager/alertmanager.yml

# Every alert tested and documented, every THRESHOLDS row covered, ...: one line per check and a
# summary "check_rules: N passed, M failed", whose counts join ours.
out=$(python3 tests/rules/check_rules.py 2>&1)
status=$?
printf '%s\n' "$out" | grep -v '^check_rules: '
summary=$(printf '%s\n' "$out" | sed -n 's/^check_rules: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
if [ -n "$summary" ]; then
    read -r ok bad <<<"$summary"
    passed=$((passed + ok))
    failed=$((failed + bad))
fi
if [ "$status" -ne 0 ] && { [ -z "$summary" ] || [ "${bad:-0}" -eq 0 ]; }; then
    failed=$((failed + 1))   # the checker itself broke (no PyYAML, a parse error)
    echo "FAIL tests/rules/check_rules.py exited $status"
fi

echo "rules: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
