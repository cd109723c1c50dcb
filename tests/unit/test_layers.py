"""The code's shape: every import points down the layers, and no modules import each other in a circle.

Read from the source with `ast` (imports inside functions count too: a lazy import is still a
dependency), so a change that makes a layer reach up fails here, not in a reader's head.
The layers, lowest first (README, "Architecture"):

    solver                      market clearing: instances, solvers, certificates, the exact verifier
    consensus.rules             the chain's rules: what every node must agree on
    consensus.chain             the chain on disk: store, connect and revert, fork choice
    consensus (engine, sim)     mempool, the sans-IO node core, Proof-of-Solution rounds, the simulator
    p2p                         libp2p hosts, gossip, sync transport (knows nothing of the chain)
    transxnode                  the running node (daemon, api, net, metrics) and its datadir and client side
    transx_cli.plugin_api       what a CLI plugin may use
    agent, transx_nfc           the home agent; the NFC charging-station plugin
    transx_cli, cli             the command line, on top
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["solver", "consensus", "p2p", "transxnode", "agent", "transx_nfc", "transx_cli", "fuzz"]

# (module prefix, layer): the longest matching prefix decides a module's layer.
LAYERS = [
    ("solver", 0),
    ("consensus.rules", 10),
    ("consensus.chain", 11),
    ("consensus.journal", 12),
    ("consensus.mempool", 12),
    ("consensus.proposer", 12),
    ("consensus.node", 13),
    ("consensus.engine", 14),
    ("consensus.sim", 15),
    ("consensus.adversaries", 16),  # the simulator's adversarial engines and attack scenarios
    ("consensus", 10),  # the package's own __init__
    ("p2p", 5),
    ("transxnode.datadir", 20),
    ("transxnode.client", 21),
    ("transxnode.metrics", 21),
    ("transxnode.plugins", 21),
    ("transxnode.net", 22),
    ("transxnode.api", 22),
    ("transxnode.daemon", 23),
    ("transxnode", 20),
    ("transx_cli.plugin_api", 30),
    ("agent", 31),
    ("transx_nfc", 32),
    ("transx_cli", 40),
    ("cli", 41),
    ("fuzz", 42),  # coverage-guided fuzz targets: drive any layer below, nothing imports them
]
# Lower layers that do not see each other although numbered apart: p2p is beside the chain, neither
# above nor below it (only transxnode joins them).
APART = {("p2p", "consensus"), ("p2p", "solver"), ("consensus", "p2p"), ("solver", "p2p")}


def layer(module: str) -> tuple[str, int]:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return best, dict(LAYERS)[best]


def modules() -> dict[str, Path]:
    found = {"cli": ROOT / "cli.py"}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports (a `from pkg import name` counts pkg.name when that is a module)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                frm = ".".join(base + ([node.module] if node.module else []))
            else:
                frm = node.module or ""
            names = [frm] + [f"{frm}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}


def test_every_import_points_down():
    upward = []
    for mod, deps in graph().items():
        mine, my_layer = layer(mod)
        for dep in deps:
            theirs, their_layer = layer(dep)
            top, dep_top = mod.split(".")[0], dep.split(".")[0]
            if (top, dep_top) in APART or their_layer > my_layer:
                upward.append(f"{mod} ({mine}) imports {dep} ({theirs})")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    g = graph()
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_plugins_and_benchmarks_use_only_public_names():
    """transx_nfc (a plugin) and bench/ import no private name of the project, and bench/ does not patch sys.path."""
    ours = set(modules())
    private = []
    sources = [*(ROOT / "transx_nfc").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    for path in sources:
        text = path.read_text()
        if path.parent.name == "bench" and "sys.path" in text:
            private.append(f"{path.relative_to(ROOT)} patches sys.path")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split(".")[0]
                if top in {m.split(".")[0] for m in ours} and not node.module.startswith("transx_nfc"):
                    bad = [a.name for a in node.names if a.name.startswith("_")]
                    bad += [node.module] if any(p.startswith("_") for p in node.module.split(".")) else []
                    private += [f"{path.relative_to(ROOT)} imports {node.module}.{b}" for b in bad]
    assert not private, "\n".join(private)


def test_no_benchmark_shadows_a_package():
    """`python bench/X.py` puts bench/ first on sys.path: a bench/solver.py would be imported as `solver`."""
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"cli"}
    clash = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem in tops)
    assert not clash, f"bench scripts named like packages: {clash}"


def test_the_layer_map_names_every_package():
    """A new top-level package must be placed in the map above (else its imports are not checked)."""
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert tops <= set(PACKAGES) | {"tests"}, f"packages missing from the layer map: {tops - set(PACKAGES)}"


def test_the_plugin_api_is_what_its_docstring_promises_and_all_a_plugin_uses():
    """transx_cli.plugin_api's `__all__` is the names its docstring lists, each defined; transx_nfc imports
    nothing else of the CLI."""
    import re

    import transx_cli.plugin_api as api

    documented = set(re.findall(r"`(\w+)`", api.__doc__.split("Names not listed")[0])) & set(dir(api))
    assert set(api.__all__) == documented
    assert all(callable(getattr(api, n)) for n in api.__all__)
    used = set()
    for path in (ROOT / "transx_nfc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transx_cli"):
                assert node.module == "transx_cli.plugin_api", f"{path.name} imports {node.module}"
                used |= {a.name for a in node.names}
    assert used <= set(api.__all__), used - set(api.__all__)
