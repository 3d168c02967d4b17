"""Pytest configuration shared by the unit tests and the chapter checks.

The chapters are MyST Markdown notebooks (``notebooks/*.md`` with jupytext front matter). nbval
collects only ``.ipynb`` files, so this hook reads the ``.md`` chapters through jupytext and hands
them to nbval: ``pytest --nbval-lax notebooks/`` executes every chapter exactly as the book build
does (same kernel, same working directory), without writing any ``.ipynb`` next to the sources.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _is_chapter(path: Path) -> bool:
    if path.suffix != ".md" or path.parent.name != "notebooks":
        return False
    with open(path, encoding="utf-8") as fh:
        head = fh.read(400)
    return head.startswith("---") and "jupytext:" in head


class _JupytextNbformat:
    """Stands in for ``nbformat`` inside nbval so that it reads notebooks through jupytext."""

    def __init__(self, nbformat_module):
        self._nbformat = nbformat_module

    def __getattr__(self, name):
        return getattr(self._nbformat, name)

    @staticmethod
    def read(path, as_version=4):
        import jupytext

        return jupytext.read(path, as_version=as_version)


def pytest_collect_file(file_path: Path, parent):
    opt = parent.config.option
    if not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)):
        return None
    if not _is_chapter(file_path):
        return None
    import nbval.plugin

    if not isinstance(nbval.plugin.nbformat, _JupytextNbformat):
        nbval.plugin.nbformat = _JupytextNbformat(nbval.plugin.nbformat)
    return nbval.plugin.IPyNbFile.from_parent(parent, path=file_path)


# --- Sharing execution with the book build -------------------------------------------------------
# When LRPBOOK_NBVAL_EXPORT names a folder, every chapter whose cells all pass is written there as an
# executed notebook (jupytext's reading of the .md plus the outputs nbval collected). `make book`
# hands these to Jupyter Book's execution cache (book/cache_nbval.py), so CI executes each chapter
# once, not twice. A chapter with a failing cell is not exported; the book build then executes it.

import os  # noqa: E402

import pytest  # noqa: E402

_EXPORT = os.environ.get("LRPBOOK_NBVAL_EXPORT")
_runs: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not _EXPORT or not hasattr(item, "test_outputs") or not hasattr(item, "cell"):
        return
    report = outcome.get_result()
    run = _runs.setdefault(str(item.parent.path), {"ok": True, "outputs": {}})
    if report.failed:
        run["ok"] = False
    elif call.when == "call" and report.passed:
        run["outputs"][item.cell_num] = list(item.test_outputs or [])


def pytest_runtest_teardown(item, nextitem):
    if not _EXPORT or not hasattr(item, "cell"):
        return
    if nextitem is not None and getattr(nextitem, "parent", None) is item.parent:
        return
    path = Path(item.parent.path)
    run = _runs.pop(str(path), None)
    if not run or not run["ok"]:
        return
    import jupytext
    import nbformat

    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        cell.outputs = [nbformat.from_dict(o) for o in run["outputs"].get(i, [])]
        cell.execution_count = None
    out = Path(_EXPORT)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{path.stem}.ipynb.tmp"
    nbformat.write(nb, str(tmp))
    os.replace(tmp, out / f"{path.stem}.ipynb")
