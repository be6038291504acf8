"""The layout holds: imports flow one way, from the command line and the Dagster code down
through the stages to the store, with no circle anywhere, and the installed package is the
core alone (no test generator). Read from the source with the standard library's `ast`:
every import counts, a lazy one inside a function too."""

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the code location (Dagster) and the core; tests/ is scanned too, for circles only
SOURCES = [ROOT / "reid_pipeline", ROOT / "assets", ROOT / "resources", ROOT / "definitions.py", ROOT / "tests"]
# the core's packages from the bottom up: each may import those before it, never those after
STAGES = ["store", "ingest", "faces", "sequences", "identities", "presentation", "cli"]
# the modules that stay at the top of the core: anything may import them; they import no stage
ROOTS = {"config", "database", "storage"}


def _modules() -> dict[str, Path]:
    found = {}
    for source in SOURCES:
        for path in [source] if source.is_file() else sorted(source.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules that `name` imports: `from a import b` is the module `a.b` when
    there is one, else `a`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None (a depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_is_read():
    """The reader sees the imports it must: a lazy import, a `from package import module`."""
    modules = _modules()
    inbox = _imports("reid_pipeline.ingest.inbox", modules["reid_pipeline.ingest.inbox"], modules)
    assert {"reid_pipeline.ingest.arrivals", "reid_pipeline.ingest.buckets"} <= inbox
    environment = _imports("reid_pipeline.cli.environment", modules["reid_pipeline.cli.environment"], modules)
    assert "reid_pipeline.cli.instance" in environment and "reid_pipeline.cli" not in environment
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle(graph):
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_imports_flow_down_the_stages(graph):
    """A stage imports the stages below it and the top modules, the top modules import no
    stage, and the core never imports the tests or Dagster: only the command line drives
    Dagster, through the code location (`definitions`)."""
    modules = _modules()
    wrong = []
    for module, targets in graph.items():
        if not module.startswith("reid_pipeline"):
            continue
        parts = module.split(".")
        level = STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else -1
        if module == "reid_pipeline.__main__":  # `python -m reid_pipeline`: the command line's other door
            level = STAGES.index("cli")
        command_line = level == STAGES.index("cli")
        for target in targets:
            tparts = target.split(".")
            if tparts[0] != "reid_pipeline" and not (command_line and target == "definitions"):
                wrong.append(f"{module} imports {target}")
            elif len(tparts) > 1 and tparts[1] in STAGES and STAGES.index(tparts[1]) > level:
                wrong.append(f"{module} imports {target}, a stage above it")
        if not command_line:
            tree = ast.parse(modules[module].read_text())
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level]
            wrong += [f"{module} imports {name}" for name in names if name.split(".")[0].startswith("dagster")]
    assert not wrong, "\n".join(wrong)


def test_every_folder_of_the_core_is_a_package_with_a_docstring():
    """A folder without `__init__.py` would be a namespace package, which the wheel leaves out."""
    folders = [p for p in (ROOT / "reid_pipeline").rglob("*") if p.is_dir() and any(p.glob("*.py"))]
    assert {f.name for f in folders} >= set(STAGES)
    for folder in folders:
        init = folder / "__init__.py"
        assert init.exists(), f"{folder} has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} says nothing about what it owns"
    assert {p.stem for p in (ROOT / "reid_pipeline").glob("*.py")} == ROOTS | {"__init__", "__main__"}


def test_the_wheel_holds_the_core_and_no_test_code(tmp_path):
    """The package a deployment installs, built from what the Dockerfile copies (a copy, so
    the build leaves nothing in the checkout)."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "reid_pipeline", source / "reid_pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert packages == {"reid_pipeline"} | {f"reid_pipeline/{stage}" for stage in STAGES}, packages
    assert "reid_pipeline/presentation/templates/pages/gallery.html" in names
    assert not [n for n in names if "synthetic" in n or n.startswith("tests/") or "/testing/" in n]


def test_every_import_of_the_projects_own_code_finds_it():
    """A lazy import of a module that moved fails only when its command runs: every import of
    the project's own code, in the core, the Dagster code, tests, bench/ and deploy/, names a
    module that exists and a name that it has."""
    import importlib

    own = ("reid_pipeline", "tests", "assets", "resources", "definitions")
    wrong = []
    for path in sorted(p for folder in ("reid_pipeline", "assets", "resources", "tests", "bench", "deploy")
                       for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                wanted = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in wanted:
                if module.split(".")[0] not in own:
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                try:
                    found = importlib.import_module(module)
                except ImportError as exc:
                    wrong.append(f"{where}: {exc}")
                    continue
                if name is not None and not hasattr(found, name):
                    try:
                        importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        wrong.append(f"{where}: {module} has no {name}")
    assert not wrong, "\n".join(wrong)


SQL = re.compile(r"\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|(CREATE|ALTER|DROP)\s+(TABLE|INDEX|SCHEMA)\s)")
# SQL that is not the pipeline's: the schema of Dagster's own run history, and the advisory
# lock that guards importing it (`cli.instance`)
NOT_THE_PIPELINES = {"reid_pipeline/cli/instance.py"}


def test_the_pipelines_queries_are_all_in_the_store():
    """Every query of the pipeline's tables is a method of `store/`: no SQL text, and no
    `Store.rows` / `Store.connection` call, anywhere else in the core or the Dagster code."""
    found = []
    for path in sorted(p for folder in ("reid_pipeline", "assets", "resources") for p in (ROOT / folder).rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where.startswith("reid_pipeline/store/") or where in NOT_THE_PIPELINES:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
                found.append(f"{where}:{node.lineno}: SQL {node.value.strip()[:50]!r}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("rows", "connection")
                  and isinstance(node.func.value, ast.Name) and node.func.value.id == "store"):
                found.append(f"{where}:{node.lineno}: store.{node.func.attr}()")
    assert not found, "queries outside store/:\n" + "\n".join(found)
