#!/usr/bin/env bash
# Checks the Grafana dashboard and the Prometheus rules against the real services:
#  1. starts a tracker and two peers (debug build) on loopback, drives a small scenario
#     (register, search, get, upload, a refused upload), and scrapes every /metrics;
#  2. every metric name in the dashboard's and the rules' PromQL must appear in those scrapes;
#  3. a real Prometheus scrapes the three processes, and every dashboard query must return data
#     (a healthy, quiet system reads 0 rather than "No data");
#  4. promtool checks the rule file and runs its unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
dashboard=helm/p2pshare/dashboards/p2pshare.json
rules=helm/p2pshare/rules/p2pshare.yaml
rules_test=helm/p2pshare/rules/p2pshare_test.yaml

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  # promtool and prometheus come with Debian's prometheus package.
  sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# PyYAML: from check-deploy's venv when it exists, else the system python's, installed if missing.
py=python3
[ -x .local/venv-tools/bin/python ] && py=.local/venv-tools/bin/python
"$py" -c 'import yaml' 2>/dev/null || "$py" -m pip install -q pyyaml

[ -x target/debug/p2p-tracker ] && [ -x target/debug/p2p-peer ] || cargo build --locked --bins
bin=$PWD/target/debug
work=$(mktemp -d)
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; sleep 0.2; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
tport=$(free_port); p1=$(free_port); p2=$(free_port)
export P2P_TELEMETRY__LOG_LEVEL=warn
"$bin/p2p-tracker" --listen "127.0.0.1:$tport" & pids+=($!)
mkdir -p "$work/s1" "$work/s2"
head -c 300000 /dev/urandom > "$work/s1/data.bin"
"$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" serve --id obs1 --listen "127.0.0.1:$p1" --files-dir "$work/s1" & pids+=($!)
"$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" serve --id obs2 --listen "127.0.0.1:$p2" --files-dir "$work/s2" & pids+=($!)
for port in "$p1" "$p2"; do
  for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

cli() { "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" "$@"; }
cli search data >/dev/null
cli ls >/dev/null
cli get data.bin -o "$work/got.bin" >/dev/null 2>&1
cli search nothing-like-this >/dev/null 2>&1 || true
echo hello > "$work/up.txt"
cli put "$work/up.txt" --peer "127.0.0.1:$p2" >/dev/null
echo other > "$work/other.txt" && cp "$work/other.txt" "$work/up2" && mv "$work/up2" "$work/up.txt"
cli put "$work/up.txt" --peer "127.0.0.1:$p2" >/dev/null 2>&1 || true

curl -fs "http://127.0.0.1:$tport/metrics" > "$work/tracker.prom"
curl -fs "http://127.0.0.1:$p1/metrics" > "$work/peer1.prom"
curl -fs "http://127.0.0.1:$p2/metrics" > "$work/peer2.prom"

"$py" scripts/check_promql_metrics.py --self-test
"$py" scripts/check_promql_metrics.py --dashboard "$dashboard" --rules "$rules" \
  "$work/tracker.prom" "$work/peer1.prom" "$work/peer2.prom"

# A real Prometheus scraping every second: rates need two samples inside the window.
pport=$(free_port)
cat > "$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: p2pshare
    static_configs:
      - targets: ["127.0.0.1:$tport", "127.0.0.1:$p1", "127.0.0.1:$p2"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$pport"
# Ready once every target has at least 5 samples within the last 15 s (deadline 60 s).
ready=
for _ in $(seq 600); do
  n=$(curl -fsG "$prom/api/v1/query" --data-urlencode 'query=count(count_over_time(up[15s]) >= 5)' 2>/dev/null |
    "$py" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null) || n=0
  [ "$n" = 3 ] && { ready=1; break; }
  sleep 0.1
done
[ -n "$ready" ] || { echo "prometheus did not scrape all three targets in time"; cat "$work/prometheus.log"; exit 1; }
"$py" scripts/check_promql_metrics.py --dashboard "$dashboard" --prometheus "$prom" --rate-interval 15s
promtool check rules "$rules"
[ -f "$rules_test" ] && promtool test rules "$rules_test"
echo "observability checks passed"
