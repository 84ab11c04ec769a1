#!/usr/bin/env python3
"""Checks the shape of the workspace's crates (issue 15):

- the import graph between the source files of each crate has no circle: a file "imports"
  another when it names an item through a `crate::`, `super::`, `self::` or child-module path
  that resolves into that file (`use` lines and paths in code alike). A parent's `mod x;` and its
  `pub use x::Item` re-exports are not imports: they are the module's facade, not code that
  depends on the child. Unit-test modules (`#[cfg(test)] mod tests`) are left out: they are the
  file's own tests;
- no source file is over 700 lines, except the tracker's store conformance suite.

Usage: scripts/check_layout.py [--graph CRATE | --self-test]
  --graph prints that crate's edges; --self-test checks the checker on small made-up crates.
Exit code 1 on any finding, with one line per finding.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_LINES = 700
EXEMPT = {"services/tracker/src/store/conformance.rs"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text):
    """Source without comments, string and char literals, and unit-test modules."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            out.append('""')
            i = n if j < 0 else j + len(end)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4] + "    "):
            m = re.match(r"'(\\[^']*|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    # Unit tests: `#[cfg(test)]` followed by an inline module, to its closing brace.
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{", code)
        if not m:
            break
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[: m.start()] + code[j:]
    return code


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        parts = []
    return tuple(parts)


def expand_use(tree):
    """`a::{b, c::d}` -> ["a::b", "a::c::d"] (one level of nesting at a time, recursively)."""
    tree = tree.strip()
    m = re.match(r"^(.*?)\{(.*)\}$", tree, re.S)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    items.append(cur)
    out = []
    for it in items:
        if it.strip():
            out.extend(expand_use(prefix + it.strip()))
    return out


def references(code):
    """Every path in `code` that starts with crate/super/self or a plain identifier, as lists."""
    paths = []
    for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);", code):
        reexport = m.group(1) is not None
        for p in expand_use(m.group(2)):
            p = re.sub(r"\s+as\s+" + IDENT + "$", "", p.strip())
            paths.append((p.split("::"), reexport))
    body = re.sub(r"\buse\s+[^;]+;", "", code)
    for m in re.finditer(r"(?<![\w:])((?:" + IDENT + r"::)+" + IDENT + ")", body):
        paths.append((m.group(1).split("::"), False))
    return paths


def check_crate(src, show_graph=False):
    files = sorted(p for p in src.rglob("*.rs") if p.name != "main.rs")
    mods = {module_of(src, p): p for p in files}
    edges = {}
    for path in files:
        me = module_of(src, path)
        code = strip_code(path.read_text())
        children = set(re.findall(r"(?:^|\n)\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code))
        targets = set()
        for p, reexport in references(code):
            if p[0] == "crate":
                absolute = p[1:]
            elif p[0] in ("super", "self"):
                base = list(me)
                while p and p[0] in ("super", "self"):
                    if p[0] == "super":
                        base = base[:-1]
                    p = p[1:]
                absolute = base + p
            elif p[0] in children:
                absolute = list(me) + p
            else:
                continue
            if reexport and tuple(absolute[: len(me)]) == me and len(absolute) > len(me):
                continue
            # The longest prefix that is a file of this crate.
            for k in range(len(absolute), -1, -1):
                t = tuple(absolute[:k])
                if t in mods:
                    if mods[t] != path:
                        targets.add(mods[t])
                    break
        edges[path] = targets
    if show_graph:
        for f, ts in edges.items():
            for t in sorted(ts):
                print(f"{f.relative_to(src)} -> {t.relative_to(src)}")
    return find_cycles(edges, src)


def find_cycles(edges, src):
    """One cycle per strongly connected component of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(str(c.relative_to(src)) for c in comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def self_test():
    import tempfile

    cases = {
        # A real circle: each file uses the other's items.
        "circle": ({"lib.rs": "mod a; mod b;", "a.rs": "use crate::b::B; pub struct A;",
                    "b.rs": "pub struct B; fn f() -> crate::a::A { todo() }"}, 1),
        # A facade: the parent re-exports a child that imports from the parent's sibling.
        "facade": ({"lib.rs": "pub mod m;", "m/mod.rs": "mod x; mod y; pub use x::X;",
                    "m/x.rs": "use super::y::Y; pub struct X(Y);", "m/y.rs": "pub struct Y;"}, 0),
        # A parent whose code uses a child that imports the parent: a circle.
        "parent": ({"lib.rs": "pub mod m;", "m/mod.rs": "mod x; pub struct S; fn f() { x::g() }",
                    "m/x.rs": "use super::S; pub fn g() {}"}, 1),
        # Test modules, comments and strings are not imports.
        "tests": ({"lib.rs": "mod a; mod b;", "a.rs": "// crate::b::B\nconst S: &str = \"crate::b::B\";",
                   "b.rs": "use crate::a::S;\n#[cfg(test)]\nmod tests { use crate::a::S; }"}, 0),
    }
    failed = 0
    for name, (files, want) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            src = pathlib.Path(d) / "src"
            for rel, text in files.items():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_text(text)
            got = len(check_crate(src))
            if got != want:
                failed += 1
                print(f"self-test {name}: {got} circles, expected {want}")
    print("check_layout self-test:", "FAILED" if failed else "ok")
    return 1 if failed else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    show = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--graph" else None
    problems = []
    for src in sorted(ROOT.glob("services/*/src")):
        crate = src.parent.name
        for comp in check_crate(src, show_graph=(show == crate)):
            problems.append(f"{crate}: files import each other in a circle: {', '.join(comp)}")
        for path in sorted(src.rglob("*.rs")):
            rel = str(path.relative_to(ROOT))
            lines = sum(1 for _ in path.open())
            if lines > MAX_LINES and rel not in EXEMPT:
                problems.append(f"{rel}: {lines} lines (at most {MAX_LINES})")
    for p in problems:
        print(p)
    if not problems:
        print("layout: no import circles, no source file over 700 lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
