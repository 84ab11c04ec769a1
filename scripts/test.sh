#!/usr/bin/env bash
# The project's test command (README): unit, integration and end-to-end tests of the workspace,
# then the checks of the deployment package and of the dashboards and alert rules.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

for check in scripts/check-deploy.sh scripts/check-observability.sh; do
  if [ -x "$check" ]; then
    echo "== $check"
    "$check"
  fi
done
