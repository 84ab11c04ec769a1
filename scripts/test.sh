#!/usr/bin/env bash
# The project's test command (README): unit, integration and end-to-end tests of the workspace,
# then the checks of the deployment package and of the dashboards and alert rules, then the
# container image (built from the workspace's build and smoke-tested) when an engine can run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The crates' shape: no import circles between source files, no file over 700 lines.
python3 scripts/check_layout.py --self-test
python3 scripts/check_layout.py

t0=$SECONDS
cargo test --workspace --locked
echo "-- cargo test: $((SECONDS - t0)) s"

# scripts/run-local.sh: says it is running only when it is, and a second start on the same
# ports fails cleanly (with the binaries cargo test just built).
echo "== scripts/run-local-test.sh"
scripts/run-local-test.sh

# The web page in a real browser, with the binaries cargo test just built.
t0=$SECONDS
echo "== scripts/web-test.sh"
scripts/web-test.sh
echo "-- web test: $((SECONDS - t0)) s"

for check in scripts/check-deploy.sh scripts/check-observability.sh; do
  if [ -x "$check" ]; then
    echo "== $check"
    "$check"
  fi
done

# The image: built from the binaries cargo test just built (stripped), run as containers, pushed
# to and pulled from a registry on loopback when Debian's docker-registry is installed, and the
# chart's pods played by podman.
if engine=$(scripts/image.sh engine 2>/dev/null); then
  for step in build smoke registry-test kube-play; do
    if [ "$step" = registry-test ] && ! command -v docker-registry >/dev/null 2>&1; then
      echo "== scripts/image.sh registry-test: SKIPPED (docker-registry is not installed)"; continue
    fi
    if [ "$step" = kube-play ] && [ "$engine" != podman ]; then
      echo "== scripts/image.sh kube-play: SKIPPED (needs podman)"; continue
    fi
    echo "== scripts/image.sh $step ($engine)"
    t0=$SECONDS
    SKIP_CARGO=1 scripts/image.sh "$step"
    echo "-- image $step: $((SECONDS - t0)) s"
  done
else
  echo "== container image: SKIPPED (no docker or podman that can start a container; see scripts/image.sh engine)"
fi
