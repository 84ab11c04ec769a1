#!/usr/bin/env python3
"""Asserts that every place that names the services' ports agrees with config/*.toml.

The contract (docs/DESIGN.md): the tracker listens on one port (config/tracker.toml [server]
listen, 50051), each peer on one port (config/peer.toml [peer] listen, 5000; 5001, 5002 for the
2nd and 3rd peer on one host). Checked against:
  - the Dockerfile's EXPOSE;
  - the Helm chart's values.yaml, and each rendered manifest given on the command line: Services,
    containerPorts, probes, NetworkPolicies, ServiceMonitor port names, and the tracker.toml /
    peer.toml the chart renders (listen ports, the peers' tracker endpoint);
  - Terraform: the port locals, every security-group rule (exactly 22 from admin_cidr, the
    tracker port and the peer port range; no inline or other rules), and the cloud-init inputs.

Usage: check_ports_agree.py [RENDERED.yaml ...]   (needs PyYAML and python-hcl2 >= 8)
Exit 0 when everything agrees; 1 with one line per disagreement otherwise.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import hcl2
import yaml

ROOT = Path(__file__).resolve().parent.parent
errors: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        errors.append(what)


def listen_port(path: Path, section: str) -> int:
    listen = tomllib.loads(path.read_text())[section]["listen"]
    return int(listen.rsplit(":", 1)[1])


def port_of(addr: str) -> int | None:
    m = re.search(r":(\d+)(?:/.*)?$", addr)
    return int(m.group(1)) if m else None


# --- the contract, from the config files --------------------------------------------------------
TRACKER = listen_port(ROOT / "config/tracker.toml", "server")
PEER = listen_port(ROOT / "config/peer.toml", "peer")
PEERS_PER_HOST = 3  # the original layout: peers on PEER .. PEER+2 (5000-5002)

# --- Dockerfile ---------------------------------------------------------------------------------
exposed = {
    int(p.split("/")[0])
    for line in (ROOT / "Dockerfile").read_text().splitlines()
    if line.strip().upper().startswith("EXPOSE")
    for p in line.split()[1:]
}
check(exposed == {TRACKER, PEER}, f"Dockerfile EXPOSE {sorted(exposed)} != [{PEER}, {TRACKER}]")

# --- Helm values --------------------------------------------------------------------------------
values = yaml.safe_load((ROOT / "helm/p2pshare/values.yaml").read_text())
check(values["tracker"]["port"] == TRACKER, f"values tracker.port {values['tracker']['port']} != {TRACKER}")
check(values["peers"]["port"] == PEER, f"values peers.port {values['peers']['port']} != {PEER}")


# --- rendered manifests -------------------------------------------------------------------------
def component(obj: dict) -> str:
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    return labels.get("app.kubernetes.io/component", "")


def check_rendered(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    want = {"tracker": TRACKER, "peer": PEER}
    service_port_names: set[str] = set()
    seen = set()
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        where = f"{path.name}: {kind}/{name}"
        comp = component(d)
        if kind == "Service":
            seen.add(f"Service:{comp}")
            for p in d["spec"]["ports"]:
                service_port_names.add(p["name"])
                check(p["port"] == want.get(comp), f"{where} port {p['port']} != {want.get(comp)}")
        elif kind in ("Deployment", "StatefulSet"):
            seen.add(f"{kind}:{comp}")
            for c in d["spec"]["template"]["spec"]["containers"]:
                ports = [p["containerPort"] for p in c.get("ports", [])]
                check(ports == [want.get(comp)], f"{where} containerPorts {ports} != [{want.get(comp)}]")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    spec = c.get(probe, {})
                    for handler in ("grpc", "tcpSocket"):
                        if handler in spec:
                            got = spec[handler]["port"]
                            check(got == want.get(comp), f"{where} {probe}.{handler}.port {got} != {want.get(comp)}")
                    if "exec" in spec:
                        got = port_of(spec["exec"]["command"][-1])
                        check(got == want.get(comp), f"{where} {probe} exec probes port {got} != {want.get(comp)}")
        elif kind == "NetworkPolicy":
            for rule in d["spec"].get("ingress", []):
                got = [p["port"] for p in rule.get("ports", [])]
                check(got == [want.get(comp)], f"{where} ingress ports {got} != [{want.get(comp)}]")
        elif kind == "ConfigMap" and "tracker.toml" in d.get("data", {}):
            seen.add("ConfigMap")
            tracker_cfg = tomllib.loads(d["data"]["tracker.toml"])
            peer_cfg = tomllib.loads(d["data"]["peer.toml"])
            got = port_of(tracker_cfg["server"]["listen"])
            check(got == TRACKER, f"{where} tracker.toml server.listen port {got} != {TRACKER}")
            got = port_of(peer_cfg["peer"]["listen"])
            check(got == PEER, f"{where} peer.toml peer.listen port {got} != {PEER}")
            got = port_of(peer_cfg["tracker"]["endpoint"])
            check(got == TRACKER, f"{where} peer.toml tracker.endpoint port {got} != {TRACKER}")
        elif kind == "ServiceMonitor":
            seen.add("ServiceMonitor")
            sm_ports = [e["port"] for e in d["spec"]["endpoints"]]
    for needed in ("Service:tracker", "Service:peer", "Deployment:tracker", "StatefulSet:peer", "ConfigMap"):
        check(needed in seen, f"{path.name}: no {needed} rendered")
    if "ServiceMonitor" in seen:
        missing = set(sm_ports) - service_port_names
        check(not missing, f"{path.name}: ServiceMonitor scrapes port names {sorted(missing)} no Service has")


for arg in sys.argv[1:]:
    check_rendered(Path(arg))


# --- Terraform ----------------------------------------------------------------------------------
def unquote(v):
    """python-hcl2 8 keeps the quotes of strings and labels: '"tcp"' -> 'tcp'."""
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    if isinstance(v, dict):
        return {unquote(k): unquote(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unquote(x) for x in v]
    return v


def load_tf(name: str) -> dict:
    with open(ROOT / "terraform" / name) as f:
        return unquote(hcl2.load(f))


main = load_tf("main.tf")
variables = {k: v for block in load_tf("variables.tf")["variable"] for k, v in block.items()}
locals_ = {k: v for block in main.get("locals", []) for k, v in block.items() if not k.startswith("__")}
check(variables["peers_per_host"].get("default") == PEERS_PER_HOST,
      f"terraform var.peers_per_host default {variables['peers_per_host'].get('default')} != {PEERS_PER_HOST}")


def evaluate(expr):
    """Numbers, local.X, var.X (its default) and + / - between them."""
    if isinstance(expr, (int, float)):
        return int(expr)
    text = str(expr)
    text = text[2:-1] if text.startswith("${") and text.endswith("}") else text
    text = re.sub(r"local\.(\w+)", lambda m: str(evaluate(locals_[m.group(1)])), text)
    text = re.sub(r"var\.(\w+)", lambda m: str(variables[m.group(1)]["default"]), text)
    if not re.fullmatch(r"[\d\s+\-]+", text):
        raise ValueError(f"cannot evaluate {expr!r}")
    return eval(text)  # only digits, spaces, + and - reach this


check(evaluate(locals_["tracker_port"]) == TRACKER, f"terraform local.tracker_port != {TRACKER}")
check(evaluate(locals_["peer_port_first"]) == PEER, f"terraform local.peer_port_first != {PEER}")

resources: dict[str, dict] = {}
for block in main["resource"]:
    for rtype, named in block.items():
        for rname, body in named.items():
            resources[f"{rtype}.{rname}"] = body

PEER_RANGE = (PEER, PEER + PEERS_PER_HOST - 1)
expected = {  # security group -> the only (from, to) port ranges it may admit
    "aws_security_group.tracker": {(22, 22), (TRACKER, TRACKER)},
    "aws_security_group.peers": {(22, 22), PEER_RANGE},
}
admitted: dict[str, set] = {sg: set() for sg in expected}
for addr, body in resources.items():
    rtype = addr.split(".")[0]
    if rtype == "aws_security_group":
        check("ingress" not in body, f"terraform {addr} has inline ingress rules (use rule resources)")
        check(addr in expected, f"terraform {addr} is an unexpected security group")
    elif rtype in ("aws_security_group_rule", "aws_vpc_security_group_ingress_rule"):
        if body.get("type", "ingress") != "ingress":
            continue
        sgs = [sg for sg in expected if sg in str(body.get("security_group_id", ""))]
        if not sgs:  # a for_each over both groups
            sgs = [sg for sg in expected if sg in str(body.get("for_each", ""))]
        check(bool(sgs), f"terraform {addr}: unknown security group")
        check(body.get("ip_protocol", body.get("protocol")) == "tcp", f"terraform {addr}: not tcp")
        rng = (evaluate(body["from_port"]), evaluate(body["to_port"]))
        for sg in sgs:
            admitted[sg].add(rng)
            check(rng in expected[sg], f"terraform {addr}: {sg} admits ports {rng[0]}-{rng[1]}, "
                                       f"allowed {sorted(expected[sg])}")
        if rng == (22, 22):
            check(body.get("cidr_ipv4") == "${var.admin_cidr}", f"terraform {addr}: SSH not from var.admin_cidr only")
        if rng == (TRACKER, TRACKER) and "referenced_security_group_id" in body:
            check("aws_security_group.peers" in body["referenced_security_group_id"],
                  f"terraform {addr}: tracker port from a group other than the peers'")
for sg, want in expected.items():
    check(admitted[sg] == want, f"terraform {sg} admits {sorted(admitted[sg])}, expected {sorted(want)}")

inputs = {
    "tracker": resources["aws_instance.tracker"]["user_data"],
    "peers": resources["aws_instance.peers"]["user_data"],
}
check("tracker_port = local.tracker_port" in inputs["tracker"], "terraform tracker user_data: tracker_port is not local.tracker_port")
check("peer_ports = local.peer_ports" in inputs["peers"], "terraform peers user_data: peer_ports is not local.peer_ports")
check(":${local.tracker_port}" in inputs["peers"], "terraform peers user_data: tracker_endpoint not on local.tracker_port")

if errors:
    print("ports disagree:", file=sys.stderr)
    for e in errors:
        print(f"  FAIL {e}", file=sys.stderr)
    sys.exit(1)
print(f"ports agree: tracker {TRACKER}, peers {PEER}-{PEER + PEERS_PER_HOST - 1} "
      f"(config/*.toml, Dockerfile, Helm values + {len(sys.argv) - 1} renderings, Terraform)")
