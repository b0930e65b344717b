#!/usr/bin/python3
"""Layering check (run by `make test`): the include graph of core/, include/birdsong/,
daemon/ and trainer/ must keep four rules.

1. core (core/ and include/birdsong/) includes nothing from daemon/ or trainer/;
2. daemon/ and trainer/ never include each other;
3. no include cycle between modules. A module is a part's files of one base name
   (daemon/http.c + daemon/http.h; core/ring.c + include/birdsong/ring.h); a file named
   X_impl.h is the private half of module X, and include/birdsong/X_train.h its training half
   (nn.h + nn_train.h, model.h + model_train.h);
4. daemon/ includes only core's inference API: no include/birdsong/*_train.h.

Prints every violation and exits 1, or prints a one-line summary and exits 0."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def part(path):
    top = path.split("/")[0]
    return "core" if top in ("core", "include") else top


def module(path):
    base = os.path.splitext(os.path.basename(path))[0]
    for half in ("_impl", "_train"):
        if base.endswith(half):
            base = base[: -len(half)]
    return part(path) + ":" + base


def resolve(src, name):
    """The repository file an #include "name" in src refers to (the build's -I order:
    the file's directory, include/, core/, the root), or None for a system header."""
    for d in (os.path.dirname(src), "include", "core", ""):
        p = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(ROOT, p)):
            return p
    return None


def sources():
    for top in ("core", "include/birdsong", "daemon", "trainer"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, f), ROOT)


def main():
    errors = []
    graph = {}  # module -> {module: "file -> included file"}
    n_files = n_edges = 0
    for src in sources():
        n_files += 1
        with open(os.path.join(ROOT, src), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        graph.setdefault(module(src), {})
        for name in INCLUDE.findall(text):
            dst = resolve(src, name)
            if dst is None:
                continue
            n_edges += 1
            a, b = part(src), part(dst)
            if a == "core" and b in ("daemon", "trainer"):
                errors.append(f"core includes {b}: {src} -> {dst}")
            if {a, b} == {"daemon", "trainer"}:
                errors.append(f"{a} includes {b}: {src} -> {dst}")
            if a == "daemon" and dst.endswith("_train.h"):
                errors.append(f"daemon includes core's training API: {src} -> {dst}")
            ma, mb = module(src), module(dst)
            if ma != mb:
                graph[ma].setdefault(mb, f"{src} -> {dst}")
                graph.setdefault(mb, {})

    # cycles: strongly connected components with more than one module (Tarjan)
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    for comp in sccs:
        inside = [graph[a][b] for a in comp for b in graph[a] if b in comp]
        errors.append("include cycle between " + ", ".join(comp) + ": " + "; ".join(sorted(inside)))

    if errors:
        for e in errors:
            print("check-layering:", e)
        return 1
    print(f"check-layering: {n_files} files, {len(graph)} modules, {n_edges} includes: core stands alone, "
          "daemon and trainer apart, no include cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
