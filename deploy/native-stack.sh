#!/usr/bin/env bash
# The monitoring stack without Docker: Prometheus with prometheus/prometheus-native.yml and the
# repository's rules/, Alertmanager with alertmanager/alertmanager.yml, from Debian's `prometheus`
# and `prometheus-alertmanager` packages, each on a localhost port with its data in one directory.
# Optionally also the exporter (STACK_EXPORTER_BIN) and Grafana (when installed). docs/native-stack.md
# explains it.
#
#   deploy/native-stack.sh up       start what is not running, wait until it is ready
#   deploy/native-stack.sh down     stop what `up` started (by the pids it wrote)
#   deploy/native-stack.sh status   what runs, and where
#   deploy/native-stack.sh check    render the configs and check them (promtool, amtool); start nothing
#   deploy/native-stack.sh render   print the Prometheus config `up` would use
#   deploy/native-stack.sh render-alertmanager   print the Alertmanager config `up` would use
#
# Settings (environment):
#   STACK_NATIVE_DIR     data, logs, pid files, rendered configs   (default ${TMPDIR:-/tmp}/stack-native)
#   PROMETHEUS_PORT      9090          ALERTMANAGER_PORT   9093          GRAFANA_PORT   3000
#   EXPORTER_ADDRESS     host:port Prometheus scrapes the exporter at   (default localhost:9488)
#   SCRAPE_INTERVAL      scrape and rule evaluation interval            (default 15s)
#   SCRAPE_TIMEOUT       default 10s, or SCRAPE_INTERVAL when that is set and shorter
#   ALERTMANAGER_CONFIG  default alertmanager/alertmanager.yml; without it Alertmanager is skipped
#   ALERTMANAGER_WEBHOOK_URL  where the receiver posts: replaces the config's placeholder
#                        `url: http://127.0.0.1:5001/alerts` (unset: the placeholder stays)
#   APP_TARGETS          the application's own metrics, scraped as jobs of their own:
#                        "JOB=HOST:PORT[,HOST:PORT...] ...", e.g. "celery=localhost:9808"
#   REMOTE_WRITE_URL     also send every sample to this Prometheus remote-write endpoint, e.g.
#                        VictoriaMetrics' http://HOST:8428/api/v1/write (docs/native-stack.md)
#   STACK_EXPORTER_BIN   start this stack_exporter binary too, on EXPORTER_ADDRESS
#   STACK_EXPORTER_ARGS  extra flags for it (e.g. --config.file=/etc/stack_exporter/config.toml)
#   STACK_GRAFANA        0 to skip Grafana even when it is installed
#   GRAFANA_ADMIN_PASSWORD  Grafana's admin password; unset: one is generated at the first start,
#                        kept (0600) in STACK_NATIVE_DIR/grafana-admin-password and printed once
#   PROMETHEUS, ALERTMANAGER, PROMTOOL, AMTOOL, GRAFANA   the binaries (default: found on PATH)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${STACK_NATIVE_DIR:-${TMPDIR:-/tmp}/stack-native}
prometheus_port=${PROMETHEUS_PORT:-9090}
alertmanager_port=${ALERTMANAGER_PORT:-9093}
grafana_port=${GRAFANA_PORT:-3000}
exporter_address=${EXPORTER_ADDRESS:-localhost:9488}
scrape_interval=${SCRAPE_INTERVAL:-15s}
# A timeout longer than the interval is refused: by default 10s, or the interval when shorter.
scrape_timeout=${SCRAPE_TIMEOUT:-10s}
[ -n "${SCRAPE_TIMEOUT:-}" ] || [ "$scrape_interval" = 15s ] || scrape_timeout=$scrape_interval
alertmanager_config=${ALERTMANAGER_CONFIG:-$repo/alertmanager/alertmanager.yml}
# The receiver's url in alertmanager/alertmanager.yml: ALERTMANAGER_WEBHOOK_URL replaces it.
webhook_placeholder='url: http://127.0.0.1:5001/alerts'

find_bin() { # first of the names that is on PATH (or in /usr/sbin), empty if none
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
    if [ -x "/usr/sbin/$name" ]; then echo "/usr/sbin/$name"; return; fi
  done
}
prometheus_bin=${PROMETHEUS:-$(find_bin prometheus)}
alertmanager_bin=${ALERTMANAGER:-$(find_bin prometheus-alertmanager alertmanager)}
promtool_bin=${PROMTOOL:-$(find_bin promtool)}
amtool_bin=${AMTOOL:-$(find_bin amtool)}
grafana_bin=${GRAFANA:-$(find_bin grafana grafana-server)}

say() { printf 'native-stack: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The Prometheus config `up` runs: prometheus-native.yml with the ports and interval asked for,
# rule_files pointing at this repository's rules/, and the APP_TARGETS jobs.
render() {
  sed -e "s|\"localhost:9488\"|\"$exporter_address\"|" \
      -e "s|\"localhost:9093\"|\"localhost:$alertmanager_port\"|g" \
      -e "s|\"localhost:9090\"|\"localhost:$prometheus_port\"|g" \
      -e "s|^\(  scrape_interval:\).*|\1 $scrape_interval|" \
      -e "s|^\(  scrape_timeout:\).*|\1 $scrape_timeout|" \
      -e "s|^\(  evaluation_interval:\).*|\1 $scrape_interval|" \
      -e "s|\.\./rules/|$repo/rules/|" \
      "$repo/prometheus/prometheus-native.yml"
  render_app_targets
  render_remote_write
}

# A remote_write section for REMOTE_WRITE_URL: the store a team moves to when one Prometheus is
# not enough; rules still evaluate here, and their recorded series are sent along.
render_remote_write() {
  local url=${REMOTE_WRITE_URL:-}
  [ -n "$url" ] || return 0
  [[ $url =~ ^https?://[^[:space:]\'\"]+$ ]] || die "REMOTE_WRITE_URL must be an http:// or https:// URL"
  printf "\n# REMOTE_WRITE_URL (deploy/native-stack.sh)\nremote_write:\n  - url: '%s'\n" "$url"
}

# One scrape job per APP_TARGETS entry, appended to scrape_configs (the file's last section): the
# app-side series (docs/metrics.md) keep their own job, which the dashboards' App job variable
# lists.
render_app_targets() {
  local entry job targets
  [ -n "${APP_TARGETS:-}" ] || return 0
  printf "\n  # APP_TARGETS: the application's own metrics (deploy/native-stack.sh)\n"
  for entry in $APP_TARGETS; do
    job=${entry%%=*}
    targets=${entry#*=}
    [[ $entry == *=* && $job =~ ^[A-Za-z_][A-Za-z0-9_-]*$ && $targets =~ ^[][A-Za-z0-9._:,-]+$ ]] ||
      die "APP_TARGETS entry '$entry' is not JOB=HOST:PORT[,HOST:PORT...]"
    printf '  - job_name: %s\n    static_configs:\n      - targets: ["%s"]\n' \
      "$job" "${targets//,/\", \"}"
  done
}

# The Alertmanager config `up` runs: ALERTMANAGER_CONFIG with the receiver's placeholder url
# replaced by ALERTMANAGER_WEBHOOK_URL. Alertmanager 0.25 (Debian's) reads no environment and has
# no url_file (0.26+), so the url is written into this copy.
render_alertmanager() {
  local url=${ALERTMANAGER_WEBHOOK_URL:-} out
  if [ -z "$url" ]; then
    cat "$alertmanager_config"
    return
  fi
  [[ $url =~ ^https?://[^[:space:]]+$ ]] ||
    die "ALERTMANAGER_WEBHOOK_URL must be an http:// or https:// URL"
  # awk with ENVIRON, not sed: & | \ in the url stay literal. Single-quoted YAML ('' is a quote).
  # Only a `url:` line (under `- ` or not) is replaced, never a comment; exactly one must be.
  out=$(PLACEHOLDER=$webhook_placeholder URL="url: '${url//\'/\'\'}'" awk '
    { i = index($0, ENVIRON["PLACEHOLDER"]) }
    i && substr($0, 1, i - 1) ~ /^[ -]*$/ &&
      substr($0, i + length(ENVIRON["PLACEHOLDER"])) ~ /^[ \t]*$/ {
      print substr($0, 1, i - 1) ENVIRON["URL"]; n++; next
    }
    { print }
    END { exit n == 1 ? 0 : 3 }' "$alertmanager_config") ||
    die "ALERTMANAGER_WEBHOOK_URL is set but $alertmanager_config has no single" \
      "\`$webhook_placeholder\` line to replace"
  printf '%s\n' "$out"
}

have_alertmanager() { [ -f "$alertmanager_config" ]; }

check() {
  mkdir -p "$dir"
  render >"$dir/prometheus.yml"
  [ -n "$promtool_bin" ] || die "promtool not found (apt-get install prometheus)"
  "$promtool_bin" check config "$dir/prometheus.yml" >/dev/null
  say "prometheus config ok ($dir/prometheus.yml)"
  if have_alertmanager; then
    [ -n "$amtool_bin" ] || die "amtool not found (apt-get install prometheus-alertmanager)"
    # 0600: the webhook url may carry a token.
    (umask 077 && render_alertmanager >"$dir/alertmanager.yml.new")
    mv "$dir/alertmanager.yml.new" "$dir/alertmanager.yml"
    "$amtool_bin" check-config "$dir/alertmanager.yml" >/dev/null
    say "alertmanager config ok ($dir/alertmanager.yml from $alertmanager_config)"
    if grep -v '^[[:space:]]*#' "$dir/alertmanager.yml" | grep -qF -- "$webhook_placeholder"; then
      say "alertmanager posts to the placeholder ${webhook_placeholder#url: }:" \
        "set ALERTMANAGER_WEBHOOK_URL"
    fi
  else
    say "no $alertmanager_config: Alertmanager would be skipped"
  fi
}

pid_of() { # pid from the pid file if that process still runs
  local file="$dir/$1.pid" pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_ready() { # name url: poll until it answers 200, or fail with its log
  local name=$1 url=$2 i
  for i in $(seq 1 120); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
      say "$name ready: $url"
      return 0
    fi
    pid_of "$name" >/dev/null || break
    sleep 0.5
  done
  say "$name did not become ready; last lines of $dir/$name.log:"
  tail -n 20 "$dir/$name.log" >&2 || true
  return 1
}

start() { # name port ready-url command...
  local name=$1 port=$2 url=$3
  shift 3
  if pid=$(pid_of "$name"); then
    say "$name already runs (pid $pid)"
    return 0
  fi
  port_free "$port" || die "port $port is taken: stop what uses it or set ${name^^}_PORT"
  setsid "$@" >"$dir/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
  wait_ready "$name" "$url"
}

up() {
  command -v curl >/dev/null || die "curl not found"
  [ -n "$prometheus_bin" ] || die "prometheus not found (apt-get install prometheus)"
  check
  if [ -n "${STACK_EXPORTER_BIN:-}" ]; then
    local exporter_port=${exporter_address##*:}
    # shellcheck disable=SC2086 # STACK_EXPORTER_ARGS is a list of flags
    start exporter "$exporter_port" "http://$exporter_address/-/healthy" \
      "$STACK_EXPORTER_BIN" "--web.listen-address=$exporter_address" ${STACK_EXPORTER_ARGS:-}
  fi
  if have_alertmanager; then
    [ -n "$alertmanager_bin" ] || die "alertmanager not found (apt-get install prometheus-alertmanager)"
    mkdir -p "$dir/alertmanager-data"
    start alertmanager "$alertmanager_port" "http://localhost:$alertmanager_port/-/ready" \
      "$alertmanager_bin" \
      "--config.file=$dir/alertmanager.yml" \
      "--storage.path=$dir/alertmanager-data" \
      "--web.listen-address=127.0.0.1:$alertmanager_port" \
      "--cluster.listen-address="
  fi
  mkdir -p "$dir/prometheus-data"
  start prometheus "$prometheus_port" "http://localhost:$prometheus_port/-/ready" \
    "$prometheus_bin" \
    "--config.file=$dir/prometheus.yml" \
    "--storage.tsdb.path=$dir/prometheus-data" \
    "--web.listen-address=127.0.0.1:$prometheus_port" \
    "--web.enable-lifecycle"
  if [ -n "$grafana_bin" ] && [ "${STACK_GRAFANA:-1}" != 0 ]; then
    local homepath=/usr/share/grafana sub=()
    [ "$(basename "$grafana_bin")" = grafana ] && sub=(server)
    mkdir -p "$dir/grafana-data" "$dir/grafana-logs" "$dir/grafana-plugins"
    local password
    password=$(grafana_admin_password)
    # The provisioning files read STACK_PROMETHEUS_URL and STACK_DASHBOARDS_DIR.
    STACK_PROMETHEUS_URL="http://localhost:$prometheus_port" \
    STACK_DASHBOARDS_DIR="$repo/grafana/dashboards" \
    GF_PATHS_PROVISIONING="$repo/grafana/provisioning" \
    GF_PATHS_DATA="$dir/grafana-data" GF_PATHS_LOGS="$dir/grafana-logs" \
    GF_PATHS_PLUGINS="$dir/grafana-plugins" \
    GF_SECURITY_ADMIN_USER=admin GF_SECURITY_ADMIN_PASSWORD="$password" \
    GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT="$grafana_port" \
    GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH="$repo/grafana/dashboards/stack-overview.json" \
      start grafana "$grafana_port" "http://localhost:$grafana_port/api/health" \
        "$grafana_bin" "${sub[@]}" --homepath "$homepath"
  fi
  status
}

# Grafana's admin password: GRAFANA_ADMIN_PASSWORD, else the one generated at the first start and
# kept beside the stack's data (Grafana sets it when it creates its database, so it must not change).
grafana_admin_password() {
  local file="$dir/grafana-admin-password"
  if [ -n "${GRAFANA_ADMIN_PASSWORD:-}" ]; then
    printf '%s' "$GRAFANA_ADMIN_PASSWORD"
    return
  fi
  if [ ! -s "$file" ]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$file")
    say "Grafana: user admin, password $(cat "$file") (generated now, kept in $file)"
  fi
  cat "$file"
}

down() {
  local name pid i
  for name in grafana prometheus alertmanager exporter; do
    if pid=$(pid_of "$name"); then
      kill "$pid"
      for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
      say "stopped $name (pid $pid)"
    fi
    rm -f "$dir/$name.pid"
  done
}

status() {
  local name pid
  for name in exporter alertmanager prometheus grafana; do
    if pid=$(pid_of "$name"); then
      case $name in
        exporter) where="http://$exporter_address/metrics" ;;
        alertmanager) where="http://localhost:$alertmanager_port" ;;
        prometheus) where="http://localhost:$prometheus_port" ;;
        grafana) where="http://localhost:$grafana_port" ;;
      esac
      printf '%-13s pid %-8s %s\n' "$name" "$pid" "$where"
    fi
  done
  printf 'data and logs: %s\n' "$dir"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  check) check ;;
  render) render ;;
  render-alertmanager) render_alertmanager ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
