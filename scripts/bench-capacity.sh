#!/usr/bin/env bash
# Capacity benchmark (issue 12): how many hosts one Prometheus holds. Starts throwaway PostgreSQL
# and Redis (scripts/lib/throwaway-servers.sh: temp dir, free ports, never the machine's own; it
# starts a MariaDB too, which no H4 role watches), then scripts/bench-capacity.py runs N exporters
# against them, scraped by a real Prometheus with prometheus/prometheus-h4.yml and rules/, for each
# N. Builds the release binary unless --binary is given. Arguments go to scripts/bench-capacity.py
# (--help); figures and how to read them: docs/performance.md.
# Needs: apt-get install prometheus postgresql redis-server mariadb-server python3-yaml
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
    *" --binary"*) ;;
    *) cargo build --release --quiet ;;
esac
source scripts/lib/throwaway-servers.sh
start_throwaway_servers
export PW PG_PORT REDIS_PORT
python3 scripts/bench-capacity.py "$@"
