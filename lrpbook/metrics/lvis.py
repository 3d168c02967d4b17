"""LVIS (federated) evaluation: AP of the LVIS API and oLRP with its components, in one pass.

LVIS :cite:p:`gupta2019lvis` is a long-tailed dataset (over a thousand classes, many with a
handful of examples) that is *not exhaustively annotated*. Its evaluation is therefore
*federated*: a detection of class ``c`` on an image only counts when the image is known to hold
``c`` (a GT of ``c``) or known not to hold it (``c`` in the image's ``neg_category_ids``), and an
unmatched detection of a class listed in the image's ``not_exhaustive_category_ids`` is ignored
rather than punished. Classes are split into rare / common / frequent groups by the number of
training images they appear in, and AP and oLRP are reported for each group.

:func:`evaluate_lvis` reproduces the LVIS API (``lvis`` 0.5.3) for AP/AR and the LRP-extended fork
of it in the official LRP-Error code for oLRP, number for number, while vectorising the work:
detections and ground truths are sorted once into (class, image) groups and the IoUs, the greedy
matching and the accumulation run in the compiled kernels of the COCO-style evaluator
(``lrpbook.metrics._match``).

Taught in: chapter "LRP Error".
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrpbook.metrics import _match
from lrpbook.metrics._common import (
    _accumulate,
    _column,
    _groups,
    _gt_counts,
    _ids,
    _isin_sorted,
    _mean_present,
    _mean_valid,
    _numbers,
    _unique_ids,
    check_box_sizes,
)
from lrpbook.metrics._io import (
    Stats,
    check_not_swapped,
    describe_source,
    gc_paused,
    load_json,
    nan_to_none,
    progress_bar,
    short_repr,
)

__all__ = ["evaluate_lvis", "LVISResult", "LVIS_STATS_KEYS", "LVIS_OFFICIAL_KEYS"]

#: The keys of :attr:`LVISResult.stats`, in order (``get_results()`` of the official LVIS fork,
#: without the thresholds, which are in :attr:`LVISResult.thresholds`), with the oLRP components
#: spelt as in :data:`~lrpbook.metrics.STATS_KEYS` (the official ``"oLRP LOC"``, ``"oLRP FP"``
#: and ``"oLRP FN"`` are still readable: :data:`LVIS_OFFICIAL_KEYS`).
LVIS_STATS_KEYS: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf",
    "AR@300", "ARs@300", "ARm@300", "ARl@300",
    "oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN", "oLRPr", "oLRPc", "oLRPf",
)  # fmt: skip

#: Spellings of the official LVIS fork, still readable from :attr:`LVISResult.stats`.
LVIS_OFFICIAL_KEYS: dict[str, str] = {
    "oLRP LOC": "oLRP_Loc", "oLRP FP": "oLRP_FP", "oLRP FN": "oLRP_FN",
}  # fmt: skip

_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
_REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_AREA_LABELS = ("all", "small", "medium", "large")
_AREA_RNG = np.array(
    [[0.0**2, 1e5**2], [0.0**2, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e5**2]], dtype=np.float64
)
_FREQS = ("r", "c", "f")


@dataclass
class LVISResult:
    """Result of :func:`evaluate_lvis`: LVIS AP/AR and oLRP, per frequency group and per class.

    Attributes:
        stats (dict[str, float]): the summary, keys in this order:
            ``AP, AP50, AP75, APs, APm, APl, APr, APc, APf, AR@300, ARs@300, ARm@300, ARl@300,
            oLRP, oLRP_Loc, oLRP_FP, oLRP_FN, oLRPr, oLRPc, oLRPf`` (the official spellings
            ``oLRP LOC``, ``oLRP FP``, ``oLRP FN`` are accepted as aliases). As in the LVIS API, the
            recall keys say ``@300`` whatever ``max_dets`` the detections were capped at.
            ``-1`` means "nothing to evaluate".
        per_class (list[dict]): one row per category (ascending id) at area ``all``:
            ``category_id``, ``name``, ``frequency``, ``oLRP``, ``oLRP_Loc``, ``oLRP_FP``,
            ``oLRP_FN``, ``threshold`` (LRP-optimal score threshold) and ``AP``. NaN marks an
            undefined component (no true positive), ``-1`` a class without GT.
        thresholds (dict[int, float]): ``{category_id: LRP-optimal threshold}`` at area ``all``,
            not floored (the official printout floors them to 3 decimals:
            ``round(thr - 0.0005, 3)``). NaN: no TP; ``-1``: no GT.
        arrays (dict[str, ndarray]): ``olrp``, ``olrp_loc``, ``olrp_fp``, ``olrp_fn``,
            ``lrp_opt_thr`` as ``[K, A]`` arrays (K categories in ascending id, A area ranges
            ``all, small, medium, large``), ``precision`` ``[T, R, K, A]`` and ``recall``
            ``[T, K, A]`` as the LVIS API computes them (T = 10 IoU thresholds, R = 101 recall
            thresholds; ``-1`` where absent).
        params (dict): ``cat_ids``, ``cat_names``, ``frequencies``, ``freq_groups`` (indices into
            ``cat_ids`` for r, c, f), ``img_ids``, ``area_labels``, ``area_ranges``, ``max_dets``,
            ``iou_thrs``, ``rec_thrs``.

    Taught in: chapter "LRP Error".
    """

    stats: dict[str, float]
    per_class: list[dict[str, Any]]
    thresholds: dict[int, float]
    arrays: dict[str, np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return short_repr(self, ["stats", "per_class", "thresholds", "arrays"])

    def to_dict(self, *, per_class: bool = True) -> dict[str, Any]:
        """JSON-ready ``{"stats": ..., "per_class": [...]}`` with NaN written as ``None``."""
        out: dict[str, Any] = {"stats": dict(self.stats)}
        if per_class:
            out["per_class"] = [dict(row) for row in self.per_class]
        return nan_to_none(out)

    def floored_thresholds(self) -> list[float]:
        """The thresholds as the official ``get_results()["LRP Opt Thr"]`` lists them.

        Floored to 3 decimals with ``round(thr - 0.0005, 3)``, in ascending category id; ``-1``
        stays ``-1`` (no GT) and NaN stays NaN (no TP).
        """
        thr = self.arrays["lrp_opt_thr"][:, 0]
        return [float(v) for v in np.round(thr - 0.5 * 10 ** (-3), 3)]

    def summary(self, *, per_class: bool = False) -> str:
        """A readable summary: one line per statistic (and the per-class table)."""
        official = {new: old for old, new in LVIS_OFFICIAL_KEYS.items()}  # the official labels
        lines = [f"{official.get(k, k):<12} = {_fmt(v)}" for k, v in self.stats.items()]
        if per_class:
            keys = ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN", "threshold", "AP")
            lines += ["", f"{'id':>6} {'name':<20} {'freq':>4}" + "".join(f"{k:>10}" for k in keys)]
            for r in self.per_class:
                lines.append(
                    f"{r['category_id']:>6} {str(r['name'])[:20]:<20} {r['frequency']:>4}"
                    + "".join(f"{_fmt(r[k]):>10}" for k in keys)
                )
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:0.4f}"
    return str(v)


# --------------------------------------------------------------------------------------------
# input parsing and checks


def _pairs(imgs: list, img_idx: np.ndarray, key: str, cat_ids: np.ndarray, what: str) -> np.ndarray:
    """Sorted unique keys ``image_index * K + category_index`` of an image-level category list.

    ``img_idx[i]`` is the index of ``imgs[i]`` among the sorted image ids. Category ids that are
    not in ``cat_ids`` are dropped (no evaluated detection can be of such a class).
    """
    rows, cats = [], []
    for i, im in enumerate(imgs):
        lst = im.get(key, [])
        if not isinstance(lst, list):
            raise ValueError(f"{what}: image at index {i}: '{key}' must be a list of category ids")
        if lst:
            rows.append(np.full(len(lst), img_idx[i], dtype=np.int64))
            cats.append(_ids(lst, what, f"image at index {i}, '{key}' entry", "category id"))
    if not rows:
        return np.zeros(0, dtype=np.int64)
    row, cat = np.concatenate(rows), np.concatenate(cats)
    ok = _isin_sorted(cat, cat_ids)
    return np.unique(row[ok] * len(cat_ids) + np.searchsorted(cat_ids, cat[ok]))


def _parse_gt(gt: Any, what: str) -> dict[str, Any]:
    if not isinstance(gt, dict):
        raise ValueError(
            f"{what}: the ground truth must be a JSON object; got a {type(gt).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"{what}: the ground truth has no '{key}' key")
        if not isinstance(gt[key], list):
            raise ValueError(f"{what}: '{key}' must be a list; got {type(gt[key]).__name__}")
    imgs, anns, cats = gt["images"], gt["annotations"], gt["categories"]
    img_ids_raw = _ids(_column(imgs, "id", what, "image"), what, "image", "id")
    img_ids = _unique_ids(img_ids_raw, what, "image")
    cat_ids_raw = _ids(_column(cats, "id", what, "category"), what, "category", "id")
    cat_ids = _unique_ids(cat_ids_raw, what, "category")
    by_id = {int(c["id"]): c for c in cats}
    names, freqs = [], []
    for cid in cat_ids.tolist():
        f = by_id[cid].get("frequency")
        if f not in _FREQS:
            raise ValueError(
                f"{what}: category {cid}: 'frequency' must be one of 'r', 'c', 'f'; got {f!r}"
            )
        freqs.append(f)
        names.append(str(by_id[cid].get("name", cid)))
    img_idx = np.searchsorted(img_ids, img_ids_raw)
    neg = _pairs(imgs, img_idx, "neg_category_ids", cat_ids, what)
    nel = _pairs(imgs, img_idx, "not_exhaustive_category_ids", cat_ids, what)

    ann_ids = _ids(_column(anns, "id", what, "annotation"), what, "annotation", "id")
    _unique_ids(ann_ids, what, "annotation")
    a_img = _ids(_column(anns, "image_id", what, "annotation"), what, "annotation", "image_id")
    a_cat = _ids(
        _column(anns, "category_id", what, "annotation"), what, "annotation", "category_id"
    )
    area = _numbers(_column(anns, "area", what, "annotation"), what, "annotation", "area")
    box = _numbers(_column(anns, "bbox", what, "annotation"), what, "annotation", "bbox", 4)
    ignore = np.asarray([bool(a.get("ignore", 0)) for a in anns], dtype=bool)
    on_img = _isin_sorted(a_img, img_ids)
    if not on_img.all():
        i = int(np.flatnonzero(~on_img)[0])
        raise ValueError(
            f"{what}: annotation at index {i} is on image_id {int(a_img[i])}, which is not in "
            "the ground truth's images"
        )
    # the LVIS API loads only annotations of listed categories and with 0 < area < inf
    # (get_ann_ids)
    keep = _isin_sorted(a_cat, cat_ids) & (area > 0)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"{what}: {dropped} annotation(s) of unlisted categories or with "
            "area <= 0 are not evaluated (as in the LVIS API)",
            UserWarning,
            stacklevel=4,
        )
    return {
        "img_ids": img_ids, "cat_ids": cat_ids, "cat_names": names, "freqs": freqs,
        "neg": neg, "nel": nel,
        "img": np.searchsorted(img_ids, a_img)[keep], "cat": np.searchsorted(cat_ids, a_cat)[keep],
        "area": area[keep], "box": box[keep], "ignore": ignore[keep],
    }  # fmt: skip


def _parse_dt(dt: Any, g: dict, max_dets: int, what: str) -> dict[str, Any]:
    if isinstance(dt, dict) and "annotations" in dt:
        dt = dt["annotations"]
    if not isinstance(dt, list):
        raise ValueError(f"{what}: detections must be a JSON array; got a {type(dt).__name__}")
    img = _ids(_column(dt, "image_id", what, "detection"), what, "detection", "image_id")
    cat = _ids(_column(dt, "category_id", what, "detection"), what, "detection", "category_id")
    score = _numbers(_column(dt, "score", what, "detection"), what, "detection", "score")
    box = _numbers(_column(dt, "bbox", what, "detection"), what, "detection", "bbox", 4)
    known = _isin_sorted(img, g["img_ids"])
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise ValueError(
            f"{what}: detection at index {i} is on image_id {int(img[i])}, which is not in the "
            "ground truth's images"
        )
    zero = check_box_sizes(box, what, dataset="LVIS", stacklevel=3,
                           zero_note="the LVIS API drops zero-area detections, and so do we")
    img_idx = np.searchsorted(g["img_ids"], img)
    n = len(dt)
    keep = np.ones(n, dtype=bool)
    if max_dets >= 0 and n:
        # LVISResults: the max_dets highest scores per image over all classes (stable: ties in
        # input order), before any other filter
        o = np.argsort(-score, kind="stable")
        o = o[np.argsort(img_idx[o], kind="stable")]
        start = np.r_[0, np.flatnonzero(np.diff(img_idx[o])) + 1]
        rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
        keep[o[rank >= max_dets]] = False
    known_cat = _isin_sorted(cat, g["cat_ids"])
    if not known_cat[keep].all():
        unknown = sorted(set(cat[keep & ~known_cat].tolist()))
        warnings.warn(
            f"{what}: {int((keep & ~known_cat).sum())} detection(s) of category id(s) "
            f"{unknown[:10]} not in the ground truth's categories are ignored (as in the LVIS API)",
            UserWarning,
            stacklevel=4,
        )
    keep &= known_cat
    keep &= ~zero  # after the max_dets cap, as LVISResults caps before get_ann_ids filters
    cat_idx = np.where(known_cat, np.searchsorted(g["cat_ids"], cat), 0)
    # federated filter: the class is annotated in the image or listed as negative there
    key = img_idx * len(g["cat_ids"]) + cat_idx
    pos = np.unique(g["img"] * len(g["cat_ids"]) + g["cat"])
    keep &= _isin_sorted(key, pos) | _isin_sorted(key, g["neg"])
    return {
        "img": img_idx[keep], "cat": cat_idx[keep], "score": score[keep], "box": box[keep],
        "area": box[keep, 2] * box[keep, 3], "not_exhaustive": _isin_sorted(key[keep], g["nel"]),
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# the evaluator


def evaluate_lvis(
    gt: str | os.PathLike | dict,
    dt: str | os.PathLike | list,
    *,
    max_dets: int = 300,
    progress: bool = False,
) -> LVISResult:
    r"""LVIS box AP/AR and the optimal LRP (oLRP) with its components, federated, in one pass.

    Detections are capped at ``max_dets`` per image (over all classes), filtered by the
    federated rule, matched greedily to the GTs of their image and class in score order at the
    IoU thresholds 0.50:0.95 (a GT with the ``ignore`` flag, or outside the area range, is
    ignored; an unmatched detection outside the area range, or of a class that is not
    exhaustively annotated in its image, is ignored), then pooled per class over images.
    At IoU threshold :math:`\tau = 0.5`, the LRP Error of the :math:`i` highest-scoring
    detections (thesis Eq. (5.2)) is

    .. math::

        \mathrm{LRP}_i = \frac{1}{\mathrm{TP}_i + \mathrm{FP}_i + \mathrm{FN}_i}
        \Big(\sum_{\text{TP}} \frac{1 - \mathrm{IoU}}{1 - \tau} + \mathrm{FP}_i + \mathrm{FN}_i\Big),

    and oLRP is its first minimum over :math:`i` (Eq. (5.7)); the components at the minimum
    are the mean :math:`1 - \mathrm{IoU}` of the TPs, :math:`\mathrm{FP}/(\mathrm{TP} +
    \mathrm{FP})` and :math:`\mathrm{FN}/|\mathcal{G}|` (Eqs. (5.4)-(5.6)), and the score of the
    detection there is the class' LRP-optimal threshold. The means over classes (``oLRP``, its
    components, and ``oLRPr/c/f`` over the rare, common and frequent classes) drop classes
    where the value is NaN (no TP) or ``-1`` (no GT), separately for each component.

    Implements thesis Eqs. (5.2), (5.4)-(5.7) with the semantics of the official LRP-Error fork
    of the LVIS API (``lvis`` 0.5.3), whose AP/AR are those of the LVIS API.

    Args:
        gt (str | PathLike | dict): LVIS ground truth: ``images`` (with ``neg_category_ids`` and
            ``not_exhaustive_category_ids``; missing lists mean empty), ``annotations``
            (``id``, ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``area``, optional
            ``ignore``) and ``categories`` (``id``, ``name``, ``frequency`` in ``r``/``c``/``f``),
            as a ``.json``/``.json.gz`` path or a dict.
        dt (str | PathLike | list): box results (``image_id``, ``category_id``, ``bbox``,
            ``score``), path or list.
        max_dets (int): detections kept per image, highest scores first. Default 300 (the
            LVIS protocol); a negative value keeps all.
        progress (bool): show a progress bar (tqdm, on stderr). Default ``False``.

    Returns:
        LVISResult: ``stats``, ``per_class`` rows, unfloored
        ``thresholds`` and the ``arrays``.

    Raises:
        ValueError: a missing or malformed file, missing keys, duplicate image / category /
            annotation ids, a category without a valid ``frequency``, a detection on an image id
            that is not in ``gt["images"]``, a GT annotation on such an image id, a NaN/inf score,
            box or area, a string where a number belongs, or a detection box with negative width
            or height. The message names the file and the offending index.
        TypeError: ``gt`` or ``dt`` of another type.

    Note:
        Differences from the official code, all on inputs it cannot handle: an empty detection
        list is accepted (every class with GT gets oLRP 1 and AP 0; the official ``LVISResults``
        crashes on it); duplicate ids and negative boxes are errors (officially, duplicate
        ids silently alias each other); zero-area detections are dropped as the LVIS API drops
        them, but with a ``UserWarning`` that counts them.
        As in the LVIS API, detections of categories absent from ``gt["categories"]`` and GT
        annotations with ``area <= 0`` are not evaluated (with a ``UserWarning``).

    Example:
        >>> res = evaluate_lvis("lvis_val.json", "dets.json")  # doctest: +SKIP
        >>> res.stats["AP"], res.stats["oLRP"], res.stats["oLRPr"]  # doctest: +SKIP

    Taught in: chapter "LRP Error".
    """
    if isinstance(max_dets, bool) or not isinstance(max_dets, (int, np.integer)):
        raise TypeError(f"`max_dets` must be an int; got {type(max_dets).__name__}")
    gt_what, dt_what = describe_source(gt), describe_source(dt)
    bar = progress_bar(total=3, enabled=progress, desc="evaluate_lvis", unit="stage")
    bar.set_postfix_str("loading")
    try:
        with gc_paused():
            gt_doc = load_json(gt, what="ground truth")
            dt_doc = load_json(dt, what="detections")
            check_not_swapped(gt_doc, dt_doc, gt_what, dt_what)
            g = _parse_gt(gt_doc, f"ground truth {gt_what}")
            d = _parse_dt(dt_doc, g, int(max_dets), f"detections {dt_what}")
            del gt_doc, dt_doc
        bar.update(1)
        bar.set_postfix_str("matching")
        return _evaluate_parsed(g, d, int(max_dets), bar)
    finally:
        bar.close()


def _evaluate_parsed(g: dict, d: dict, max_dets: int, bar: Any) -> LVISResult:
    n_img, n_cat = max(len(g["img_ids"]), 1), len(g["cat_ids"])
    n_t, n_a = len(_IOU_THRS), len(_AREA_LABELS)

    # GTs sorted by (class, image), input order inside; detections by (class, image, -score),
    # ties in input order
    gkey = g["cat"] * n_img + g["img"]
    go = np.argsort(gkey, kind="stable")
    gkey = gkey[go]
    dkey = d["cat"] * n_img + d["img"]
    do = np.lexsort((-d["score"], dkey))
    dkey = dkey[do]
    _, g0, g1, d0, d1, off = _groups(gkey, dkey)

    gt_box = np.ascontiguousarray(g["box"][go])
    gt_area = np.ascontiguousarray(g["area"][go])
    gt_ig = np.ascontiguousarray(g["ignore"][go])
    no_crowd = np.zeros(len(go), dtype=np.bool_)  # LVIS has no crowd regions: plain IoU
    dt_box = np.ascontiguousarray(d["box"][do])
    ious = np.empty(int(off[-1]), dtype=np.float64)
    _match.box_iou_groups(dt_box, gt_box, no_crowd, d0, d1, g0, g1, off, ious)

    # An unmatched detection is ignored when its area is outside the range; LVIS also ignores
    # it when its class is not exhaustively annotated in its image. An infinite area makes the
    # kernel's area test say "outside" for every range.
    dt_area = np.where(d["not_exhaustive"][do], np.inf, d["area"][do])
    n_d = len(do)
    matched = np.zeros((n_d, n_a, n_t), dtype=np.bool_)
    ignored = np.zeros((n_d, n_a, n_t), dtype=np.bool_)
    match_iou = np.zeros((n_d, n_a), dtype=np.float64)
    _match.greedy_match_groups(ious, off, d0, d1, g0, g1, no_crowd, gt_ig, gt_area,
                               np.ascontiguousarray(dt_area), _AREA_RNG, _IOU_THRS,
                               matched, ignored, match_iou)  # fmt: skip
    del ious
    bar.update(1)
    bar.set_postfix_str("accumulating")

    npig = _gt_counts(g["cat"][go], gt_ig, gt_area, _AREA_RNG, n_cat)
    no_cap = np.zeros(n_d, dtype=np.int64)  # LVIS has no per-class cap
    acc = _accumulate(dkey // n_img, np.ascontiguousarray(d["score"][do]), no_cap, matched,
                      ignored, match_iou, npig, np.array([1], dtype=np.int64), _REC_THRS,
                      _IOU_THRS)  # fmt: skip
    precision, recall, olrp = acc["precision"], acc["recall"], acc["olrp"]
    bar.update(1)
    bar.set_postfix_str("summarizing")
    return _summarize(g, max_dets, precision[..., 0], recall[..., 0], olrp[:, :, 0, :])


def _summarize(g: dict, max_dets: int, precision, recall, olrp) -> LVISResult:
    freq_groups = [[k for k, f in enumerate(g["freqs"]) if f == lbl] for lbl in _FREQS]

    def ap(iou=None, area=0, cats=None):
        s = precision if iou is None else precision[np.where(iou == _IOU_THRS)[0]]
        s = s[:, :, :, area] if cats is None else s[:, :, cats, area]
        return _mean_present(s)

    def ar(area=0):
        s = recall[:, :, area]
        return _mean_present(s)

    stats: dict[str, float] = {
        "AP": ap(), "AP50": ap(0.5), "AP75": ap(0.75),
        "APs": ap(area=1), "APm": ap(area=2), "APl": ap(area=3),
        "APr": ap(cats=freq_groups[0]), "APc": ap(cats=freq_groups[1]),
        "APf": ap(cats=freq_groups[2]),
        "AR@300": ar(), "ARs@300": ar(1), "ARm@300": ar(2), "ARl@300": ar(3),
        "oLRP": _mean_valid(olrp[:, 0, 0]), "oLRP_Loc": _mean_valid(olrp[:, 0, 1]),
        "oLRP_FP": _mean_valid(olrp[:, 0, 2]), "oLRP_FN": _mean_valid(olrp[:, 0, 3]),
    }  # fmt: skip
    for lbl, grp in zip(_FREQS, freq_groups):
        stats[f"oLRP{lbl}"] = _mean_valid(olrp[grp, 0, 0])
    cat_ids = g["cat_ids"].tolist()
    per_class = []
    for k, cid in enumerate(cat_ids):
        p = precision[:, :, k, 0]
        per_class.append({
            "category_id": int(cid),
            "name": g["cat_names"][k],
            "frequency": g["freqs"][k],
            "oLRP": float(olrp[k, 0, 0]),
            "oLRP_Loc": float(olrp[k, 0, 1]),
            "oLRP_FP": float(olrp[k, 0, 2]),
            "oLRP_FN": float(olrp[k, 0, 3]),
            "threshold": float(olrp[k, 0, 4]),
            "AP": _mean_present(p),
        })  # fmt: skip
    arrays = {
        name: np.ascontiguousarray(olrp[:, :, c])
        for c, name in enumerate(("olrp", "olrp_loc", "olrp_fp", "olrp_fn", "lrp_opt_thr"))
    }
    arrays["precision"] = precision
    arrays["recall"] = recall
    return LVISResult(
        stats=Stats(stats, LVIS_OFFICIAL_KEYS),
        per_class=per_class,
        thresholds={int(cid): float(olrp[k, 0, 4]) for k, cid in enumerate(cat_ids)},
        arrays=arrays,
        params={
            "cat_ids": cat_ids,
            "cat_names": list(g["cat_names"]),
            "frequencies": list(g["freqs"]),
            "freq_groups": freq_groups,
            "img_ids": g["img_ids"].tolist(),
            "area_labels": list(_AREA_LABELS),
            "area_ranges": _AREA_RNG.tolist(),
            "max_dets": max_dets,
            "iou_thrs": _IOU_THRS.copy(),
            "rec_thrs": _REC_THRS.copy(),
        },
    )
