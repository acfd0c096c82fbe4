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
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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


def test_the_old_io_module_name_warns_and_gives_the_same_functions():
    """``safsd_glnet.io`` shadowed the standard library's ``io`` inside the package; it is now
    ``safsd_glnet.data.atomic_files`` and the old name is a shim that warns."""
    import importlib
    import sys
    import warnings

    from safsd_glnet.data import atomic_files as files

    sys.modules.pop("safsd_glnet.io", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("safsd_glnet.io")
    assert any(issubclass(w.category, DeprecationWarning) and "safsd_glnet.data.atomic_files" in str(w.message) for w in caught)
    for name in ("atomic_path", "read_json", "write_json", "write_text", "load_torch", "save_torch"):
        assert getattr(old, name) is getattr(files, name)
    # nothing in the package goes through the shim
    users = [p.name for p in PACKAGE.rglob("*.py")
             if p.name != "io.py" and ("from . import io" in p.read_text() or "from .io import" in p.read_text())]
    assert users == []


def test_the_data_folder_of_the_readme_is_ignored_but_not_the_packages():
    """``safsd-glnet data meld --out data/meld`` (the README) puts GPL-3.0 text in the checkout's
    ``data/``: git ignores it, but not the package's own ``data`` modules or the tests' data."""
    import subprocess

    root = PACKAGE.parent

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0

    if subprocess.run(["git", "rev-parse"], cwd=root, capture_output=True).returncode:
        import pytest

        pytest.skip("not a git checkout")
    assert ignored("data/meld/train_sent_emo.csv") and ignored("data/iemocap_multimodal_features.pkl")
    assert not ignored("safsd_glnet/data/corpus.py") and not ignored("tests/data/x.csv")
