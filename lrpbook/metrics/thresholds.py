"""Class-wise LRP-optimal thresholds for deployment: export, load, apply (thesis 5.7.4, App. H).

A detector outputs many low-scoring detections; to deploy it, they must be cut at a score
threshold. oLRP gives one threshold per class, ``s*``, the score at which the LRP Error of that
class is minimal. :func:`save_thresholds` writes them (from an :class:`~lrpbook.metrics.EvalResult`)
to JSON, :func:`load_thresholds` reads them back and :func:`apply_thresholds` turns soft
predictions into hard ones.

Taught in: chapter "LRP Error".
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from lrpbook.metrics._io import load_json, nan_to_none, write_atomic

__all__ = ["apply_thresholds", "save_thresholds", "load_thresholds"]


def _as_mapping(thresholds: Any) -> dict[int, float]:
    if hasattr(thresholds, "thresholds") and not isinstance(thresholds, dict):
        thresholds = thresholds.thresholds
    if isinstance(thresholds, (str, os.PathLike)):
        thresholds = load_thresholds(thresholds)
    if not isinstance(thresholds, dict):
        raise TypeError(
            "`thresholds` must be a {category_id: threshold} dict, an EvalResult or a path; "
            f"got {type(thresholds).__name__}"
        )
    out = {}
    for k, v in thresholds.items():
        try:
            out[int(k)] = math.nan if v is None else float(v)
        except (TypeError, ValueError):
            raise ValueError(f"`thresholds`: entry {k!r}: {v!r} is not a number") from None
    return out


def apply_thresholds(
    detections: list[dict],
    thresholds: Any,
    *,
    default: float | None = None,
) -> list[dict]:
    """Keep the detections whose score reaches their class' threshold (soft -> hard predictions).

    A detection of class ``c`` is kept when ``score >= thresholds[c]``. The thresholds are those
    of oLRP (the score of the detection at which the minimum is reached), so ``>=`` keeps the
    optimum itself. Special values, as in the official output:

    * NaN / ``None`` (the class had detections but no true positive): every detection of that
      class is dropped -- none of them helped;
    * ``-1`` (the class had no ground truth) or a class absent from ``thresholds``: ``default``
      decides: ``None`` (default) keeps them all, a number is used as their threshold.

    Args:
        detections (list[dict]): COCO results with ``category_id`` and ``score``. Not modified.
        thresholds (dict | EvalResult | str | PathLike): ``{category_id: threshold}``, a result of
            :func:`~lrpbook.metrics.evaluate` (its LRP-optimal thresholds) or a JSON file written
            by :func:`save_thresholds`.
        default (float, optional): threshold for classes without one. Default ``None`` (keep).

    Returns:
        list[dict]: the kept detections (the same dict objects), in input order.

    Raises:
        ValueError: a detection without ``category_id``/``score``, or a non-numeric threshold.
        TypeError: ``thresholds`` of another type.

    Example:
        >>> dets = [{"category_id": 1, "score": 0.9}, {"category_id": 1, "score": 0.2}]
        >>> len(apply_thresholds(dets, {1: 0.5}))
        1

    Taught in: chapter "LRP Error".
    """
    thr = _as_mapping(thresholds)
    kept = []
    for i, d in enumerate(detections):
        try:
            c, s = int(d["category_id"]), float(d["score"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"detection at index {i} needs numeric 'category_id' and 'score'"
            ) from None
        t = thr.get(c, -1.0)
        if t == -1:
            if default is None or s >= default:
                kept.append(d)
        elif not math.isnan(t) and s >= t:
            kept.append(d)
    return kept


def save_thresholds(result: Any, path: str | os.PathLike) -> Path:
    """Write the LRP-optimal thresholds of an evaluation to JSON.

    The file is ``{"thresholds": {"<category_id>": thr, ...}, "names": {...}, "note": ...}``
    with NaN written as ``null`` (class without TP) and ``-1`` for a class without GT.

    Args:
        result (EvalResult | dict): the output of :func:`~lrpbook.metrics.evaluate` (or of the
            LVIS evaluator), or a ``{category_id: threshold}`` dict.
        path (str | PathLike): where to write (atomically: a temporary file in the same folder,
            then a rename, so an interrupted write leaves the previous file intact).

    Returns:
        Path: ``path``.

    Taught in: chapter "LRP Error".
    """
    names: dict[str, str] = {}
    if isinstance(result, dict):
        thr = _as_mapping(result)
    else:
        thr = _as_mapping(result.thresholds)
        for row in getattr(result, "per_class", []):
            names[str(row["category_id"])] = str(row.get("name", row["category_id"]))
    doc = {
        "thresholds": {str(k): v for k, v in thr.items()},
        "names": names,
        "note": "LRP-optimal score thresholds per category (oLRP, tau = 0.5); "
        "null: no true positive (drop the class), -1: no ground truth",
    }
    return write_atomic(Path(path), json.dumps(nan_to_none(doc), indent=1))


def load_thresholds(path: str | os.PathLike) -> dict[int, float]:
    """Read thresholds written by :func:`save_thresholds` (or a plain ``{id: thr}`` JSON object).

    Args:
        path (str | PathLike): the JSON file.

    Returns:
        dict[int, float]: ``{category_id: threshold}`` with ``null`` read as NaN.

    Raises:
        ValueError: unreadable file or wrong content.

    Taught in: chapter "LRP Error".
    """
    doc = load_json(path, what="thresholds")
    if isinstance(doc, dict) and isinstance(doc.get("thresholds"), dict):
        doc = doc["thresholds"]
    if not isinstance(doc, dict):
        raise ValueError(
            f"thresholds file {path}: expected a JSON object of category_id: threshold"
        )
    try:
        return {int(k): math.nan if v is None else float(v) for k, v in doc.items()}
    except (TypeError, ValueError):
        raise ValueError(
            f"thresholds file {path}: keys must be category ids, values numbers or null"
        ) from None
