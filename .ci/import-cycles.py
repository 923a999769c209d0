#!/usr/bin/env python3
"""Fails when two source files of a crate import each other, directly or around a circle.

A file's imports are its private `use` declarations outside `#[cfg(test)]` code (a
`pub use` is a re-export: a facade, not a dependency), each path of a `{…}` group on its
own, resolved to the file of the module they name: `crate::a::b`, `super::…`, `self::…`, or a child module of the file's own
module. Paths into other crates are not followed (crates depend one way by construction).
"""
import os
import re
import sys
from collections import defaultdict

CRATES = ["proto/src", "collector/src", "aggregator/src", "ui-api/src", "listen/src", "testkit/src", "src"]
USE = re.compile(r"^\s*use\s+([^;]+);", re.M)


def module_of(root, path):
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    return parts[:-1] if parts[-1] in ("mod", "lib", "main") else parts


def file_of(root, parts):
    """The file of the longest prefix of `parts` that is a module."""
    here = root
    found = os.path.join(root, "lib.rs")
    if not os.path.exists(found):
        found = os.path.join(root, "main.rs")
    for part in parts:
        folder, single = os.path.join(here, part), os.path.join(here, part + ".rs")
        if os.path.isfile(os.path.join(folder, "mod.rs")):
            here, found = folder, os.path.join(folder, "mod.rs")
        elif os.path.isfile(single):
            return single
        else:
            break
    return found


def split_top(text):
    """`a, b::{c, d}` split at the commas outside braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def expand(tree):
    """The paths of one use tree: `a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`."""
    tree = re.sub(r"\s+", " ", tree).strip()
    brace = tree.find("{")
    if brace < 0:
        path = tree.split(" as ")[0].strip()
        return [path[: -len("::self")] if path.endswith("::self") else path]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rindex("}")]
    out = []
    for part in split_top(inner):
        for sub in expand(part):
            out.append(prefix.rstrip(":") if sub == "self" else prefix + sub)
    return out


def imports(root, path):
    text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
    here = module_of(root, path)
    uses = [p for m in USE.finditer(text) for p in expand(m.group(1))]
    for use in uses:
        segs = [s.strip() for s in use.split("::")]
        if segs[0] == "crate":
            base, rest = [], segs[1:]
        elif segs[0] in ("super", "self"):
            base = here[:]
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super":
                    base = base[:-1]
            rest = segs
        elif os.path.exists(os.path.join(os.path.dirname(path), segs[0] + ".rs")) or os.path.isdir(
            os.path.join(os.path.dirname(path), segs[0])
        ):
            # A child module of a mod.rs / lib.rs file.
            base, rest = here[:], segs
        else:
            continue
        names = []
        for s in rest:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", s):
                break
            names.append(s)
        target = file_of(root, base + names)
        if os.path.abspath(target) != os.path.abspath(path):
            yield os.path.normpath(target)


def main():
    edges = defaultdict(set)
    for root in CRATES:
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(".rs"):
                    path = os.path.normpath(os.path.join(folder, name))
                    edges[path].update(imports(root, path))
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10_000)

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
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    for c in cycles:
        print("import circle: " + " ↔ ".join(c), file=sys.stderr)
    print(f"import circles: {len(cycles)} among {len(edges)} files")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
