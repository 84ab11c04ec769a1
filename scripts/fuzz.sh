#!/usr/bin/env bash
# Runs each cargo-fuzz target briefly (default 20 s each): name validation, Range parsing and
# config loading. cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them. Findings land in services/fuzz/artifacts/ and fail the run.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
for target in names range config; do
  echo "== fuzz $target (${secs}s)"
  cargo fuzz run --fuzz-dir services/fuzz --sanitizer none "$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 4
done
