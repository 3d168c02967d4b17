"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_refcases() -> Path | None:
    candidates = []
    if os.environ.get("LRPBOOK_REFCASES"):
        candidates.append(Path(os.environ["LRPBOOK_REFCASES"]))
    candidates += [REPO / "shared" / "refcases", REPO.parent / "shared" / "refcases"]
    # copies shipped with the tests (lrp, peer, losses), so a fresh clone checks the numbers
    candidates.append(REPO / "tests" / "data" / "refcases")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def refcases() -> Path:
    """Path to the reference cases computed with the official code (``shared/refcases``).

    Looked up in ``$LRPBOOK_REFCASES``, ``<repo>/shared/refcases``, ``<repo>/../shared/refcases``
    and, last, the copies in ``tests/data/refcases`` (so a fresh clone checks the official numbers).
    In CI the folder is always present; elsewhere the tests that need it are skipped with a reason.
    """
    path = _find_refcases()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("shared/refcases not found next to the repository (required in CI)")
        pytest.skip("shared/refcases not found (set LRPBOOK_REFCASES)")
    return path
