#!/usr/bin/env bash
# Runs a local p2pshare network on the embedded defaults: a tracker on 127.0.0.1:50051 and three
# peers on 127.0.0.1:5000-5002, each sharing a few sample files from .local/demo/peerN_files.
# Ctrl-C stops everything (the peers leave the network first).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --bins
bin=target/debug
demo=.local/demo
mkdir -p "$demo"/peer{1,2,3}_files
[ -f "$demo/peer1_files/hello.txt" ] || echo "hello from peer 1" > "$demo/peer1_files/hello.txt"
[ -f "$demo/peer2_files/notes.md" ] || printf '# Notes\nshared by peer 2\n' > "$demo/peer2_files/notes.md"
[ -f "$demo/peer3_files/photo.bin" ] || head -c 5242880 /dev/urandom > "$demo/peer3_files/photo.bin"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$bin/p2p-tracker" --listen 127.0.0.1:50051 &
pids+=($!)
for i in 1 2 3; do
  "$bin/p2p-peer" serve --id "peer_$i" --listen "127.0.0.1:$((4999 + i))" \
    --files-dir "$demo/peer${i}_files" &
  pids+=($!)
done

for _ in $(seq 100); do
  ready=0
  for port in 5000 5001 5002; do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && ready=$((ready + 1))
  done
  [ "$ready" = 3 ] && break
  sleep 0.2
done
cat <<MSG

p2pshare is running: tracker 127.0.0.1:50051, peers 127.0.0.1:5000-5002 (files in $demo).
In another shell try:
  $bin/p2p-peer ls
  $bin/p2p-peer get photo.bin -o /tmp/photo.bin
  $bin/p2p-peer put README.md --peer 127.0.0.1:5001
  curl -F file=@Cargo.toml http://127.0.0.1:5000/upload
Ctrl-C to stop.
MSG
wait
