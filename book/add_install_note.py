"""Put a short "how to install lrpbook" note at the top of generated chapter notebooks.

A reader who downloads one ``.ipynb`` from the book has the chapter but not the package. The
Makefile runs this script on the notebooks it writes (``make notebooks``, ``make book``), so the
chapter sources stay as they are. Running it twice on a file adds the note once.

Usage: ``python book/add_install_note.py NOTEBOOK.ipynb [...]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NOTE_ID = "lrpbook-install-note"
# Plain Markdown (a blockquote), which reads the same in Jupyter and in any viewer.
NOTE = (
    "> **Running this notebook on its own?** It needs the `lrpbook` package (Python 3.10 or\n"
    "> newer). In a fresh environment run\n"
    '> `pip install "lrpbook[book] @ git+https://github.com/lrpbook/lrpbook"`,\n'
    "> or, in a clone of the repository, `make notebooks && .venv/bin/jupyter lab ipynb/`.\n"
    "> The notebook downloads nothing: its data are synthetic and generated on the fly. Cells\n"
    "> tagged `skip-execution` need a GPU and are not run when the book is built.\n"
)


def add_note(path: Path) -> bool:
    """Insert the note as the first cell of ``path``; return False if it was already there."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.setdefault("cells", [])
    if cells and cells[0].get("metadata", {}).get("lrpbook") == NOTE_ID:
        return False
    cell = {"cell_type": "markdown", "metadata": {"lrpbook": NOTE_ID},
            "source": NOTE.splitlines(keepends=True)}
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        cell["id"] = NOTE_ID
    cells.insert(0, cell)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    for name in argv:
        add_note(Path(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
