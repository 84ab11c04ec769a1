#!/usr/bin/env bash
# Testbed of real hosts on this machine (issue 16): a tracker, a seed and N peers, each in a
# network namespace of its own with its own address, all on one bridge that sits in a "switch"
# namespace of its own, so nothing is added to the root namespace and no packet can leave.
#
#   switch netns <prefix>sw: bridge br0, one veth port per host (vtr, vseed, vp1 .. vpN)
#   host netns <prefix>tr, <prefix>seed, <prefix>p1 ..: eth0 (MTU 1500) on 10.77.0.0/16, lo
#     tracker 10.77.0.1:50051, seed 10.77.0.2:5000, peer i 10.77.(1 + i / 250).(i % 250 + 1):5000
#
# Each host's upload is shaped by the kernel: `tc qdisc ... root tbf` on its eth0 (egress =
# upload), so the peers run with transfer.upload_limit = 0. When the kernel has netem, DELAY and
# LOSS are added on the switch's port towards each host (so every packet crosses one netem); this
# is detected, and ignored with a note when absent. Processes are the real binaries started with
# `ip netns exec`; `get NAME --via 127.0.0.1:5000` runs inside the downloader's namespace (a peer
# takes --via only from its own host). Names carry a per-run prefix (p2pt<pid>-), and
# tb_teardown (on EXIT, INT and TERM in command mode) kills what was started and deletes the
# namespaces, which takes the veths and the bridge with them.
#
# Command:
#   scripts/testbed.sh probe        exit 0 when namespaces can be made here, else 1 with one line
#   scripts/testbed.sh case         one distribution (env below), a line per peer and a summary:
#                                   "result n=.. f_bytes=.. bound_s=.. last_s=.. ratio=..
#                                    seed_served_bytes=.. verified=.."; exit 0 when every peer
#                                   holds the file with the seed's SHA-256
#   scripts/testbed.sh clean        delete namespaces p2pt<pid>-* left by runs no longer alive
# Library: `source scripts/testbed.sh` defines tb_* functions and runs nothing; see tb_init,
# tb_distribution (results in TB_* variables) and tb_teardown (call it from your EXIT trap).
#
# Env: BIN (directory holding p2p-tracker and p2p-peer; default $CARGO_TARGET_DIR/release or
#      target/release), N (default 6), F_MIB (default 64), U_MIB (upload per host in MiB/s,
#      default 16), SEED_U_MIB (default U_MIB), MODE (uniform | mixed: odd peers at U/4 |
#      churn: a quarter of the peers stopped with SIGTERM at half the bound | late: the last
#      peer's get starts at half the bound, its own time in TB_LATE_S, not in TB_LAST;
#      default uniform),
#      WORK (directory for shares and logs, kept; default a temporary one, removed),
#      BURST_KIB (tbf burst, default max(64, U/100)), LATENCY (tbf latency, default 50ms),
#      DELAY (netem delay, e.g. 2ms), LOSS (netem loss, e.g. 0.1%), DEADLINE_S (all gets,
#      default max(120, 10 x bound)), TRACE_PNG (where the run's picture goes; default
#      WORK/trace.png, and with `case` it is kept as testbed-trace.png in the current directory).
#
# Every distribution samples each host's own counters every 0.5 s on its loopback (served and
# downloaded bytes, pieces held: scripts/swarm_trace.py sample) into WORK/trace/HOST.csv and
# draws them (swarm_trace.py draw: upload used per host over time, download rate, pieces held)
# when python3 has matplotlib; TB_TRACE_PNG names the picture, empty when it was not drawn.

TB_NET=10.77
TB_PORT=5000
TB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB_TPORT=50051

tb_say() { printf 'testbed: %s\n' "$*" >&2; }
tb_die() { tb_say "$*"; exit 1; }

# tb_probe: 0 when this process may make network namespaces, veths, a bridge and tbf; else 1
# with the reason in TB_WHY.
tb_probe() {
  TB_WHY=""
  if [ "$(id -u)" != 0 ]; then TB_WHY="not root"; return 1; fi
  for t in ip tc curl; do
    command -v "$t" >/dev/null 2>&1 || { TB_WHY="no '$t' (apt-get install iproute2 curl)"; return 1; }
  done
  local ns="p2pt$$-probe" err
  if ! err=$(ip netns add "$ns" 2>&1); then TB_WHY="ip netns add: $err"; return 1; fi
  if ! err=$({ ip -n "$ns" link add vprobe0 type veth peer name vprobe1 &&
    ip -n "$ns" link add br0 type bridge &&
    tc -n "$ns" qdisc add dev vprobe0 root tbf rate 1mbit burst 32kb latency 50ms; } 2>&1); then
    ip netns del "$ns" 2>/dev/null
    TB_WHY="veth, bridge or tbf: $err"
    return 1
  fi
  TB_NETEM=0
  tc -n "$ns" qdisc add dev vprobe1 root netem delay 1ms >/dev/null 2>&1 && TB_NETEM=1
  ip netns del "$ns"
}

# tb_init: checks, a work directory, the switch namespace with its bridge.
tb_init() {
  tb_probe || tb_die "cannot make network namespaces here: $TB_WHY"
  TB_BIN=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
  for b in p2p-tracker p2p-peer; do [ -x "$TB_BIN/$b" ] || tb_die "$TB_BIN/$b is missing"; done
  TB_PREFIX="p2pt$$-"
  TB_NS=()
  TB_PIDS=()
  if [ -n "${WORK:-}" ]; then
    TB_WORK=$WORK; TB_OWN_WORK=0; mkdir -p "$TB_WORK"
  else
    TB_WORK=$(mktemp -d "${TMPDIR:-/tmp}/testbed.XXXXXX"); TB_OWN_WORK=1
  fi
  TB_SW="${TB_PREFIX}sw"
  ip netns add "$TB_SW" || tb_die "ip netns add $TB_SW failed"
  TB_NS+=("$TB_SW")
  ip -n "$TB_SW" link add br0 type bridge
  ip -n "$TB_SW" link set br0 mtu 1500 up
  if [ -n "${DELAY:-}${LOSS:-}" ] && [ "$TB_NETEM" = 0 ]; then
    tb_say "this kernel has no netem: DELAY/LOSS ignored"
  fi
}

# tb_host NAME ADDR RATE_KIB: a namespace with eth0 at ADDR/16 on the bridge, its upload shaped
# to RATE_KIB KiB/s (0: unshaped). Sets TB_HOST_NS.
tb_host() {
  local name=$1 addr=$2 kib=$3 ns="${TB_PREFIX}$1" port="v$1"
  ip netns add "$ns" || tb_die "ip netns add $ns failed"
  TB_NS+=("$ns")
  ip -n "$TB_SW" link add "$port" mtu 1500 type veth peer name eth0 mtu 1500 netns "$ns"
  ip -n "$TB_SW" link set "$port" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$addr/16" dev eth0
  ip -n "$ns" link set eth0 up
  if [ "$kib" -gt 0 ]; then
    local burst=${BURST_KIB:-$(( kib / 100 > 64 ? kib / 100 : 64 ))}
    tc -n "$ns" qdisc add dev eth0 root tbf rate "$((kib * 1024))bps" burst "${burst}kb" \
      latency "${LATENCY:-50ms}" || tb_die "tc tbf on $ns failed"
  fi
  if [ "$TB_NETEM" = 1 ] && [ -n "${DELAY:-}${LOSS:-}" ]; then
    # shellcheck disable=SC2086 # the knobs are tc words
    tc -n "$TB_SW" qdisc add dev "$port" root netem ${DELAY:+delay $DELAY} ${LOSS:+loss $LOSS} \
      || tb_die "tc netem on $port failed"
  fi
  TB_HOST_NS=$ns
}

# tb_peer_addr I: peer i's address (1-based).
tb_peer_addr() { echo "$TB_NET.$((1 + $1 / 250)).$(($1 % 250 + 1))"; }

# tb_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds; 1 after SECONDS.
tb_until() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# tb_tracker: the tracker's host (unshaped) and the tracker, ready. Sets TB_TRACKER (its URL).
tb_tracker() {
  tb_host tr "$TB_NET.0.1" 0
  P2P_TELEMETRY__LOG_LEVEL=warn ip netns exec "$TB_HOST_NS" "$TB_BIN/p2p-tracker" \
    --listen "0.0.0.0:$TB_TPORT" 2>"$TB_WORK/tracker.log" &
  TB_PIDS+=($!)
  TB_TRACKER="http://$TB_NET.0.1:$TB_TPORT"
  tb_until 30 ip netns exec "$TB_HOST_NS" "$TB_BIN/p2p-tracker" health \
    --addr "127.0.0.1:$TB_TPORT" || { cat "$TB_WORK/tracker.log" >&2; tb_die "tracker not serving"; }
}

# tb_peer ID ADDR RATE_KIB: a host and `p2p-peer serve` on it sharing $TB_WORK/ID, ready.
# Sets TB_PEER_PID; the namespace is ${TB_PREFIX}ID.
tb_peer() {
  local id=$1 addr=$2 kib=$3
  tb_host "$id" "$addr" "$kib"
  mkdir -p "$TB_WORK/$id"
  P2P_TELEMETRY__LOG_LEVEL=warn P2P_TRANSFER__UPLOAD_LIMIT=0 P2P_PEER__ADVERTISE_ADDR="$addr:$TB_PORT" \
    ip netns exec "$TB_HOST_NS" "$TB_BIN/p2p-peer" --tracker "$TB_TRACKER" serve --id "$id" \
    --listen "0.0.0.0:$TB_PORT" --files-dir "$TB_WORK/$id" 2>"$TB_WORK/$id.log" &
  TB_PEER_PID=$!
  TB_PIDS+=("$TB_PEER_PID")
}

# tb_ready ID PID: waits for the peer's /healthz (200 once indexed, registered, tracker
# answering), up to 60 s; fails at once when the process has exited.
tb_ready() {
  local end=$((SECONDS + 60))
  until ip netns exec "${TB_PREFIX}$1" curl -fs "http://127.0.0.1:$TB_PORT/healthz" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { cat "$TB_WORK/$1.log" >&2; tb_die "peer $1 exited before it was healthy"; }
    [ "$SECONDS" -lt "$end" ] || { cat "$TB_WORK/$1.log" >&2; tb_die "peer $1 not healthy after 60 s"; }
    sleep 0.1
  done
}

# tb_holders NAME COUNT: waits until the tracker lists COUNT complete holders of NAME.
tb_holders_at_least() {
  local n
  n=$(ip netns exec "${TB_PREFIX}tr" "$TB_BIN/p2p-peer" --tracker "$TB_TRACKER" --json search \
    --exact "$1" 2>/dev/null \
    | python3 -c 'import json,sys; print(sum(len(f["peers"]) for f in json.load(sys.stdin)["files"]))' \
    2>/dev/null) || return 1
  [ "${n:-0}" -ge "$2" ]
}

# tb_metric ID NAME: a counter from the peer's /metrics (0 when absent).
tb_metric() {
  ip netns exec "${TB_PREFIX}$1" curl -fs "http://127.0.0.1:$TB_PORT/metrics" \
    | awk -v m="$2" '$1 == m {v = $2} END {print v + 0}'
}

tb_hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU seconds (user + system) a live process has used.
tb_cpu_s() {
  local ticks
  ticks=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}') || ticks=0
  echo "${ticks:-0} / $(getconf CLK_TCK)" | bc -l
}

tb_now() { date +%s.%N; }
# tb_timed BASE CMD...: runs CMD in the background, its output in BASE.out and BASE.err, its exit
# code in BASE.rc and the time it ended in BASE.end; sets TB_TIMED_PID.
tb_timed() {
  local base=$1; shift
  (
    rc=0
    "$@" >"$base.out" 2>"$base.err" || rc=$?
    echo "$rc" >"$base.rc"
    tb_now >"$base.end"
  ) &
  TB_TIMED_PID=$!
}
tb_calc() { echo "$1" | bc -l; }
tb_fmt() { printf "%.${2:-2}f" "$1"; }

# tb_distribution N F_MIB U_MIB MODE: the tracker, a seed of a random F_MIB MiB file and N peers,
# all `get --via` at once. Prints a line per peer; sets TB_LAST (s, of the peers that finished),
# TB_BOUND, TB_RATIO, TB_SERVED (bytes the seed served), TB_VERIFIED (peers verified),
# TB_FINISHERS (peers that had to finish), TB_RSS_SEED and TB_RSS_PEER (worst, KiB),
# TB_CPU_S (user + system of seed and peers), TB_DELIVERED (bytes verified at peers).
# Returns 1 when a peer that had to finish did not hold the file.
tb_distribution() {
  local n=$1 f_mib=$2 u_mib=$3 mode=${4:-uniform}
  local u_kib=$((u_mib * 1024)) seed_kib=$(( ${SEED_U_MIB:-$u_mib} * 1024 ))
  local f_bytes=$((f_mib * 1048576))
  tb_tracker
  mkdir -p "$TB_WORK/seed"
  head -c "$f_bytes" /dev/urandom > "$TB_WORK/seed/big.bin"
  local want; want=$(sha256sum "$TB_WORK/seed/big.bin" | cut -d' ' -f1)
  tb_peer seed "$TB_NET.0.2" "$seed_kib"
  local seed_pid=$TB_PEER_PID
  local pids=() kibs=() sum_kib=0 i kib
  for i in $(seq "$n"); do
    kib=$u_kib
    [ "$mode" = mixed ] && [ $((i % 2)) = 1 ] && kib=$((u_kib / 4))
    tb_peer "p$i" "$(tb_peer_addr "$i")" "$kib"
    pids+=("$TB_PEER_PID"); kibs+=("$kib"); sum_kib=$((sum_kib + kib))
  done
  # Each host's own counters over time, sampled on its loopback (never across the shaped link).
  local trace="$TB_WORK/trace" samplers=()
  mkdir -p "$trace"
  echo "seed $seed_kib" > "$trace/hosts.txt"
  for i in $(seq "$n"); do echo "p$i ${kibs[$((i - 1))]}" >> "$trace/hosts.txt"; done
  for h in seed $(seq -f 'p%g' "$n"); do
    ip netns exec "${TB_PREFIX}$h" python3 "$TB_DIR/swarm_trace.py" sample --port "$TB_PORT" \
      --sha "$want" --out "$trace/$h.csv" 2>>"$TB_WORK/trace.log" &
    samplers+=($!); TB_PIDS+=($!)
  done
  tb_ready seed "$seed_pid"
  for i in $(seq "$n"); do tb_ready "p$i" "${pids[$((i - 1))]}"; done
  tb_until 60 tb_holders_at_least big.bin 1 || tb_die "the tracker never listed the seed"
  # The bound (Kumar & Ross) with the uploads the hosts have: max(F/U_seed, N*F/(U_seed+sum U_i)).
  TB_BOUND=$(tb_calc "a = $f_mib * 1024 / $seed_kib; b = $n * $f_mib * 1024 / ($seed_kib + $sum_kib); if (a > b) a else b")
  local stopped=" " quarter=$((n / 4))
  if [ "$mode" = churn ]; then
    # Every fourth peer (p4, p8, ..) leaves half-way.
    for i in $(seq "$quarter"); do stopped="$stopped$((i * 4)) "; done
  fi
  local deadline=${DEADLINE_S:-$(tb_calc "b = 10 * $TB_BOUND; if (b < 120) 120 else b" | cut -d. -f1)}
  local t0; t0=$(tb_now)
  local gets=()
  # late: the last peer's get starts at half the bound (its time is counted from then).
  local late_s=0
  [ "$mode" = late ] && late_s=$(tb_calc "$TB_BOUND / 2")
  for i in $(seq "$n"); do
    local wait_s=0
    [ "$mode" = late ] && [ "$i" = "$n" ] && wait_s=$late_s
    tb_timed "$TB_WORK/get-$i" bash -c 'sleep "$1"; shift; exec "$@"' _ "$wait_s" \
      ip netns exec "${TB_PREFIX}p$i" "$TB_BIN/p2p-peer" \
      --tracker "$TB_TRACKER" get big.bin --via "127.0.0.1:$TB_PORT"
    gets+=("$TB_TIMED_PID")
  done
  TB_CPU_S=0
  if [ "$mode" = churn ]; then
    sleep "$(tb_calc "$TB_BOUND / 2")"
    for i in $stopped; do
      TB_CPU_S=$(tb_calc "$TB_CPU_S + $(tb_cpu_s "${pids[$((i - 1))]}")")
      kill -TERM "${pids[$((i - 1))]}" 2>/dev/null || true
    done
    tb_say "stopped with SIGTERM at $(tb_fmt "$(tb_calc "$(tb_now) - $t0")" 1) s:$stopped"
  fi
  local g
  for g in "${gets[@]}"; do
    while kill -0 "$g" 2>/dev/null; do
      if [ "$(tb_calc "$(tb_now) - $t0 > $deadline")" = 1 ]; then
        tb_say "downloads still running after ${deadline} s"
        for i in $(seq "$n"); do ip netns pids "${TB_PREFIX}p$i" | grep -v -x -e "${pids[$((i - 1))]}" \
          | xargs -r kill -TERM 2>/dev/null || true; done
        break 2
      fi
      sleep 0.1
    done
  done
  for g in "${gets[@]}"; do wait "$g" 2>/dev/null || true; done
  sleep 0.6 # one more sample after the last get, so the picture shows the end
  kill -TERM "${samplers[@]}" 2>/dev/null || true
  wait "${samplers[@]}" 2>/dev/null || true
  TB_TRACE_PNG=""
  if python3 -c 'import matplotlib' 2>/dev/null; then
    local png=${TRACE_PNG:-$TB_WORK/trace.png}
    python3 "$TB_DIR/swarm_trace.py" draw --dir "$trace" --out "$png" --t0 "$t0" \
      --bound "$TB_BOUND" --title "N=$n F=${f_mib}MiB U=${u_mib}MiB/s $mode" >&2 \
      && TB_TRACE_PNG=$png
  else
    tb_say "python3 has no matplotlib (pip install matplotlib): samples kept in $trace, not drawn"
  fi
  TB_LAST=0; TB_LATE_S=0; TB_VERIFIED=0; TB_FINISHERS=0; TB_DELIVERED=0; TB_RSS_PEER=0
  local ok=0 t got status
  for i in $(seq "$n"); do
    t=-1; got=""
    [ -f "$TB_WORK/get-$i.end" ] && t=$(tb_calc "$(cat "$TB_WORK/get-$i.end") - $t0")
    if [ "$mode" = late ] && [ "$i" = "$n" ]; then
      t=$(tb_calc "$t - $late_s"); TB_LATE_S=$t
    fi
    [ -f "$TB_WORK/p$i/big.bin" ] && got=$(sha256sum "$TB_WORK/p$i/big.bin" | cut -d' ' -f1)
    case "$stopped" in
      *" $i "*) status="stopped" ;;
      *)
        TB_FINISHERS=$((TB_FINISHERS + 1))
        if [ "$got" = "$want" ]; then
          status="verified"; TB_VERIFIED=$((TB_VERIFIED + 1)); TB_DELIVERED=$((TB_DELIVERED + f_bytes))
          if [ "$mode" != late ] || [ "$i" != "$n" ]; then
            [ "$(tb_calc "$t > $TB_LAST")" = 1 ] && TB_LAST=$t
          fi
        else
          status="FAILED (get exit $(cat "$TB_WORK/get-$i.rc" 2>/dev/null || echo '?'): $(tail -n1 "$TB_WORK/get-$i.err" 2>/dev/null))"
          ok=1
        fi
        local k; k=$(tb_hwm_kib "${pids[$((i - 1))]}")
        [ "$k" -gt "$TB_RSS_PEER" ] && TB_RSS_PEER=$k
        TB_CPU_S=$(tb_calc "$TB_CPU_S + $(tb_cpu_s "${pids[$((i - 1))]}")")
        ;;
    esac
    printf 'peer p%s %s up %s KiB/s: %s s, %s\n' "$i" "$(tb_peer_addr "$i")" "${kibs[$((i - 1))]}" \
      "$(tb_fmt "$t" 1)" "$status"
  done
  TB_SERVED=$(tb_metric seed p2p_peer_served_bytes_total)
  TB_RSS_SEED=$(tb_hwm_kib "$seed_pid")
  TB_CPU_S=$(tb_calc "$TB_CPU_S + $(tb_cpu_s "$seed_pid")")
  TB_RATIO=$(tb_calc "$TB_LAST / $TB_BOUND")
  TB_F_BYTES=$f_bytes
  return $ok
}

# tb_stop: kills every process started (TERM, then KILL after 5 s) and anything left in the
# namespaces, then deletes them.
tb_stop() {
  local p ns
  for p in "${TB_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${TB_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for ns in "${TB_NS[@]}"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  for p in "${TB_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "${TB_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  TB_PIDS=(); TB_NS=()
}

# tb_teardown: tb_stop and the work directory if it was made here. Safe to call twice.
tb_teardown() {
  [ -n "${TB_PREFIX:-}" ] || return 0
  tb_stop
  [ "${TB_OWN_WORK:-0}" = 1 ] && rm -rf "$TB_WORK"
  TB_PREFIX=""
}

# tb_clean: namespaces of runs whose process is gone.
tb_clean() {
  local ns pid
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^p2pt[0-9]+-'); do
    pid=${ns#p2pt}; pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" && tb_say "deleted $ns"
  done
}

tb_main() {
  set -euo pipefail
  cd "$(dirname "$0")/.."
  case "${1:-}" in
    probe)
      if tb_probe; then
        echo "testbed: network namespaces available (netem: $([ "$TB_NETEM" = 1 ] && echo yes || echo no))"
      else
        echo "testbed: cannot make network namespaces here: $TB_WHY"; exit 1
      fi ;;
    clean) tb_clean ;;
    case)
      local n=${N:-6} f=${F_MIB:-64} u=${U_MIB:-16} mode=${MODE:-uniform}
      trap tb_teardown EXIT
      trap 'exit 130' INT
      trap 'exit 143' TERM
      tb_init
      echo "testbed: N=$n F=${f}MiB U=${u}MiB/s mode=$mode netem=$([ "$TB_NETEM" = 1 ] && echo yes || echo no) work=$TB_WORK"
      local rc=0
      TRACE_PNG=${TRACE_PNG:-$PWD/testbed-trace.png} tb_distribution "$n" "$f" "$u" "$mode" || rc=1
      echo "result n=$n f_bytes=$TB_F_BYTES bound_s=$(tb_fmt "$TB_BOUND") last_s=$(tb_fmt "$TB_LAST") ratio=$(tb_fmt "$TB_RATIO") seed_served_bytes=$TB_SERVED verified=$TB_VERIFIED/$TB_FINISHERS rss_seed_kib=$TB_RSS_SEED rss_peer_kib=$TB_RSS_PEER cpu_s=$(tb_fmt "$TB_CPU_S" 1)"
      return $rc ;;
    *) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; [ -z "${1:-}" ] || exit 2 ;;
  esac
}

# Run as a command, not when sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then tb_main "$@"; fi
