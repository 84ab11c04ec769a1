#!/usr/bin/env bash
# Single-source transfer benchmark: one file served by one peer and downloaded (verified) by the
# CLI, release builds on loopback, against two references in the same run, alternated round by
# round so that both see the same load: `openssl dgst -sha256` of the file (the hash the get must
# compute at least once) and nginx -> curl of the same file into a file (moving the bytes, no
# hash). The figure is the get's speed as a ratio to the slower of the two (issue 18's goal:
# >= 0.9x), median over the rounds. CPU: seconds (user + system) per GiB of the verified get
# (serving peer + CLI) next to the references' (nginx + curl + openssl dgst) in the same round,
# and their ratio (issue 27's goal: <= 1.5x). Also reports the peak RSS (VmHWM) of the serving peer and of
# the downloading process; the design budget is 64 MiB each.
#   scripts/bench-transfer.sh [SIZE_MIB] [ROUNDS]   (default 1024 MiB, 5 rounds)
#   BIN=dir      use the p2p-peer/p2p-tracker binaries in dir instead of building them
#   NGINX=path   the nginx binary (default: nginx on PATH, then /usr/sbin/nginx)
#   PERF_DIR=dir record each round's get with `perf record -g` (the CLI in cli-N.data, the
#                serving peer in serving-N.data; `perf report -i dir/cli-1.data`); the CPU
#                figures of a recorded round include perf's own cost
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
rounds=${2:-5}
nginx=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
for tool in bc /usr/bin/time openssl curl "$nginx"; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install bc time openssl curl nginx)" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --bins >&2
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release
else
  bin=$BIN
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/share" "$work/out" "$work/nginx"
head -c $((size_mib * 1048576)) /dev/urandom > "$work/share/big.bin"
want=$(sha256sum "$work/share/big.bin" | cut -d' ' -f1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
tport=$(free_port)
pport=$(free_port)
nport=$(free_port)
P2P_TELEMETRY__LOG_LEVEL=warn "$bin/p2p-tracker" --listen "127.0.0.1:$tport" &
P2P_TELEMETRY__LOG_LEVEL=warn "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" serve --id bench \
  --listen "127.0.0.1:$pport" --files-dir "$work/share" &
peer=$!
# nginx as a plain static server of the same directory: one worker, sendfile, no logging.
cat > "$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nport;
    root $work/share;
  }
}
EOF
"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
nginx_pid=$!
ready() { curl -fs -o /dev/null -r 0-0 "$1"; }
deadline=$((SECONDS + 120))
until ready "http://127.0.0.1:$pport/healthz" && ready "http://127.0.0.1:$nport/big.bin"; do
  [ $SECONDS -lt $deadline ] || { echo "peer or nginx not ready" >&2; cat "$work/nginx/error.log" >&2; exit 1; }
  sleep 0.2
done
# The peer indexes the file after it listens: wait until the tracker can find it.
until "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" search big.bin 2>/dev/null | grep -q big.bin; do
  [ $SECONDS -lt $deadline ] || { echo "big.bin never registered" >&2; exit 1; }
  sleep 0.2
done

now() { date +%s.%N; }
# CPU seconds (user + system) a live process has used so far.
ticks=$(getconf CLK_TCK)
cpu_of() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
# CPU seconds of a finished command from /usr/bin/time's "%U %S" (after the max RSS line).
cpu_file() { awk 'END {print $2 + $3}' "$1"; }
cpu_ratios=()
get_cpus=()
ref_cpus=()
mibs() { echo "$size_mib / ($2 - $1)" | bc -l; }
ratios=()
get_speeds=()
echo "load before: $(uptime)" >&2
for round in $(seq "$rounds"); do
  rm -f "$work/out/"*
  t0=$(now)
  got=$(/usr/bin/time -f '%M %U %S' -o "$work/openssl-cpu" openssl dgst -sha256 -r "$work/share/big.bin" | cut -d' ' -f1)
  t1=$(now)
  [ "$got" = "$want" ] || { echo "openssl digest mismatch" >&2; exit 1; }
  nginx_before=$(cpu_of "$nginx_pid")
  /usr/bin/time -f '%M %U %S' -o "$work/curl-cpu" curl -fs -o "$work/out/curl.bin" "http://127.0.0.1:$nport/big.bin"
  nginx_cpu=$(echo "$(cpu_of "$nginx_pid") - $nginx_before" | bc -l)
  t2=$(now)
  peer_before=$(cpu_of "$peer")
  rec=()
  if [ -n "${PERF_DIR:-}" ]; then
    mkdir -p "$PERF_DIR"
    perf record -q -g -F 999 -p "$peer" -o "$PERF_DIR/serving-$round.data" 2>/dev/null &
    perf_pid=$!
    rec=(perf record -q -g -F 999 -o "$PERF_DIR/cli-$round.data" --)
  fi
  /usr/bin/time -f '%M %U %S' -o "$work/client-maxrss" \
    "${rec[@]}" "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" get big.bin -o "$work/out/get.bin" >/dev/null 2>"$work/get.log" || { cat "$work/get.log" >&2; exit 1; }
  t3=$(now)
  if [ -n "${PERF_DIR:-}" ]; then
    kill -INT "$perf_pid" && wait "$perf_pid" || true
  fi
  peer_cpu=$(echo "$(cpu_of "$peer") - $peer_before" | bc -l)
  gib=$(echo "$size_mib / 1024" | bc -l)
  get_cpu=$(echo "($peer_cpu + $(cpu_file "$work/client-maxrss")) / $gib" | bc -l)
  ref_cpu=$(echo "($nginx_cpu + $(cpu_file "$work/curl-cpu") + $(cpu_file "$work/openssl-cpu")) / $gib" | bc -l)
  cpu_ratio=$(echo "$get_cpu / $ref_cpu" | bc -l)
  get_cpus+=("$get_cpu")
  ref_cpus+=("$ref_cpu")
  cpu_ratios+=("$cpu_ratio")
  got=$(sha256sum "$work/out/get.bin" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "digest mismatch: $got != $want" >&2; exit 1; }
  [ "$(stat -c %s "$work/out/curl.bin")" = "$((size_mib * 1048576))" ] || { echo "curl got a short file" >&2; exit 1; }
  openssl_s=$(mibs "$t0" "$t1")
  curl_s=$(mibs "$t1" "$t2")
  get_s=$(mibs "$t2" "$t3")
  slower=$(echo "if ($openssl_s < $curl_s) $openssl_s else $curl_s" | bc -l)
  ratio=$(echo "$get_s / $slower" | bc -l)
  ratios+=("$ratio")
  get_speeds+=("$get_s")
  printf 'round=%s openssl_mib_s=%.0f nginx_curl_mib_s=%.0f get_mib_s=%.0f get_x_slower=%.2f get_cpu_s_per_gib=%.2f (serving %.2f, cli %.2f) ref_cpu_s_per_gib=%.2f cpu_x_ref=%.2f\n' \
    "$round" "$openssl_s" "$curl_s" "$get_s" "$ratio" "$get_cpu" "$(echo "$peer_cpu / $gib" | bc -l)" \
    "$(echo "$(cpu_file "$work/client-maxrss") / $gib" | bc -l)" "$ref_cpu" "$cpu_ratio"
done
echo "load after: $(uptime)" >&2
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

peer_kib=$(awk '/VmHWM/ {print $2}' "/proc/$peer/status")
client_kib=$(awk 'END {print $1}' "$work/client-maxrss")
printf 'size_mib=%s rounds=%s median_get_mib_s=%.0f median_get_x_slower_of_openssl_and_nginx_curl=%.2f median_get_cpu_s_per_gib=%.2f median_ref_cpu_s_per_gib=%.2f median_cpu_x_ref=%.2f serving_peer_peak_rss_mib=%.1f downloader_peak_rss_mib=%.1f\n' \
  "$size_mib" "$rounds" "$(median "${get_speeds[@]}")" "$(median "${ratios[@]}")" \
  "$(median "${get_cpus[@]}")" "$(median "${ref_cpus[@]}")" "$(median "${cpu_ratios[@]}")" \
  "$(echo "$peer_kib / 1024" | bc -l)" "$(echo "$client_kib / 1024" | bc -l)"
if [ "$peer_kib" -gt 65536 ] || [ "$client_kib" -gt 65536 ]; then
  echo "over the 64 MiB budget" >&2
  exit 1
fi
