"""The taxonomy of imbalance problems in object detection (thesis Ch 3, Table 1.2, Fig. 3.1) as data.

``taxonomy.csv`` (shipped with the package) lists methods reviewed in thesis Ch 3 with their venue,
year, imbalance category and problem, and the kind of approach. It was re-entered by hand from the
thesis text; a method appears once per problem it addresses (as in Fig. 3.1).

Taught in: chapter "Imbalance problems in object detection".
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from importlib import resources

__all__ = ["PROBLEMS", "Method", "load_taxonomy", "papers_per_problem_year"]

#: The eight imbalance problems of the taxonomy, grouped by category (thesis Table 1.2).
PROBLEMS: dict[str, tuple[str, ...]] = {
    "class": ("foreground-background", "foreground-foreground"),
    "scale": ("object-level scale", "feature-level"),
    "spatial": ("regression loss", "IoU distribution", "object location"),
    "objective": ("objective",),
}


@dataclass(frozen=True)
class Method:
    """One row of the taxonomy: a method and the imbalance problem it addresses.

    Attributes:
        method: the method's name as the thesis uses it.
        venue: where it was published (e.g. ``"CVPR"``).
        year: year of publication.
        category: one of the keys of :data:`PROBLEMS`.
        problem: one of the problems of that category.
        approach: the kind of solution (e.g. hard sampling, loss function).

    Taught in: chapter "Imbalance problems in object detection".
    """

    method: str
    venue: str
    year: int
    category: str
    problem: str
    approach: str


def load_taxonomy() -> list[Method]:
    """Load the taxonomy shipped with lrpbook.

    Returns:
        A list of :class:`Method` records, in the order of the CSV.

    Raises:
        ValueError: if a row has an unknown category/problem pair or a malformed year (a corrupt
            install); the message names the CSV line.

    Example:
        >>> rows = load_taxonomy()
        >>> rows[0].category
        'class'

    Taught in: chapter "Imbalance problems in object detection".
    """
    text = resources.files("lrpbook.imbalance").joinpath("taxonomy.csv").read_text(encoding="utf-8")
    rows = []
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        try:
            year = int(row["year"])
        except ValueError:
            raise ValueError(
                f"taxonomy.csv line {line}: year {row['year']!r} is not an integer"
            ) from None
        if row["problem"] not in PROBLEMS.get(row["category"], ()):
            raise ValueError(
                f"taxonomy.csv line {line}: unknown problem {row['category']}/{row['problem']}"
            )
        rows.append(
            Method(
                row["method"], row["venue"], year, row["category"], row["problem"], row["approach"]
            )
        )
    return rows


def papers_per_problem_year(methods: list[Method] | None = None) -> dict[str, Counter]:
    """Count methods per imbalance problem and year.

    Args:
        methods: records to count (default: :func:`load_taxonomy`).

    Returns:
        ``{problem: Counter({year: count})}`` for every problem of :data:`PROBLEMS` (empty
        counters kept).

    Example:
        >>> counts = papers_per_problem_year()
        >>> len(counts)
        8

    Taught in: chapter "Imbalance problems in object detection".
    """
    methods = load_taxonomy() if methods is None else methods
    out = {p: Counter() for problems in PROBLEMS.values() for p in problems}
    for m in methods:
        out[m.problem][m.year] += 1
    return out
