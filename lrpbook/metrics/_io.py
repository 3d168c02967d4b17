"""Loading evaluation inputs (COCO / LVIS / panoptic JSON) and writing results.

Private helpers shared by the evaluators of :mod:`lrpbook.metrics`: :func:`load_json` accepts
a path (``.json`` or ``.json.gz``), a ``dict`` or a ``list`` and always reports a bad input with a
``ValueError`` that names the file and the problem; :func:`nan_to_none` prepares results for
``json.dump`` (NaN, which JSON cannot represent, becomes ``null``).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_json", "nan_to_none", "describe_source"]


def describe_source(src: Any) -> str:
    """A short name for an input, used in error messages (the path, or ``<dict>``/``<list>``)."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return f"<{type(src).__name__}>"


def load_json(src: str | os.PathLike | dict | list, *, what: str) -> dict | list:
    """Read a JSON document from a path, or pass an in-memory ``dict``/``list`` through.

    Args:
        src (str | PathLike | dict | list): a path to a ``.json`` or ``.json.gz`` file (gzip is
            detected by the suffix ``.gz`` or by the gzip magic bytes), or the already-parsed
            document. A ``dict``/``list`` is returned as it is (not copied; callers never mutate it).
        what (str): what the document is, used in error messages, e.g. ``"ground truth"``.

    Returns:
        dict | list: the parsed document.

    Raises:
        ValueError: the file does not exist, is not readable, is not valid (gzip) JSON, or its top
            level is neither an object nor an array. The message names ``what``, the file and the
            problem, in one line.
        TypeError: ``src`` is of another type.
    """
    if isinstance(src, (dict, list)):
        return src
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a path, a dict or a list; got {type(src).__name__}")
    path = Path(src)
    if not path.exists():
        raise ValueError(f"{what} file {path}: no such file")
    if path.is_dir():
        raise ValueError(f"{what} file {path}: is a directory, expected a .json or .json.gz file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ValueError(f"{what} file {path}: cannot be read ({exc.strerror or exc})") from None
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{what} file {path}: not a valid gzip file ({exc})") from None
    try:
        doc = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} file {path}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{what} file {path}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(doc, (dict, list)):
        raise ValueError(
            f"{what} file {path}: top level must be a JSON object or array; got {type(doc).__name__}"
        )
    return doc


def nan_to_none(obj: Any) -> Any:
    """Return a copy of ``obj`` that ``json.dump`` can write: NaN (and inf) become ``None``.

    Recurses through dicts, lists and tuples; numpy scalars and arrays become Python numbers and
    lists. Other values are returned as they are.

    Example:
        >>> nan_to_none({"a": float("nan"), "b": [1.0, -1]})
        {'a': None, 'b': [1.0, -1]}
    """
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return nan_to_none(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
