"""The package's floors: every import points down (or within its floor), and none cycles.

The tree follows the data: release files and prepared folders (data/, written by
synthetic/), training (train/), then what reads trained runs (evaluate/, serve/, the
stand-ins' pretraining), the protocols (experiment, benchmark), the commands (cli/). Shared
by all, at the bottom: configuration, files, labels, metrics, progress, the export format,
decisions at thresholds.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "age_tf")

FLOORS = (
    ("age_tf", "age_tf.config", "age_tf.fileio", "age_tf.labels", "age_tf.parallel",
     "age_tf.plots", "age_tf.metrics", "age_tf.progress", "age_tf.export_format",
     "age_tf.decisions", "age_tf.ridge", "age_tf.errors"),
    ("age_tf.data",),
    ("age_tf.synthetic",),
    ("age_tf.train",),
    ("age_tf.evaluate", "age_tf.serve", "age_tf.standin"),
    ("age_tf.protocol_config",),  # the protocols' configs (light: their commands' --help)
    ("age_tf.protocol",),  # the protocols' floor: steps, one run, a second process
    ("age_tf.experiment",),
    ("age_tf.benchmark",),  # the benchmark's protocol runs its runs as the study's are run
    ("age_tf.cli",),
)


def _modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(path: str, top_level_only: bool) -> set[str]:
    """The age_tf modules a file imports (a name imported from a package that is a module
    counts as that module)."""
    tree = ast.parse(open(path).read())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("age_tf"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("age_tf")}
    return found


def floor_of(module: str) -> tuple[int, str]:
    """(floor number, the unit it belongs to: a base module, or a package)."""
    best = None
    for i, units in enumerate(FLOORS):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                if best is None or len(unit) > len(best[1]):
                    best = (i, unit)
    if best is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS")
    return best


def test_every_module_is_on_a_floor():
    for module in MODULES:
        floor_of(module)


# The package's root may name the served model for `from age_tf import AgeModel` (the Python
# API), imported on first use only (its module __getattr__), never when age_tf is imported.
ROOT_FACADE = {"age_tf.serve.served_model"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_or_within_the_unit(module):
    floor, unit = floor_of(module)
    allowed = ROOT_FACADE if module == "age_tf" else set()
    assert not (_imports(MODULES[module], top_level_only=True) & allowed)  # never eagerly
    for target in _imports(MODULES[module], top_level_only=False) - allowed:
        if target == "age_tf":  # the version
            continue
        t_floor, t_unit = floor_of(target)
        if floor == 0 and t_floor == 0:
            continue  # the shared base modules may use each other (no cycle: below)
        assert t_floor < floor or t_unit == unit, (
            f"{module} (floor {floor}, {unit}) imports {target} (floor {t_floor}, {t_unit})")


def test_no_import_cycle():
    # Every import, a function's too: a circle hidden inside a function is still a circle
    # (only the package root's lazy facade, `from age_tf import AgeModel`, points up).
    graph = {m: {t for t in _imports(p, top_level_only=False)
                 - (ROOT_FACADE if m == "age_tf" else set()) if t in MODULES and t != m}
             for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for t in sorted(graph[m]):
            visit(t, path + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
