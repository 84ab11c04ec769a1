#!/usr/bin/env python3
"""Asserts that upgrading the Terraform deployment keeps the peers' shared files.

An image upgrade, a token rotation or a log level change alters the instances' user data, which
replaces them (user_data_replace_on_change). The shares must therefore live on a volume that is
not part of the peers instance, and nothing that changes in an upgrade may force that volume's
replacement. Checked statically on terraform/*.tf (python-hcl2), so it runs without terraform or
its providers (terraform/tests/upgrade.tftest.hcl plans the same cases with a mocked provider
when they are there):
  - exactly one aws_ebs_volume, encrypted, with lifecycle prevent_destroy = true;
  - an aws_volume_attachment of it to aws_instance.peers;
  - no ebs_block_device inline in the peers instance, and its root volume holds no shares;
  - the volume's arguments depend (through locals and data sources, transitively) only on the
    subnet, its size and names/tags: not on image, auth_token, log_level, TLS, peer settings,
    instance_type, ecr_pull or any resource that is replaced with an instance;
  - the peers' cloud-init mounts that volume (by its id) at /srv/p2pshare before the peers run,
    formats it only when it has no file system, and every peer's files dir is under it.

Usage: check_tf_upgrade.py      Exit 0 when all hold; 1 with one line per failure.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"
# What the share volume may depend on: none of these change in an upgrade.
ALLOWED_VARS = {"subnet_id", "share_volume_size", "name", "tags", "region"}
ALLOWED_DATA = {"aws_subnet.selected", "aws_subnets.default", "aws_vpc.default"}
errors: list[str] = []


def unq(s: str) -> str:
    return s.strip('"')


def load() -> tuple[dict, dict, dict]:
    resources: dict[str, dict] = {}
    data: dict[str, dict] = {}
    locals_: dict[str, object] = {}
    for f in sorted(TF.glob("*.tf")):
        doc = hcl2.load(f.open())
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    resources[f"{unq(rtype)}.{unq(name)}"] = body
        for block in doc.get("data", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    data[f"{unq(rtype)}.{unq(name)}"] = body
        for block in doc.get("locals", []):
            locals_.update(block)
    return resources, data, locals_


def refs(value: object) -> set[str]:
    """References (var.x, local.x, data.t.n, t.n) in an expression tree, strings included."""
    text = json.dumps(value)
    out = set()
    for m in re.finditer(r"\b(var|local)\.(\w+)|\bdata\.(\w+)\.(\w+)|\b(aws_\w+)\.(\w+)", text):
        if m.group(1):
            out.add(f"{m.group(1)}.{m.group(2)}")
        elif m.group(3):
            out.add(f"data.{m.group(3)}.{m.group(4)}")
        else:
            out.add(f"{m.group(5)}.{m.group(6)}")
    return out


def closure(start: set[str], data: dict, locals_: dict) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        r = todo.pop()
        if r in seen:
            continue
        seen.add(r)
        if r.startswith("local."):
            todo += refs(locals_.get(r[6:], ""))
        elif r.startswith("data."):
            todo += refs(data.get(r[5:], {}))
    return seen


def main() -> int:
    resources, data, locals_ = load()
    volumes = {k: v for k, v in resources.items() if k.startswith("aws_ebs_volume.")}
    if len(volumes) != 1:
        errors.append(f"want one aws_ebs_volume for the peers' shares, found {sorted(volumes) or 'none'}")
        return report()
    (vol_key, vol), = volumes.items()
    if vol.get("encrypted") is not True:
        errors.append(f"{vol_key}: encrypted must be true")
    lifecycle = (vol.get("lifecycle") or [{}])[0]
    if lifecycle.get("prevent_destroy") is not True:
        errors.append(f"{vol_key}: lifecycle prevent_destroy must be true (destroy and replacement stop instead of deleting the share)")
    for bad in ("replace_triggered_by",):
        if bad in lifecycle:
            errors.append(f"{vol_key}: lifecycle {bad} would replace the share volume")
    attachments = [
        (k, v) for k, v in resources.items()
        if k.startswith("aws_volume_attachment.") and f"{vol_key}.id" in json.dumps(v.get("volume_id"))
    ]
    if not attachments or not any("aws_instance.peers.id" in json.dumps(v.get("instance_id")) for _, v in attachments):
        errors.append(f"no aws_volume_attachment of {vol_key} to aws_instance.peers")
    peers = resources.get("aws_instance.peers", {})
    if "ebs_block_device" in peers:
        errors.append("aws_instance.peers: an inline ebs_block_device is replaced with the instance")
    # What the volume depends on, transitively.
    body = {k: v for k, v in vol.items() if k not in ("lifecycle", "__is_block__")}
    deps = closure(refs(body), data, locals_)
    for d in sorted(deps):
        kind, _, name = d.partition(".")
        if kind == "var" and name not in ALLOWED_VARS:
            errors.append(f"{vol_key} depends on var.{name}: changing it could replace the share volume")
        elif kind == "data" and name not in ALLOWED_DATA:
            errors.append(f"{vol_key} depends on data.{name}")
        elif kind not in ("var", "data", "local"):
            errors.append(f"{vol_key} depends on the resource {d}: replacing it could replace the share volume")
    # The peers' cloud-init: mount by volume id, before the peers, format only a blank volume.
    user_data = json.dumps(peers.get("user_data", ""))
    if f"{vol_key}.id" not in user_data:
        errors.append(f"aws_instance.peers: user_data does not pass {vol_key}.id to the cloud-init template")
    tpl = (TF / "templates/peers.cloud-init.yaml.tftpl").read_text()
    call, run = tpl.find("\n      mount_shares\n"), tpl.find("\n      run_peer 1") if "run_peer 1" in tpl else tpl.find("run_peer ${i + 1}")
    if call < 0 or run < 0 or call > run:
        errors.append("peers cloud-init: mount_shares must run before the peers start")
    if "share_volume_id" not in tpl or "/srv/p2pshare" not in tpl:
        errors.append("peers cloud-init: the share volume is not mounted at /srv/p2pshare by its id")
    if not re.search(r'if \[ -z "\$\(blkid[^\n]*\n\s*mkfs', tpl):
        errors.append("peers cloud-init: mkfs must run only when blkid finds no file system")
    for m in re.finditer(r'-v "([^":]+):/data"', tpl):
        if not m.group(1).startswith("/srv/p2pshare/"):
            errors.append(f"peers cloud-init: a peer's /data ({m.group(1)}) is not on the share volume")
    return report()


def report() -> int:
    for e in errors:
        print(e)
    if not errors:
        print("share volume survives upgrades: separate, protected, attached, mounted before the peers")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
