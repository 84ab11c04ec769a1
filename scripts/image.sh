#!/usr/bin/env bash
# The container image: build it, run the original layout from it, push it.
#
#   scripts/image.sh build            # localhost/p2pshare:dev from the workspace's own debug build
#                                     #   (stripped; BINARIES_PROFILE=release for a release build)
#   scripts/image.sh build --full     # the Dockerfile's own multi-stage build (what users run)
#   scripts/image.sh smoke [IMAGE]    # one tracker + three peers as containers, checked from here
#   scripts/image.sh push REF         # tag localhost/p2pshare:dev as REF and push it
#   scripts/image.sh registry-test    # push to a registry on loopback, drop the local copy, pull,
#                                     #   smoke-test the pulled image
#   scripts/image.sh kube-play        # the chart's rendered pods under `podman kube play`
#   scripts/image.sh engine           # prints the engine that can run containers (exit 1: none)
#
# SKIP_CARGO=1: take target/debug as it is (scripts/test.sh: `cargo test` has just built it; a
# `cargo build -p ...` would resolve features differently and build the binaries again).
#
# Engine: docker when a daemon answers, else podman. With podman and no registry reachable the
# base images the Dockerfile names are made locally from Debian packages (mmdebstrap) and kept in
# the engine's storage, so later builds reuse them. The smoke test runs exactly the `docker run`
# lines of docs/deploy.md; scripts/check_run_lines.py holds the Terraform cloud-init templates
# to them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/image
image=${IMAGE:-localhost/p2pshare:dev}
runtime_base=gcr.io/distroless/cc-debian12:nonroot
builder_base=docker.io/library/rust:1.95-slim-bookworm
debian_suite=bookworm

log() { echo "image.sh: $*" >&2; }
die() { echo "image.sh: $*" >&2; exit 1; }

# --- engine ----------------------------------------------------------------------------------------
engine=
pick_engine() {
  [ -n "$engine" ] && return 0
  if [ -n "${ENGINE:-}" ]; then command -v "$ENGINE" >/dev/null 2>&1 || return 1; engine=$ENGINE
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null 2>&1; then engine=podman
  else return 1
  fi
  if [ "$engine" = podman ]; then
    # Sandboxed VMs: the default rlimits cannot be raised (no CAP_SYS_RESOURCE) and crun refuses
    # hybrid cgroups. A config of our own keeps the machine's /etc/containers untouched.
    mkdir -p "$work"
    local nofile; nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
    {
      echo '[containers]'
      echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=32768:32768\"]"
      if command -v runc >/dev/null 2>&1; then echo '[engine]'; echo 'runtime = "runc"'; fi
    } > "$work/containers.conf"
    export CONTAINERS_CONF=$work/containers.conf
  fi
}
e() { "$engine" "$@"; }

# Can this engine start a container? (podman installed is not enough: no runtime, no cgroups...)
# The runtime base has no shell and no coreutils; its dynamic loader answers --version.
engine_can_run() {
  pick_engine || return 1
  make_runtime_base >/dev/null 2>&1 || return 1
  e run --rm --pull=never --entrypoint /lib64/ld-linux-x86-64.so.2 "$runtime_base" --version >/dev/null 2>&1
}

image_exists() {
  if [ "$engine" = docker ]; then docker image inspect "$1" >/dev/null 2>&1
  else podman image exists "$1"; fi
}

# --- base images (no registry: made from Debian packages) -----------------------------------------
try_pull() { # IMAGE: a registry that answers within a minute wins over making the image
  timeout 60 "$engine" pull -q "$1" >/dev/null 2>&1
}

need_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 || die "no registry answers and mmdebstrap is not installed (apt-get install mmdebstrap)"
  [ "$engine" = podman ] || [ "$engine" = docker ] || die "unknown engine $engine"
}

apt_sources() { # the machine's own mirror when it has one, else Debian's
  local f
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [ -s "$f" ] && { echo "$f"; return; }
  done
  echo http://deb.debian.org/debian
}

# Distroless-like: glibc, libgcc, libssl, CA certificates, tzdata; no shell, no package manager;
# users root and nonroot (65532), like gcr.io/distroless/cc-debian12:nonroot.
# shellcheck disable=SC2016  # hooks are single-quoted: mmdebstrap runs them with $1 = the root
make_runtime_base() {
  image_exists "$runtime_base" && return 0
  pick_engine
  try_pull "$runtime_base" && return 0
  need_mmdebstrap
  log "making $runtime_base locally with mmdebstrap"
  local tar=$work/runtime-base.tar
  mkdir -p "$work"
  mmdebstrap --quiet --variant=extract \
    --include=base-files,netbase,tzdata,libc6,libgcc-s1,libssl3,ca-certificates \
    --extract-hook='printf "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" > "$1/etc/passwd"' \
    --extract-hook='printf "root:x:0:\nnonroot:x:65532:\n" > "$1/etc/group"' \
    --extract-hook='install -d -m 0700 -o 65532 -g 65532 "$1/home/nonroot" && install -d -m 1777 "$1/tmp"' \
    --extract-hook='install -d "$1/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"' \
    "$debian_suite" "$tar" "$(apt_sources)"
  e import --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' "$tar" "$runtime_base" >/dev/null
  rm -f "$tar"
}

# Rust builder for `build --full`: Debian minbase + gcc + this machine's Rust toolchain (the
# version the Dockerfile names) and its CA bundle (egress may go through a proxy with its own CA).
# shellcheck disable=SC2016  # as above
make_builder_base() {
  image_exists "$builder_base" && return 0
  try_pull "$builder_base" && return 0
  need_mmdebstrap
  local want sysroot
  want=$(sed -n 's/^FROM rust:\([0-9.]*\)-.*/\1/p' Dockerfile | head -1)
  sysroot=$(rustc --print sysroot)
  case "$(rustc -V)" in "rustc $want"*) ;; *) die "the Dockerfile wants Rust $want, this machine has $(rustc -V)";; esac
  log "making $builder_base locally with mmdebstrap and $sysroot"
  local tar=$work/builder-base.tar
  mkdir -p "$work"
  mmdebstrap --quiet --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    --customize-hook="cp -a $sysroot/bin $sysroot/lib $sysroot/libexec \"\$1/usr/local/\"" \
    --customize-hook='mkdir -p "$1/usr/local/cargo/bin"' \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
    "$debian_suite" "$tar" "$(apt_sources)"
  e import --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$want" "$tar" "$builder_base" >/dev/null
  rm -f "$tar"
}

# --- build -----------------------------------------------------------------------------------------
# The prebuilt binaries the Dockerfile's `prebuilt` stage copies (target/image/out/): stripped, with
# the debug info kept beside them (target/image/debug/*.debug, linked by .gnu_debuglink).
stage_binaries() {
  local profile=${BINARIES_PROFILE:-debug} b
  local args=(--locked -p p2p-tracker -p p2p-peer --bins)
  [ "$profile" = release ] && args+=(--release)
  [ "${SKIP_CARGO:-0}" = 1 ] || cargo build -q "${args[@]}"
  rm -rf "$work/out" "$work/debug"
  install -d "$work/out/usr/local/bin" "$work/debug" "$work/out/data"
  for b in p2p-tracker p2p-peer; do
    [ -x "target/$profile/$b" ] || die "target/$profile/$b is missing"
    strip_binary "target/$profile/$b" "$work/out/usr/local/bin/$b" "$work/debug/$b.debug"
  done
}

strip_binary() { # IN OUT DEBUG: the rule for every image's binaries, host build or not
  objcopy --only-keep-debug "$1" "$3"
  objcopy --strip-all --add-gnu-debuglink="$3" "$1" "$2"
}

build() {
  local full=0
  [ "${1:-}" = --full ] && full=1
  pick_engine || die "no container engine (docker or podman) is installed"
  make_runtime_base
  local args=(--build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)")
  # podman: never pull (the bases may be local stand-ins), keep HEALTHCHECK (docker format)
  if [ "$engine" = podman ]; then args+=(--pull=never --format docker); fi
  if [ "$full" = 1 ]; then
    make_builder_base
    args+=(--build-arg BINARIES=builder)
  else
    stage_binaries
    args+=(--build-arg BINARIES=prebuilt)
  fi
  local t0=$SECONDS
  e build "${args[@]}" -t "$image" .
  if [ "$full" = 1 ]; then
    # the symbols of the binaries in this image, for a crash (gdb finds them by debuglink)
    rm -rf "$work/debug"
    e build "${args[@]}" --target debug-symbols -o "type=local,dest=$work/debug" . >/dev/null
  fi
  log "built $image in $((SECONDS - t0)) s ($(image_size) MB); debug symbols in $work/debug"
}

image_size() {
  e image inspect --format '{{.Size}}' "$image" | awk '{printf "%.1f", $1 / 1000000}'
}

# --- smoke: the original layout from the image -----------------------------------------------------
smoke_label=p2pshare-smoke=1
smoke_names=(p2p-tracker p2p-peer1 p2p-peer2 p2p-peer3)
smoke_net=p2pshare
smoke_subnet=${SMOKE_SUBNET:-10.89.50.0/24}

# The `docker run` lines of docs/deploy.md, as they are there.
run_lines() {
  sed -n '/<!-- run-lines:begin -->/,/<!-- run-lines:end -->/p' docs/deploy.md | sed '/^```/d; /^<!--/d'
}

# `docker` as the run lines call it: the engine, every object labelled (cleanup removes only
# what carries the label), ports published on loopback, no pull.
smoke_docker() {
  local args=() a
  case "$1" in
    network) args=(network create --label "$smoke_label" --subnet "$smoke_subnet"); shift 2 ;;
    volume) args=(volume create --label "$smoke_label"); shift 2 ;;
    run)
      args=(run --label "$smoke_label" --pull=never); shift
      while [ $# -gt 0 ]; do
        a=$1; shift
        if [ "$a" = -p ]; then args+=(-p "127.0.0.1:$1"); shift; else args+=("$a"); fi
      done ;;
    *) die "smoke: the run lines call 'docker $1', which the smoke test does not know" ;;
  esac
  e "${args[@]}" "$@"
}

smoke_cleanup() {
  local n
  for n in "${smoke_names[@]}"; do
    if [ "$(e inspect --format '{{index .Config.Labels "p2pshare-smoke"}}' "$n" 2>/dev/null)" = 1 ]; then
      e rm -f -t 0 "$n" >/dev/null 2>&1 || e rm -f "$n" >/dev/null 2>&1 || true
    fi
  done
  for n in 1 2 3; do
    if [ "$(e volume inspect --format '{{index .Labels "p2pshare-smoke"}}' "p2p-peer$n" 2>/dev/null)" = 1 ]; then
      e volume rm -f "p2p-peer$n" >/dev/null 2>&1 || true
    fi
  done
  if [ "$(e network inspect --format '{{index .Labels "p2pshare-smoke"}}' "$smoke_net" 2>/dev/null)" = 1 ]; then
    e network rm -f "$smoke_net" >/dev/null 2>&1 || true
  fi
}

smoke_refuse_foreign() { # containers/volumes/network of these names that the smoke test did not make
  local n
  for n in "${smoke_names[@]}"; do
    e container exists "$n" 2>/dev/null || e inspect --type container "$n" >/dev/null 2>&1 || continue
    [ "$(e inspect --format '{{index .Config.Labels "p2pshare-smoke"}}' "$n")" = 1 ] ||
      die "smoke: a container named $n exists and is not from the smoke test; remove it first"
  done
}

wait_for() { # DEADLINE_S WHAT CMD...: poll until CMD succeeds
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { log "smoke: timed out waiting for $what"; return 1; }
    sleep 1
  done
}

healthy() { e healthcheck run "$1"; }
docker_healthy() { [ "$(docker inspect --format '{{.State.Health.Status}}' "$1")" = healthy ]; }

smoke_fail() {
  log "smoke: FAILED: $*"
  [ -s "$tmp/engine.log" ] && { echo "--- $engine said" >&2; grep -v "systemd connection" "$tmp/engine.log" | tail -20 >&2; }
  local n
  for n in "${smoke_names[@]}"; do echo "--- logs of $n" >&2; e logs --tail 20 "$n" >&2 2>&1 || true; done
  exit 1
}

smoke() {
  local img=${1:-$image}
  pick_engine || die "no container engine"
  image_exists "$img" || die "smoke: no image $img (scripts/image.sh build)"
  [ "${SKIP_CARGO:-0}" = 1 ] || cargo build -q --locked -p p2p-peer --bins
  local cli=$root/target/debug/p2p-peer tracker=http://127.0.0.1:50051
  tmp=$(mktemp -d)  # global: the EXIT trap removes it
  smoke_refuse_foreign
  smoke_cleanup
  trap 'smoke_cleanup; rm -rf "$tmp"' EXIT
  trap 'exit 130' INT TERM
  local t0=$SECONDS
  log "smoke: $img with $engine: the run lines of docs/deploy.md"
  # shellcheck disable=SC2034,SC2317  # used by the evaluated run lines
  ( IMAGE=$img HOST_IP=127.0.0.1
    docker() { smoke_docker "$@"; }
    eval "$(run_lines | grep -vE '^(IMAGE|HOST_IP)=')" ) >/dev/null 2>>"$tmp/engine.log" ||
    smoke_fail "the run lines of docs/deploy.md did not start"

  # every container reports healthy through the image's own HEALTHCHECK
  local n check=healthy
  [ "$engine" = docker ] && check=docker_healthy
  for n in "${smoke_names[@]}"; do
    wait_for 90 "$n healthy" $check "$n" || smoke_fail "$n never became healthy"
    [ "$(e inspect --format '{{.Config.User}}' "$n")" = 65532:65532 ] || smoke_fail "$n does not run as 65532"
  done
  log "smoke: 4 containers healthy ($((SECONDS - t0)) s)"

  # put into two peers, search, verified get from the host (bytes come out of the containers)
  head -c 3000000 /dev/urandom > "$tmp/report.bin"
  echo "p2pshare smoke $(date -u)" > "$tmp/notes.txt"
  "$cli" put "$tmp/report.bin" --peer 127.0.0.1:5000 || smoke_fail "put into p2p-peer1"
  "$cli" put "$tmp/notes.txt" --peer 127.0.0.1:5001 || smoke_fail "put into p2p-peer2"
  wait_for 60 "the tracker to list both files" \
    sh -c "'$cli' --tracker $tracker search report.bin --exact && '$cli' --tracker $tracker search notes.txt --exact" ||
    smoke_fail "search"
  # the CLI in the image, on the containers' network, finds them through the tracker by name
  e run --rm --pull=never --network "$smoke_net" --read-only --cap-drop ALL "$img" \
    /usr/local/bin/p2p-peer --tracker http://p2p-tracker:50051 search notes >"$tmp/in-net.txt" 2>>"$tmp/engine.log" ||
    smoke_fail "search from a container on the network"
  grep -q notes.txt "$tmp/in-net.txt" || smoke_fail "search from a container: no notes.txt"
  "$cli" --tracker "$tracker" get report.bin -o "$tmp/report.got" || smoke_fail "get report.bin"
  "$cli" --tracker "$tracker" get notes.txt -o "$tmp/notes.got" || smoke_fail "get notes.txt"
  if ! cmp "$tmp/report.bin" "$tmp/report.got" || ! cmp "$tmp/notes.txt" "$tmp/notes.got"; then
    smoke_fail "downloaded bytes differ"
  fi
  log "smoke: put, search (host and in-network), verified get ok"

  # SIGTERM: the peer leaves at once (long before the lease runs out) ...
  e stop -t 40 p2p-peer2 >/dev/null 2>>"$tmp/engine.log" || smoke_fail "stop p2p-peer2"
  [ "$(e inspect --format '{{.State.ExitCode}}' p2p-peer2)" = 0 ] || smoke_fail "p2p-peer2 exited non-zero on SIGTERM"
  local rc=0
  "$cli" --tracker "$tracker" search notes.txt --exact >/dev/null 2>&1 || rc=$?
  [ "$rc" = 3 ] || smoke_fail "after SIGTERM the tracker still lists notes.txt (search exit $rc, want 3)"
  # ... and, started again on its volume, shares the same file under the same id
  e start p2p-peer2 >/dev/null 2>>"$tmp/engine.log" || smoke_fail "start p2p-peer2"
  wait_for 90 "p2p-peer2 healthy again" $check p2p-peer2 || smoke_fail "p2p-peer2 not healthy after restart"
  wait_for 60 "notes.txt back" "$cli" --tracker "$tracker" search notes.txt --exact ||
    smoke_fail "notes.txt not shared again after restart"
  "$cli" --tracker "$tracker" --json search notes.txt --exact >"$tmp/search.json"
  grep -q '"peer_2"' "$tmp/search.json" || smoke_fail "notes.txt is not held by peer_2 again: $(cat "$tmp/search.json")"
  rm -f "$tmp/notes.got"
  "$cli" --tracker "$tracker" get notes.txt -o "$tmp/notes.got" || smoke_fail "get notes.txt after the restart"
  cmp "$tmp/notes.txt" "$tmp/notes.got" || smoke_fail "notes.txt differs after the restart"
  log "smoke: SIGTERM leaves, restart on the volume shares again as peer_2"
  log "smoke: passed in $((SECONDS - t0)) s"
}

# --- push, and a registry on loopback ----------------------------------------------------------------
insecure_flag() { # REF: podman wants --tls-verify=false for a plain-HTTP registry on loopback
  case "$1" in 127.0.0.1:*|localhost:*) [ "$engine" = podman ] && echo --tls-verify=false ;; esac
  return 0
}

push() {
  local ref=${1:-}
  [ -n "$ref" ] || die "usage: scripts/image.sh push REGISTRY/NAME:TAG"
  pick_engine || die "no container engine"
  image_exists "$image" || die "no image $image (scripts/image.sh build)"
  e tag "$image" "$ref"
  # shellcheck disable=SC2046
  e push $(insecure_flag "$ref") "$ref"
  log "pushed $image as $ref"
}

registry_pid='' registry_dir=''
registry_cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  if [ -n "$registry_dir" ]; then rm -rf "$registry_dir"; fi
}

# Push to a real registry (Debian's docker-registry) on a free loopback port, remove every local
# copy of the image, pull it back and run the smoke test on the pulled image.
registry_test() {
  pick_engine || die "no container engine"
  command -v docker-registry >/dev/null 2>&1 || die "docker-registry is not installed (apt-get install docker-registry)"
  image_exists "$image" || die "no image $image (scripts/image.sh build)"
  local port ref id pulled_id
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  registry_dir=$(mktemp -d)
  trap 'registry_cleanup' EXIT
  printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/data\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$registry_dir" "$port" > "$registry_dir/config.yml"
  docker-registry serve "$registry_dir/config.yml" >"$registry_dir/log" 2>&1 &
  registry_pid=$!
  wait_for 30 "the registry on 127.0.0.1:$port" curl -sf "http://127.0.0.1:$port/v2/" ||
    { cat "$registry_dir/log" >&2; die "registry did not start"; }
  ref=127.0.0.1:$port/p2pshare:smoke
  id=$(e image inspect --format '{{.Id}}' "$image")
  push "$ref" >/dev/null
  curl -sf "http://127.0.0.1:$port/v2/p2pshare/tags/list" | grep -q '"smoke"' || die "the registry does not list the pushed tag"
  e rmi -f "$ref" "$image" >/dev/null
  image_exists "$image" && die "the local copy is still there"
  # shellcheck disable=SC2046
  e pull -q $(insecure_flag "$ref") "$ref" >/dev/null
  pulled_id=$(e image inspect --format '{{.Id}}' "$ref")
  [ "$pulled_id" = "$id" ] || die "pulled image $pulled_id is not the pushed one $id"
  log "pushed to and pulled from the registry on 127.0.0.1:$port: same image $id"
  e tag "$ref" "$image"
  # a child: the smoke test's own EXIT trap must not replace the registry's
  "$0" smoke "$ref"
  e rmi "$ref" >/dev/null
}

# --- podman kube play: the pods the Helm chart renders -----------------------------------------------
# Renders the chart for this image and plays its ConfigMap, the tracker Deployment and the peers'
# StatefulSet pod template (as pod p2pshare-peer-0: kube play has no StatefulSet). No cluster, so
# no Services: the tracker Service's name is a hostAlias to the tracker pod's fixed IP.
kube_net=p2pshare-kube
kube_subnet=10.89.51.0/24
kube_tracker_ip=10.89.51.10
kube_peer_ip=10.89.51.11
kube_cleanup() {
  if [ -f "$work/kube.yaml" ]; then e kube down "$work/kube.yaml" >/dev/null 2>&1 || true; fi
  e network rm -f "$kube_net" >/dev/null 2>&1 || true
  local v
  # kube play's named volumes: ours (p2pshare-kube-*) and the chart's ConfigMap (p2pshare-config)
  for v in $(e volume ls -q | grep -E '^(p2pshare-kube-.*|p2pshare-config)$' || true); do
    e volume rm -f "$v" >/dev/null 2>&1 || true
  done
}
kube_play() {
  pick_engine
  [ "$engine" = podman ] || die "kube-play needs podman"
  image_exists "$image" || die "no image $image (scripts/image.sh build)"
  bash scripts/install-helm.sh "$root/.local/bin" >/dev/null
  mkdir -p "$work"
  "$root/.local/bin/helm" template p2pshare helm/p2pshare --set image.repository="${image%:*}" \
    --set image.tag="${image##*:}" --set image.pullPolicy=Never > "$work/kube-rendered.yaml"
  # podman 4.3 resolves no fieldRef but metadata.name: the others become the values a cluster
  # would give (reported on stderr).
  python3 - "$work/kube-rendered.yaml" "$kube_tracker_ip" "$kube_peer_ip" > "$work/kube.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = [d for d in docs if d["kind"] in ("ConfigMap", "Deployment")]
for d in docs:
    if d["kind"] == "StatefulSet":
        spec = d["spec"]["template"]["spec"]
        spec["hostAliases"] = [{"ip": sys.argv[2], "hostnames": ["p2pshare-tracker"]}]
        out.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": d["metadata"]["name"] + "-0", "labels": d["spec"]["template"]["metadata"]["labels"]},
                    "spec": spec})
literal = {"metadata.namespace": "default"}
for d in out:
    spec = d.get("spec", {}) if d["kind"] == "Pod" else d.get("spec", {}).get("template", {}).get("spec")
    # kube play mounts a configMap volume as a directory even with subPath: mount the directory
    # where the file would be. Volumes get names of their own (kube play makes named volumes).
    for v in (spec or {}).get("volumes", []):
        old = v["name"]
        v["name"] = f"p2pshare-kube-{old}"
        for c in spec["containers"]:
            for m in c.get("volumeMounts", []):
                if m["name"] == old:
                    m["name"] = v["name"]
                    if m.pop("subPath", None):
                        m["mountPath"] = m["mountPath"].rsplit("/", 1)[0]
                        print(f"kube-play: {d['metadata']['name']}: subPath mount of {old} as the directory {m['mountPath']}", file=sys.stderr)
    for c in (spec or {}).get("containers", []):
        # Kubernetes expands $(VAR) in env values; podman 4.3 does not.
        pod_name = d["metadata"]["name"] + ("-pod-0" if d["kind"] == "Deployment" else "")
        for env in c.get("env", []):
            if "$(POD_NAME)" in env.get("value", ""):
                env["value"] = env["value"].replace("$(POD_NAME)", pod_name)
                print(f"kube-play: {d['metadata']['name']}: {env['name']}: $(POD_NAME) expanded to {pod_name}", file=sys.stderr)
            path = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if path in literal or path == "status.podIP":
                value = literal.get(path) or (sys.argv[2] if d["kind"] == "Deployment" else sys.argv[3])
                print(f"kube-play: {d['metadata']['name']}: {env['name']} from {path} set to {value}", file=sys.stderr)
                env.pop("valueFrom")
                env["value"] = value
print(yaml.safe_dump_all(out))
PY
  kube_cleanup
  trap kube_cleanup EXIT
  e network create --subnet "$kube_subnet" "$kube_net" >/dev/null
  e kube play --network "$kube_net" --ip "$kube_tracker_ip" --ip "$kube_peer_ip" "$work/kube.yaml" >/dev/null
  local tracker peer
  tracker=$(e ps --filter label=app.kubernetes.io/component=tracker --format '{{.Names}}' | grep -v infra | head -1)
  peer=$(e ps --filter label=app.kubernetes.io/component=peer --format '{{.Names}}' | grep -v infra | head -1)
  if [ -z "$tracker" ] || [ -z "$peer" ]; then e ps -a >&2; die "kube-play: the tracker and peer containers are not running"; fi
  local c
  for c in "$tracker" "$peer"; do
    [ "$(e inspect --format '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}' "$c")" = "true 65532:65532" ] ||
      die "kube-play: $c: not read-only as 65532: $(e inspect --format '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}' "$c")"
  done
  wait_for 60 "the tracker pod serving" e exec -e P2P_CONFIG= "$tracker" /usr/local/bin/p2p-peer health --addr 127.0.0.1:50051 ||
    { e logs "$tracker" >&2; die "kube-play: tracker not serving"; }
  wait_for 60 "the peer pod registered and serving" e exec "$peer" /usr/local/bin/p2p-peer health ||
    { e logs "$peer" >&2; die "kube-play: peer not serving"; }
  e exec "$peer" /usr/local/bin/p2p-peer put /etc/hostname --peer 127.0.0.1:5000 >/dev/null
  wait_for 30 "the tracker to list the peer pod's file" \
    e exec -e P2P_CONFIG= "$tracker" /usr/local/bin/p2p-peer --tracker http://127.0.0.1:50051 search hostname --exact ||
    die "kube-play: the tracker does not list the peer pod's file"
  log "kube-play: tracker Deployment and peer pod from the chart run read-only as 65532; the peer registered and shares"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  smoke) shift; smoke "$@" ;;
  push) shift; push "$@" ;;
  registry-test) registry_test ;;
  kube-play) kube_play ;;
  engine) engine_can_run && echo "$engine" ;;
  *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
