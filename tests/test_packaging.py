"""Packaging: the checkout's operators/, cli/ and pretrained/ install as pnprgm.operators, pnprgm.cli and
pnprgm.pretrained; ``pnprgm`` is the only top-level name the project installs; the old names still import from a
checkout, with a DeprecationWarning, as the same modules."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch

import pnprgm
from pnprgm import models, operators
from pnprgm.measurement import SourceInfo, load_measurement, save_measurement

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("operators", "cli", "pretrained")  # top-level folders installed as pnprgm.<folder>
OLD_IMPORT = re.compile(r"^\s*(?:>>>\s*)?(?:from\s+(\w+)|import\s+([\w., ]+))")
REINSTALL = 'the installed pnprgm is out of date: run python -m pip install -e ".[test]"'


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def _installed() -> importlib.metadata.Distribution:
    """pnprgm as pip installed it into this environment (not a pnprgm.egg-info that a build left in the checkout)."""
    site = {sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")}
    found = list(importlib.metadata.distributions(name="pnprgm", path=sorted(site)))
    assert len(found) == 1, f'pnprgm is not installed in {sorted(site)}: run python -m pip install -e ".[test]"'
    return found[0]


def test_the_distribution_installs_only_the_pnprgm_package():
    dist = _installed()
    assert (dist.read_text("top_level.txt") or "").split() == ["pnprgm"], REINSTALL
    installed = {Path(str(f)).parts[0] for f in dist.files or []}
    assert not installed & set(FOLDERS), REINSTALL


def test_console_script_is_the_namespaced_cli():
    (script,) = _installed().entry_points.select(group="console_scripts", name="pnprgm")
    assert script.value == "pnprgm.cli.main:main", REINSTALL
    import pnprgm.cli.main

    assert script.load() is pnprgm.cli.main.main


def test_the_library_uses_the_same_operators_module_and_no_old_name(tmp_path):
    """An operator rebuilt by the library (a measurement sidecar) is an instance of the class users import, and the
    folders come from the same tree as pnprgm (inside it when installed, beside it in a checkout)."""
    shape = (3, 12, 10)
    op = operators.build("blur:gaussian,sigma=1+sr2", shape)
    y = operators.measure(op, torch.rand(1, *shape), 0.01, seed=0)
    save_measurement(tmp_path / "y.png", y, op, noise_sigma=0.01, seed=0, source=SourceInfo("x.png", "ab" * 32, shape))
    assert isinstance(load_measurement(tmp_path / "y.png").operator, operators.Operator)
    assert sys.modules["pnprgm.operators"] is operators
    import pnprgm.cli.main
    import pnprgm.pretrained

    package_dir = Path(pnprgm.__file__).resolve().parent
    for module in (operators, pnprgm.cli, pnprgm.pretrained):
        assert Path(module.__file__).resolve().parent.parent in (package_dir, package_dir.parent), module.__file__
    assert models.PRETRAINED_DIR == Path(pnprgm.pretrained.__file__).resolve().parent and models.INDEX.is_file()
    assert not set(FOLDERS) & set(sys.modules), "the library imported a pre-namespace name"


def test_no_project_code_imports_the_old_names():
    """Every import in the project (code, tests, scripts, benchmarks, README and docs examples) uses pnprgm.<folder>."""
    files = [p for folder in ("pnprgm", *FOLDERS, "benchmarks", "scripts", "tests") for p in (REPO / folder).rglob("*.py")]
    files += [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    found = []
    for path in files:
        if path.name == Path(__file__).name:  # this file imports them on purpose, in a subprocess
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = OLD_IMPORT.match(line)
            if match:
                names = [match.group(1)] if match.group(1) else match.group(2).split(",")
                if {name.split()[0].split(".")[0] for name in names if name.strip()} & set(FOLDERS):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "old top-level import names (use pnprgm.<name>):\n" + "\n".join(found)


def test_old_names_warn_and_are_the_new_modules_in_a_checkout():
    proc = _python("""
        import json, sys, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import operators
            from operators.base import Operator
            import pretrained
            from cli.main import app
        import pnprgm.cli.main, pnprgm.operators, pnprgm.pretrained
        print(json.dumps({
            "warnings": [[str(w.message), w.filename] for w in caught if w.category is DeprecationWarning],
            "same": [operators is pnprgm.operators, Operator is pnprgm.operators.Operator,
                     pretrained is pnprgm.pretrained, sys.modules["cli"] is pnprgm.cli],
            "built": isinstance(operators.build("sr2", (3, 8, 8)), pnprgm.operators.Operator),
            "commands": sorted(app.commands) == sorted(pnprgm.cli.main.app.commands),
        }))
    """, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    for old in FOLDERS:
        assert [f"use 'import pnprgm.{old}'" in message and filename == "<string>"
                for message, filename in out["warnings"]].count(True) == 1, out["warnings"]
    assert out["same"] == [True] * 4 and out["built"] and out["commands"]


def test_python_dash_m_cli_main_still_runs_from_a_checkout():
    """``python -m cli.main`` (and the ``torchrun -m cli.main`` an older train --help showed) keeps working."""
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--version"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.startswith("pnprgm, version"), proc.stderr[-3000:]


def test_a_checkout_resolves_its_own_folders_before_an_installed_one(tmp_path):
    """A second checkout on PYTHONPATH gets its own operators/, not those of the checkout installed in editable mode."""
    copy = tmp_path / "checkout"
    for folder in ("pnprgm", "operators"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    proc = _python("import pnprgm.operators; print(pnprgm.operators.__file__)", cwd=tmp_path, PYTHONPATH=str(copy))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(proc.stdout.strip()) == copy / "operators" / "__init__.py"


@pytest.mark.skipif(importlib.util.find_spec("setuptools.command.bdist_wheel") is None,
                    reason="building a wheel without network needs setuptools>=70.1 in this environment")
@pytest.mark.slow
def test_a_regular_install_holds_only_pnprgm_with_the_shipped_models(tmp_path):
    """A non-editable install (a wheel, unpacked with pip --target) has the folders inside pnprgm/, the shipped
    models with matching hashes, and nothing else at the top level."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    link_weights = lambda src, dst: os.symlink(src, dst) if src.endswith(".pt") else shutil.copy2(src, dst)  # noqa: E731
    for folder in ("pnprgm", *FOLDERS):  # weights as links: the build copies their content, the test 67 MB less
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"), copy_function=link_weights)
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                           "--no-compile", "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in target.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info")) == ["pnprgm"]
    shipped = {p.name for p in (REPO / "pretrained").iterdir() if p.is_file()}
    assert shipped <= {p.name for p in (target / "pnprgm" / "pretrained").iterdir()}
    proc = _python("""
        import json, pnprgm.cli.main, pnprgm.models, pnprgm.operators
        from click.testing import CliRunner
        result = CliRunner().invoke(pnprgm.cli.main.app, ["models", "--verify"])
        print(json.dumps([result.exit_code, result.output, pnprgm.operators.__file__, str(pnprgm.models.PRETRAINED_DIR)]))
    """, cwd=tmp_path, PYTHONPATH=str(target))
    assert proc.returncode == 0, proc.stderr[-3000:]
    exit_code, output, operators_file, pretrained_dir = json.loads(proc.stdout.splitlines()[-1])
    assert exit_code == 0 and "all shipped files match their sha256" in output, output
    assert Path(operators_file) == target / "pnprgm" / "operators" / "__init__.py"
    assert Path(pretrained_dir) == target / "pnprgm" / "pretrained"
