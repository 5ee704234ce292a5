"""Architecture figures of the bigntk package: import graph (cycles, upward arrows) and function lengths.

    python tools/archcheck.py [--max-lines 60]

Imports are read from the source (module level and inside functions alike). A package's layer is
its position on the data path (LAYERS); an import from a lower layer to a higher one is an upward
arrow. Prints the figures and exits non-zero when there is a cycle, an upward arrow or a function
longer than --max-lines.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "bigntk"
#: data path, bottom to top; a module may import only from its own layer or below
LAYERS = [
    {"bigntk.backend", "bigntk._validation", "bigntk.persist", "bigntk.progress"},
    {"bigntk.kernels", "bigntk.priors", "bigntk.store"},
    {"bigntk.operators", "bigntk.preconditioners"},
    {"bigntk.solvers", "bigntk.distributed", "bigntk.blocks"},
    {"bigntk.completion", "bigntk.estimators", "bigntk.lowrank", "bigntk.baselines"},
    {"bigntk.apps", "bigntk.viz"},
    {"bigntk.cli", "bigntk.__main__"},
]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int]]]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    long_functions: dict[str, list[tuple[str, int]]] = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = resolve(mod, is_pkg, node)
            for t in targets:
                # the longest known module prefix of the target
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t.startswith("bigntk") and t != mod and not mod.startswith(t + "."):
                    edges[mod].add(t)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                long_functions.setdefault(mod, []).append((node.name, n))
    return edges, long_functions


def layer(mod: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(mod == n or mod.startswith(n + ".") for n in names):
            return i
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def report(max_lines: int) -> dict:
    edges, funcs = graph()
    cyc = cycles(edges)
    upward = sorted((m, t) for m, ts in edges.items() for t in ts
                    if layer(m) is not None and layer(t) is not None and layer(t) > layer(m))
    unplaced = sorted(m for m in edges if layer(m) is None and m != "bigntk")
    long = sorted(((n, f"{m}.{f}") for m, fs in funcs.items() for f, n in fs if n > max_lines), reverse=True)
    return {"modules": len(edges), "cycles": cyc, "upward": upward, "unplaced": unplaced,
            "long_functions": long, "max_lines": max_lines}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-lines", type=int, default=60)
    r = report(ap.parse_args().max_lines)
    print(f"modules: {r['modules']}")
    print(f"import cycles: {len(r['cycles'])}")
    for c in r["cycles"]:
        print("  " + " <-> ".join(c))
    print(f"upward imports: {len(r['upward'])}")
    for m, t in r["upward"]:
        print(f"  {m} -> {t}")
    if r["unplaced"]:
        print(f"modules outside the layers: {', '.join(r['unplaced'])}")
    print(f"functions over {r['max_lines']} lines: {len(r['long_functions'])}")
    for n, f in r["long_functions"]:
        print(f"  {n:4d}  {f}")
    return 1 if (r["cycles"] or r["upward"] or r["long_functions"]) else 0


if __name__ == "__main__":
    sys.exit(main())
