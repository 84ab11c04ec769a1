#!/usr/bin/env bash
# Runs a local p2pshare network on the embedded defaults: a tracker on 127.0.0.1:50051 and three
# peers on 127.0.0.1:5000-5002, each sharing a few sample files from .local/demo/peerN_files.
# Ctrl-C stops everything (the peers leave the network first).
#
# It says "p2pshare is running" only when its own four processes are alive and healthy (the
# tracker's grpc.health.v1, each peer's /healthz and its id). Otherwise (a port taken, e.g. by a
# run-local.sh already running; a process that exits; not healthy within READY_TIMEOUT seconds)
# it says why, stops what it started and exits 1. If a process exits later, it stops the rest and
# exits 1 as well.
#
# Environment (for tests and a second network beside the first):
#   TRACKER_PORT (50051), PEER_PORT (5000: peers on PEER_PORT..PEER_PORT+2),
#   DEMO_DIR (.local/demo), READY_TIMEOUT (60), SKIP_CARGO=1 (use the binaries already built),
#   BIN_DIR (target/debug, or $CARGO_TARGET_DIR/debug).
set -euo pipefail
cd "$(dirname "$0")/.."

tracker_port=${TRACKER_PORT:-50051}
peer_port=${PEER_PORT:-5000}
demo=${DEMO_DIR:-.local/demo}
ready_timeout=${READY_TIMEOUT:-60}
bin=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
peer_ports=("$peer_port" "$((peer_port + 1))" "$((peer_port + 2))")

say() { echo "run-local: $*" >&2; }

# A port is taken when something accepts connections on it (another run-local.sh, a service).
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=()
for port in "$tracker_port" "${peer_ports[@]}"; do
  if port_taken "$port"; then taken+=("$port"); fi
done
if [ "${#taken[@]}" -gt 0 ]; then
  say "127.0.0.1 port(s) ${taken[*]} already in use: is p2pshare (another run-local.sh) already running?"
  say "stop it first (Ctrl-C in its shell; \`ss -ltnp\` shows who listens), or pick other ports:"
  say "  TRACKER_PORT=50061 PEER_PORT=5010 DEMO_DIR=.local/demo2 $0"
  say "nothing was started"
  exit 1
fi

[ "${SKIP_CARGO:-0}" = 1 ] || cargo build --locked --bins
mkdir -p "$demo"/peer{1,2,3}_files
[ -f "$demo/peer1_files/hello.txt" ] || echo "hello from peer 1" > "$demo/peer1_files/hello.txt"
[ -f "$demo/peer2_files/notes.md" ] || printf '# Notes\nshared by peer 2\n' > "$demo/peer2_files/notes.md"
[ -f "$demo/peer3_files/photo.bin" ] || head -c 5242880 /dev/urandom > "$demo/peer3_files/photo.bin"

pids=() names=()
cleanup() { # stop what this script started: SIGTERM (peers leave the network), then SIGKILL
  trap - INT TERM EXIT
  local pid alive _
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
fail() { # MESSAGE: say it, stop everything, exit 1
  say "$*"
  say "stopping what this run started"
  cleanup
  say "not running"
  exit 1
}
trap cleanup EXIT
trap 'say "stopping"; cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

start() { # NAME CMD... : start a child, remember its pid
  "${@:2}" &
  pids+=($!)
  names+=("$1")
}
start tracker "$bin/p2p-tracker" --listen "127.0.0.1:$tracker_port"
for i in 1 2 3; do
  start "peer_$i" "$bin/p2p-peer" --tracker "http://127.0.0.1:$tracker_port" serve --id "peer_$i" \
    --listen "127.0.0.1:${peer_ports[$((i - 1))]}" --files-dir "$demo/peer${i}_files"
done

statuses=()   # exit codes of children already reaped by `wait -n`, by index
exited() { # sets $what to the first child that is no longer running: "NAME (pid N) exited with CODE"
  local i rc
  for i in "${!pids[@]}"; do
    if [ -n "${statuses[$i]:-}" ] || ! kill -0 "${pids[$i]}" 2>/dev/null; then
      rc=${statuses[$i]:-}
      if [ -z "$rc" ]; then rc=0; wait "${pids[$i]}" 2>/dev/null || rc=$?; fi
      what="${names[$i]} (pid ${pids[$i]}) exited with code $rc"
      return 0
    fi
  done
  return 1
}
healthy() { # NAME INDEX : this script's own child answers as itself
  if [ "$1" = tracker ]; then
    "$bin/p2p-peer" health --addr "127.0.0.1:$tracker_port" >/dev/null 2>&1
  else
    local port=${peer_ports[$(($2 - 1))]}
    curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 &&
      curl -fsS --max-time 2 "http://127.0.0.1:$port/api/status" 2>/dev/null |
      grep -F "\"peer_id\":\"$1\"" | grep -qF "127.0.0.1:$tracker_port"
  fi
}

deadline=$((SECONDS + ready_timeout))
while :; do
  if exited; then fail "$what before it was ready (its messages are above)"; fi
  waiting=()
  for i in "${!names[@]}"; do healthy "${names[$i]}" "$i" || waiting+=("${names[$i]}"); done
  [ "${#waiting[@]}" = 0 ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    fail "not ready after ${ready_timeout}s: ${waiting[*]} (READY_TIMEOUT raises the limit)"
  fi
  sleep 0.2
done

cat <<MSG

p2pshare is running: tracker 127.0.0.1:$tracker_port, peers 127.0.0.1:${peer_ports[0]}-${peer_ports[2]} (files in $demo).
In another shell try:
  $bin/p2p-peer --tracker http://127.0.0.1:$tracker_port ls
  $bin/p2p-peer --tracker http://127.0.0.1:$tracker_port get photo.bin -o /tmp/photo.bin
  $bin/p2p-peer put README.md --peer 127.0.0.1:${peer_ports[1]}
  curl -F file=@Cargo.toml http://127.0.0.1:${peer_ports[0]}/upload
Ctrl-C to stop.
MSG

# Until Ctrl-C, or until one of them exits: then the rest are stopped too.
while :; do
  done_pid="" rc=0
  wait -n -p done_pid "${pids[@]}" 2>/dev/null || rc=$?
  for i in "${!pids[@]}"; do [ "${pids[$i]}" = "$done_pid" ] && statuses[i]=$rc; done
  if exited; then fail "$what; the network is incomplete"; fi
done
