"""LRP Error on hard predictions, its components, oLRP over score thresholds, weighted LRP.

These are the building blocks of thesis Chapter 5 for *one* class (and, for :func:`molrp`, the
mean over classes). They take the outcome of a matching -- the localisation qualities (IoUs) of
the true positives, the numbers of detections and of ground truths -- so they work for any task
and any localisation quality ``lq`` in [0, 1]. The COCO-style evaluator
(:func:`lrpbook.metrics.evaluate`) computes the same quantities for whole datasets.

Taught in: chapter "LRP Error".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "LRPComponents",
    "OptimalLRP",
    "lrp_error",
    "weighted_lrp",
    "pq_components",
    "greedy_match",
    "lrp_curve",
    "optimal_lrp",
    "molrp",
]


class LRPComponents(NamedTuple):
    """LRP Error and its components; NaN marks an undefined value (thesis Sec. 5.5.2)."""

    lrp: float
    loc: float
    fp: float
    fn: float
    n_tp: int
    n_fp: int
    n_fn: int


class OptimalLRP(NamedTuple):
    """oLRP of one class with its components, the LRP-optimal threshold and its position."""

    olrp: float
    loc: float
    fp: float
    fn: float
    threshold: float
    index: int


def _check_counts(tp_ious: np.ndarray, num_dets: int, num_gts: int, tau: float) -> None:
    if tp_ious.ndim != 1:
        raise ValueError(
            f"`tp_ious` must be 1-D (one IoU per true positive); got shape {tp_ious.shape}"
        )
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"`tau` must be in [0, 1); got {tau}")
    n_tp = len(tp_ious)
    if num_dets < n_tp or num_gts < n_tp:
        raise ValueError(
            f"`num_dets` ({num_dets}) and `num_gts` ({num_gts}) must be at least the number of "
            f"true positives ({n_tp})"
        )
    if n_tp and (np.any(~np.isfinite(tp_ious)) or tp_ious.min() < tau or tp_ious.max() > 1):
        raise ValueError(f"`tp_ious` must lie in [tau, 1] = [{tau}, 1]; got {tp_ious.tolist()}")


def lrp_error(tp_ious, num_dets: int, num_gts: int, *, tau: float = 0.5) -> LRPComponents:
    r"""LRP Error of a set of hard predictions of one class and its three components.

    .. math::

        \mathrm{LRP} = \frac{1}{N_{TP} + N_{FP} + N_{FN}}
        \Big(\sum_{i=1}^{N_{TP}} \frac{1 - \mathrm{lq}_i}{1 - \tau} + N_{FP} + N_{FN}\Big),

        \mathrm{LRP}_{Loc} = \frac{1}{N_{TP}}\sum_i (1 - \mathrm{lq}_i), \quad
        \mathrm{LRP}_{FP} = \frac{N_{FP}}{|\mathcal{D}|}, \quad
        \mathrm{LRP}_{FN} = \frac{N_{FN}}{|\mathcal{G}|}.

    Implements thesis Eqs. (5.2), (5.4), (5.5) and (5.6).

    Args:
        tp_ious (array-like[N_TP], float): localisation qualities (IoUs) of the true positives,
            each in [``tau``, 1].
        num_dets (int): number of detections ``|D|`` (TPs + FPs).
        num_gts (int): number of ground truths ``|G|`` (TPs + FNs).
        tau (float): TP validation threshold. Default 0.5.

    Returns:
        LRPComponents: ``lrp``, ``loc``, ``fp``, ``fn`` and the counts. A component whose
        denominator is 0 is NaN (Loc and FP without detections/TPs, FN without GT); ``lrp`` is NaN
        only if there is nothing to evaluate (no detection and no GT).

    Raises:
        ValueError: counts smaller than the number of TPs, IoUs outside [``tau``, 1].

    Example:
        >>> round(lrp_error([0.8, 1.0], num_dets=3, num_gts=4).lrp, 6)  # (0.2/0.5 + 1 + 2) / 5
        0.68

    Taught in: chapter "LRP Error".
    """
    ious = np.asarray(tp_ious, dtype=np.float64).reshape(-1)
    _check_counts(ious, num_dets, num_gts, tau)
    n_tp = len(ious)
    n_fp, n_fn = num_dets - n_tp, num_gts - n_tp
    loc_sum = n_tp - float(np.sum(ious))  # sum of (1 - lq) over the TPs
    z = n_tp + n_fp + n_fn
    lrp = (loc_sum / (1 - tau) + n_fp + n_fn) / z if z else math.nan
    loc = loc_sum / n_tp if n_tp else math.nan
    fp = n_fp / num_dets if num_dets else math.nan
    fn = n_fn / num_gts if num_gts else math.nan
    return LRPComponents(lrp, loc, fp, fn, n_tp, n_fp, n_fn)


def weighted_lrp(
    tp_ious,
    num_dets: int,
    num_gts: int,
    *,
    alpha_tp: float = 1.0,
    alpha_fp: float = 1.0,
    alpha_fn: float = 1.0,
    tau: float = 0.5,
) -> float:
    r"""LRP Error with importance weights for its three kinds of error (thesis App. E).

    .. math::

        \frac{1}{\alpha_{TP}N_{TP} + \alpha_{FP}N_{FP} + \alpha_{FN}N_{FN}}
        \Big(\sum_{i=1}^{N_{TP}} \alpha_{TP}\frac{1 - \mathrm{lq}_i}{1 - \tau}
        + \alpha_{FP}N_{FP} + \alpha_{FN}N_{FN}\Big)

    Implements thesis Eq. (E.1) (= Eq. (5.9)). A weight counts each error of its kind that many
    times, in the total error and in its maximum alike, so the result stays in [0, 1]; all
    weights 1 give :func:`lrp_error`.

    Args:
        tp_ious (array-like[N_TP], float): IoUs of the true positives, each in [``tau``, 1].
        num_dets (int): number of detections.
        num_gts (int): number of ground truths.
        alpha_tp (float): weight of the localisation error of TPs. Default 1.
        alpha_fp (float): weight of false positives. Default 1.
        alpha_fn (float): weight of false negatives. Default 1.
        tau (float): TP validation threshold. Default 0.5.

    Returns:
        float: the weighted LRP Error (NaN if the normaliser is 0).

    Raises:
        ValueError: a negative weight, or the errors of :func:`lrp_error`.

    Taught in: chapter "LRP Error".
    """
    if min(alpha_tp, alpha_fp, alpha_fn) < 0:
        raise ValueError(f"weights must be non-negative; got {(alpha_tp, alpha_fp, alpha_fn)}")
    ious = np.asarray(tp_ious, dtype=np.float64).reshape(-1)
    _check_counts(ious, num_dets, num_gts, tau)
    n_tp = len(ious)
    n_fp, n_fn = num_dets - n_tp, num_gts - n_tp
    z = alpha_tp * n_tp + alpha_fp * n_fp + alpha_fn * n_fn
    if z == 0:
        return math.nan
    total = alpha_tp * (n_tp - float(np.sum(ious))) / (1 - tau) + alpha_fp * n_fp + alpha_fn * n_fn
    return total / z


def pq_components(tp_ious, num_dets: int, num_gts: int) -> tuple[float, float, float]:
    r"""Panoptic Quality and its factors for hard predictions of one class.

    .. math::

        \mathrm{PQ} = \frac{\sum_{i=1}^{N_{TP}} \mathrm{IoU}_i}{N_{TP} + \tfrac12 N_{FP}
        + \tfrac12 N_{FN}} = \underbrace{\frac{\sum_i \mathrm{IoU}_i}{N_{TP}}}_{\mathrm{SQ}}
        \cdot \underbrace{\frac{N_{TP}}{N_{TP} + \tfrac12 N_{FP} + \tfrac12 N_{FN}}}_{\mathrm{RQ}}

    Implements thesis Eq. (5.1) (and the matching rule of PQ, IoU > 0.5, is the caller's).

    Args:
        tp_ious (array-like[N_TP], float): IoUs of the matched segments.
        num_dets (int): number of predicted segments.
        num_gts (int): number of GT segments.

    Returns:
        tuple[float, float, float]: ``(pq, sq, rq)``; NaN where a denominator is 0.

    Taught in: chapter "LRP Error".
    """
    ious = np.asarray(tp_ious, dtype=np.float64).reshape(-1)
    _check_counts(ious, num_dets, num_gts, 0.0)
    n_tp = len(ious)
    n_fp, n_fn = num_dets - n_tp, num_gts - n_tp
    denom = n_tp + 0.5 * n_fp + 0.5 * n_fn
    pq = float(np.sum(ious)) / denom if denom else math.nan
    sq = float(np.mean(ious)) if n_tp else math.nan
    rq = n_tp / denom if denom else math.nan
    return pq, sq, rq


def greedy_match(ious, scores=None, *, tau: float = 0.5) -> np.ndarray:
    """Match detections to ground truths greedily in descending score order (one image, class).

    Each detection, highest score first, takes the still unmatched ground truth with which it
    has the largest IoU, provided that IoU is at least ``tau``; otherwise it is a false positive.
    This is the matching rule of COCO / the official LRP code without crowd and ignore regions.

    Args:
        ious (array-like[D, G], float): IoU of every detection with every ground truth.
        scores (array-like[D], float, optional): detection scores; ``None`` means the rows are
            already in descending score order. Ties keep the row order (stable sort).
        tau (float): TP validation threshold. Default 0.5.

    Returns:
        ndarray[D], int64: the matched ground-truth index per detection (row order of ``ious``),
        ``-1`` for a false positive.

    Example:
        >>> greedy_match([[0.9, 0.6], [0.7, 0.4]], [0.5, 0.8]).tolist()
        [1, 0]

    Taught in: chapter "LRP Error".
    """
    iou = np.asarray(ious, dtype=np.float64)
    if iou.ndim != 2:
        raise ValueError(f"`ious` must be a 2-D [D, G] array; got shape {iou.shape}")
    order = np.arange(len(iou))
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(s) != len(iou):
            raise ValueError(
                f"`scores` must have one entry per row of `ious`; got {len(s)} vs {len(iou)}"
            )
        order = np.argsort(-s, kind="stable")
    match = np.full(len(iou), -1, dtype=np.int64)
    taken = np.zeros(iou.shape[1], dtype=bool)
    for d in order:
        cand = np.where(taken, -np.inf, iou[d])
        if cand.size == 0:
            continue
        g = len(cand) - 1 - int(np.argmax(cand[::-1]))  # the last maximum, as in COCO
        if cand[g] >= tau:
            match[d] = g
            taken[g] = True
    return match


def lrp_curve(scores, match_ious, num_gts: int, *, tau: float = 0.5) -> dict[str, np.ndarray]:
    r"""LRP and its components when keeping the top-``i`` detections, for every ``i``.

    Detections are sorted by descending score (stable). Position ``i`` keeps detections
    ``0..i``; this is the s-LRP curve of thesis Fig. 5.3(c), evaluated at every detection.

    Args:
        scores (array-like[D], float): detection scores of one class (pooled over images).
        match_ious (array-like[D], float): IoU of the match of each detection, NaN (or any value
            below ``tau``) for a false positive.
        num_gts (int): number of ground truths of the class, ``|G| > 0``.
        tau (float): TP validation threshold. Default 0.5.

    Returns:
        dict[str, ndarray[D]]: ``score`` (sorted), ``lrp``, ``loc``, ``fp``, ``fn``, ``tp``
        (running count) and ``order`` (the permutation applied).

    Taught in: chapter "LRP Error".
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(match_ious, dtype=np.float64).reshape(-1)
    if len(s) != len(m):
        raise ValueError(
            f"`scores` and `match_ious` must have the same length; got {len(s)} and {len(m)}"
        )
    if num_gts <= 0:
        raise ValueError(f"`num_gts` must be positive; got {num_gts}")
    order = np.argsort(-s, kind="stable")
    s, m = s[order], m[order]
    is_tp = np.nan_to_num(m, nan=-1.0) >= tau
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    fn = num_gts - tp
    if np.any(tp > num_gts):
        raise ValueError("more true positives than ground truths: check `match_ious`")
    loc_sum = tp - np.cumsum(np.where(is_tp, m, 0.0))
    lrp = (loc_sum / (1 - tau) + fp + fn) / (tp + fp + fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        loc = loc_sum / tp
        fp_rate = fp / (tp + fp)
    return {"score": s, "lrp": lrp, "loc": loc, "fp": fp_rate, "fn": fn / num_gts, "tp": tp,
            "order": order}  # fmt: skip


def optimal_lrp(scores, match_ious, num_gts: int, *, tau: float = 0.5) -> OptimalLRP:
    r"""Optimal LRP of one class: the minimum of the LRP Error over score thresholds.

    .. math::

        \mathrm{oLRP} = \min_{s \in \mathcal{S}} \mathrm{LRP}(\mathcal{G}, \mathcal{D}_s)

    Implements thesis Eq. (5.7). The minimum is taken over the positions of the score-sorted
    detections and the *first* minimum wins, as in the official code; the LRP-optimal threshold
    ``s*`` is the score at that position. With no detection or no true positive, oLRP is 1 and
    Loc, FP and the threshold are NaN (official behaviour).

    Args:
        scores (array-like[D], float): detection scores.
        match_ious (array-like[D], float): IoU of each detection's match, NaN for a false positive.
        num_gts (int): number of ground truths, ``|G| > 0``.
        tau (float): TP validation threshold. Default 0.5.

    Returns:
        OptimalLRP: ``olrp``, ``loc``, ``fp``, ``fn``, ``threshold`` and ``index`` (position in
        the sorted list, -1 when there is no TP).

    Example:
        >>> optimal_lrp([0.9, 0.8, 0.3], [0.8, float("nan"), 0.9], num_gts=2).threshold
        0.3

    Taught in: chapter "LRP Error".
    """
    c = lrp_curve(scores, match_ious, num_gts, tau=tau)
    if len(c["lrp"]) == 0 or c["tp"][-1] == 0:
        return OptimalLRP(1.0, math.nan, math.nan, 1.0, math.nan, -1)
    i = int(np.argmin(c["lrp"]))
    return OptimalLRP(float(c["lrp"][i]), float(c["loc"][i]), float(c["fp"][i]), float(c["fn"][i]),
                      float(c["score"][i]), i)  # fmt: skip


def molrp(values) -> float:
    """Mean over classes with the official rule: drop NaN and ``-1`` (skipped) entries.

    Used for moLRP and for each component mean; ``-1`` if nothing is left. Because Loc and FP are
    undefined for classes without TPs, the component means may average over fewer classes than
    moLRP itself.

    Args:
        values (array-like[K], float): per-class oLRP (or one component).

    Returns:
        float: the mean of the valid entries, or ``-1``.

    Example:
        >>> molrp([0.5, float("nan"), -1, 0.7])
        0.6

    Taught in: chapter "LRP Error".
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    v = v[v > -1]
    return -1.0 if len(v) == 0 else float(np.mean(v))
