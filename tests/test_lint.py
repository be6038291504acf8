"""The code passes the project's ruff configuration (pyproject.toml, [tool.ruff])."""

import subprocess
import sys
from pathlib import Path


def test_ruff_passes():
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(root)], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dependency_is_pinned_in_the_constraints_file():
    """./reid installs with `-c constraints.txt`: each requirement of pyproject.toml has a
    pinned version there, within its lower bound."""
    import re
    import tomllib

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    for text in wanted:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} breaks {text}"


def test_only_the_settings_module_reads_the_projects_variables():
    """Settings reach the code by one route: `reid_pipeline.config.Settings`."""
    import re

    root = Path(__file__).resolve().parent.parent
    names = r"""["'](REID_|DAGSTER_HOME)[A-Z_]*["']"""
    reads = re.compile(rf"os\.(environ\.get|getenv)\(\s*{names}|os\.environ\[\s*{names}\s*\](?!\s*=)")
    found = []
    for folder in ("reid_pipeline", "assets", "resources"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "config.py" and path.parent.name == "reid_pipeline":
                continue
            lines = enumerate(path.read_text().splitlines(), 1)
            found += [f"{path.relative_to(root)}:{n}" for n, line in lines if reads.search(line)]
    assert (root / "definitions.py").read_text().count("os.environ") == 0
    assert found == []


def test_settings_reach_the_core_from_its_callers():
    """The core never builds `Settings()` itself: the CLI, `resources.build_resources` and
    the code location's load-time settings (`assets/settings.py`) read them and hand the
    values on (an S3 endpoint, a cache folder, the migrations' folder)."""
    import re

    root = Path(__file__).resolve().parent.parent
    allowed = {"reid_pipeline/config.py", "assets/settings.py", "resources/__init__.py"}
    built = re.compile(r"\bSettings\(\s*\)")
    found = []
    for folder in ("reid_pipeline", "assets", "resources"):
        for path in (root / folder).rglob("*.py"):
            name = path.relative_to(root).as_posix()
            if name in allowed or name.startswith("reid_pipeline/cli/"):
                continue
            lines = enumerate(path.read_text().splitlines(), 1)
            found += [f"{name}:{n}" for n, line in lines if built.search(line)]
    assert found == []
    assert "Settings()" not in (root / "definitions.py").read_text()


def test_a_wrong_setting_names_the_variable(monkeypatch, capsys):
    from reid_pipeline.cli import main

    monkeypatch.setenv("REID_SAMPLE_FPS", "fast")
    assert main(["status"]) == 2
    assert "REID_SAMPLE_FPS='fast': Input should be a valid number" in capsys.readouterr().err
