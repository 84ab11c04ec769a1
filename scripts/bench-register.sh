#!/usr/bin/env bash
# A peer with a large share registers: N tiny files (default 120000) against a tracker whose
# registry.max_files_per_peer is CAP (default: the built-in 100000; try 200000 too). Reports the
# seconds until the peer is ready and until the tracker indexes every file it may, the files the
# peer left unshared, and the peak RSS of both processes (GNU time).
#   scripts/bench-register.sh [N] [CAP]        PROFILE=dev to skip the release build
#   PEER_BIN=path/to/an/older/p2p-peer ...      to measure another peer binary the same way
set -euo pipefail
n=${1:-120000}
cap=${2:-}
profile=${PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
for tool in curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-register: $tool is needed" >&2; exit 2; }
done
cargo build --locked --profile "$profile" -p p2p-tracker -p p2p-peer >&2
dirname=$profile; [ "$profile" = dev ] && dirname=debug
bin=${CARGO_TARGET_DIR:-$root/target}/$dirname

dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

python3 - "$dir/share" "$n" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
for i in range(n):
    with open(os.path.join(d, f"f{i:06d}.txt"), "w") as f:
        f.write(str(i))
PY
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tp=$(port); pp=$(port)

env_cap=()
[ -n "$cap" ] && env_cap=(env "P2P_REGISTRY__MAX_FILES_PER_PEER=$cap")
"${env_cap[@]}" /usr/bin/time -v -o "$dir/tracker.time" "$bin/p2p-tracker" --listen "127.0.0.1:$tp" \
  2>"$dir/tracker.log" &
pids+=($!)
deadline=$((SECONDS + 30))
until "$bin/p2p-tracker" health --addr "127.0.0.1:$tp" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "tracker did not start" >&2; exit 1; }
  sleep 0.2
done

effective_cap=${cap:-100000}
want=$(( n < effective_cap ? n : effective_cap ))
start=$(date +%s.%N)
/usr/bin/time -v -o "$dir/peer.time" "${PEER_BIN:-$bin/p2p-peer}" --tracker "http://127.0.0.1:$tp" serve \
  --id big --listen "127.0.0.1:$pp" --files-dir "$dir/share" 2>"$dir/peer.log" &
pids+=($!)
metric() { curl -fsS "$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'; }
deadline=$((SECONDS + 300))
ready=""
while :; do
  [ $SECONDS -lt $deadline ] || { echo "no result within 300 s; peer log:" >&2; tail -5 "$dir/peer.log" >&2; exit 1; }
  if [ -z "$ready" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pp/healthz")" = 200 ]; then
    ready=$(date +%s.%N)
  fi
  files=$(metric "http://127.0.0.1:$tp" p2p_tracker_files)
  [ -n "$ready" ] && [ "${files:-0}" = "$want" ] && break
  sleep 0.2
done
indexed=$(date +%s.%N)
unshared=$(metric "http://127.0.0.1:$pp" p2p_peer_unshared_files)
# Stop the services, not GNU time (which then writes its report).
stop() { kill -TERM "$(pgrep -P "$1")" 2>/dev/null || true; wait "$1" || true; }
stop "${pids[1]}"
stop "${pids[0]}"
pids=()
rss() { awk -F': ' '/Maximum resident set size/ { printf "%.0f MiB", $2 / 1024 }' "$1"; }
printf 'files %d, cap %s (%s profile)\n' "$n" "${cap:-default 100000}" "$profile"
printf '  peer ready after   %.1f s (indexing included)\n' "$(echo "$ready - $start" | bc -l)"
printf '  tracker indexes %d files after %.1f s; peer reports %s unshared\n' "$want" \
  "$(echo "$indexed - $start" | bc -l)" "${unshared:-?}"
printf '  peak RSS: peer %s, tracker %s\n' "$(rss "$dir/peer.time")" "$(rss "$dir/tracker.time")"
printf '  peer CPU: %s\n' "$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f s", s }' "$dir/peer.time")"
