#!/usr/bin/env bash
# Memory benchmark: one 1 GiB file served by one peer and downloaded by the CLI, both release
# builds on loopback. Reports throughput and the peak RSS (VmHWM) of the serving peer and of the
# downloading process. The design budget is 64 MiB each.
#   scripts/bench-transfer.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
for tool in bc /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install bc time)" >&2; exit 2; }
done
cargo build --release --locked --bins >&2
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/share"
head -c $((size_mib * 1048576)) /dev/urandom > "$work/share/big.bin"
want=$(sha256sum "$work/share/big.bin" | cut -d' ' -f1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
tport=$(free_port)
pport=$(free_port)
P2P_TELEMETRY__LOG_LEVEL=warn "$bin/p2p-tracker" --listen "127.0.0.1:$tport" &
P2P_TELEMETRY__LOG_LEVEL=warn "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" serve --id bench \
  --listen "127.0.0.1:$pport" --files-dir "$work/share" &
peer=$!
for _ in $(seq 600); do
  curl -fs "http://127.0.0.1:$pport/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/client-maxrss" \
  "$bin/p2p-peer" --tracker "http://127.0.0.1:$tport" get big.bin -o "$work/out.bin" >&2
end=$(date +%s.%N)
got=$(sha256sum "$work/out.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "digest mismatch: $got != $want" >&2; exit 1; }

peer_kib=$(awk '/VmHWM/ {print $2}' "/proc/$peer/status")
client_kib=$(cat "$work/client-maxrss")
secs=$(echo "$end - $start" | bc -l)
printf 'size_mib=%s seconds=%.2f throughput_mib_s=%.0f serving_peer_peak_rss_mib=%.1f downloader_peak_rss_mib=%.1f\n' \
  "$size_mib" "$secs" "$(echo "$size_mib / $secs" | bc -l)" \
  "$(echo "$peer_kib / 1024" | bc -l)" "$(echo "$client_kib / 1024" | bc -l)"
if [ "$peer_kib" -gt 65536 ] || [ "$client_kib" -gt 65536 ]; then
  echo "over the 64 MiB budget" >&2
  exit 1
fi
