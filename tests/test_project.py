"""Project-level checks: packaging metadata, environment files and the literate contract."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path

import pytest
import yaml

import lrpbook

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _chapters() -> list[Path]:
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.md"))


def _public_modules() -> list[str]:
    """Every importable module of lrpbook whose dotted name has no component starting with '_'."""
    names = ["lrpbook"]
    for info in pkgutil.walk_packages(lrpbook.__path__, "lrpbook."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return names


def test_version_matches_pyproject():
    assert lrpbook.__version__ == PYPROJECT["project"]["version"]


def test_environment_yml_agrees_with_pyproject_and_makefile():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_deps = next(d["pip"] for d in deps if isinstance(d, dict))
    # environment.yml installs the package itself with the extras that exist in pyproject ...
    editable = [d for d in pip_deps if d.startswith("-e")]
    assert len(editable) == 1
    extras = re.search(r"\[(.*)\]", editable[0]).group(1).split(",")
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"])
    assert {"book", "test"} <= set(extras)
    # ... and pins torch/torchvision exactly as the Makefile does, within pyproject's ranges.
    makefile = (REPO / "Makefile").read_text()
    pins = re.search(r"^TORCH_PINS\s*=\s*(.+)$", makefile, re.M).group(1).split()
    assert sorted(d for d in pip_deps if "==" in d) == sorted(pins)
    declared = {re.split(r"[<>=!~ \[]", d)[0] for d in PYPROJECT["project"]["dependencies"]}
    for pin in pins:
        assert pin.split("==")[0] in declared


def test_requires_python_admits_the_ci_python():
    spec = PYPROJECT["project"]["requires-python"]
    assert spec.startswith(">=3.")
    assert int(spec.split(".")[1]) <= 11


def test_console_scripts_point_at_existing_functions():
    for name, target in PYPROJECT["project"]["scripts"].items():
        module, func = target.split(":")
        mod = importlib.import_module(module)
        assert callable(getattr(mod, func)), f"console script {name} -> {target} is not callable"


def test_no_notebook_outputs_are_committed():
    tracked = (REPO / ".gitignore").read_text()
    assert "*.ipynb" in tracked
    assert not list((REPO / "notebooks").glob("*.ipynb"))


def test_every_chapter_has_jupytext_front_matter_and_a_label():
    chapters = _chapters()
    assert chapters, "no chapters found"
    for ch in chapters:
        text = ch.read_text(encoding="utf-8")
        assert text.startswith("---\njupytext:"), f"{ch.name} lacks jupytext front matter"
        assert "format_name: myst" in text.split("---")[1]
        assert re.search(r"^\(chap-[a-z0-9-]+\)=$", text, re.M), (
            f"{ch.name} lacks a (chap-...)= label"
        )
        assert "matplotlib.use(" not in text, f"{ch.name} calls matplotlib.use()"


def test_toc_lists_only_existing_chapters_and_every_chapter_is_listed():
    toc = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for f in files:
        assert (REPO / f"{f}.md").exists(), f"_toc.yml lists {f}, which does not exist"
    listed = {f for f in files if f.startswith("notebooks/")}
    for ch in _chapters():
        assert f"notebooks/{ch.stem}" in listed, f"{ch.name} is not in book/_toc.yml"


@pytest.mark.parametrize("module", _public_modules())
def test_public_names_are_taught_in_some_chapter(module):
    """The literate contract: every name in a public ``__all__`` is shown or used in a chapter."""
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{module} has no __all__"
    text = "\n".join(p.read_text(encoding="utf-8") for p in _chapters())
    missing = [
        n for n in names if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", text)
    ]
    assert not missing, f"{module}: not shown or used in any chapter: {missing}"


def test_wheel_builds_and_ships_data_files(tmp_path):
    """``pip wheel .`` works offline and the wheel carries py.typed and the taxonomy table."""
    import subprocess
    import zipfile

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("lrpbook-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lrpbook/py.typed" in names and "lrpbook/imbalance/taxonomy.csv" in names
    assert not any(n.startswith(("tests/", "notebooks/", "benchmarks/")) for n in names)
