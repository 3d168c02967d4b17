"""Checks of the book's pages that need no build: code width and the notebook install note.

Every chapter is read the way jupytext and the book read it, so only the *source* of code cells
is measured (cell metadata such as figure captions is not shown as code).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.md"))
MAX_CODE_WIDTH = 80  # what the rendered code column shows at a 1280-px-wide window


def _code_lines(path: Path) -> list[tuple[int, str]]:
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path)
    lines = []
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            lines += [(k, line) for line in cell.source.splitlines()]
    return lines


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_no_code_line_is_wider_than_the_code_column(chapter):
    wide = [(k, len(line), line) for k, line in _code_lines(chapter)
            if len(line) > MAX_CODE_WIDTH]
    listing = "\n".join(f"  cell {k}, {n} chars: {line}" for k, n, line in wide[:10])
    assert not wide, (
        f"{chapter.name}: {len(wide)} code line(s) wider than {MAX_CODE_WIDTH} characters "
        f"(they are cut off on the page):\n{listing}"
    )


def test_install_note_is_inserted_once_at_the_top(tmp_path):
    """book/add_install_note.py puts a markdown note first and is idempotent."""
    jupytext = pytest.importorskip("jupytext")
    chapter = REPO / "notebooks" / "04_lrp_error.md"
    out = tmp_path / "04_lrp_error.ipynb"
    jupytext.write(jupytext.read(chapter), out)
    n_cells = len(json.loads(out.read_text())["cells"])
    script = REPO / "book" / "add_install_note.py"
    for _ in range(2):  # the second run must not add a second note
        subprocess.run([sys.executable, str(script), str(out)], check=True)
    cells = json.loads(out.read_text())["cells"]
    assert len(cells) == n_cells + 1
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown"
    assert "pip install" in first and "lrpbook" in first
    assert "".join(cells[1]["source"]) != first


HTML = REPO / "book" / "_build" / "html"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_built_chapter_page_offers_its_notebook_for_download(chapter):
    """After ``make book``: the .ipynb lies beside the page, starts with the install note, and the
    page's download menu links to it."""
    page = HTML / "notebooks" / f"{chapter.stem}.html"
    if not page.exists():
        pytest.skip(f"no built page {page.relative_to(REPO)} (run `make book` first)")
    nb = HTML / "notebooks" / f"{chapter.stem}.ipynb"
    assert nb.exists(), f"{nb.relative_to(REPO)} is missing: the download link would be dead"
    first = json.loads(nb.read_text(encoding="utf-8"))["cells"][0]
    assert "pip install" in "".join(first["source"]), "the notebook lacks the install note"
    html = page.read_text(encoding="utf-8")
    assert f'href="{chapter.stem}.ipynb"' in html, "the page does not link its notebook"
    assert "download-notebook-button" in html
