#!/usr/bin/env bash
# What one client can make a tracker hold, and whether the memory comes back when the leases
# end (issue 28 point 5): PEERS peers (default 10) x FILES files (default 100000) with NAME_LEN-
# byte names (default 255), registered from 127.0.0.1 and never renewed. Prints the tracker's
# RSS before, when filled, and after the leases ended and were swept.
#   scripts/bench-tracker-memory.sh [PEERS] [FILES] [NAME_LEN]   PROFILE=dev to skip release
#   extra tracker settings through the environment, e.g. P2P_REGISTRY__MAX_FILES=5000000
set -euo pipefail
peers=${1:-10}
files=${2:-100000}
name_len=${3:-255}
profile=${PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --locked --profile "$profile" -p p2p-tracker --bin p2p-tracker --example fill_names >&2
dirname=$profile; [ "$profile" = dev ] && dirname=debug
bin=${CARGO_TARGET_DIR:-$root/target}/$dirname

dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
tp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
P2P_REGISTRY__LEASE_TTL=${P2P_REGISTRY__LEASE_TTL:-10s} "$bin/p2p-tracker" --listen "127.0.0.1:$tp" \
  2>"$dir/tracker.log" &
pid=$!
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$pid/status"; }
metric() { curl -s "http://127.0.0.1:$tp/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
for _ in $(seq 100); do [ -n "$(metric p2p_tracker_peers 2>/dev/null)" ] && break; sleep 0.1; done
echo "before: $(rss)"
start=$(date +%s.%N)
"$bin/examples/fill_names" "http://127.0.0.1:$tp" "$peers" "$files" "$name_len"
echo "filled: $(rss) in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s; peers $(metric p2p_tracker_peers), files $(metric p2p_tracker_files)"
for _ in $(seq 600); do [ "$(metric p2p_tracker_peers)" = 0 ] && break; sleep 0.5; done
sleep 2
echo "leases ended: $(rss); peers $(metric p2p_tracker_peers), files $(metric p2p_tracker_files)"
curl -s "http://127.0.0.1:$tp/metrics" | grep '^p2p_tracker_refusals_total' || true
