#!/usr/bin/env bash
# GetPeersByDigest as one file's swarm grows (issue 16, not run in CI): release build; trackers
# on the memory store and on Redis, each filled with 100, 1,000 or 10,000 holders of one digest
# (one in ten partial); then ROUNDS rounds, alternating over every tracker so that noise from
# other work spreads over all of them, each timing CALLS answers one after another. The tracker
# answers a random sample of `registry.holders_per_answer` holders, so answer and cost should
# stay flat: the report gives the median cost per call at each size as a ratio to the
# 100-holder tracker of the same store (goal <= 1.2), which holds on any machine.
#
#   scripts/bench-holders.sh            # needs redis-server and redis-cli
#   ROUNDS=5 CALLS=2000 scripts/bench-holders.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "bench-holders: $tool is missing" >&2; exit 2; }
done
ROUNDS=${ROUNDS:-5} CALLS=${CALLS:-2000} SIZES=${SIZES:-100 1000 10000}
cargo build --release --locked -q -p p2p-tracker --bin p2p-tracker --example bench_holders
tracker=target/release/p2p-tracker bench=target/release/examples/bench_holders
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # WHAT CMD... : poll CMD for up to 30 s
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench-holders: $what not ready after 30 s" >&2; exit 1
}
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for redis-server redis-cli -p "$redis_port" ping

declare -A url_of
names=()
for store in memory redis; do
  for n in $SIZES; do
    name=$store-$n port=$(free_port)
    env -u P2P_CONFIG P2P_REGISTRY__STORE="$store" P2P_TELEMETRY__LOG_LEVEL=warn \
      P2P_REGISTRY__MAX_PEERS_PER_ADDRESS=0 P2P_REGISTRY__MAX_FILES_PER_ADDRESS=0 \
      P2P_REGISTRY__MAX_NAME_BYTES_PER_ADDRESS=0 P2P_REGISTRY__MAX_PEERS=10000000 \
      P2P_REGISTRY__MAX_FILES=100000000 P2P_REGISTRY__MAX_NAME_BYTES=100000000000 \
      P2P_REGISTRY__REDIS_URL="redis://127.0.0.1:$redis_port/0" P2P_REGISTRY__REDIS_PREFIX="$name:" \
      "$tracker" serve --listen "127.0.0.1:$port" --lease-ttl 6h >"$work/$name.log" 2>&1 &
    pids+=($!)
    wait_for "tracker $name" "$tracker" health --addr "127.0.0.1:$port"
    url_of[$name]=http://127.0.0.1:$port
    "$bench" fill "${url_of[$name]}" "$n"
    names+=("$name")
  done
done
for round in $(seq "$ROUNDS"); do
  for name in "${names[@]}"; do
    echo "$name $("$bench" time "${url_of[$name]}" "$CALLS")" >>"$work/times.txt"
  done
  echo "round $round/$ROUNDS done" >&2
done

echo
echo "== bench-holders report ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), median of $ROUNDS rounds x $CALLS calls) =="
python3 - "$work/times.txt" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list); answer = {}
for line in open(sys.argv[1]):
    name, *kv = line.split()
    d = dict(x.split("=") for x in kv)
    runs[name].append(float(d["us_per_call"])); answer[name] = d["answer"]
for store in ("memory", "redis"):
    rows = sorted((int(n.split("-")[1]), statistics.median(v), n) for n, v in runs.items() if n.startswith(store))
    base = rows[0][1]
    parts = [f"{n} holders: answer {answer[name]}, {us:.0f} us/call ({us / base:.2f}x)" for n, us, name in rows]
    worst = max(us / base for _, us, _ in rows)
    print(f"{store}: " + "; ".join(parts) + f"; worst {worst:.2f}x the smallest (goal <= 1.2)")
PY
