#!/usr/bin/env bash
# The peer's web page in a real browser (scripts/web_test.py): Debian's chromium and
# chromium-driver through Selenium, against a tracker and peers this script's test starts on
# 127.0.0.1. Screenshots of each state go to $CARGO_TARGET_DIR/web-screenshots (printed).
# Uses the debug binaries `cargo test` built (WEB_TEST_BIN=DIR for others); Selenium is
# installed into .local/venv-web. Without chromium it is skipped, unless CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
bin=${WEB_TEST_BIN:-$target/debug}
selenium_req="selenium==4.51.0"

for cmd in chromium chromedriver; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
      echo "web test: $cmd is missing (apt-get install chromium chromium-driver)" >&2; exit 1
    fi
    echo "== web test: SKIPPED ($cmd is not installed: apt-get install chromium chromium-driver)"
    exit 0
  fi
done
if [ ! -x "$bin/p2p-peer" ] || [ ! -x "$bin/p2p-tracker" ]; then
  cargo build --locked --bins -q
fi

venv=.local/venv-web
if [ "$(cat "$venv/.reqs" 2>/dev/null)" != "$selenium_req" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$selenium_req"
  echo "$selenium_req" > "$venv/.reqs"
fi
exec "$venv/bin/python" scripts/web_test.py --bin-dir "$bin" --out "$target/web-screenshots"
