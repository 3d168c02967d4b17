"""Hand the chapters that nbval just executed to Jupyter Book's execution cache.

``make test`` runs every chapter under nbval with ``LRPBOOK_NBVAL_EXPORT`` set, and ``conftest.py``
writes each chapter whose cells all passed, with its outputs, into that folder. ``make book`` then calls

    python book/cache_nbval.py EXPORT_DIR CACHE_DIR

which reads every chapter the way the book build reads it (MyST-NB's own reader), copies the outputs
in, code cell by code cell, and stores the result in the jupyter-cache at ``CACHE_DIR``. With
``execute_notebooks: cache`` in ``_config.yml`` the build then reuses these outputs instead of executing
the chapter a second time. Nothing is reused blindly:

- the cache is emptied first, so a later ``make book`` never shows outputs of an older package;
- an export is used only if it is newer than every file of ``lrpbook/`` and than its chapter, and if its
  code cells are the chapter's code cells, source for source; otherwise the chapter is executed;
- the export folder is removed afterwards (it is consumed once).

Widget outputs are dropped from the cached chapters: their state is not captured by nbval, and the
static figure that follows every widget carries the same content on the page.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_SUFFIXES = (".py", ".csv", ".json", ".yaml", ".yml")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _newest_source(chapter: Path, root: Path) -> float:
    # Sources only: caches that running the chapters writes (__pycache__, numba) do not count.
    times = [p.stat().st_mtime for p in (root / "lrpbook").rglob("*")
             if p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts]
    return max(times + [chapter.stat().st_mtime])


def _keep(output) -> bool:
    return not (output.get("output_type") in ("display_data", "execute_result")
                and WIDGET_MIME in output.get("data", {}))


def main(export_dir: str, cache_dir: str, root: Path = ROOT) -> int:
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import read_myst_markdown_notebook

    export, cache_path = Path(export_dir), Path(cache_dir)
    if cache_path.exists():
        shutil.rmtree(cache_path)
    if not export.is_dir():
        print("cache_nbval: no executed chapters from nbval; the book build executes every chapter")
        return 0
    cache = get_cache(str(cache_path))
    used, skipped = [], []
    for done in sorted(export.glob("*.ipynb")):
        chapter = root / "notebooks" / f"{done.stem}.md"
        if not chapter.exists() or done.stat().st_mtime < _newest_source(chapter, root):
            skipped.append(f"{done.stem} (stale)")
            continue
        executed = nbformat.read(done, as_version=4)
        nb = read_myst_markdown_notebook(chapter.read_text(encoding="utf-8"), path=chapter)
        ours = [c for c in nb.cells if c.cell_type == "code"]
        theirs = [c for c in executed.cells if c.cell_type == "code"]
        if [c.source.strip() for c in ours] != [c.source.strip() for c in theirs]:
            skipped.append(f"{done.stem} (cells differ)")
            continue
        for cell, ran in zip(ours, theirs):
            cell.outputs = [o for o in ran.outputs if _keep(o)]
            cell.execution_count = None
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(chapter)), check_validity=False,
                                    overwrite=True)
        used.append(done.stem)
    shutil.rmtree(export)
    print(f"cache_nbval: reused nbval's execution of {len(used)} chapters"
          + (f"; executing again: {', '.join(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
