"""Panoptic segmentation: Panoptic Quality (PQ) and the LRP Error side by side.

A panoptic segmentation assigns every pixel a class and, for *things*, an instance id; *stuff*
classes (sky, road) have one segment per image. It comes as hard predictions (no scores), so
the LRP Error is evaluated directly, without an optimal threshold. Both measures share the PQ
matching :cite:p:`kirillov2019panoptic`: a predicted and a ground-truth segment of the same
class match when their IoU is above 0.5, which makes the matching unique. PQ (thesis Eq. (5.1))
and LRP (Eq. (5.2)) are then computed per class from the same counts and averaged over classes.

:func:`evaluate_panoptic` reads the COCO panoptic format (a JSON file with ``segments_info`` per
image and one PNG per image whose colour encodes the segment id, ``id = R + 256 G + 256^2 B``)
and reproduces the LRP-extended panoptic API of the official LRP-Error code (``panopticapi``
0.1 fork), vectorised per image.

Taught in: chapter "LRP Error".
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrpbook.metrics._io import describe_source, load_json, nan_to_none, short_repr

__all__ = ["evaluate_panoptic", "PanopticResult"]

_OFFSET = 256 * 256 * 256  # segment ids are 24-bit: gt_id * OFFSET + pred_id is a unique pair key
_VOID = 0
_TAU = 0.5  # TP validation threshold of LRP (PQ's matching threshold is also 0.5)


@dataclass
class PanopticResult:
    """Result of :func:`evaluate_panoptic`: PQ and LRP for All / Things / Stuff and per class.

    Attributes:
        results (dict[str, dict]): ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "lrp",
            "lrp_loc", "lrp_fp", "lrp_fn", "n"}}``; ``n`` counts the classes with
            ``tp + fp + fn > 0``, over which ``pq``, ``sq``, ``rq`` and ``lrp`` are averaged.
            Each LRP component is averaged over the classes where it is defined. A mean over no
            class is NaN.
        per_class (dict[int, dict]): ``{category_id: {"pq", "sq", "rq", "lrp", "lrp_loc",
            "lrp_fp", "lrp_fn", "tp", "fp", "fn", "iou_sum"}}`` in the order of the categories.
            NaN marks an undefined value (see :func:`evaluate_panoptic`).
        params (dict): ``categories`` (``{id: {"name", "isthing"}}``), ``n_images``.

    Taught in: chapter "LRP Error".
    """

    results: dict[str, dict[str, float]]
    per_class: dict[int, dict[str, float]]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def stats(self) -> dict[str, float]:
        """The headline numbers, flat like the COCO and LVIS ``stats``: ``PQ``, ``SQ``, ``RQ``,
        ``LRP``, ``LRP_Loc``, ``LRP_FP``, ``LRP_FN`` (over All), then the same with the suffix
        ``_th`` (Things) and ``_st`` (Stuff). As in the COCO and LVIS ``stats``, ``-1`` means
        "nothing to evaluate" (a mean over no class, NaN in :attr:`results`)."""
        names = {"pq": "PQ", "sq": "SQ", "rq": "RQ", "lrp": "LRP", "lrp_loc": "LRP_Loc",
                 "lrp_fp": "LRP_FP", "lrp_fn": "LRP_FN"}  # fmt: skip
        out: dict[str, float] = {}
        for group, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
            r = self.results.get(group, {})
            for k, name in names.items():
                if k in r:
                    v = float(r[k])
                    out[name + suffix] = -1.0 if math.isnan(v) else v
        return out

    @property
    def thresholds(self) -> dict[int, float]:
        """Panoptic predictions are hard (no scores): no thresholds, an empty dict."""
        return {}

    def __repr__(self) -> str:
        return short_repr(self, ["stats", "per_class"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"stats": results, "per_class": [...]}`` with NaN written as ``None``."""
        rows = [{"category_id": k, **v} for k, v in self.per_class.items()]
        return nan_to_none({"stats": self.results, "per_class": rows})

    def summary(self, *, per_class: bool = False) -> str:
        """A readable table: PQ, SQ, RQ, LRP and its components for All / Things / Stuff."""
        keys = ("pq", "sq", "rq", "lrp", "lrp_loc", "lrp_fp", "lrp_fn")
        lines = [f"{'':<8}" + "".join(f"{k:>9}" for k in keys) + f"{'n':>5}"]
        for name, r in self.results.items():
            lines.append(f"{name:<8}" + "".join(f"{_fmt(r[k]):>9}" for k in keys) + f"{r['n']:>5}")
        if per_class:
            lines += ["", f"{'id':>8}" + "".join(f"{k:>9}" for k in keys)]
            for cid, r in self.per_class.items():
                lines.append(f"{cid:>8}" + "".join(f"{_fmt(r[k]):>9}" for k in keys))
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:0.4f}"


# --------------------------------------------------------------------------------------------
# inputs


def _categories(categories: Any, what: str) -> dict[int, dict[str, Any]]:
    if isinstance(categories, dict):
        categories = [{"id": k, **v} for k, v in categories.items()]
    if not isinstance(categories, list):
        raise ValueError(
            f"{what}: categories must be a list of objects; got {type(categories).__name__}"
        )
    out: dict[int, dict[str, Any]] = {}
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or "id" not in c or "isthing" not in c:
            raise ValueError(f"{what}: category at index {i} needs 'id' and 'isthing'; got {c!r}")
        cid = c["id"]
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise ValueError(f"{what}: category at index {i}: 'id' must be an integer; got {cid!r}")
        if cid in out:
            raise ValueError(f"{what}: category id {cid} appears more than once")
        out[cid] = {"name": str(c.get("name", cid)), "isthing": c["isthing"] == 1}
    return out


def _annotations(doc: Any, what: str) -> list[dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise ValueError(f"{what}: expected a JSON object with an 'annotations' list")
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            raise ValueError(f"{what}: annotation at index {i} must be a JSON object")
        for key in ("image_id", "file_name", "segments_info"):
            if key not in ann:
                raise ValueError(f"{what}: annotation at index {i} has no '{key}' key")
        if not isinstance(ann["segments_info"], list):
            raise ValueError(f"{what}: annotation at index {i}: 'segments_info' must be a list")
    return doc["annotations"]


def _segments(ann: dict, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """Columns of one image's ``segments_info`` (ids unique) as arrays."""
    segs = ann["segments_info"]
    where = f"{what}: image_id {ann['image_id']}"
    cols: dict[str, list] = {k: [] for k in ("id", "category_id", *keys)}
    for j, s in enumerate(segs):
        if not isinstance(s, dict):
            raise ValueError(f"{where}: segment at index {j} must be a JSON object")
        for k in ("id", "category_id", *keys):
            if k == "iscrowd":
                cols[k].append(int(s.get("iscrowd", 0) == 1))
                continue
            if k not in s:
                raise ValueError(f"{where}: segment at index {j} has no '{k}' key")
            v = s[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(
                    f"{where}: segment at index {j}: '{k}' must be a number; got {v!r}"
                )
            cols[k].append(v)
    out = {k: np.asarray(v, dtype=np.float64 if k == "area" else np.int64) for k, v in cols.items()}
    u, c = np.unique(out["id"], return_counts=True)
    if (c > 1).any():
        raise ValueError(f"{where}: segment id {int(u[c > 1][0])} appears more than once")
    return out


def _read_ids(path: Path, what: str) -> np.ndarray:
    """Segment ids of a panoptic PNG, ``R + 256 G + 256^2 B`` (``uint32``, H x W).

    The image is decoded as RGBA and each pixel's 4 bytes read as one little-endian 32-bit
    integer, whose low 24 bits are the id.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ValueError(f"{what} PNG {path}: no such file")
    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA"):
                raise ValueError(f"{what} PNG {path}: expected an RGB image; got mode {im.mode!r}")
            rgba = np.ascontiguousarray(np.asarray(im.convert("RGBA")))
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"{what} PNG {path}: cannot be read as an image ({exc})") from None
    return rgba.view("<u4")[:, :, 0] & np.uint32(0xFFFFFF)


def _pair_keys(gt_ids: np.ndarray, pred_ids: np.ndarray) -> np.ndarray:
    """``gt_id * 256^3 + pred_id`` per pixel (int64, H x W): a unique key per id pair."""
    return (gt_ids.astype(np.int64) << 24) | pred_ids


# --------------------------------------------------------------------------------------------
# the evaluator


def evaluate_panoptic(
    gt_json: str | os.PathLike | dict,
    pred_json: str | os.PathLike | dict,
    gt_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    *,
    categories: list[dict] | dict[int, dict] | None = None,
) -> PanopticResult:
    r"""PQ and the LRP Error (with its components) of a panoptic segmentation, per class.

    Matching (PQ's): a non-crowd GT segment and a predicted segment of the same class match
    when :math:`\mathrm{IoU} > 0.5`, with the predicted pixels in VOID (id 0) left out of the
    union. Per class, with :math:`\mathrm{TP}`, :math:`\mathrm{FP}`, :math:`\mathrm{FN}` the
    counts and :math:`\Sigma` the sum of the IoUs of the matches (thesis Eqs. (5.1), (5.2),
    (5.4)-(5.6), :math:`\tau = 0.5`):

    .. math::

        \mathrm{PQ} = \frac{\Sigma}{\mathrm{TP} + \frac12\mathrm{FP} + \frac12\mathrm{FN}},
        \quad
        \mathrm{LRP} = \frac{(\mathrm{TP} - \Sigma)/(1 - \tau) + \mathrm{FP} + \mathrm{FN}}
        {\mathrm{TP} + \mathrm{FP} + \mathrm{FN}},

        \mathrm{LRP}_\mathrm{Loc} = \frac{\mathrm{TP} - \Sigma}{\mathrm{TP}},\quad
        \mathrm{LRP}_\mathrm{FP} = \frac{\mathrm{FP}}{\mathrm{TP} + \mathrm{FP}},\quad
        \mathrm{LRP}_\mathrm{FN} = \frac{\mathrm{FN}}{\mathrm{TP} + \mathrm{FN}},

    with :math:`\mathrm{SQ} = \Sigma / \mathrm{TP}` (0 when :math:`\mathrm{TP} = 0`, as in the
    official code) and :math:`\mathrm{RQ} = \mathrm{PQ} / \mathrm{SQ}`. The two errors share
    their total matching error and differ only in its normaliser, :math:`1 - \mathrm{PQ}` dividing
    by :math:`2\,\mathrm{TP} + \mathrm{FP} + \mathrm{FN}` (thesis Eq. (5.8), App. G, Eq. (G.11)). An unmatched non-crowd
    GT is an FN; an unmatched prediction is an FP unless more than half of its pixels lie in
    VOID or in the crowd region of its own class.

    Where the official code divides by zero, this function returns NaN and leaves the value
    out of the means:

    * a class with :math:`\mathrm{TP} + \mathrm{FP} + \mathrm{FN} = 0` (nothing to evaluate):
      every value is NaN (the official per-class PQ/SQ/RQ show a 0.0 placeholder there) and
      the class is not counted in ``n``;
    * a component whose own denominator is 0 (Loc without TP, FP without predictions, FN without
      GT) is NaN and left out of that component's mean (as officially);
    * a split (All / Things / Stuff) with no class to average, or a component defined for no
      class of the split: the mean is NaN and ``n`` is 0 (the official code raises
      ``ZeroDivisionError``).

    Args:
        gt_json (str | PathLike | dict): COCO panoptic ground truth (``annotations`` with
            ``image_id``, ``file_name``, ``segments_info`` of ``id``, ``category_id``, ``area``,
            optional ``iscrowd``; ``categories`` with ``id``, ``name``, ``isthing``).
        pred_json (str | PathLike | dict): predictions in the same format (``annotations`` with
            ``segments_info`` of ``id``, ``category_id``; areas are counted from the PNG).
        gt_dir (str | PathLike): folder of the GT PNGs (``file_name`` of each annotation).
        pred_dir (str | PathLike): folder of the predicted PNGs.
        categories (list[dict] | dict[int, dict], optional): category definitions (``id``,
            ``isthing``, ``name``) to use instead of ``gt_json["categories"]``; also fixes the
            order of ``per_class`` and of the sums.

    Returns:
        PanopticResult: ``results`` for All / Things / Stuff and ``per_class``.

    Raises:
        ValueError: a missing or malformed JSON file or folder; a missing or unreadable PNG
            (the message names it); GT and predicted PNGs of different sizes; an image of the GT
            without a prediction; a segment id in a predicted PNG that is not in its
            ``segments_info``, or one in ``segments_info`` that is not in the PNG; a predicted
            segment of an unknown category; duplicate segment ids in one image; missing keys.

    Note:
        As in the official code, the GT ``area`` comes from the JSON and the predicted areas from
        the PNG; GT segments of unknown categories are not evaluated (with a ``UserWarning``).
        Sums run sequentially over images in ``gt_json`` order (the official code sums in
        worker processes and then adds the workers, so the last bits may differ).

    Example:
        >>> res = evaluate_panoptic("gt.json", "pred.json", "gt/", "pred/")  # doctest: +SKIP
        >>> res.results["All"]["pq"], res.results["All"]["lrp"]  # doctest: +SKIP

    Taught in: chapter "LRP Error".
    """
    gt_what = f"panoptic ground truth {describe_source(gt_json)}"
    pred_what = f"panoptic predictions {describe_source(pred_json)}"
    gt_doc = load_json(gt_json, what="panoptic ground truth")
    pred_doc = load_json(pred_json, what="panoptic predictions")
    gt_anns = _annotations(gt_doc, gt_what)
    pred_anns = _annotations(pred_doc, pred_what)
    if categories is None:
        if not isinstance(gt_doc, dict) or "categories" not in gt_doc:
            raise ValueError(f"{gt_what}: the ground truth has no 'categories' key")
        cats = _categories(gt_doc["categories"], gt_what)
    else:
        cats = _categories(categories, "categories")
    for name, d in (("gt_dir", gt_dir), ("pred_dir", pred_dir)):
        if not isinstance(d, (str, os.PathLike)) or not Path(d).is_dir():
            raise ValueError(f"`{name}` {d}: no such folder")

    cat_ids = np.asarray(sorted(cats), dtype=np.int64)
    k_n = len(cat_ids) + 1  # the last slot collects GT segments of unknown categories
    tp = np.zeros(k_n, dtype=np.int64)
    fp = np.zeros(k_n, dtype=np.int64)
    fn = np.zeros(k_n, dtype=np.int64)
    iou_sum = np.zeros(k_n, dtype=np.float64)

    def cat_index(c: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(cat_ids, c), max(len(cat_ids) - 1, 0))
        known = cat_ids[pos] == c if len(cat_ids) else np.zeros(len(c), dtype=bool)
        return np.where(known, pos, k_n - 1)

    preds = {}
    for ann in pred_anns:
        preds[ann["image_id"]] = ann
    pairs = []
    for ann in gt_anns:
        if ann["image_id"] not in preds:
            raise ValueError(f"{pred_what}: no prediction for the image with id {ann['image_id']}")
        pairs.append((ann, preds[ann["image_id"]]))
    unknown_gt = 0
    for ann, pann in pairs:  # in gt_json order: the sums run in that order
        pair, inter = _pair_counts(ann, pann, gt_dir, pred_dir)
        gs = _segments(ann, ("area", "iscrowd"), gt_what)
        ps = _segments(pann, (), pred_what)
        unknown_gt += int((cat_index(gs["category_id"]) == k_n - 1).sum())
        _accumulate_image(gs, ps, pair, inter, cat_index, ann["image_id"], pred_what, k_n,
                          tp, fp, fn, iou_sum)  # fmt: skip
    if unknown_gt:
        warnings.warn(
            f"{gt_what}: {unknown_gt} segment(s) of categories not in the categories list are "
            "not evaluated (as in the official code)",
            UserWarning,
            stacklevel=2,
        )
    return _summarize(cats, cat_ids, tp, fp, fn, iou_sum, len(gt_anns))


def _pair_counts(ann: dict, pann: dict, gt_dir, pred_dir) -> tuple[np.ndarray, np.ndarray]:
    """Read one image's two PNGs; every (gt id, pred id) pair present, as the key
    ``gt_id * 256^3 + pred_id`` (sorted), and its pixel count."""
    gt_ids = _read_ids(Path(gt_dir) / str(ann["file_name"]), "ground-truth")
    pred_path = Path(pred_dir) / str(pann["file_name"])
    pred_ids = _read_ids(pred_path, "prediction")
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f"prediction PNG {pred_path}: size {pred_ids.shape[1]}x{pred_ids.shape[0]} differs "
            f"from the ground truth's {gt_ids.shape[1]}x{gt_ids.shape[0]} "
            f"(image_id {ann['image_id']})"
        )
    return np.unique(_pair_keys(gt_ids, pred_ids), return_counts=True)


def _accumulate_image(gs, ps, pair, inter, cat_index, img_id, pred_what, k_n,
                      tp, fp, fn, iou_sum) -> None:  # fmt: skip
    """Match one image's segments and add its counts to ``tp``, ``fp``, ``fn``, ``iou_sum``.

    ``pair`` holds the sorted keys ``gt_id * 256^3 + pred_id`` present in the image and
    ``inter`` their pixel counts (the intersections).
    """
    pg, pp = pair // _OFFSET, pair % _OFFSET
    # predicted areas from the PNG, and the sanity checks of the official code
    labels, inv = np.unique(pp, return_inverse=True)
    counts = np.bincount(inv, weights=inter, minlength=len(labels)).astype(np.int64)
    counts = counts[labels != _VOID]
    labels = labels[labels != _VOID]
    p_order = np.argsort(ps["id"], kind="stable")
    p_ids = ps["id"][p_order]
    in_json = np.isin(labels, p_ids)
    if not in_json.all():
        raise ValueError(
            f"{pred_what}: in the image with id {img_id}, segment id {int(labels[~in_json][0])} is "
            "in the PNG but not in 'segments_info'"
        )
    in_png = np.isin(p_ids, labels)
    if not in_png.all():
        raise ValueError(
            f"{pred_what}: in the image with id {img_id}, segment id(s) "
            f"{p_ids[~in_png].tolist()[:10]} are in 'segments_info' but not in the PNG"
        )
    p_cat = cat_index(ps["category_id"][p_order])
    if (p_cat == k_n - 1).any():
        j = int(np.flatnonzero(p_cat == k_n - 1)[0])
        raise ValueError(
            f"{pred_what}: in the image with id {img_id}, segment id {int(p_ids[j])} has unknown "
            f"category_id {int(ps['category_id'][p_order][j])}"
        )
    p_area = counts.astype(np.float64)  # labels and p_ids are now the same sorted ids

    g_order = np.argsort(gs["id"], kind="stable")
    g_ids = gs["id"][g_order]
    g_cat = cat_index(gs["category_id"][g_order])
    g_area = gs["area"][g_order]
    g_crowd = gs["iscrowd"][g_order].astype(bool)

    gi = np.searchsorted(g_ids, pg)
    g_ok = gi < len(g_ids)
    g_ok[g_ok] = g_ids[gi[g_ok]] == pg[g_ok]
    pi = np.searchsorted(p_ids, pp)
    p_ok = (pp != _VOID) & (pi < len(p_ids))
    p_ok[p_ok] = p_ids[pi[p_ok]] == pp[p_ok]
    void_inter = np.zeros(len(p_ids), dtype=np.float64)
    v = (pg == _VOID) & p_ok
    void_inter[pi[v]] = inter[v]

    # matches: listed GT (non-crowd) and listed prediction of the same class, IoU > 0.5
    cand = np.flatnonzero(g_ok & p_ok)
    cand = cand[~g_crowd[gi[cand]]]
    cand = cand[g_cat[gi[cand]] == p_cat[pi[cand]]]
    union = p_area[pi[cand]] + g_area[gi[cand]] - inter[cand] - void_inter[pi[cand]]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter[cand] / union
    hit = iou > 0.5
    m_g, m_p, m_iou = gi[cand][hit], pi[cand][hit], iou[hit]
    np.add.at(tp, g_cat[m_g], 1)
    np.add.at(iou_sum, g_cat[m_g], m_iou)  # sequential, in pair order, as the official loop
    g_matched = np.zeros(len(g_ids), dtype=bool)
    g_matched[m_g] = True
    p_matched = np.zeros(len(p_ids), dtype=bool)
    p_matched[m_p] = True

    # false negatives: unmatched non-crowd GTs
    np.add.at(fn, g_cat[~g_matched & ~g_crowd], 1)
    # false positives: unmatched predictions, unless > half of them is VOID or own-class crowd
    # (the official code keeps one crowd segment per class: the last one in 'segments_info')
    crowd_of_cat = {}
    for j in np.flatnonzero(gs["iscrowd"]):
        crowd_of_cat[int(cat_index(gs["category_id"][j : j + 1])[0])] = int(gs["id"][j])
    ignored_px = void_inter.copy()
    if crowd_of_cat:
        crowd_id = np.array([crowd_of_cat.get(int(c), -1) for c in p_cat], dtype=np.int64)
        has = crowd_id >= 0
        if has.any():
            key = crowd_id[has] * _OFFSET + p_ids[has]
            pos = np.minimum(np.searchsorted(pair, key), len(pair) - 1)
            found = pair[pos] == key
            extra = np.where(found, inter[pos], 0)
            ignored_px[has] += extra
    unmatched = ~p_matched
    counted = unmatched & ~(ignored_px / p_area > 0.5)
    np.add.at(fp, p_cat[counted], 1)


def _nan_mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _summarize(cats, cat_ids, tp, fp, fn, iou_sum, n_images) -> PanopticResult:
    per_class: dict[int, dict[str, float]] = {}
    nan = math.nan
    for cid in cats:  # categories order, as the official sums
        k = int(np.searchsorted(cat_ids, cid))
        t, f_p, f_n, s = int(tp[k]), int(fp[k]), int(fn[k]), float(iou_sum[k])
        row: dict[str, float] = {}
        if t + f_p + f_n == 0:
            row.update(pq=nan, sq=nan, rq=nan, lrp=nan, lrp_loc=nan, lrp_fp=nan, lrp_fn=nan)
        else:
            row["pq"] = s / (t + 0.5 * f_p + 0.5 * f_n)
            row["sq"] = s / t if t != 0 else 0.0
            row["rq"] = t / (t + 0.5 * f_p + 0.5 * f_n)
            row["lrp"] = ((t - s) / (1 - _TAU) + f_p + f_n) / (t + f_p + f_n)
            row["lrp_loc"] = (t - s) / t if t != 0 else nan
            row["lrp_fp"] = f_p / (t + f_p) if t + f_p != 0 else nan
            row["lrp_fn"] = f_n / (t + f_n) if t + f_n != 0 else nan
        row.update(tp=t, fp=f_p, fn=f_n, iou_sum=s)
        per_class[int(cid)] = row

    results: dict[str, dict[str, float]] = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        rows = [
            per_class[cid]
            for cid, info in cats.items()
            if (isthing is None or info["isthing"] == isthing)
            and not math.isnan(per_class[cid]["lrp"])
        ]
        n = len(rows)
        res = {
            key: (sum(r[key] for r in rows) / n if n else nan) for key in ("pq", "sq", "rq", "lrp")
        }
        for key in ("lrp_loc", "lrp_fp", "lrp_fn"):
            res[key] = _nan_mean([r[key] for r in rows])
        res["n"] = n
        results[name] = res
    return PanopticResult(
        results=results,
        per_class=per_class,
        params={"categories": {int(k): dict(v) for k, v in cats.items()}, "n_images": n_images},
    )
