#!/usr/bin/env bash
# Tests the dashboards and the deployment files (docs/dashboards.md, "Tests"):
#   - grafana/dashboards/*.json are what grafana/build_dashboards.py writes, and the scaling table's
#     actions are those of the alerts in rules/;
#   - the linter's own tests, then the linter on every dashboard (tests/dashboards/lint_dashboards.py);
#   - the application metrics the rules read are spelled in rules/ and docs/ as in docs/metrics.md
#     (tests/dashboards/check_app_metrics.py);
#   - docker-compose config -q, with and without --profile demo; the mounts, images, healthchecks
#     and cross-references of the deployment files (tests/dashboards/check_stack.py);
#   - promtool check config on both Prometheus configs (which checks rules/ too), amtool
#     check-config on alertmanager/alertmanager.yml when it exists;
#   - deploy/native-stack.sh brings up Prometheus (and Alertmanager) on free ports, every dashboard
#     query and variable query runs against it without error (tests/dashboards/query_dashboards.py),
#     and it goes down. The exporter runs too (STACK_EXPORTER_BIN, by default the newer of
#     target/release and target/debug/stack_exporter when built; STACK_EXPORTER_BIN= to leave it
#     out), and then the host and service panels must return data. An application target
#     (tests/dashboards/app_metrics.py: the app-side histograms) is scraped as a job of its own
#     (APP_TARGETS), and with the exporter's instance picked, the app-side panels must return data
#     through the App job variable. Alertmanager must run with the receiver url given in
#     ALERTMANAGER_WEBHOOK_URL; native-stack.sh must refuse a url it cannot place.
# Needs python3 with PyYAML, docker-compose (1.28+ for profiles), promtool, prometheus, curl;
# amtool and prometheus-alertmanager when alertmanager/alertmanager.yml exists. On Debian:
#   apt-get install python3-yaml docker-compose prometheus prometheus-alertmanager curl
# Ends with one line, `dashboards: N passed, M failed`; exits 1 when anything failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
native_dir=""
app_pid=""

ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$1"; }

# run NAME CMD...: one check; its output is shown indented when it fails.
run() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    ok "$name"
  else
    fail "$name"
    printf '%s\n' "$out" | sed 's/^/     /'
  fi
}

# counted NAME CMD...: a command that ends with "<x>: N passed, M failed"; adds its counts.
counted() {
  local name=$1 out summary p f
  shift
  out=$("$@" 2>&1)
  local rc=$?
  summary=$(printf '%s\n' "$out" | tail -n 1)
  if [[ $summary =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    p=${BASH_REMATCH[1]}
    f=${BASH_REMATCH[2]}
  else
    p=0
    f=1
  fi
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
  passed=$((passed + p))
  failed=$((failed + f))
  printf '%s\n' "$out" | sed '$d' | sed "s/^\(ok  \|FAIL\) /\1 $name: /"
  [ "$f" -eq 0 ] || printf 'FAIL %s: %s\n' "$name" "$summary"
}

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    fail "$1 is not installed: $2"
    return 1
  fi
}

vm_pid=""
cleanup() {
  if [ -n "$vm_pid" ]; then
    kill "$vm_pid" 2>/dev/null
    wait "$vm_pid" 2>/dev/null
    vm_pid=""
  fi
  if [ -n "$app_pid" ]; then
    kill "$app_pid" 2>/dev/null
    wait "$app_pid" 2>/dev/null
    app_pid=""
  fi
  if [ -n "$native_dir" ]; then
    STACK_NATIVE_DIR=$native_dir deploy/native-stack.sh down >/dev/null 2>&1
    rm -rf "$native_dir"
    native_dir=""
app_pid=""
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

if ! python3 -c 'import yaml' 2>/dev/null; then
  fail "python3 with PyYAML (apt-get install python3-yaml)"
else
  run "dashboards are generated (grafana/build_dashboards.py --check)" \
    python3 grafana/build_dashboards.py --check
  run "linter tests (tests/dashboards/test_lint.py)" python3 tests/dashboards/test_lint.py
  counted lint python3 tests/dashboards/lint_dashboards.py
  counted app-metrics python3 tests/dashboards/check_app_metrics.py

  if need docker-compose "apt-get install docker-compose"; then
    # Grafana's admin password has no default (the compose file refuses to start without one).
    export GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-config-check-only}"
    run "docker-compose config -q" docker-compose -f docker-compose.yml config -q
    if docker-compose --help 2>/dev/null | grep -- '--profile' >/dev/null; then
      run "docker-compose --profile demo config -q" \
        docker-compose -f docker-compose.yml --profile demo config -q
    else
      fail "docker-compose $(docker-compose version --short 2>/dev/null) has no profiles (needs 1.28+)"
    fi
    counted stack python3 tests/dashboards/check_stack.py
  fi
fi

if need promtool "apt-get install prometheus"; then
  run "promtool check config prometheus/prometheus.yml" \
    promtool check config prometheus/prometheus.yml
  run "promtool check config prometheus/prometheus-h4.yml" \
    promtool check config prometheus/prometheus-h4.yml
  run "promtool check config prometheus/prometheus-native.yml" \
    promtool check config prometheus/prometheus-native.yml
fi
if [ -f alertmanager/alertmanager.yml ]; then
  need amtool "apt-get install prometheus-alertmanager" &&
    run "amtool check-config alertmanager/alertmanager.yml" \
      amtool check-config alertmanager/alertmanager.yml
else
  printf 'skip amtool: no alertmanager/alertmanager.yml\n'
fi
run "bash -n deploy/native-stack.sh" bash -n deploy/native-stack.sh

# refuses NAME MESSAGE VAR=VALUE...: `deploy/native-stack.sh check` with these settings fails and
# says MESSAGE.
refuses() {
  local name=$1 message=$2 dir out
  shift 2
  dir=$(mktemp -d)
  if out=$(env STACK_NATIVE_DIR="$dir" "$@" deploy/native-stack.sh check 2>&1); then
    fail "$name: accepted"
  elif [[ $out != *"$message"* ]]; then
    fail "$name: did not say '$message'"
    printf '%s\n' "$out" | sed 's/^/     /'
  else
    ok "$name"
  fi
  rm -rf "$dir"
}
if [ -f alertmanager/alertmanager.yml ] && command -v promtool >/dev/null &&
  command -v amtool >/dev/null; then
  refuses "native-stack.sh refuses a webhook url that is not http(s)" \
    "must be an http:// or https://" \
    ALERTMANAGER_WEBHOOK_URL=ftp://example.org/hook
  own_config=$(mktemp)
  sed 's|url: http://127.0.0.1:5001/alerts|url: https://example.org/own|' \
    alertmanager/alertmanager.yml >"$own_config"
  refuses "native-stack.sh refuses a webhook url for a config without the placeholder" \
    "no single \`url: http://127.0.0.1:5001/alerts\` line" \
    ALERTMANAGER_WEBHOOK_URL=https://example.org/hook ALERTMANAGER_CONFIG="$own_config"
  rm -f "$own_config"
  refuses "native-stack.sh refuses a malformed APP_TARGETS entry" "is not JOB=HOST:PORT" \
    'APP_TARGETS=celery localhost:9808'
fi

# The queries against a real Prometheus, started by the native stack script.
if need prometheus "apt-get install prometheus" && need curl "apt-get install curl" &&
  python3 -c 'import yaml' 2>/dev/null; then
  native_dir=$(mktemp -d)
  export STACK_NATIVE_DIR=$native_dir STACK_GRAFANA=0
  export PROMETHEUS_PORT=$(free_port) ALERTMANAGER_PORT=$(free_port)
  export EXPORTER_ADDRESS=127.0.0.1:$(free_port)
  # The application's own metrics, on a port of their own and scraped as the job `app`.
  app_port=$(free_port)
  python3 tests/dashboards/app_metrics.py "$app_port" &
  app_pid=$!
  export APP_TARGETS="app=127.0.0.1:$app_port"
  # A receiver url of our own: Alertmanager must run with it instead of the placeholder.
  webhook_url="http://127.0.0.1:$(free_port)/stack-test-hook?t=a&b=c"
  export ALERTMANAGER_WEBHOOK_URL=$webhook_url
  # The finding of issue 17: once an exporter instance is picked, the app panels must not go
  # empty; they are selected by $app_job alone.
  require=(--instance "$EXPORTER_ADDRESS" --require-preset app --require-variable app_job
    --wait 90)
  if [ -z "${STACK_EXPORTER_BIN+set}" ]; then
    for bin in target/release/stack_exporter target/debug/stack_exporter; do
      if [ -x "$bin" ] && { [ -z "${STACK_EXPORTER_BIN:-}" ] || [ "$bin" -nt "$STACK_EXPORTER_BIN" ]; }; then
        STACK_EXPORTER_BIN=$PWD/$bin
      fi
    done
  fi
  export STACK_EXPORTER_BIN=${STACK_EXPORTER_BIN:-}
  if [ -n "$STACK_EXPORTER_BIN" ]; then
    export SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-2s}
    require+=(--require-preset host --require-preset services --require-variable job
      --require-variable instance)
  fi
  # Past one Prometheus: the same samples remote-written to VictoriaMetrics (issue 12), where the
  # dashboards and the rule expressions must answer as they do on Prometheus.
  vm_url=""
  if need victoria-metrics "apt-get install victoria-metrics"; then
    vm_port=$(free_port)
    victoria-metrics -storageDataPath="$native_dir/victoria-metrics" \
      -httpListenAddr="127.0.0.1:$vm_port" -search.latencyOffset=1s -loggerLevel=ERROR \
      >"$native_dir/victoria-metrics.log" 2>&1 &
    vm_pid=$!
    vm_url="http://127.0.0.1:$vm_port"
    export REMOTE_WRITE_URL="$vm_url/api/v1/write"
  fi
  if out=$(deploy/native-stack.sh up 2>&1); then
    ok "deploy/native-stack.sh up"
    run "every dashboard query runs (tests/dashboards/query_dashboards.py with required data)" \
      python3 tests/dashboards/query_dashboards.py --quiet "http://127.0.0.1:$PROMETHEUS_PORT" \
      "${require[@]}"
    if [ -n "$vm_url" ]; then
      run "every dashboard query runs on VictoriaMetrics (remote_write, required data)" \
        python3 tests/dashboards/query_dashboards.py --quiet "$vm_url" "${require[@]}"
      counted "rules on VictoriaMetrics" \
        python3 tests/dashboards/query_rules.py "$vm_url" --compare "http://127.0.0.1:$PROMETHEUS_PORT"
    fi
    if [ -f alertmanager/alertmanager.yml ]; then
      run "Alertmanager posts to ALERTMANAGER_WEBHOOK_URL" python3 -c '
import json, sys, urllib.request, yaml
status = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v2/status", timeout=10))
config = yaml.safe_load(status["config"]["original"])
urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs") or []]
sys.exit(0 if urls == [sys.argv[2]] else "receiver urls %r, not [%r]" % (urls, sys.argv[2]))
' "http://127.0.0.1:$ALERTMANAGER_PORT" "$webhook_url"
    fi
  else
    fail "deploy/native-stack.sh up"
    printf '%s\n' "$out" | sed 's/^/     /'
  fi
  if STACK_NATIVE_DIR=$native_dir deploy/native-stack.sh down >/dev/null 2>&1 &&
    [ -z "$(STACK_NATIVE_DIR=$native_dir deploy/native-stack.sh status | grep pid)" ]; then
    ok "deploy/native-stack.sh down"
  else
    fail "deploy/native-stack.sh down"
  fi
  cleanup
fi

echo "dashboards: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
