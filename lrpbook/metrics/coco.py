"""One fast pass for COCO AP and the optimal LRP (oLRP): bbox, segm and keypoints.

:func:`evaluate` reproduces, number for number, the LRP-extended COCO API of the official
LRP-Error code (which equals pycocotools for AP/AR) while vectorising the work: detections and
ground truths are sorted once into (class, image) groups, similarities are computed per group
(compiled loops for boxes, pycocotools' RLE routines for masks, vectorised numpy for OKS), and the
greedy matching and the accumulation run in compiled kernels (:mod:`lrpbook.metrics._match`).
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
    _check_finite,
    _column,
    _float_array,
    _groups,
    _gt_counts,
    _ids,
    _isin_sorted,
    _locate_sorted,
    _mean_present,
    _mean_valid,
    _order_by_key_score,
    _unique_ids,
    check_box_sizes,
)
from lrpbook.metrics._io import (
    check_not_swapped,
    describe_source,
    gc_paused,
    load_json,
    nan_to_none,
    progress_bar,
    short_repr,
)

__all__ = ["EvalResult", "evaluate", "STATS_KEYS"]

#: The keys of ``EvalResult.stats`` per ``iou_type``, in order (the LRP-extended COCO API).
STATS_KEYS: dict[str, tuple[str, ...]] = {
    "bbox": (
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
        "oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN", "oLRP_s", "oLRP_m", "oLRP_l",
    ),
    "keypoints": (
        "AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl",
        "oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN", "oLRP_m", "oLRP_l",
    ),
}  # fmt: skip
STATS_KEYS["segm"] = STATS_KEYS["bbox"]

_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
_REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_KPT_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07,
              0.87, 0.87, 0.89, 0.89])
    / 10.0
)  # fmt: skip
_AREA = {
    "all": (0.0**2, 1e5**2),
    "small": (0.0**2, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


@dataclass
class EvalResult:
    """Result of :func:`evaluate`: COCO AP/AR, oLRP and its components, per class and in full.

    Attributes:
        iou_type (str): ``"bbox"``, ``"segm"`` or ``"keypoints"``.
        stats (dict[str, float]): the summary, keys in the order of :data:`STATS_KEYS` (the
            LRP-extended COCO API). ``-1`` means "nothing to evaluate" (no GT in that range).
        per_class (list[dict]): one row per GT category (ascending id) at area ``all`` and the
            largest ``maxDets``: ``category_id``, ``name``, ``oLRP``, ``oLRP_Loc``, ``oLRP_FP``,
            ``oLRP_FN``, ``threshold`` (the LRP-optimal score threshold), ``AP`` (mean precision
            over IoU 0.50:0.95, ``-1`` if no GT) and ``recall_iou50``. NaN marks an undefined
            component (a class without true positives); ``-1`` a class without GT.
        size_details (dict[str, float]): ``oLRP_{Loc,FP,FN}_{s,m,l}`` (keypoints: ``m``, ``l``),
            the component means per area range, which the official code only prints.
        precision (ndarray[T, R, K, A, M]): interpolated precision, ``-1`` where absent.
        recall (ndarray[T, K, A, M]): recall at the last detection, ``-1`` where absent.
        scores (ndarray[T, R, K, A, M]): the score at each recall threshold.
        olrp, olrp_loc, olrp_fp, olrp_fn, lrp_opt_thr (ndarray[K, A, M]): oLRP, its components
            and the LRP-optimal threshold per class, area range and maxDets.
        params (dict): ``cat_ids``, ``cat_names``, ``img_ids``, ``area_labels``, ``area_ranges``,
            ``max_dets``, ``iou_thrs``, ``rec_thrs``.

    Taught in: chapter "LRP Error".
    """

    iou_type: str
    stats: dict[str, float]
    per_class: list[dict[str, Any]]
    size_details: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    olrp: np.ndarray
    olrp_loc: np.ndarray
    olrp_fp: np.ndarray
    olrp_fn: np.ndarray
    lrp_opt_thr: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    _curve_data: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return short_repr(self, ["iou_type", "stats", "per_class", "precision", "recall",
                                 "olrp", "lrp_opt_thr"])  # fmt: skip

    def lrp_curve(self, category_id: int, *, area: str = "all") -> dict[str, np.ndarray]:
        """The LRP Error (and components) at every position of one class' score-sorted list.

        The s-LRP curve of thesis Fig. 5.3(c) at IoU threshold 0.5 and the largest maxDets:
        position ``i`` keeps the ``i + 1`` highest-scoring detections (pooled over images, ties in
        image-id then input order). Its first minimum is the class' oLRP; its last value is the
        LRP Error of all detections taken as hard predictions.

        Args:
            category_id (int): a category of the ground truth.
            area (str): area range label (``"all"``, ``"small"``, ...). Default ``"all"``.

        Returns:
            dict[str, ndarray[D]]: ``score``, ``lrp``, ``loc``, ``fp``, ``fn``, ``tp``, ``n_fp``
            (running counts) and ``ignored`` (detections that count neither as TP nor as FP).

        Raises:
            ValueError: unknown category or area, or a class without ground truth in that range.
        """
        if self._curve_data is None:
            raise ValueError("this result carries no per-detection data")
        cd = self._curve_data
        ids = self.params["cat_ids"]
        if category_id not in ids:
            raise ValueError(f"category_id {category_id} is not among the categories {ids}")
        if area not in self.params["area_labels"]:
            raise ValueError(f"area must be one of {self.params['area_labels']}; got {area!r}")
        k, a = ids.index(category_id), self.params["area_labels"].index(area)
        npig = int(cd["npig"][k, a])
        if npig == 0:
            raise ValueError(
                f"category_id {category_id} has no ground truth in area range {area!r}"
            )
        sel = cd["order"][cd["cls_start"][k] : cd["cls_start"][k + 1]]
        ign = cd["ignored"][a, sel]
        tp_flag = cd["matched"][a, sel] & ~ign
        fp_flag = ~cd["matched"][a, sel] & ~ign
        tp = np.cumsum(tp_flag)
        n_fp = np.cumsum(fp_flag)
        loc = tp - np.cumsum(np.where(tp_flag, cd["match_iou"][a, sel], 0.0))
        fn = npig - tp
        tau = self.params["iou_thrs"][0]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "score": cd["scores"][sel],
                "lrp": (loc / (1 - tau) + n_fp + fn) / (tp + n_fp + fn),
                "loc": loc / tp,
                "fp": n_fp / (tp + n_fp),
                "fn": fn / npig,
                "tp": tp,
                "n_fp": n_fp,
                "ignored": ign,
            }

    @property
    def thresholds(self) -> dict[int, float]:
        """LRP-optimal score threshold per category id (area all, largest maxDets).

        NaN for a class without true positives, ``-1`` for a class without GT.
        """
        return {row["category_id"]: row["threshold"] for row in self.per_class}

    def to_dict(self, *, per_class: bool = True) -> dict[str, Any]:
        """JSON-ready ``{"stats": ..., "per_class": [...]}`` with NaN written as ``None``."""
        out: dict[str, Any] = {"stats": dict(self.stats)}
        if per_class:
            keys = ("category_id", "name", "oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN", "threshold")
            out["per_class"] = [{k: row[k] for k in keys} for row in self.per_class]
        return nan_to_none(out)

    def summary(self, *, per_class: bool = False) -> str:
        """A readable COCO-style summary with the LRP components (and the per-class table)."""
        return format_summary(self, per_class=per_class)


def format_summary(res: EvalResult, *, per_class: bool = False) -> str:
    """Text summary of an :class:`EvalResult` (used by the CLI)."""
    kp = res.iou_type == "keypoints"
    md = res.params["max_dets"][-1]
    lines = []
    ap = "Average Precision  (AP) @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    ar = "Average Recall     (AR) @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    lrp = "{:<22s}     @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    s = res.stats
    rows_ap = [("AP", "0.50:0.95", "all"), ("AP50", "0.50", "all"), ("AP75", "0.75", "all")]
    rows_ap += [] if kp else [("APs", "0.50:0.95", "small")]
    rows_ap += [("APm", "0.50:0.95", "medium"), ("APl", "0.50:0.95", "large")]
    for key, iou, area in rows_ap:
        lines.append(ap.format(iou, area, md, s[key]))
    if kp:
        rows_ar = [("AR", "0.50:0.95", "all", md), ("AR50", "0.50", "all", md),
                   ("AR75", "0.75", "all", md), ("ARm", "0.50:0.95", "medium", md),
                   ("ARl", "0.50:0.95", "large", md)]  # fmt: skip
    else:
        m = res.params["max_dets"]
        rows_ar = [("AR1", "0.50:0.95", "all", m[0]), ("AR10", "0.50:0.95", "all", m[1]),
                   ("AR100", "0.50:0.95", "all", m[2]), ("ARs", "0.50:0.95", "small", md),
                   ("ARm", "0.50:0.95", "medium", md), ("ARl", "0.50:0.95", "large", md)]  # fmt: skip
    for key, iou, area, mdet in rows_ar:
        lines.append(ar.format(iou, area, mdet, s[key]))
    names = [("oLRP", "Optimal LRP"), ("oLRP_Loc", "Optimal LRP Loc"),
             ("oLRP_FP", "Optimal LRP FP"), ("oLRP_FN", "Optimal LRP FN")]  # fmt: skip
    for key, title in names:
        lines.append(lrp.format(title, "0.50", "all", md, s[key]))
    for size in ("m", "l") if kp else ("s", "m", "l"):
        area = {"s": "small", "m": "medium", "l": "large"}[size]
        lines.append(lrp.format("Optimal LRP", "0.50", area, md, s[f"oLRP_{size}"]))
    if per_class:
        lines.append("")
        lines.append(
            f"{'id':>6} {'name':<20} {'oLRP':>7} {'Loc':>7} {'FP':>7} {'FN':>7} {'thr':>7}"
        )
        for row in res.per_class:
            vals = [row[k] for k in ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN", "threshold")]
            txt = " ".join(f"{v:7.3f}" if not math.isnan(v) else f"{'nan':>7}" for v in vals)
            lines.append(f"{row['category_id']:>6} {str(row['name'])[:20]:<20} {txt}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# input parsing and validation


def _parse_gt(gt: dict, iou_type: str, what: str) -> dict[str, Any]:
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
    img_ids = _ids(_column(imgs, "id", what, "image"), what, "image", "id")
    cat_ids = _ids(_column(cats, "id", what, "category"), what, "category", "id")
    cat_names = {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
    u_img = _unique_ids(img_ids, what, "image")
    u_cat = _unique_ids(cat_ids, what, "category")
    ann_ids = [a.get("id") if isinstance(a, dict) else None for a in anns]
    if any(i is not None for i in ann_ids):
        have = [i for i, v in enumerate(ann_ids) if v is not None]
        a_ids = _ids([ann_ids[i] for i in have], what, "annotation", "id")
        _unique_ids(a_ids, what, "annotation", index=np.asarray(have))
    a_img = _ids(_column(anns, "image_id", what, "annotation"), what, "annotation", "image_id")
    a_cat = _ids(
        _column(anns, "category_id", what, "annotation"), what, "annotation", "category_id"
    )
    area = _float_array(_column(anns, "area", what, "annotation"), what, "annotation", "area")
    _check_finite(area, what, "annotation", "area")
    crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    a_img_idx, on_img = _locate_sorted(a_img, u_img)
    if not on_img.all():
        idx = int(np.flatnonzero(~on_img)[0])
        raise ValueError(
            f"{what}: annotation at index {idx} is on image_id {int(a_img[idx])}, "
            "which is not in the ground truth's images"
        )
    # pycocotools evaluates only annotations of listed categories
    a_cat_idx, keep = _locate_sorted(a_cat, u_cat)
    out: dict[str, Any] = {
        "img_ids": u_img, "cat_ids": u_cat, "cat_names": cat_names,
        "img": a_img_idx, "cat": a_cat_idx,
        "area": area, "crowd": crowd, "keep": keep, "ignore": crowd.copy(),
    }  # fmt: skip
    if iou_type in ("bbox", "keypoints"):
        box = _float_array(_column(anns, "bbox", what, "annotation"), what, "annotation", "bbox", 4)
        _check_finite(box, what, "annotation", "bbox")
        out["box"] = box
    if iou_type == "keypoints":
        nk = np.asarray(_column(anns, "num_keypoints", what, "annotation"), dtype=np.int64)
        out["ignore"] = crowd | (nk == 0)
        kps = _column(anns, "keypoints", what, "annotation")
        out["kpts"] = _float_array(kps, what, "annotation", "keypoints", 3 * len(_KPT_SIGMAS))
    if iou_type == "segm":
        out["segm"] = _column(anns, "segmentation", what, "annotation")
        out["hw"] = {
            int(i["id"]): (i.get("height"), i.get("width")) for i in imgs
        }  # fmt: skip
        _check_rle_sizes(out["segm"], a_img, out["hw"], what, "annotation")
    return out


def _check_rle_sizes(segs: list, img: np.ndarray, hw: dict, what: str, kind: str) -> None:
    """An RLE mask must have its image's size (``[height, width]``)."""
    for i, seg in enumerate(segs):
        if isinstance(seg, dict) and "size" in seg:
            h, w = hw.get(int(img[i]), (None, None))
            size = seg["size"]
            if h is None or w is None:
                continue
            if not (isinstance(size, (list, tuple)) and len(size) == 2
                    and [_as_num(size[0]), _as_num(size[1])] == [h, w]):  # fmt: skip
                raise ValueError(
                    f"{what}: {kind} at index {i}: RLE 'size' {size!r} differs from its image "
                    f"(image_id {int(img[i])} is height {h}, width {w})"
                )


def _as_num(v: Any) -> Any:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _parse_dt(dt: list, iou_type: str, g: dict, what: str) -> dict[str, Any]:
    if isinstance(dt, dict) and "annotations" in dt:
        dt = dt["annotations"]
    if not isinstance(dt, list):
        raise ValueError(f"{what}: detections must be a JSON array; got a {type(dt).__name__}")
    n = len(dt)
    if iou_type == "segm" and n:
        missing = [i for i, x in enumerate(dt) if isinstance(x, dict) and "segmentation" not in x]
        if missing:
            raise ValueError(
                f"{what}: detection at index {missing[0]} has no 'segmentation', which "
                f"--iou-type segm needs ({len(missing)} of {n} detections lack it)"
            )
    img = _ids(_column(dt, "image_id", what, "detection"), what, "detection", "image_id")
    cat = _ids(_column(dt, "category_id", what, "detection"), what, "detection", "category_id")
    score = _float_array(_column(dt, "score", what, "detection"), what, "detection", "score")
    _check_finite(score, what, "detection", "score")
    img_idx, known_img = _locate_sorted(img, g["img_ids"])
    if not known_img.all():
        idx = int(np.flatnonzero(~known_img)[0])
        raise ValueError(
            f"{what}: detection at index {idx} is on image_id {int(img[idx])}, "
            "which is not in the ground truth's images"
        )
    cat_idx, known_cat = _locate_sorted(cat, g["cat_ids"])
    if not known_cat.all():
        unknown = sorted(set(cat[~known_cat].tolist()))
        warnings.warn(
            f"{what}: {int((~known_cat).sum())} detection(s) of category id(s) "
            f"{unknown[:10]} not in the ground truth's categories are ignored "
            "(as pycocotools and the official LRP code do)",
            UserWarning,
            stacklevel=3,
        )
    out: dict[str, Any] = {"img": img_idx, "score": score, "cat": cat_idx,
                           "keep": known_cat}  # fmt: skip
    # which branch of pycocotools' loadRes: decided by the first result, as there
    first = dt[0] if n else {}
    # (a loadRes result of masks carries its box as an array: still the mask branch)
    first_box = first.get("bbox") if isinstance(first, dict) else None
    bbox_branch = isinstance(first_box, (list, tuple)) and len(first_box) > 0
    if n == 0:
        out.update(box=np.zeros((0, 4)), area=np.zeros(0), segm=[],
                   kpts=np.zeros((0, 3 * len(_KPT_SIGMAS))))  # fmt: skip
        return out
    if not bbox_branch and "segmentation" not in first:
        kps = _column(dt, "keypoints", what, "detection")
        k = _float_array(kps, what, "detection", "keypoints", 3 * len(_KPT_SIGMAS))
        _check_finite(k, what, "detection", "keypoints")
        x, y = k[:, 0::3], k[:, 1::3]
        x0, x1, y0, y1 = x.min(axis=1), x.max(axis=1), y.min(axis=1), y.max(axis=1)
        out["area"] = (x1 - x0) * (y1 - y0)
        out["box"] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
        out["kpts"] = k
        return out
    if bbox_branch:
        box = _float_array(_column(dt, "bbox", what, "detection"), what, "detection", "bbox", 4)
        _check_finite(box, what, "detection", "bbox")
        _check_box_sizes(box, what)
        out["box"] = box
        out["area"] = box[:, 2] * box[:, 3]
        if iou_type == "segm":
            out["segm"] = [d["segmentation"] for d in dt]
            _check_rle_sizes(out["segm"], img, g["hw"], what, "detection")
        if iou_type == "keypoints":
            kps = _column(dt, "keypoints", what, "detection")
            out["kpts"] = _float_array(kps, what, "detection", "keypoints", 3 * len(_KPT_SIGMAS))
            _check_finite(out["kpts"], what, "detection", "keypoints")
        return out
    # segmentation branch: area from the mask, bbox from the mask when absent
    from pycocotools import mask as mask_utils

    segs = _column(dt, "segmentation", what, "detection")
    if iou_type == "segm":
        _check_rle_sizes(segs, img, g["hw"], what, "detection")
    try:
        area = np.asarray([float(mask_utils.area(s)) for s in segs], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - pycocotools raises assorted types
        raise ValueError(
            f"{what}: detection segmentation is not a valid compressed RLE ({exc})"
        ) from None
    out["area"] = area
    out["segm"] = segs
    if iou_type == "keypoints":
        raise ValueError(f"{what}: keypoint evaluation needs 'keypoints' in every detection")
    return out


def _check_box_sizes(box: np.ndarray, what: str) -> None:
    """Negative width or height: an error. Zero: a warning (scored as false positives)."""
    check_box_sizes(box, what, dataset="COCO", stacklevel=4,
                    zero_note="they match nothing and count as false positives, as in pycocotools")


# --------------------------------------------------------------------------------------------
# similarities


def _to_rle(seg: Any, hw: tuple[int | None, int | None], what: str, where: str):
    from pycocotools import mask as mask_utils

    h, w = hw
    if isinstance(seg, list):
        if h is None or w is None:
            raise ValueError(f"{what}: {where} is a polygon but its image has no height/width")
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        if h is None or w is None:
            raise ValueError(
                f"{what}: {where} is an uncompressed RLE but its image has no height/width"
            )
        return mask_utils.frPyObjects(seg, h, w)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        return seg
    raise ValueError(f"{what}: {where} has an unsupported 'segmentation' ({type(seg).__name__})")


def _segm_ious(grp, g, d, gi, di, off, total, what, progress):
    from pycocotools import mask as mask_utils

    img_ids = g["img_ids"]
    out = np.zeros(total, dtype=np.float64)
    d0, d1, g0, g1, gimg = grp
    need = np.flatnonzero((d1 > d0) & (g1 > g0))
    it = progress_bar(need, enabled=progress, desc="mask IoU", mininterval=0.5)
    for j in it:
        hw = g["hw"][int(img_ids[gimg[j]])]
        gts = [
            _to_rle(g["segm"][q], hw, what, f"annotation at index {q}") for q in gi[g0[j] : g1[j]]
        ]
        dts = [
            _to_rle(d["segm"][q], hw, what, f"detection at index {q}") for q in di[d0[j] : d1[j]]
        ]
        crowd = [int(c) for c in g["crowd"][gi[g0[j] : g1[j]]]]
        iou = np.asarray(mask_utils.iou(dts, gts, crowd), dtype=np.float64)
        out[off[j] : off[j + 1]] = iou.reshape(-1)
    return out


def _oks_ious(grp, g, d, gi, di, off, total, progress):
    out = np.zeros(total, dtype=np.float64)
    d0, d1, g0, g1, _ = grp
    variances = (_KPT_SIGMAS * 2) ** 2
    nk = len(_KPT_SIGMAS)
    need = np.flatnonzero((d1 > d0) & (g1 > g0))
    for j in progress_bar(need, enabled=progress, desc="OKS", mininterval=0.5):
        dk = d["kpts"][di[d0[j] : d1[j]]]
        xd, yd = dk[:, 0::3], dk[:, 1::3]
        nd, ng = len(dk), g1[j] - g0[j]
        block = np.zeros((nd, ng))
        for b, q in enumerate(gi[g0[j] : g1[j]]):
            gk = g["kpts"][q]
            xg, yg, vg = gk[0::3], gk[1::3], gk[2::3]
            k1 = np.count_nonzero(vg > 0)
            bb = g["box"][q]
            x0, x1 = bb[0] - bb[2], bb[0] + bb[2] * 2
            y0, y1 = bb[1] - bb[3], bb[1] + bb[3] * 2
            if k1 > 0:
                dx, dy = xd - xg, yd - yg
            else:
                z = np.zeros((nd, nk))
                dx = np.maximum(z, x0 - xd) + np.maximum(z, xd - x1)
                dy = np.maximum(z, y0 - yd) + np.maximum(z, yd - y1)
            e = (dx**2 + dy**2) / variances / (g["area"][q] + np.spacing(1)) / 2
            if k1 > 0:
                e = e[:, vg > 0]
            block[:, b] = np.array([np.sum(np.exp(-row)) for row in e]) / e.shape[1]
        out[off[j] : off[j + 1]] = block.reshape(-1)
    return out


# --------------------------------------------------------------------------------------------
# the evaluator


def evaluate(
    gt: str | os.PathLike | dict,
    dt: str | os.PathLike | list,
    iou_type: str = "bbox",
    *,
    img_ids: Any = None,
    cat_ids: Any = None,
    use_cats: bool = True,
    max_dets: Any = None,
    area_ranges: Any = None,
    iou_thrs: Any = None,
    progress: bool = False,
) -> EvalResult:
    r"""COCO AP/AR and the optimal LRP (oLRP) with its components, in one pass.

    For every class, area range and maxDets, detections are matched to GTs greedily in score
    order exactly as pycocotools does, and the LRP Error is evaluated at every position of the
    score-sorted list; oLRP is its first minimum (thesis Eqs. (5.2) and (5.7)):

    .. math::

        \mathrm{LRP}_i = \frac{1}{\mathrm{TP}_i + \mathrm{FP}_i + \mathrm{FN}_i}
        \Big(\sum_{\text{TP}} \frac{1 - \mathrm{IoU}}{1 - \tau} + \mathrm{FP}_i + \mathrm{FN}_i\Big),
        \qquad \mathrm{oLRP} = \min_i \mathrm{LRP}_i, \quad \tau = 0.5.

    Implements thesis Eqs. (5.2), (5.4)-(5.7) with the semantics of the official LRP-Error code.

    Args:
        gt (str | PathLike | dict | COCO): COCO ground truth (``images``, ``annotations``,
            ``categories``), as a ``.json``/``.json.gz`` path, a dict or a pycocotools ``COCO``.
        dt (str | PathLike | list | COCO | ndarray): COCO results (``image_id``,
            ``category_id``, ``score`` and ``bbox`` / ``segmentation`` (compressed RLE) /
            ``keypoints``), as a path, a list, a ``loadRes`` result or an ``N x 7`` array
            ``[image_id, x, y, w, h, score, category_id]``.
        iou_type (str): ``"bbox"`` (default), ``"segm"`` or ``"keypoints"``.
        img_ids (Iterable[int], optional): evaluate only these images (pycocotools'
            ``params.imgIds``). Default: all images of ``gt``.
        cat_ids (Iterable[int], optional): evaluate only these categories (``params.catIds``).
            Default: all categories of ``gt``.
        use_cats (bool): ``False`` pools all categories into one, as ``params.useCats = 0``
            (class-agnostic; the single per-class row has ``category_id`` -1). Default ``True``.
            (For keypoints pycocotools matches nothing in that mode; see
            :class:`~lrpbook.metrics.COCOeval`.)
        max_dets (Iterable[int], optional): ``params.maxDets``, sorted; three values for bbox
            and segm (``AR1``, ``AR10``, ``AR100`` use them in order), one for keypoints.
            Default ``[1, 10, 100]`` (keypoints ``[20]``).
        area_ranges (Iterable[[float, float]], optional): ``params.areaRng``, one ``[lo, hi]``
            per label ``all, small, medium, large`` (keypoints: ``all, medium, large``).
        iou_thrs (Iterable[float], optional): ``params.iouThrs``. Default 0.50:0.05:0.95.
            oLRP is computed at the first one (:math:`\tau`).
        progress (bool): show a progress bar (tqdm, on stderr). Default ``False``.

    Returns:
        EvalResult: ``stats`` with the keys of :data:`STATS_KEYS`, per-class rows and the arrays.

    Raises:
        ValueError: malformed or missing file, missing keys, duplicate image, category or
            annotation ids, a GT annotation or a detection on an image id that is not in
            ``gt["images"]``, a NaN/inf score, box or keypoint, a string where a number belongs,
            a detection box with negative width or height, ``iou_type="segm"`` with a detection
            that has no ``segmentation``, an RLE whose ``size`` differs from its image's
            ``[height, width]``, or GT and detections that look swapped. The message names the
            file, the offending index and the problem, in one line.

    Note:
        Behaviour on edge cases is the official code's: detections of categories absent from
        ``gt["categories"]`` are ignored (with a ``UserWarning``); with no detections every class
        with GT gets oLRP 1 and AP 0 while oLRP_Loc, oLRP_FP and thresholds are NaN (mean -1);
        with no GT every statistic is -1. Unlike pycocotools, a missing ``iscrowd`` means 0.
        Detection boxes of zero width or height match nothing and count as false positives, as
        in pycocotools (a ``UserWarning`` counts them); pycocotools accepts, silently, the
        inputs listed under Raises.

    Example:
        >>> res = evaluate("gt.json", "dt.json")  # doctest: +SKIP
        >>> res.stats["AP"], res.stats["oLRP"]  # doctest: +SKIP

    Taught in: chapter "LRP Error".
    """
    if iou_type not in STATS_KEYS:
        raise ValueError(f"iou_type must be 'bbox', 'segm' or 'keypoints'; got {iou_type!r}")
    gt_what, dt_what = describe_source(gt), describe_source(dt)
    bar = progress_bar(total=5, enabled=progress, desc="evaluate", unit="stage")
    bar.set_postfix_str("loading")
    with gc_paused():  # building a million small objects triggers needless collections
        gt_doc = load_json(gt, what="ground truth")
        dt_doc = load_json(dt, what="detections")
        bar.update(1)
        bar.set_postfix_str("checking inputs")
        check_not_swapped(gt_doc, dt_doc, gt_what, dt_what)
        g = _parse_gt(gt_doc, iou_type, f"ground truth {gt_what}")
        d = _parse_dt(dt_doc, iou_type, g, f"detections {dt_what}")
        del gt_doc, dt_doc
    cfg = _resolve_params(iou_type, img_ids=img_ids, cat_ids=cat_ids, use_cats=use_cats,
                          max_dets=max_dets, area_ranges=area_ranges, iou_thrs=iou_thrs)  # fmt: skip
    g, d = _select(g, d, cfg)
    bar.update(1)
    try:
        return _evaluate_parsed(g, d, iou_type, progress=progress, what=f"{gt_what} / {dt_what}",
                                bar=bar, cfg=cfg)  # fmt: skip
    finally:
        bar.close()


def _resolve_params(iou_type: str, *, img_ids: Any = None, cat_ids: Any = None,
                    use_cats: bool = True, max_dets: Any = None, area_ranges: Any = None,
                    iou_thrs: Any = None) -> dict[str, Any]:  # fmt: skip
    """Check and normalise the pycocotools ``Params``-style selection."""
    kp = iou_type == "keypoints"
    labels = ["all", "medium", "large"] if kp else ["all", "small", "medium", "large"]
    cfg: dict[str, Any] = {"labels": labels, "use_cats": bool(use_cats)}

    def int_list(v: Any, name: str) -> np.ndarray:
        a = np.asarray(list(v) if not isinstance(v, np.ndarray) else v)
        if a.ndim != 1 or (len(a) and a.dtype.kind not in "iu"):
            if not (len(a) and a.dtype.kind == "f" and np.all(a == np.round(a))):
                raise ValueError(f"`{name}` must be a list of integers; got {v!r}")
        return np.unique(a.astype(np.int64))

    cfg["img_ids"] = None if img_ids is None else int_list(img_ids, "img_ids")
    cfg["cat_ids"] = None if cat_ids is None else int_list(cat_ids, "cat_ids")
    if max_dets is None:
        md = np.array([20] if kp else [1, 10, 100], dtype=np.int64)
    else:
        md = np.sort(np.asarray(list(max_dets)).astype(np.int64))
        if len(md) != (1 if kp else 3) or (md <= 0).any():
            raise ValueError(
                f"`max_dets` must be {'one positive integer' if kp else 'three positive integers'}"
                f" for iou_type {iou_type!r} (as pycocotools' summarize needs); got {max_dets!r}"
            )
    cfg["max_dets"] = md
    if area_ranges is None:
        rng = np.array([_AREA[lbl] for lbl in labels], dtype=np.float64)
    else:
        rng = np.asarray(area_ranges, dtype=np.float64)
        if rng.shape != (len(labels), 2) or not np.all(rng[:, 0] <= rng[:, 1]):
            raise ValueError(
                f"`area_ranges` must be {len(labels)} [lo, hi] pairs for {labels}; "
                f"got {area_ranges!r}"
            )
    cfg["area_rng"] = rng
    if iou_thrs is None:
        thr = _IOU_THRS
    else:
        thr = np.asarray(iou_thrs, dtype=np.float64).reshape(-1)
        if len(thr) == 0 or not np.all((thr > 0) & (thr < 1)):
            raise ValueError(f"`iou_thrs` must be numbers in (0, 1); got {iou_thrs!r}")
    cfg["iou_thrs"] = thr
    return cfg


def _select(g: dict, d: dict, cfg: dict) -> tuple[dict, dict]:
    """Apply the image / category selection and ``use_cats`` to parsed inputs (copies)."""
    g, d = dict(g), dict(d)
    cfg["all_img_ids"] = g["img_ids"]
    if cfg["img_ids"] is not None:
        on = _isin_sorted(g["img_ids"], cfg["img_ids"])
        g["keep"] = g["keep"] & on[g["img"]]
        d["keep"] = d["keep"] & on[d["img"]]
        cfg["eval_img_ids"] = cfg["img_ids"]
    else:
        cfg["eval_img_ids"] = g["img_ids"]
    if cfg["cat_ids"] is not None:
        # old category index -> index among the selected ids (-1: not selected); selected ids
        # that are not GT categories get a slot without data (-1 everywhere), as in pycocotools
        new_ids = cfg["cat_ids"]
        hit = _isin_sorted(g["cat_ids"], new_ids)
        lut = np.where(hit, np.searchsorted(new_ids, g["cat_ids"]), -1).astype(np.int64)
        lut = np.r_[lut, -1]  # detections of unknown categories point past the end
        gc_ = np.where(g["keep"], g["cat"], len(lut) - 1)
        dc_ = np.where(d["keep"], np.minimum(d["cat"], len(lut) - 1), len(lut) - 1)
        g["keep"] = g["keep"] & (lut[gc_] >= 0)
        d["keep"] = d["keep"] & (lut[dc_] >= 0)
        g["cat"] = np.maximum(lut[gc_], 0)
        d["cat"] = np.maximum(lut[dc_], 0)
        g["cat_ids"] = new_ids
    if not cfg["use_cats"]:
        # pycocotools pools an image's GTs and detections category by category (in catIds
        # order); stable sorts below keep that order for ties
        go = np.argsort(g["cat"], kind="stable")
        do = np.argsort(d["cat"], kind="stable")
        g = {k: (v[go] if isinstance(v, np.ndarray) and len(v) == len(go) and k not in
                 ("img_ids", "cat_ids") else v) for k, v in g.items()}  # fmt: skip
        if "segm" in g:
            g["segm"] = [g["segm"][i] for i in go]
        d = {k: (v[do] if isinstance(v, np.ndarray) and len(v) == len(do) and k not in
                 ("img_ids", "cat_ids") else v) for k, v in d.items()}  # fmt: skip
        if isinstance(d.get("segm"), list) and len(d["segm"]) == len(do):
            d["segm"] = [d["segm"][i] for i in do]
        g["cat"] = np.zeros(len(g["cat"]), dtype=np.int64)
        d["cat"] = np.zeros(len(d["cat"]), dtype=np.int64)
        g["cat_ids"] = np.array([-1], dtype=np.int64)
        g["cat_names"] = {-1: "all"}
    return g, d


def _evaluate_parsed(g: dict, d: dict, iou_type: str, *, progress: bool, what: str,
                     bar: Any = None, cfg: dict | None = None) -> EvalResult:  # fmt: skip
    bar = bar if bar is not None else progress_bar(enabled=False)
    if cfg is None:
        cfg = _resolve_params(iou_type)
        g, d = _select(g, d, cfg)
    labels, area_rng, max_dets = cfg["labels"], cfg["area_rng"], cfg["max_dets"]
    iou_thrs = cfg["iou_thrs"]
    n_img, n_cat = len(g["img_ids"]), len(g["cat_ids"])
    n_t, n_a = len(iou_thrs), len(labels)

    # ground truths sorted by (class, image), input order inside (stable)
    gi = np.flatnonzero(g["keep"])
    gkey = g["cat"][gi] * n_img + g["img"][gi]
    o = np.argsort(gkey, kind="stable")
    gi, gkey = gi[o], gkey[o]
    # detections sorted by (class, image, -score), ties in input order; top maxDet per group
    di = np.flatnonzero(d["keep"])
    dkey = d["cat"][di] * n_img + d["img"][di]
    o = _order_by_key_score(d["score"][di], d["img"][di], d["cat"][di])  # = lexsort by dkey
    di, dkey = di[o], dkey[o]
    if len(di):
        start = np.r_[0, np.flatnonzero(np.diff(dkey)) + 1]
        counts = np.diff(np.r_[start, len(di)])
        rank = np.arange(len(di)) - np.repeat(start, counts)
        cap = rank < max_dets[-1]
        di, dkey, rank = di[cap], dkey[cap], rank[cap]
    else:
        rank = np.zeros(0, dtype=np.int64)

    groups, g0, g1, d0, d1, off = _groups(gkey, dkey)
    total = int(off[-1])
    grp = (d0, d1, g0, g1, groups % max(n_img, 1))

    gt_crowd = np.ascontiguousarray(g["crowd"][gi])
    bar.set_postfix_str("similarities")
    if iou_type == "bbox":
        ious = np.empty(total, dtype=np.float64)
        _match.box_iou_groups(np.ascontiguousarray(d["box"][di]), np.ascontiguousarray(g["box"][gi]),
                              gt_crowd, d0, d1, g0, g1, off, ious)  # fmt: skip
    elif iou_type == "segm":
        ious = _segm_ious(grp, g, d, gi, di, off, total, what, progress)
    else:
        ious = _oks_ious(grp, g, d, gi, di, off, total, progress)

    bar.update(1)
    bar.set_postfix_str("matching")
    n_d = len(di)
    matched = np.zeros((n_d, n_a, n_t), dtype=np.bool_)  # one detection's flags are contiguous
    ignored = np.zeros((n_d, n_a, n_t), dtype=np.bool_)
    match_iou = np.zeros((n_d, n_a), dtype=np.float64)
    gt_area = np.ascontiguousarray(g["area"][gi])
    gt_ig = np.ascontiguousarray(g["ignore"][gi])
    dt_area = np.ascontiguousarray(d["area"][di])
    _match.greedy_match_groups(ious, off, d0, d1, g0, g1, gt_crowd, gt_ig, gt_area, dt_area,
                               area_rng, iou_thrs, matched, ignored, match_iou)  # fmt: skip
    del ious

    bar.update(1)
    bar.set_postfix_str("accumulating")
    # non-ignored GTs per class and area range
    npig = _gt_counts(g["cat"][gi], gt_ig, gt_area, area_rng, n_cat)
    scores = np.ascontiguousarray(d["score"][di])
    acc = _accumulate(dkey // max(n_img, 1), scores, rank, matched, ignored, match_iou, npig,
                      max_dets, _REC_THRS, iou_thrs)  # fmt: skip
    precision, recall = acc["precision"], acc["recall"]
    score_at, olrp = acc["scores"], acc["olrp"]
    order, cls_start = acc["order"], acc["cls_start"]
    bar.update(1)
    res = _summarize(iou_type, g, cfg, precision, recall, score_at, olrp)
    res._curve_data = {
        "order": order, "cls_start": cls_start, "scores": scores, "npig": npig,
        "matched": np.ascontiguousarray(matched[:, :, 0].T),
        "match_iou": np.ascontiguousarray(match_iou.T),
        "ignored": np.ascontiguousarray(ignored[:, :, 0].T),
    }  # fmt: skip
    return res


def _summarize(iou_type, g, cfg, precision, recall, score_at, olrp):
    labels, area_rng, max_dets = cfg["labels"], cfg["area_rng"], cfg["max_dets"]
    _IOU_THRS = cfg["iou_thrs"]  # noqa: N806 - the default's name, shadowed on purpose
    kp = iou_type == "keypoints"
    m_last = len(max_dets) - 1
    a_idx = {lbl: i for i, lbl in enumerate(labels)}

    def ap(iou=None, area="all", m=m_last):
        s = precision
        if iou is not None:
            s = s[np.where(iou == _IOU_THRS)[0]]
        s = s[:, :, :, a_idx[area], m]
        return _mean_present(s)

    def ar(iou=None, area="all", m=m_last):
        s = recall
        if iou is not None:
            s = s[np.where(iou == _IOU_THRS)[0]]
        s = s[:, :, a_idx[area], m]
        return _mean_present(s)

    comp = {"oLRP": 0, "oLRP_Loc": 1, "oLRP_FP": 2, "oLRP_FN": 3}
    stats: dict[str, float] = {}
    if kp:
        stats.update(AP=ap(), AP50=ap(0.5), AP75=ap(0.75), APm=ap(area="medium"),
                     APl=ap(area="large"), AR=ar(), AR50=ar(0.5), AR75=ar(0.75),
                     ARm=ar(area="medium"), ARl=ar(area="large"))  # fmt: skip
    else:
        stats.update(AP=ap(), AP50=ap(0.5), AP75=ap(0.75), APs=ap(area="small"),
                     APm=ap(area="medium"), APl=ap(area="large"), AR1=ar(m=0), AR10=ar(m=1),
                     AR100=ar(m=2), ARs=ar(area="small"), ARm=ar(area="medium"),
                     ARl=ar(area="large"))  # fmt: skip
    for key, c in comp.items():
        stats[key] = _mean_valid(olrp[:, 0, m_last, c])
    sizes = ("m", "l") if kp else ("s", "m", "l")
    full = {"s": "small", "m": "medium", "l": "large"}
    for sz in sizes:
        stats[f"oLRP_{sz}"] = _mean_valid(olrp[:, a_idx[full[sz]], m_last, 0])
    size_details = {
        f"{key}_{sz}": _mean_valid(olrp[:, a_idx[full[sz]], m_last, c])
        for key, c in list(comp.items())[1:]
        for sz in sizes
    }
    per_class = []
    for k, cid in enumerate(g["cat_ids"].tolist()):
        p = precision[:, :, k, 0, m_last]
        row = {
            "category_id": int(cid),
            "name": g["cat_names"].get(int(cid), str(cid)),
            "oLRP": float(olrp[k, 0, m_last, 0]),
            "oLRP_Loc": float(olrp[k, 0, m_last, 1]),
            "oLRP_FP": float(olrp[k, 0, m_last, 2]),
            "oLRP_FN": float(olrp[k, 0, m_last, 3]),
            "threshold": float(olrp[k, 0, m_last, 4]),
            "AP": _mean_present(p),
            "recall_iou50": float(recall[0, k, 0, m_last]),
        }
        per_class.append(row)
    return EvalResult(
        iou_type=iou_type,
        stats=stats,
        per_class=per_class,
        size_details=size_details,
        precision=precision,
        recall=recall,
        scores=score_at,
        olrp=np.ascontiguousarray(olrp[..., 0]),
        olrp_loc=np.ascontiguousarray(olrp[..., 1]),
        olrp_fp=np.ascontiguousarray(olrp[..., 2]),
        olrp_fn=np.ascontiguousarray(olrp[..., 3]),
        lrp_opt_thr=np.ascontiguousarray(olrp[..., 4]),
        params={
            "cat_ids": g["cat_ids"].tolist(),
            "cat_names": [g["cat_names"].get(int(c), str(c)) for c in g["cat_ids"].tolist()],
            "img_ids": np.asarray(cfg.get("eval_img_ids", g["img_ids"])).tolist(),
            "use_cats": cfg["use_cats"],
            "area_labels": list(labels),
            "area_ranges": area_rng.tolist(),
            "max_dets": max_dets.tolist(),
            "iou_thrs": np.asarray(_IOU_THRS).tolist(),
            "rec_thrs": _REC_THRS.tolist(),
        },
    )
