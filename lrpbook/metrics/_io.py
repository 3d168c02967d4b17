"""Loading evaluation inputs (COCO / LVIS / panoptic JSON) and writing results.

Private helpers shared by the evaluators of :mod:`lrpbook.metrics`: :func:`load_json` accepts
a path (``.json`` or ``.json.gz``), a ``dict`` or a ``list`` and always reports a bad input with a
``ValueError`` that names the file and the problem; :func:`nan_to_none` prepares results for
``json.dump`` (NaN, which JSON cannot represent, becomes ``null``); :func:`write_atomic` writes
a file so that an interrupted run leaves the previous one intact; :func:`check_outputs` refuses an
output path that is (or resolves to) an input.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

try:  # a dependency; the standard library is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

__all__ = [
    "load_json", "nan_to_none", "describe_source", "write_atomic", "check_outputs",
    "check_not_swapped", "parse_json", "gc_paused", "numpy_results", "short_repr", "Stats",
    "progress_bar",
]  # fmt: skip


def describe_source(src: Any) -> str:
    """A short name for an input, used in error messages (the path, or ``<dict>``/``<list>``)."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return f"<{type(src).__name__}>"


def parse_json(raw: bytes | str) -> Any:
    """Parse JSON text with orjson (fast) and the same numbers as the standard library.

    orjson parses floats with correct rounding, as :func:`json.loads` does, so every number is
    bit-identical. What orjson refuses but the standard library accepts -- ``NaN`` and
    ``Infinity`` literals, integers beyond 64 bits, numbers that overflow to ``inf`` -- goes to
    :func:`json.loads`, so the result (and any error message) is always the standard library's.

    Args:
        raw (bytes | str): the JSON text (UTF-8 when bytes).

    Returns:
        Any: the parsed document.

    Raises:
        json.JSONDecodeError: malformed JSON (the standard library's message).
        UnicodeDecodeError: bytes that are not UTF-8.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def numpy_results(arr: Any, *, what: str = "detections") -> list[dict]:
    """Results from an ``N x 7`` array, as pycocotools' ``loadNumpyAnnotations`` reads them.

    Each row is ``[image_id, x, y, width, height, score, category_id]``.

    Args:
        arr (array-like[N, 7]): the rows (a numpy array or anything with ``__array__``).
        what (str): what the array is, for error messages.

    Returns:
        list[dict]: COCO results with ``image_id``, ``bbox``, ``score`` and ``category_id``.

    Raises:
        ValueError: the array is not ``N x 7``, or an id is not an integer.
    """
    a = np.asarray(arr)
    if a.ndim != 2 or a.shape[1] != 7 or a.dtype.kind not in "fiu":
        raise ValueError(
            f"{what}: an array of results must be N x 7 numbers [image_id, x, y, w, h, score, "
            f"category_id]; got shape {a.shape}, dtype {a.dtype}"
        )
    a = a.astype(np.float64)
    ids = a[:, [0, 6]]
    bad = ~np.isfinite(ids).all(axis=1) | (ids != np.round(ids)).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: row {i}: image_id and category_id must be integers; got {a[i]}")
    img, cat = a[:, 0].astype(np.int64).tolist(), a[:, 6].astype(np.int64).tolist()
    box, score = a[:, 1:5].tolist(), a[:, 5].tolist()
    return [
        {"image_id": i, "bbox": b, "score": s, "category_id": c}
        for i, b, s, c in zip(img, box, score, cat)
    ]


def load_json(src: str | os.PathLike | dict | list, *, what: str) -> dict | list:
    """Read a JSON document from a path, or pass an in-memory ``dict``/``list`` through.

    Args:
        src (str | PathLike | dict | list | COCO | ndarray): a path to a ``.json`` or
            ``.json.gz`` file (gzip is detected by the suffix ``.gz`` or by the gzip magic bytes),
            the already-parsed document, a pycocotools ``COCO`` object (its ``dataset``; a
            ``loadRes`` result gives its ``annotations``) or an ``N x 7`` array of results (see
            :func:`numpy_results`). A ``dict``/``list`` is returned as it is (not copied; callers
            never mutate it).
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
    if isinstance(getattr(src, "dataset", None), dict):
        return src.dataset  # a pycocotools (or faster-coco-eval) COCO object, or a loadRes result
    if isinstance(src, np.ndarray) or (hasattr(src, "__array__") and hasattr(src, "shape")):
        return numpy_results(src, what=what)
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(
            f"{what}: expected a path, a dict, a list, a pycocotools COCO object or an N x 7 "
            f"array; got {type(src).__name__}"
        )
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
        doc = parse_json(raw)
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
    """Refuse output paths that are, or resolve to, an input or another output.

    Args:
        inputs (dict[str, Any]): ``{option name: value}`` of the inputs; values that are not
            paths (dicts, lists, ``None``) are skipped. A folder input protects the files in it
            only when the output is the folder itself.
        outputs (dict[str, Any]): ``{option name: path or None}`` of the outputs.

    Raises:
        ValueError: one line naming both options and the path, e.g. ``--out gt.json is the
            ground truth input (gt); refusing to overwrite an input``.
    """
    ins = [(k, Path(v)) for k, v in inputs.items() if isinstance(v, (str, os.PathLike))]
    outs = [(k, Path(v)) for k, v in outputs.items() if isinstance(v, (str, os.PathLike))]
    for i, (ok, op) in enumerate(outs):
        for ik, ip in ins:
            if _same_file(op, ip):
                raise ValueError(
                    f"{ok} {op} is the same file as the input {ik} ({ip}); "
                    "refusing to overwrite an input"
                )
        for ok2, op2 in outs[:i]:
            if _same_file(op, op2):
                raise ValueError(f"{ok} {op} is the same file as {ok2} ({op2}); give two paths")
        if op.is_dir():
            raise ValueError(f"{ok} {op}: is a directory, expected a file path")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then rename.

    An interrupted run (or a failed write) leaves the previous content of ``path`` intact, and
    no temporary file behind.

    Args:
        path (str | PathLike): the destination; its folder must exist.
        data (str | bytes): the content (``str`` is written as UTF-8).

    Returns:
        Path: ``path``.

    Raises:
        OSError: the folder does not exist or is not writable.
    """
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if p.exists():
            try:
                os.chmod(tmp, p.stat().st_mode & 0o7777)
            except OSError:
                pass
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def _looks_like_gt(doc: Any) -> bool:
    return isinstance(doc, dict) and "images" in doc and "categories" in doc


def _looks_like_results(doc: Any) -> bool:
    return isinstance(doc, list) and (
        not doc or (isinstance(doc[0], dict) and "score" in doc[0] and "image_id" in doc[0])
    )


def check_not_swapped(gt_doc: Any, dt_doc: Any, gt_what: str, dt_what: str) -> None:
    """A clear error when the ground truth looks like results and the detections like a GT."""
    if _looks_like_results(gt_doc) and _looks_like_gt(dt_doc):
        raise ValueError(
            f"ground truth {gt_what} looks like a results list and detections {dt_what} like a "
            "ground-truth object: were GT and DT swapped? (the ground truth comes first)"
        )


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector inside the block (restored on exit).

    Parsing a results file builds about a million small lists and dicts, none of them in a
    reference cycle; each few hundred allocations the collector would scan them all again, which
    costs more than the parse itself. Reference counting still frees everything as usual.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and len(v) > 6:
        return f"{{{len(v)} entries}}"
    if isinstance(v, dict) and all(isinstance(x, np.ndarray) for x in v.values()):
        return "{" + ", ".join(f"{k}: {_describe(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list) and (len(v) > 6 or any(isinstance(x, dict) for x in v)):
        return f"[{len(v)} rows]" if any(isinstance(x, dict) for x in v) else f"[{len(v)} items]"
    if isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()):
        return f"{{{len(v)} rows}}"
    return repr(v)


def short_repr(obj: Any, fields: list[str]) -> str:
    """``Name(stats={...}, per_class=[80 items], precision=array[10, 101, 80, 4, 3], ...)``.

    The summary numbers in full (4 significant digits), everything else by its size or shape,
    so ``print(result)`` fits on a few lines instead of printing every array.
    """
    parts = []
    for name in fields:
        v = getattr(obj, name)
        if name == "stats" and isinstance(v, dict):
            inner = ", ".join(f"{k!r}: {x:.4g}" if isinstance(x, float) else f"{k!r}: {x!r}"
                              for k, x in v.items())  # fmt: skip
            parts.append(f"stats={{{inner}}}")
        else:
            parts.append(f"{name}={_describe(v)}")
    return f"{type(obj).__name__}(" + ", ".join(parts) + ")"


class Stats(dict):
    """The ``stats`` dict of a result; old key spellings are read as their new names.

    ``aliases`` maps an old spelling (e.g. LVIS' ``"oLRP LOC"``) to the key it is now stored
    under (``"oLRP_Loc"``); iteration, ``keys()`` and JSON output use the new keys only.
    """

    def __init__(self, data: Any = (), aliases: dict[str, str] | None = None) -> None:
        super().__init__(data)
        self.aliases = dict(aliases or {})

    def __missing__(self, key: str) -> Any:
        if key in self.aliases:
            return self[self.aliases[key]]
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (key in self.aliases)

    def __reduce__(self):
        return (Stats, (dict(self), self.aliases))


def progress_bar(iterable: Any = None, *, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm bar on stderr, ``tqdm(disable=not enabled)``: with ``enabled=False`` it is inert.

    Args:
        iterable (Iterable, optional): what to iterate over (or ``None`` for a manual bar).
        enabled (bool): show it.
        **kwargs: passed to ``tqdm`` (``total``, ``desc``, ``unit``, ...); ``leave=False`` by
            default.
    """
    if enabled:  # the notebook-or-terminal choice matters only for a bar that is shown
        from tqdm.auto import tqdm
    else:  # an inert bar: tqdm.std alone (tqdm.auto also imports asyncio: ~30 ms of start-up)
        from tqdm.std import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not enabled, **kwargs)
