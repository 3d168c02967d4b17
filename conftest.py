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
