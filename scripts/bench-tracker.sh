#!/usr/bin/env bash
# Tracker throughput (not run in CI): release build, a tracker filled with PEERS x FILES files
# (1,000 x 11 and a 100,000-name run), h2load sending gRPC unary frames: exact Search, substring
# Search, Heartbeat; on the memory store, on Redis with one tracker, and on two trackers sharing
# one Redis (load split across them). Reports req/s, p50/p99 latency and server CPU per run and
# the median of ROUNDS rounds; rounds alternate over every (store, call) pair so that noise from
# other work on the machine spreads over all of them. A reference run in the same rounds: a tonic
# server of the same service with no logic (examples/bench_reference.rs; Search answers a fixed
# message the size of the real exact answer), so the tracker's figures read as a ratio to its
# framework's under the same h2load load.
#
#   scripts/bench-tracker.sh                # needs h2load (nghttp2-client) and redis-server
#   ROUNDS=3 N=60000 C=16 M=8 scripts/bench-tracker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in h2load redis-server redis-cli python3 bc curl; do
  command -v "$tool" >/dev/null || {
    echo "bench-tracker: $tool is missing (apt-get install nghttp2-client redis-server redis-tools python3 bc curl)" >&2
    exit 2
  }
done
ROUNDS=${ROUNDS:-3} N=${N:-60000} C=${C:-16} M=${M:-8}
BIG_FILES=${BIG_FILES:-100}

cargo build --release --locked -q -p p2p-tracker --bin p2p-tracker --example bench_populate --example bench_reference
out=${CARGO_TARGET_DIR:-target}/release
tracker=$out/p2p-tracker populate=$out/examples/bench_populate
reference=$out/examples/bench_reference
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # WHAT CMD... : poll CMD for up to 30 s
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench-tracker: $what not ready after 30 s" >&2; exit 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for redis-server redis-cli -p "$redis_port" ping

declare -A port_of pid_of
start_tracker() { # NAME STORE PREFIX
  local name=$1 store=$2 prefix=$3 port
  port=$(free_port)
  env -u P2P_CONFIG P2P_REGISTRY__STORE="$store" P2P_TELEMETRY__LOG_LEVEL=warn \
    P2P_REGISTRY__MAX_PEERS_PER_ADDRESS=0 P2P_REGISTRY__MAX_FILES_PER_ADDRESS=0 \
    P2P_REGISTRY__MAX_NAME_BYTES_PER_ADDRESS=0 P2P_REGISTRY__MAX_PEERS=10000000 \
    P2P_REGISTRY__MAX_FILES=100000000 P2P_REGISTRY__MAX_NAME_BYTES=100000000000 \
    P2P_REGISTRY__REDIS_URL="redis://127.0.0.1:$redis_port/0" P2P_REGISTRY__REDIS_PREFIX="$prefix" \
    "$tracker" serve --listen "127.0.0.1:$port" --lease-ttl 6h >"$work/$name.log" 2>&1 &
  pids+=($!); pid_of[$name]=$!; port_of[$name]=$port
  wait_for "tracker $name" "$tracker" health --addr "127.0.0.1:$port"
}

# Setups: name -> trackers (space-separated), and how each is filled.
declare -A trackers_of files_of
setups=(reference memory redis-1 redis-2 memory-100k redis-1-100k)
ref_port=$(free_port)
"$reference" "127.0.0.1:$ref_port" 1000 11 >"$work/reference.log" 2>&1 &
pids+=($!); pid_of[reference]=$!; port_of[reference]=$ref_port; trackers_of[reference]=reference
wait_for reference bash -c "exec 3<>/dev/tcp/127.0.0.1/$ref_port"
start_tracker memory memory x:;            trackers_of[memory]=memory;            files_of[memory]=11
start_tracker redis-1 redis r1:;           trackers_of[redis-1]=redis-1;          files_of[redis-1]=11
start_tracker redis-2a redis r2:
start_tracker redis-2b redis r2:;          trackers_of[redis-2]="redis-2a redis-2b"; files_of[redis-2]=11
start_tracker memory-100k memory x:;       trackers_of[memory-100k]=memory-100k;  files_of[memory-100k]=$BIG_FILES
start_tracker redis-1-100k redis r3:;      trackers_of[redis-1-100k]=redis-1-100k; files_of[redis-1-100k]=$BIG_FILES

for s in "${setups[@]}"; do
  [ "$s" = reference ] && continue # answers without a registry; sent the memory setup's frames
  first=${trackers_of[$s]%% *}
  mkdir -p "$work/frames-$s"
  t0=$(date +%s.%N)
  "$populate" "http://127.0.0.1:${port_of[$first]}" 1000 "${files_of[$s]}" "$work/frames-$s" >/dev/null
  printf 'filled %-13s 1000 peers x %3s files in %.1f s\n' "$s" "${files_of[$s]}" "$(echo "$(date +%s.%N) - $t0" | bc)"
done

ln -s "$work/frames-memory" "$work/frames-reference"

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A paths=([exact]=Search [substring]=Search [heartbeat]=Heartbeat)
declare -A frame_of=([exact]=search-exact.bin [substring]=search-substring.bin [heartbeat]=heartbeat.bin)
results=$work/results.tsv; : >"$results"

run_one() { # SETUP CALL ROUND
  local s=$1 call=$2 round=$3 names n_each c_each before=() i=0 t0 t1
  read -r -a names <<<"${trackers_of[$s]}"
  n_each=$((N / ${#names[@]})); c_each=$((C / ${#names[@]}))
  for t in "${names[@]}"; do before+=("$(cpu_ticks "${pid_of[$t]}")"); done
  t0=$(date +%s.%N)
  local hpids=()
  for t in "${names[@]}"; do
    h2load -n "$n_each" -c "$c_each" -m "$M" -d "$work/frames-$s/${frame_of[$call]}" \
      -H 'content-type: application/grpc' -H 'te: trailers' \
      --log-file "$work/log-$t" \
      "http://127.0.0.1:${port_of[$t]}/p2pshare.tracker.v1.TrackerService/${paths[$call]}" \
      >"$work/out-$t" 2>&1 &
    hpids+=($!)
  done
  for p in "${hpids[@]}"; do wait "$p"; done
  t1=$(date +%s.%N)
  local rps=0 cpu=0 ok=1
  for t in "${names[@]}"; do
    grep -q "succeeded, 0 failed, 0 errored" "$work/out-$t" || ok=0
    rps=$(echo "$rps + $(awk '/^finished in/ {print $4}' "$work/out-$t")" | bc)
    cpu=$(echo "$cpu + ($(cpu_ticks "${pid_of[$t]}") - ${before[$i]}) / $ticks" | bc -l)
    i=$((i + 1))
  done
  local wall pcts
  wall=$(echo "$t1 - $t0" | bc -l)
  pcts=$(cat "${names[@]/#/$work/log-}" | awk '{print $3}' | sort -n |
    awk '{v[NR]=$1} END {printf "%.2f\t%.2f", v[int(NR*0.5)]/1000, v[int(NR*0.99)]/1000}')
  # Response bytes per call, to check that the reference answers as much as the tracker does.
  awk -v n="$N" '/^traffic:/ {gsub(/[()]/, ""); for (i = 1; i <= NF; i++) if ($(i + 1) == "data") print $i / n}' \
    "$work/out-${names[0]}" >"$work/bytes-$s-$call"
  [ "$ok" = 1 ] || echo "WARN  $s $call round $round: some requests failed (see $work/out-*)" >&2
  printf '%s\t%s\t%s\t%.0f\t%s\t%.0f\n' "$s" "$call" "$round" "$rps" "$pcts" \
    "$(echo "100 * $cpu / $wall" | bc -l)" >>"$results"
  printf '%-13s %-9s round %s: %8.0f req/s  p50 %s ms  p99 %s ms  server CPU %3.0f%%\n' \
    "$s" "$call" "$round" "$rps" "$(cut -f1 <<<"$pcts")" "$(cut -f2 <<<"$pcts")" \
    "$(echo "100 * $cpu / $wall" | bc -l)"
}

for round in $(seq "$ROUNDS"); do
  for call in exact substring heartbeat; do
    for s in "${setups[@]}"; do
      [ "$s/$call" = reference/substring ] && continue
      run_one "$s" "$call" "$round"
    done
  done
done

# Every call must have been answered OK (h2load sees HTTP 200 whatever the gRPC status).
for t in "${!port_of[@]}"; do
  [ "$t" = reference ] && continue
  bad=$(curl -s "http://127.0.0.1:${port_of[$t]}/metrics" |
    awk '/^p2p_tracker_rpc_requests_total\{/ && !/code="OK"/ && !/method="(Register|Announce)"/ {s += $2} END {print s + 0}')
  [ "$bad" = 0 ] || echo "WARN  tracker $t answered $bad non-OK Search/Heartbeat calls" >&2
done

echo
echo "medians of $ROUNDS rounds ($(nproc) cores; N=$N, $C connections x $M streams; load generator on the same machine)"
printf '%-13s %-9s %9s %9s %9s %8s\n' setup call req/s p50_ms p99_ms cpu%
for s in "${setups[@]}"; do
  for call in exact substring heartbeat; do
    [ "$s/$call" = reference/substring ] && continue
    awk -F'\t' -v s="$s" -v c="$call" '$1 == s && $2 == c' "$results" |
      python3 -c '
import statistics, sys
rows = [l.split("\t") for l in sys.stdin.read().split("\n") if l]
med = lambda i: statistics.median(float(r[i]) for r in rows)
print(f"{rows[0][0]:<13} {rows[0][1]:<9} {med(3):9.0f} {med(4):9.2f} {med(5):9.2f} {med(6):8.0f}")'
  done
done

# The goals read as ratios of medians from the same rounds.
ratio() { # NAME SETUP CALL OVER_SETUP OVER_CALL
  python3 - "$results" "$@" <<'PY'
import statistics, sys
path, name, s, c, os_, oc = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().split("\n") if l]
med = lambda s, c, f: statistics.median(f(r) for r in rows if r[0] == s and r[1] == c)
rps = lambda r: float(r[3])
# Server CPU per call (the load generator shares the cores, so req/s alone can hide it).
cpu = lambda r: float(r[6]) / float(r[3])
print(f"{name:<44} req/s {med(s, c, rps) / med(os_, oc, rps):5.2f}x"
      f"   server CPU per call {med(s, c, cpu) / med(os_, oc, cpu):5.2f}x")
PY
}
echo
ratio "memory exact / reference (goal >= 0.85x)" memory exact reference exact
ratio "memory-100k exact / reference" memory-100k exact reference exact
ratio "memory heartbeat / reference heartbeat" memory heartbeat reference heartbeat
ratio "memory substring / memory exact (>= 0.45x)" memory substring memory exact
ratio "redis-1 heartbeat / reference heartbeat" redis-1 heartbeat reference heartbeat
# The reference must answer as many bytes as the tracker, or the ratio compares unlike work.
for call in exact heartbeat; do
  if ! cmp -s "$work/bytes-reference-$call" "$work/bytes-memory-$call"; then
    echo "WARN  the reference answers $call with $(cat "$work/bytes-reference-$call") data bytes per call, the tracker with $(cat "$work/bytes-memory-$call")" >&2
  fi
done
