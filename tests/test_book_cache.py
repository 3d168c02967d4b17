"""book/cache_nbval.py: nbval's executed chapters are reused by the book build only when they are fresh."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupyter_cache")
pytest.importorskip("myst_nb")

REPO = Path(__file__).resolve().parents[1]
CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{code-cell} ipython3
print(1 + 1)
```

```{code-cell} ipython3
slider = 3
```
"""


def _module():
    spec = importlib.util.spec_from_file_location("cache_nbval", REPO / "book" / "cache_nbval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _project(tmp_path: Path, code: list[str]) -> tuple[Path, Path, Path]:
    root = tmp_path / "repo"
    (root / "lrpbook").mkdir(parents=True)
    (root / "lrpbook" / "x.py").write_text("")
    (root / "notebooks").mkdir()
    md = root / "notebooks" / "01_a.md"
    md.write_text(CHAPTER, encoding="utf-8")
    past = time.time() - 100
    for p in (root / "lrpbook" / "x.py", md):
        os.utime(p, (past, past))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in code]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb.cells[1].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "w"},
        )
    ]
    export = tmp_path / "export"
    export.mkdir()
    nbformat.write(nb, str(export / "01_a.ipynb"))
    return root, export, tmp_path / "cache"


def _cached(cache_dir: Path) -> list:
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    return [cache.get_cache_bundle(r.pk).nb for r in cache.list_cache_records()]


def test_fresh_export_is_cached_with_outputs_and_without_widget_state(tmp_path):
    root, export, cache_dir = _project(tmp_path, ["print(1 + 1)", "slider = 3"])
    assert _module().main(str(export), str(cache_dir), root) == 0
    (nb,) = _cached(cache_dir)
    assert nb.cells[0].outputs[0]["text"] == "2\n"
    assert nb.cells[1].outputs == []  # widget views are dropped
    assert not export.exists()  # consumed once


def test_export_whose_cells_differ_is_not_reused(tmp_path):
    root, export, cache_dir = _project(tmp_path, ["print(1 + 2)", "slider = 3"])
    _module().main(str(export), str(cache_dir), root)
    assert _cached(cache_dir) == []


def test_export_older_than_the_package_is_not_reused(tmp_path):
    root, export, cache_dir = _project(tmp_path, ["print(1 + 1)", "slider = 3"])
    (root / "lrpbook" / "x.py").write_text("changed")  # newer than the export
    _module().main(str(export), str(cache_dir), root)
    assert _cached(cache_dir) == []
