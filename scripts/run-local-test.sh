#!/usr/bin/env bash
# Tests scripts/run-local.sh with the binaries already built (scripts/test.sh runs it after
# `cargo test`), on free loopback ports of its own and a temporary demo directory:
#   1. started once, it prints "p2pshare is running" and its tracker and three peers answer;
#   2. started again on the same ports, it exits non-zero at once with "already in use", prints
#      no banner, starts nothing and leaves the first network running;
#   3. with a peer that cannot start (a bad setting in the environment), it names the process
#      that exited, prints no banner, exits non-zero and leaves no process behind; the same when
#      they are not ready within READY_TIMEOUT;
#   4. Ctrl-C (SIGINT) on the first stops all of its processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
export BIN_DIR=$bin
for b in p2p-tracker p2p-peer; do
  [ -x "$bin/$b" ] || { echo "run-local-test: $bin/$b is missing: cargo build --bins first" >&2; exit 1; }
done

work=$(mktemp -d)
first_pid=""
finish() {
  # Only what this test started: the first run-local.sh (it stops its own children).
  if [ -n "$first_pid" ] && kill -0 "$first_pid" 2>/dev/null; then
    kill -TERM "$first_pid" 2>/dev/null || true
    wait "$first_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap finish EXIT
fails=0
check() { # DESCRIPTION CONDITION... : one line per assertion
  if "${@:2}"; then echo "ok    $1"; else echo "FAIL  $1"; fails=$((fails + 1)); fi
}

# Twelve consecutive free ports: four (a tracker's and its peers') for each of three networks.
# Below the kernel's ephemeral range: a port in it can be the local end of any process's outgoing
# connection, which no listener sees and which makes a bind fail (a CI run lost peer_1 that way).
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
read -r eph_low eph_high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { eph_low=32768 eph_high=60999; }
low=10000 high=$((eph_low - 12))
[ "$high" -gt "$low" ] || { low=$((eph_high + 1)) high=65523; }
for _ in $(seq 50); do
  base=$((low + RANDOM % (high - low)))
  ok=1
  for p in $(seq "$base" $((base + 11))); do free "$p" || ok=0; done
  [ "$ok" = 1 ] && break
done
export TRACKER_PORT=$base PEER_PORT=$((base + 1)) SKIP_CARGO=1 READY_TIMEOUT=${READY_TIMEOUT:-60}
# Processes of a run, found by their demo directory (unique to each run) or the tracker's port.
procs() { pgrep -f -- "$1" || true; }

# 1. The first network.
# Job control on for this one: a background job of a script otherwise ignores SIGINT, and step 4
# sends it what Ctrl-C would.
set -m
DEMO_DIR=$work/demo1 scripts/run-local.sh >"$work/first.out" 2>&1 &
first_pid=$!
set +m
for _ in $(seq $((READY_TIMEOUT * 5 + 50))); do
  grep -q "p2pshare is running" "$work/first.out" && break
  kill -0 "$first_pid" 2>/dev/null || break
  sleep 0.2
done
check "first run says it is running" grep -q "p2pshare is running" "$work/first.out"
quiet() { "$@" >/dev/null 2>&1; }
check "first run: the tracker answers" quiet "$bin/p2p-peer" health --addr "127.0.0.1:$TRACKER_PORT"
check "first run: three peers are running" test "$(procs "$work/demo1/peer" | wc -l)" = 3
tracker_before=$(procs "p2p-tracker --listen 127.0.0.1:$TRACKER_PORT")

# 2. The same ports again.
rc=0
DEMO_DIR=$work/demo2 timeout 30 scripts/run-local.sh >"$work/second.out" 2>&1 || rc=$?
sed 's/^/      second: /' "$work/second.out"
check "second run exits non-zero (got $rc)" test "$rc" != 0 -a "$rc" != 124
check "second run says the ports are in use" grep -q "already in use" "$work/second.out"
check "second run prints no banner" bash -c "! grep -q 'p2pshare is running' '$work/second.out'"
check "second run starts no binary (no 'Address already in use')" bash -c "! grep -qi 'address already in use' '$work/second.out'"
check "second run leaves no peer" test -z "$(procs "$work/demo2/")"
check "second run leaves no tracker" test "$(procs "p2p-tracker --listen 127.0.0.1:$TRACKER_PORT")" = "$tracker_before"
check "first network still running" quiet "$bin/p2p-peer" health --addr "127.0.0.1:$TRACKER_PORT"

# 3. A process that cannot start: the peers refuse a bad setting (exit 78).
rc=0
DEMO_DIR=$work/demo3 TRACKER_PORT=$((base + 4)) PEER_PORT=$((base + 5)) \
  P2P_TRANSFER__MIN_FREE_SPACE=lots timeout 60 scripts/run-local.sh >"$work/third.out" 2>&1 || rc=$?
sed 's/^/      broken: /' "$work/third.out" | tail -8
check "broken run exits non-zero (got $rc)" test "$rc" != 0 -a "$rc" != 124
check "broken run names the process that exited" grep -qE "(tracker|peer_[123]) \(pid [0-9]+\) exited with code 78 before it was ready" "$work/third.out"
check "broken run prints no banner" bash -c "! grep -q 'p2pshare is running' '$work/third.out'"
check "broken run leaves nothing running" test -z "$(procs "$work/demo3/")$(procs "p2p-tracker --listen 127.0.0.1:$((base + 4))")"

# 3b. Not ready in time (READY_TIMEOUT=0). peer_1 first hashes a 4 GiB file (sparse: no disk),
# so the first look finds it still starting however fast the others are on a loaded machine.
rc=0
mkdir -p "$work/demo4/peer1_files"
truncate -s 4G "$work/demo4/peer1_files/large.bin"
DEMO_DIR=$work/demo4 TRACKER_PORT=$((base + 8)) PEER_PORT=$((base + 9)) READY_TIMEOUT=0 \
  timeout 60 scripts/run-local.sh >"$work/slow.out" 2>&1 || rc=$?
check "timed-out run exits non-zero (got $rc)" test "$rc" != 0 -a "$rc" != 124
check "timed-out run says who was not ready" grep -qE "not ready after 0s: .*peer_" "$work/slow.out"
check "timed-out run prints no banner" bash -c "! grep -q 'p2pshare is running' '$work/slow.out'"
check "timed-out run leaves nothing running" test -z "$(procs "$work/demo4/")$(procs "p2p-tracker --listen 127.0.0.1:$((base + 8))")"

# 4. Ctrl-C on the first (already gone if it failed: then its output below says why).
kill -INT "$first_pid" 2>/dev/null || true
rc=0
for _ in $(seq 300); do kill -0 "$first_pid" 2>/dev/null || break; sleep 0.1; done
wait "$first_pid" 2>/dev/null || rc=$?
first_pid=""
check "Ctrl-C stops the first run's processes" test -z "$(procs "$work/demo1/")$(procs "p2p-tracker --listen 127.0.0.1:$TRACKER_PORT")"

if [ "$fails" -gt 0 ]; then
  echo "run-local-test: $fails failed; first run's output:"; sed 's/^/      /' "$work/first.out" | tail -20
  exit 1
fi
echo "run-local-test: all passed"
