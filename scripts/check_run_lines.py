#!/usr/bin/env python3
"""Asserts that the Terraform cloud-init templates run the image the way docs/deploy.md does.

docs/deploy.md's block between <!-- run-lines:begin --> and <!-- run-lines:end --> is what
`scripts/image.sh smoke` executes, so it is the tested source. Every `docker run` of the tracker
and of a peer in terraform/templates/*.tftpl must agree with it on:
  - the security flags (--read-only, --cap-drop ALL, --security-opt no-new-privileges) and the user;
  - the published port being the port the service listens on (and the tracker's health address);
  - the volume mounted at /data for a peer;
  - the env names (Terraform may add only telemetry settings and the disk bounds of downloads,
    which are Terraform variables), every one of them a setting the
    services know (README's configuration table, or a name the code reads);
  - the command (/usr/local/bin/p2p-tracker, /usr/local/bin/p2p-peer serve).

Usage: check_run_lines.py      Exit 0 when they agree; 1 with one line per disagreement.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs/deploy.md"
TEMPLATES = sorted((ROOT / "terraform/templates").glob("*.tftpl"))
SECURITY = {"--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"}
TF_ONLY_ENV = {
    "P2P_TELEMETRY__LOG_LEVEL",
    "P2P_TELEMETRY__LOG_FORMAT",
    "P2P_TRANSFER__MIN_FREE_SPACE",
    "P2P_TRANSFER__MAX_CONCURRENT_DOWNLOADS",
    "P2P_TRANSFER__PARTIAL_TTL",
}
LISTEN_ENV = {"tracker": "P2P_SERVER__LISTEN", "peer": "P2P_PEER__LISTEN"}
errors: list[str] = []


def known_env_names() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    config = readme[readme.index("## Configuration") :]
    config = config[: config.index("\n## ", 1)]
    names = set(re.findall(r"`(P2P_[A-Z0-9_]+)`", config))
    for src in (ROOT / "services").rglob("*.rs"):
        names |= set(re.findall(r'"(P2P_[A-Z0-9_]+)"', src.read_text()))
    return names


def commands(text: str) -> list[list[str]]:
    """The `docker run` command lines of a shell text, continuation lines joined, tokenized."""
    text = text.replace("\\\n", " ")
    # Terraform: $${x} is a literal ${x}; ${expr} is an interpolation (kept as one token).
    text = re.sub(r'"\$\$\{\w+\[@\]\}"', " ", text)  # "$${auth[@]}": optional arrays, see below
    text = re.sub(r"\$\{([^}]*)\}", lambda m: "TF(" + re.sub(r"\W", "_", m.group(1)) + ")", text)
    out = []
    for line in text.splitlines():
        if "docker run" in line:
            out.append(shlex.split(line[line.index("docker run") :], comments=True))
    return out


def parse(tokens: list[str]) -> dict:
    flags, env, ports, volumes, user, rest = set(), {}, [], [], None, []
    i = 2
    with_value = {"--name", "--network", "--restart", "--log-opt", "--cap-drop", "--security-opt"}
    while i < len(tokens):
        t = tokens[i]
        if t in ("-e", "--env"):
            k, _, v = tokens[i + 1].partition("=")
            env[k] = v
            i += 2
        elif t in ("-p", "--publish"):
            ports.append(tokens[i + 1])
            i += 2
        elif t in ("-v", "--volume"):
            volumes.append(tokens[i + 1])
            i += 2
        elif t in ("-u", "--user"):
            user = tokens[i + 1]
            i += 2
        elif t in with_value:
            flags.add(f"{t}={tokens[i + 1]}")
            i += 2
        elif t.startswith("-"):
            flags.add(t)
            i += 1
        else:
            rest = tokens[i + 1 :]  # tokens[i] is the image
            break
    role = "tracker" if rest[:1] == ["/usr/local/bin/p2p-tracker"] else "peer"
    return {"flags": flags, "env": env, "ports": ports, "volumes": volumes, "user": user, "cmd": rest, "role": role}


def port_token(value: str) -> str:
    return value.rsplit(":", 1)[-1]


def check_one(where: str, run: dict, ref: dict, known: set[str]) -> None:
    role = run["role"]
    missing = SECURITY - run["flags"]
    if missing:
        errors.append(f"{where}: {role} without {sorted(missing)}")
    if run["user"] != ref["user"]:
        errors.append(f"{where}: {role} user {run['user']} != docs {ref['user']}")
    if run["cmd"] != ref["cmd"]:
        errors.append(f"{where}: {role} command {run['cmd']} != docs {ref['cmd']}")
    names, ref_names = set(run["env"]), set(ref["env"])
    if names - TF_ONLY_ENV != ref_names - TF_ONLY_ENV:
        errors.append(
            f"{where}: {role} env names differ from docs/deploy.md: "
            f"only here {sorted(names - ref_names - TF_ONLY_ENV)}, only in docs {sorted(ref_names - names)}"
        )
    for name in names:
        if name not in known:
            errors.append(f"{where}: {role} sets {name}, which no service reads")
    listen = run["env"].get(LISTEN_ENV[role])
    if listen is None:
        errors.append(f"{where}: {role} does not set {LISTEN_ENV[role]}")
    else:
        want = port_token(listen)
        published = [port_token(p) for p in run["ports"]]
        if published != [want]:
            errors.append(f"{where}: {role} publishes {run['ports']}, listens on {listen}")
        if role == "tracker" and port_token(run["env"].get("P2P_HEALTHCHECK_ADDR", "")) != want:
            errors.append(f"{where}: tracker health check address does not use the listen port {want}")
    targets = sorted(v.split(":")[1] for v in run["volumes"])
    if targets != sorted(v.split(":")[1] for v in ref["volumes"]):
        errors.append(f"{where}: {role} mounts {targets}, docs mount {[v for v in ref['volumes']]}")
    if role == "peer" and run["env"].get("P2P_PEER__FILES_DIR") != "/data":
        errors.append(f"{where}: peer P2P_PEER__FILES_DIR is not the /data volume")


def main() -> int:
    known = known_env_names()
    docs = DOCS.read_text()
    m = re.search(r"<!-- run-lines:begin -->\n```sh\n(.*?)```\n<!-- run-lines:end -->", docs, re.S)
    if not m:
        print(f"{DOCS}: no run-lines block")
        return 1
    ref = {}
    for tokens in commands(m.group(1)):
        run = parse(tokens)
        ref[run["role"]] = run
        check_one("docs/deploy.md", run, run, known)
    if set(ref) != {"tracker", "peer"}:
        print(f"docs/deploy.md: run lines for {sorted(ref)}, want tracker and peer")
        return 1
    seen = set()
    for path in TEMPLATES:
        text = path.read_text()
        for tokens in commands(text):
            run = parse(tokens)
            seen.add(run["role"])
            check_one(path.relative_to(ROOT).as_posix(), run, ref[run["role"]], known)
        # the optional auth/TLS arrays the run lines expand
        for name in set(re.findall(r"\b(P2P_[A-Z0-9_]+)=", text)) - known:
            errors.append(f"{path.name}: sets {name}, which no service reads")
    if seen != {"tracker", "peer"}:
        errors.append(f"terraform/templates: docker run lines for {sorted(seen)}, want tracker and peer")
    for e in errors:
        print(e)
    if not errors:
        print(f"run lines agree: docs/deploy.md and {len(TEMPLATES)} cloud-init templates")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
