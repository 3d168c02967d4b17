"""Helpers shared by the COCO-style and LVIS evaluators (private).

Column extraction with record-level error messages, sorted-set membership, the official mean
rule, and the mean of valid precision / recall entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["_column", "_isin_sorted", "_unique_sorted", "_mean_valid", "_mean_present"]


def _column(items: list, key: str, what: str, kind: str) -> list[Any]:
    """``[it[key] for it in items]``, or a ValueError naming the first record without it."""
    try:
        return [it[key] for it in items]
    except KeyError:
        idx = next(i for i, it in enumerate(items) if key not in it)
        raise ValueError(f"{what}: {kind} at index {idx} has no '{key}' key") from None
    except TypeError:
        idx = next(i for i, it in enumerate(items) if not isinstance(it, dict))
        raise ValueError(
            f"{what}: {kind} at index {idx} must be a JSON object; got {type(items[idx]).__name__}"
        ) from None


def _isin_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """``np.isin`` for a sorted, unique second argument (binary search)."""
    if len(sorted_unique) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_unique, values)
    pos = np.minimum(pos, len(sorted_unique) - 1)
    return sorted_unique[pos] == values


def _unique_sorted(a: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array."""
    if len(a) == 0:
        return a
    return a[np.r_[True, a[1:] != a[:-1]]]


def _mean_valid(s: np.ndarray) -> float:
    """The official mean rule: drop NaN and values <= -1, average the rest (-1 if empty)."""
    s = s[~np.isnan(s)]
    s = s[s > -1]
    return -1.0 if len(s) == 0 else float(np.mean(s))


def _mean_present(s: np.ndarray) -> float:
    """pycocotools' summary rule: the mean of the entries > -1, or -1 when there is none."""
    v = s[s > -1]
    return -1.0 if len(v) == 0 else float(np.mean(v))
