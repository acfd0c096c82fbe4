"""The checkout's shape: no import cycles in the package, even through imports inside functions; what git ignores."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "safsd_glnet"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every package module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test).endswith(
        "TYPE_CHECKING") for stmt in block.body for n in ast.walk(stmt)}  # annotations only: never run
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # "from . import files" imports the module safsd_glnet.data.atomic_files; "from .x import f" imports x
            targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules] or [base]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_another_that_imports_it_back():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imports_of(p, modules) for p in files}
    assert "safsd_glnet.model.network" in graph["safsd_glnet.model.kernels"]  # the walk sees ordinary imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "pkg").mkdir()
    source = tmp_path / "pkg" / "m.py"
    source.write_text("import os\n\ndef f():\n    from .other import g\n    from . import third\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "pkg"
    try:
        assert imports_of(source, {"pkg.m", "pkg.other", "pkg.third"}) == {"pkg.other", "pkg.third"}
    finally:
        PACKAGE = saved


# The layers of the package, from the maths up to the user (safsd_glnet/__init__.py maps them): a
# module imports from its own layer and the layers below it, never from one above.
LAYERS = [
    ("base", ("safsd_glnet.config", "safsd_glnet.dataset_facts", "safsd_glnet.provenance", "safsd_glnet.text_display")),
    ("model", ("safsd_glnet.model",)),
    ("data", ("safsd_glnet.data",)),
    ("features", ("safsd_glnet.features",)),
    ("training", ("safsd_glnet.training",)),
    ("grids", ("safsd_glnet.grids",)),
    ("notebook", ("safsd_glnet.notebook",)),
    ("cli", ("safsd_glnet.cli", "safsd_glnet.__main__", "safsd_glnet")),
]


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix that names ``module`` (the package itself last)."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module}: in no layer of tests/test_structure.py's LAYERS"
    return best


# The upward imports the design keeps, each with its reason (an import inside a function, run only then).
ALLOWED_UPWARD = {
    ("safsd_glnet.data", "safsd_glnet.features.text"):
        "load_data('table.csv') encodes a text table with a sentence encoder: the one entry point for every "
        "kind of data; the encoder is imported only for such a spec",
}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
                  for m, targets in graph.items() for t in targets
                  if layer_of(t) > layer_of(m) and (m, t) not in ALLOWED_UPWARD)


def test_no_module_imports_from_a_layer_above_it():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imports_of(p, modules) for p in files}
    assert "safsd_glnet.model.network" in graph["safsd_glnet.training.train"]  # the walk sees the layers
    found = upward_imports(graph)
    assert not found, "imports from a layer above:\n" + "\n".join(found)


def test_the_layer_check_finds_an_upward_import():
    graph = {"safsd_glnet.model.network": {"safsd_glnet.training.train", "safsd_glnet.config"},
             "safsd_glnet.training.train": {"safsd_glnet.model.network"}}
    assert upward_imports(graph) == ["safsd_glnet.model.network (model) imports safsd_glnet.training.train (training)"]
    assert layer_of("safsd_glnet.data.safe.npz") == layer_of("safsd_glnet.data") == 2
    assert layer_of("safsd_glnet") == len(LAYERS) - 1


def test_the_package_exports_its_public_names_without_loading_torch():
    """``import safsd_glnet`` is cheap (every ``python -m safsd_glnet...`` pays it) and its lazy
    names are the objects of the modules that define them."""
    import subprocess
    import sys

    code = ("import sys, safsd_glnet; assert 'torch' not in sys.modules, 'torch loaded';"
            "from safsd_glnet import Config, PRESETS, Predictor, load_corpus, load_data, load_model, preset, train;"
            "from safsd_glnet.training import train as module;"
            "assert train is module.train and load_model is module.load_model;"
            "assert Predictor.__module__ == 'safsd_glnet.training.prediction';"
            "assert preset('tiny').model.hidden == 16 and 'paper' in PRESETS")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr
