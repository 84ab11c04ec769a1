#!/usr/bin/env bash
# Swarm benchmark (issue 9), release builds on loopback:
#   distribution   one seed and N peers, every peer's transfer.upload_limit = U, all N fetch one
#                  file at once with `get --via`: each peer's time, the last one's, and the ratio
#                  to the lower bound max(F/U, N*F/((N+1)*U)) (Kumar & Ross). Goal <= 1.3.
#   many sources   4 complete holders each limited to U, one downloader (the CLI alone):
#                  throughput / 4U. Goal >= 0.85.
#   one fast source  a verified `get` of a 1 GiB file from one unlimited peer, next to
#                  `openssl dgst -sha256` of the same file and nginx -> curl, alternated 3 times.
#                  Goal: get >= 0.9x the slower of the two.
#   peak RSS       VmHWM of every peer process and the CLI's max RSS. Goal < 64 MiB each.
#
#   CPU            user + system seconds of the seed and every peer per GiB delivered.
#
#   scripts/bench-swarm.sh [--quick] [--netns]
#     --quick: N=4, 64 MiB files, a 256 MiB fast-source file (a smoke run, minutes not hours).
#     --netns: the distribution on the testbed (scripts/testbed.sh, root): every host in a
#              network namespace of its own, its upload shaped to U by the kernel (tbf, MTU
#              1500), no in-process limit; for each N and then two scenarios at N = SCEN_N:
#              mixed  half the peers at U and half at U/4, bound
#                     max(F/U_seed, N*F/(U_seed + sum U_i));
#              churn  every fourth peer stopped with SIGTERM at half the bound; the others must
#                     finish, their last time against 1.5x the bound (goal <= 1).
#              late   the last peer's get starts at half the bound (SCENARIOS="mixed churn late"
#                     picks the scenarios; default "mixed churn").
#              Each case draws a picture of every host's upload used over time (TRACE_DIR).
#              The many-sources and fast-source rows are loopback measurements, not run here.
# Env: U (default 8MiB), NS (distribution sizes, default "8 16 32"), ROWS (loopback rows to run,
#      default "distribution many fast"), F_MIB (default 256),
#      FAST_MIB (default 1024), SCEN_N (--netns scenarios, default 16; --quick 4),
#      CARGO_TARGET_DIR (where the release binaries are built); testbed.sh's knobs (DELAY,
#      LOSS, BURST_KIB, LATENCY) with --netns; TRACE_DIR (--netns: where each case's picture
#      of upload used, download rate and pieces held per host goes; default
#      target/bench-swarm-pictures).
# nginx is installed with apt-get when missing and possible; otherwise that column is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/testbed.sh
. scripts/testbed.sh

quick=0
netns=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --netns) netns=1 ;;
    *) echo "usage: scripts/bench-swarm.sh [--quick] [--netns]" >&2; exit 2 ;;
  esac
done
U=${U:-8MiB}
if [ "$quick" = 1 ]; then
  NS=${NS:-4}; F_MIB=${F_MIB:-64}; FAST_MIB=${FAST_MIB:-256}; SCEN_N=${SCEN_N:-4}
else
  NS=${NS:-"8 16 32"}; F_MIB=${F_MIB:-256}; FAST_MIB=${FAST_MIB:-1024}; SCEN_N=${SCEN_N:-16}
fi
case "$U" in
  *MiB) u_mib=${U%MiB} ;;
  *) echo "U must be given in MiB, like 8MiB" >&2; exit 2 ;;
esac

for tool in bc curl openssl python3 /usr/bin/time sha256sum; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done

cargo build --release --locked --bins >&2
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-swarm.XXXXXX")
pids=()
cleanup() {
  tb_teardown
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
report=$work/report.txt
: > "$report"
row() { printf '%s\n' "$*" | tee -a "$report" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Shared with the testbed (scripts/testbed.sh).
now() { tb_now; }
calc() { tb_calc "$1"; }
fmt() { tb_fmt "$@"; }
mib_of_kib() { fmt "$(calc "$1 / 1024")" 1; }

tport=""
start_tracker() {
  tport=$(free_port)
  P2P_TELEMETRY__LOG_LEVEL=warn "$bin/p2p-tracker" --listen "127.0.0.1:$tport" \
    2>"$work/tracker-$tport.log" &
  pids+=($!)
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$tport/metrics" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "tracker did not start" >&2; exit 1
}

# start_peer ID DIR UPLOAD_LIMIT -> sets peer_pid, peer_port
start_peer() {
  local id=$1 dir=$2 limit=$3
  mkdir -p "$dir"
  peer_port=$(free_port)
  P2P_TELEMETRY__LOG_LEVEL=warn P2P_TRANSFER__UPLOAD_LIMIT=$limit \
    "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" serve --id "$id" \
    --listen "127.0.0.1:$peer_port" --files-dir "$dir" 2>"$work/$id.log" &
  peer_pid=$!
  pids+=("$peer_pid")
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$peer_port/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "peer $id did not start; log:" >&2; cat "$work/$id.log" >&2; exit 1
}

# wait_holders NAME COUNT: until the tracker lists COUNT complete holders of NAME.
wait_holders() {
  local n
  for _ in $(seq 600); do
    n=$("$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" --json search --exact "$1" 2>/dev/null \
      | python3 -c 'import json,sys; print(sum(len(f["peers"]) for f in json.load(sys.stdin)["files"]))' \
      2>/dev/null || echo 0)
    [ "$n" -ge "$2" ] && return
    sleep 0.1
  done
  echo "$1 never had $2 holders" >&2; exit 1
}

hwm_kib() { tb_hwm_kib "$1"; }
max_rss=0
max_rss_what=""
note_rss() { # KIB WHAT
  if [ "$1" -gt "$max_rss" ]; then max_rss=$1; max_rss_what=$2; fi
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

make_file() { head -c $(($2 * 1048576)) /dev/urandom > "$1"; }

# ---- distribution -------------------------------------------------------------------------
distribution() {
  local n=$1
  local run=$work/dist-$n
  mkdir -p "$run/seed"
  start_tracker
  make_file "$run/seed/big.bin" "$F_MIB"
  local want; want=$(sha256sum "$run/seed/big.bin" | cut -d' ' -f1)
  start_peer seed "$run/seed" "$U"; local seed_pid=$peer_pid seed_port=$peer_port
  local ports=() ppids=()
  for i in $(seq "$n"); do
    start_peer "p$i" "$run/p$i" "$U"
    ports+=("$peer_port"); ppids+=("$peer_pid")
  done
  wait_holders big.bin 1
  local t0; t0=$(now)
  local gets=()
  for i in $(seq "$n"); do
    tb_timed "$run/get-$i" /usr/bin/time -f '%M' -o "$run/get-$i.rss" \
      "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" get big.bin \
      --via "127.0.0.1:${ports[$((i - 1))]}"
    gets+=("$TB_TIMED_PID")
  done
  for g in "${gets[@]}"; do wait "$g" || true; done
  local last=0 times=""
  for i in $(seq "$n"); do
    rc=$(cat "$run/get-$i.rc")
    [ "$rc" = 0 ] || { echo "get --via p$i failed ($rc):" >&2; cat "$run/get-$i.err" >&2; exit 1; }
    got=$(sha256sum "$run/p$i/big.bin" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "p$i holds other bytes" >&2; exit 1; }
    t=$(calc "$(cat "$run/get-$i.end") - $t0")
    times="$times $(fmt "$t" 1)"
    if [ "$(calc "$t > $last")" = 1 ]; then last=$t; fi
    note_rss "$(cat "$run/get-$i.rss")" "get --via client"
  done
  local f=$F_MIB bound
  bound=$(calc "a = $f / $u_mib; b = $n * $f / (($n + 1) * $u_mib); if (a > b) a else b")
  local served
  served=$(curl -fs "http://127.0.0.1:$seed_port/metrics" \
    | awk '$1 == "p2p_peer_served_bytes_total" {print $2}')
  note_rss "$(hwm_kib "$seed_pid")" "seed (N=$n)"
  local worst_peer=0 cpu
  cpu=$(tb_cpu_s "$seed_pid")
  for p in "${ppids[@]}"; do
    k=$(hwm_kib "$p"); note_rss "$k" "peer (N=$n)"
    [ "$k" -gt "$worst_peer" ] && worst_peer=$k
    cpu=$(calc "$cpu + $(tb_cpu_s "$p")")
  done
  row "distribution N=$n F=${F_MIB}MiB U=$U: last $(fmt "$last" 1) s, bound $(fmt "$bound" 1) s, ratio $(fmt "$(calc "$last / $bound")") (goal <= 1.3); seed served $(fmt "$(calc "${served:-0} / ($f * 1048576)")" 1)x F; per peer (s):$times; peak RSS seed $(mib_of_kib "$(hwm_kib "$seed_pid")") MiB, worst peer $(mib_of_kib "$worst_peer") MiB; CPU $(fmt "$(calc "$cpu * 1024 / ($n * $f)")" 1) s per GiB delivered"
  stop_all
  rm -rf "$run"
}

# ---- many sources -------------------------------------------------------------------------
many_sources() {
  local run=$work/many
  mkdir -p "$run/h1"
  start_tracker
  make_file "$run/h1/big.bin" "$F_MIB"
  local want; want=$(sha256sum "$run/h1/big.bin" | cut -d' ' -f1)
  local hp=()
  for i in 2 3 4; do mkdir -p "$run/h$i"; cp "$run/h1/big.bin" "$run/h$i/big.bin"; done
  for i in 1 2 3 4; do start_peer "h$i" "$run/h$i" "$U"; hp+=("$peer_pid"); done
  wait_holders big.bin 4
  local t0 t1
  t0=$(now)
  /usr/bin/time -f '%M' -o "$run/get.rss" \
    "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" get big.bin -o "$run/out.bin" \
    >"$run/get.out" 2>"$run/get.err" || { cat "$run/get.err" >&2; exit 1; }
  t1=$(now)
  got=$(sha256sum "$run/out.bin" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "many sources: wrong bytes" >&2; exit 1; }
  local secs; secs=$(calc "$t1 - $t0")
  local rate; rate=$(calc "$F_MIB / $secs")
  note_rss "$(cat "$run/get.rss")" "CLI get (4 sources)"
  for p in "${hp[@]}"; do note_rss "$(hwm_kib "$p")" "holder"; done
  row "many sources: 4 holders at $U, F=${F_MIB}MiB: $(fmt "$secs" 1) s, $(fmt "$rate" 1) MiB/s = $(fmt "$(calc "$rate / (4 * $u_mib)")") of 4U (goal >= 0.85); CLI peak RSS $(mib_of_kib "$(cat "$run/get.rss")") MiB"
  stop_all
  rm -rf "$run"
}

# ---- one fast source ----------------------------------------------------------------------
nginx_bin=""
find_nginx() {
  nginx_bin=$(command -v nginx || true)
  if [ -z "$nginx_bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing nginx-light for the nginx -> curl comparison" >&2
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1; }) || true
    nginx_bin=$(command -v nginx || true)
    if [ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ]; then nginx_bin=/usr/sbin/nginx; fi
  fi
}

fast_source() {
  local run=$work/fast
  mkdir -p "$run/share" "$run/nginx/logs"
  # nginx's workers drop root for nobody/www-data: they must be able to read the share.
  chmod a+rx "$work" "$run" "$run/share"
  start_tracker
  make_file "$run/share/big.bin" "$FAST_MIB"
  chmod a+r "$run/share/big.bin"
  local want; want=$(sha256sum "$run/share/big.bin" | cut -d' ' -f1)
  start_peer fast "$run/share" 0; local fast_pid=$peer_pid
  wait_holders big.bin 1
  find_nginx
  local nport=""
  if [ -n "$nginx_bin" ]; then
    nport=$(free_port)
    cat > "$run/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $run/nginx/nginx.pid;
error_log $run/nginx/logs/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$nport; root $run/share; }
}
EOF
    "$nginx_bin" -p "$run/nginx" -c "$run/nginx/nginx.conf" &
    pids+=($!)
    for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$nport/big.bin" -r 0-0 && break; sleep 0.1; done
  fi
  local g_all="" o_all="" n_all="" g_best=0 o_best=0 n_best=0 t0 t1 r
  for _ in 1 2 3; do
    rm -f "$run/out.bin"
    t0=$(now)
    /usr/bin/time -f '%M' -o "$run/get.rss" \
      "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" get big.bin -o "$run/out.bin" \
      >"$run/get.out" 2>"$run/get.err" || { cat "$run/get.err" >&2; exit 1; }
    t1=$(now)
    [ "$(sha256sum "$run/out.bin" | cut -d' ' -f1)" = "$want" ] || { echo "fast: wrong bytes" >&2; exit 1; }
    rm -f "$run/out.bin"
    note_rss "$(cat "$run/get.rss")" "CLI get (fast source)"
    r=$(calc "$FAST_MIB / ($t1 - $t0)"); g_all="$g_all $(fmt "$r" 0)"
    [ "$(calc "$r > $g_best")" = 1 ] && g_best=$r
    t0=$(now); openssl dgst -sha256 "$run/share/big.bin" >/dev/null; t1=$(now)
    r=$(calc "$FAST_MIB / ($t1 - $t0)"); o_all="$o_all $(fmt "$r" 0)"
    [ "$(calc "$r > $o_best")" = 1 ] && o_best=$r
    if [ -n "$nport" ]; then
      t0=$(now); curl -fs -o "$run/nginx.bin" "http://127.0.0.1:$nport/big.bin"; t1=$(now)
      rm -f "$run/nginx.bin"
      r=$(calc "$FAST_MIB / ($t1 - $t0)"); n_all="$n_all $(fmt "$r" 0)"
      [ "$(calc "$r > $n_best")" = 1 ] && n_best=$r
    fi
  done
  note_rss "$(hwm_kib "$fast_pid")" "serving peer (fast source)"
  local slower=$o_best
  if [ -n "$nport" ] && [ "$(calc "$n_best < $o_best")" = 1 ]; then slower=$n_best; fi
  row "one fast source F=${FAST_MIB}MiB, MiB/s per run (best): get$g_all ($(fmt "$g_best" 0)); openssl dgst -sha256$o_all ($(fmt "$o_best" 0)); nginx->curl${n_all:- skipped (no nginx)} ($(fmt "$n_best" 0)); get / slower = $(fmt "$(calc "$g_best / $slower")") (goal >= 0.9); serving peer peak RSS $(mib_of_kib "$(hwm_kib "$fast_pid")") MiB"
  stop_all
  rm -rf "$run"
}

# ---- the testbed (--netns) ------------------------------------------------------------------
# netns_case N MODE: one tb_distribution on fresh namespaces, its row.
netns_case() {
  local n=$1 mode=$2 rc=0
  tb_init
  mkdir -p "$TRACE_DIR"
  TRACE_PNG="$TRACE_DIR/netns-n$n-f${F_MIB}-u${u_mib}-$mode.png" \
    tb_distribution "$n" "$F_MIB" "$u_mib" "$mode" > "$work/netns-peers.txt" || rc=$?
  local times
  times=$(awk '{t = $7; if ($NF == "stopped") t = t "(stopped)"; printf " %s", t}' "$work/netns-peers.txt")
  [ "$rc" = 0 ] || { cat "$work/netns-peers.txt" >&2; echo "netns N=$n $mode: a peer failed" >&2; exit 1; }
  note_rss "$TB_RSS_SEED" "seed (netns N=$n $mode)"
  note_rss "$TB_RSS_PEER" "peer (netns N=$n $mode)"
  local what goal
  case "$mode" in
    uniform) what="netns distribution N=$n F=${F_MIB}MiB U=$U (tbf, MTU 1500)"
             goal="ratio $(fmt "$TB_RATIO") (goal <= 1.3)" ;;
    mixed) what="netns mixed N=$n: half the peers at U=$U, half at U/4, bound with the sum of uploads"
           goal="ratio $(fmt "$TB_RATIO") (goal <= 1.3)" ;;
    late) what="netns late joiner N=$n: p$n starts at half the bound, the others at once"
          goal="others' ratio $(fmt "$TB_RATIO") (goal <= 1.3); the late peer took $(fmt "$TB_LATE_S" 1) s from its start, $(fmt "$(calc "$TB_LATE_S / $TB_BOUND")") of the bound" ;;
    churn) what="netns churn N=$n: $((n - TB_FINISHERS)) peers stopped with SIGTERM at half the bound"
           goal="last of the $TB_FINISHERS others / (1.5 x bound) = $(fmt "$(calc "$TB_RATIO / 1.5")") (goal <= 1)" ;;
  esac
  row "$what: last $(fmt "$TB_LAST" 1) s, bound $(fmt "$TB_BOUND" 1) s, $goal; seed served $(fmt "$(calc "$TB_SERVED / $TB_F_BYTES")" 2)x F (goal <= 1.5); per peer (s):$times; peak RSS seed $(mib_of_kib "$TB_RSS_SEED") MiB, worst peer $(mib_of_kib "$TB_RSS_PEER") MiB (goal < 64); CPU $(fmt "$(calc "$TB_CPU_S * 1073741824 / $TB_DELIVERED")" 1) s per GiB delivered; picture ${TB_TRACE_PNG:-(not drawn)}"
  tb_teardown
}

if [ "$netns" = 1 ]; then
  TRACE_DIR=${TRACE_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/bench-swarm-pictures}
  tb_probe || { echo "--netns: cannot make network namespaces here: $TB_WHY" >&2; exit 2; }
  export BIN=$bin
  for n in $NS; do netns_case "$n" uniform; done
  for mode in ${SCENARIOS:-mixed churn}; do netns_case "$SCEN_N" "$mode"; done
else
  rows=" ${ROWS:-distribution many fast} "
  if [[ $rows == *" distribution "* ]]; then for n in $NS; do distribution "$n"; done; fi
  if [[ $rows == *" many "* ]]; then many_sources; fi
  if [[ $rows == *" fast "* ]]; then fast_source; fi
fi
row "peak RSS of any process: $(mib_of_kib "$max_rss") MiB ($max_rss_what) (goal < 64 MiB)"
echo
echo "== bench-swarm report ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)) =="
cat "$report"
