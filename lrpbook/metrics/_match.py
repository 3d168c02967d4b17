"""Compiled kernels of the COCO-style evaluator: box IoU, greedy matching, accumulation.

Private module. The kernels work on flat, pre-sorted arrays so that no Python loop runs per
detection. They reproduce the floating-point operations of pycocotools and of the official
LRP-Error code (same operation order, no fast-math), so AP and oLRP agree to the last bit in
almost every case. Compiled with numba on first use (cached on disk).

Layout conventions:

* a *group* is one (class, image) pair; its detections are ``d0:d1`` of the detection arrays
  (sorted by class, image, descending score, ties in input order) and its ground truths
  ``g0:g1`` of the GT arrays (sorted by class, image, input order);
* the similarity matrix of group ``j`` is stored row-major (detections x GTs) in a flat array
  starting at ``iou_off[j]``.
"""

from __future__ import annotations

import os
import tempfile

import numba as nb
import numpy as np


def _ensure_writable_cache() -> None:
    """Point numba's on-disk cache at a writable folder when the package folder is not one.

    numba caches compiled kernels next to this file (``__pycache__``) and otherwise in the user's
    cache folder; when neither can be written (a read-only install in a container without a home)
    every process would compile again, so a per-user folder under the temporary directory is
    used. ``NUMBA_CACHE_DIR``, when set, is respected.
    """
    if os.environ.get("NUMBA_CACHE_DIR") or nb.config.CACHE_DIR:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(here, "__pycache__")
    if os.access(pycache if os.path.isdir(pycache) else here, os.W_OK):
        return
    home_cache = os.path.join(os.path.expanduser("~"), ".cache")
    if os.access(home_cache if os.path.isdir(home_cache) else os.path.expanduser("~"), os.W_OK):
        return  # numba's user-wide cache folder will do
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    folder = os.path.join(tempfile.gettempdir(), f"lrpbook-numba-{uid}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return
    nb.config.CACHE_DIR = folder


_ensure_writable_cache()

__all__ = [
    "box_iou_groups", "greedy_match_groups", "accumulate_classes", "pair_offsets",
    "sort_runs_by_score",
]  # fmt: skip

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


def pair_offsets(n_dt: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """Start of each group's similarity block in the flat array (length ``groups + 1``)."""
    off = np.zeros(len(n_dt) + 1, dtype=np.int64)
    np.cumsum(n_dt.astype(np.int64) * n_gt.astype(np.int64), out=off[1:])
    return off


@nb.njit(**_JIT)
def sort_runs_by_score(order, neg_scores, starts):  # pragma: no cover
    """Stable insertion sort of ``order[starts[r]:starts[r + 1]]`` by ascending ``neg_scores``.

    For short runs only (the caller checks their length): the result is the stable sort's, the
    permutation that ``np.argsort(..., kind="stable")`` gives.
    """
    for r in range(starts.shape[0] - 1):
        a = starts[r]
        b = starts[r + 1]
        for i in range(a + 1, b):
            x = order[i]
            v = neg_scores[x]
            j = i - 1
            while j >= a and neg_scores[order[j]] > v:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = x


@nb.njit(**_JIT)
def box_iou_groups(dt_box, gt_box, gt_crowd, d0, d1, g0, g1, iou_off, out):  # pragma: no cover
    """IoU of ``[x, y, w, h]`` boxes inside every group, as pycocotools' ``bbIou`` computes it.

    For a crowd GT the "IoU" is intersection / detection area. ``out`` is the flat output.
    """
    for j in range(len(d0)):
        nd = d1[j] - d0[j]
        ng = g1[j] - g0[j]
        base = iou_off[j]
        for a in range(nd):
            d = d0[j] + a
            dx, dy, dw, dh = dt_box[d, 0], dt_box[d, 1], dt_box[d, 2], dt_box[d, 3]
            da = dw * dh
            for b in range(ng):
                g = g0[j] + b
                gx, gy, gw, gh = gt_box[g, 0], gt_box[g, 1], gt_box[g, 2], gt_box[g, 3]
                o = 0.0
                w = min(dw + dx, gw + gx) - max(dx, gx)
                if w > 0:
                    h = min(dh + dy, gh + gy) - max(dy, gy)
                    if h > 0:
                        inter = w * h
                        if gt_crowd[g]:
                            u = da
                        else:
                            u = da + gw * gh - inter
                        o = inter / u
                out[base + a * ng + b] = o


@nb.njit(**_JIT)
def greedy_match_groups(
    ious,
    iou_off,
    d0,
    d1,
    g0,
    g1,
    gt_crowd,
    gt_ig_base,
    gt_area,
    dt_area,
    area_rng,
    iou_thrs,
    matched,
    ignored,
    match_iou,
):  # pragma: no cover
    """pycocotools' greedy matching for every group, area range and IoU threshold.

    Writes ``matched[d, a, t]`` (the detection took a GT), ``ignored[d, a, t]`` (matched to an
    ignored GT, or unmatched with its area outside the range) and ``match_iou[d, a]`` (the
    similarity of the match at the first threshold, 0 otherwise).
    """
    n_a = area_rng.shape[0]
    n_t = iou_thrs.shape[0]
    max_g = 0
    for j in range(len(g0)):
        if g1[j] - g0[j] > max_g:
            max_g = g1[j] - g0[j]
    order = np.empty(max_g, dtype=np.int64)
    ig = np.empty(max_g, dtype=np.bool_)
    taken = np.empty(max_g, dtype=np.bool_)
    for j in range(len(d0)):
        nd = d1[j] - d0[j]
        ng = g1[j] - g0[j]
        if nd == 0:
            continue
        base = iou_off[j]
        for a in range(n_a):
            lo = area_rng[a, 0]
            hi = area_rng[a, 1]
            # GT order: non-ignored first, then ignored, each in input order (stable sort)
            n_reg = 0
            for b in range(ng):
                g = g0[j] + b
                ig[b] = gt_ig_base[g] or gt_area[g] < lo or gt_area[g] > hi
                if not ig[b]:
                    order[n_reg] = b
                    n_reg += 1
            pos = n_reg
            for b in range(ng):
                if ig[b]:
                    order[pos] = b
                    pos += 1
            for t in range(n_t):
                thr = min(iou_thrs[t], 1 - 1e-10)
                for b in range(ng):
                    taken[b] = False
                for i in range(nd):
                    d = d0[j] + i
                    best = thr
                    m = -1
                    row = base + i * ng
                    for q in range(ng):
                        b = order[q]
                        if taken[b] and not gt_crowd[g0[j] + b]:
                            continue
                        if m > -1 and not ig[m] and ig[b]:
                            break
                        v = ious[row + b]
                        if v < best:
                            continue
                        best = v
                        m = b
                    if m == -1:
                        matched[d, a, t] = False
                        ignored[d, a, t] = dt_area[d] < lo or dt_area[d] > hi
                        if t == 0:
                            match_iou[d, a] = 0.0
                    else:
                        matched[d, a, t] = True
                        ignored[d, a, t] = ig[m]
                        taken[m] = True
                        if t == 0:
                            match_iou[d, a] = best


@nb.njit(**_JIT)
def _accumulate_one(
    sel,
    scores,
    matched,
    ignored,
    match_iou,
    a,
    npig,
    rec_thrs,
    tau,
    precision,
    recall,
    score_at,
    k,
    m,
    lrp_out,
):  # pragma: no cover
    n_t = matched.shape[2]
    n_r = rec_thrs.shape[0]
    nd = sel.shape[0]
    eps = np.spacing(1.0)
    # cumulative TP / FP counts per threshold, and where each TP occurs
    tp_all = np.empty((n_t, nd), dtype=np.int64)
    fp_all = np.empty((n_t, nd), dtype=np.int64)
    tp_pos = np.empty((n_t, nd), dtype=np.int64)
    ctp_t = np.zeros(n_t, dtype=np.int64)
    cfp_t = np.zeros(n_t, dtype=np.int64)
    for i in range(nd):  # one pass: a detection's flags for all thresholds are contiguous
        d = sel[i]
        for t in range(n_t):
            if not ignored[d, a, t]:
                if matched[d, a, t]:
                    tp_pos[t, ctp_t[t]] = i
                    ctp_t[t] += 1
                else:
                    cfp_t[t] += 1
            tp_all[t, i] = ctp_t[t]
            fp_all[t, i] = cfp_t[t]
    # pycocotools computes rc = tp / npig and pr = tp / (fp + tp + eps) at every position, takes
    # the running maximum of pr from the right and looks rc up with searchsorted. The same values
    # at fewer positions: rc is non-decreasing, so a binary search that computes rc[i] where it
    # probes finds the same index; after a non-TP position pr does not increase (same tp, a
    # larger or equal denominator), so max(pr[p:]) is the maximum of pr[p] and of pr at the TPs
    # after p. Every value is computed by the same expression on the same operands.
    sufmax = np.empty(nd)
    for t in range(n_t):
        tp = tp_all[t]
        fp = fp_all[t]
        n_tp = ctp_t[t]
        recall[t, k, a, m] = np.float64(tp[nd - 1]) / npig if nd > 0 else 0.0
        # suffix maxima of pr over the TP positions (sufmax[j]: over TPs j, j+1, ...)
        best = -np.inf
        for j in range(n_tp - 1, -1, -1):
            q = tp_pos[t, j]
            v = np.float64(tp[q]) / (np.float64(fp[q]) + np.float64(tp[q]) + eps)
            if v > best:
                best = v
            sufmax[j] = best
        p = 0
        j = 0  # first TP position > p
        for r in range(n_r):
            thr = rec_thrs[r]
            lo = p  # rec_thrs is increasing, so the index does not decrease
            hi = nd
            while lo < hi:
                mid = (lo + hi) >> 1
                if np.float64(tp[mid]) / npig < thr:
                    lo = mid + 1
                else:
                    hi = mid
            p = lo
            if p >= nd:
                for r2 in range(r, n_r):
                    precision[t, r2, k, a, m] = 0.0
                    score_at[t, r2, k, a, m] = 0.0
                break
            while j < n_tp and tp_pos[t, j] <= p:
                j += 1
            v = np.float64(tp[p]) / (np.float64(fp[p]) + np.float64(tp[p]) + eps)
            if j < n_tp and sufmax[j] > v:
                v = sufmax[j]
            precision[t, r, k, a, m] = v
            score_at[t, r, k, a, m] = scores[sel[p]]
    # oLRP at the first threshold (official LRP-Error accumulate)
    if nd == 0:
        lrp_out[0] = 1.0
        lrp_out[1] = np.nan
        lrp_out[2] = np.nan
        lrp_out[3] = 1.0
        lrp_out[4] = np.nan
        return
    ctp = 0
    cfp = 0
    iou_sum = 0.0
    best = np.inf
    best_i = -1
    b_loc = 0.0
    b_tp = 0
    b_fp = 0
    for i in range(nd):
        d = sel[i]
        if not ignored[d, a, 0]:
            if matched[d, a, 0]:
                ctp += 1
                iou_sum += match_iou[d, a]
            else:
                cfp += 1
        fn = npig - ctp
        loc = ctp - iou_sum
        lrp = (loc / (1 - tau) + cfp + fn) / (ctp + cfp + fn)
        if lrp < best:
            best = lrp
            best_i = i
            b_loc = loc
            b_tp = ctp
            b_fp = cfp
    if ctp == 0:
        lrp_out[0] = 1.0
        lrp_out[1] = np.nan
        lrp_out[2] = np.nan
        lrp_out[3] = 1.0
        lrp_out[4] = np.nan
        return
    lrp_out[0] = best
    lrp_out[1] = b_loc / b_tp
    lrp_out[2] = b_fp / (b_tp + b_fp)
    lrp_out[3] = (npig - b_tp) / npig
    lrp_out[4] = scores[sel[best_i]]


@nb.njit(**_JIT)
def accumulate_classes(
    order,
    cls_start,
    rank,
    scores,
    matched,
    ignored,
    match_iou,
    npig,
    max_dets,
    rec_thrs,
    tau,
    precision,
    recall,
    score_at,
    olrp,
):  # pragma: no cover
    """COCO precision/recall and oLRP for every (class, area, maxDets) cell.

    ``order`` lists the kept detections sorted by class then descending score (stable, so ties
    keep image-id order and then input order); class ``k`` is ``order[cls_start[k]:cls_start[k+1]]``.
    ``npig[k, a]`` counts the non-ignored GTs; cells with ``npig == 0`` stay at -1.
    ``olrp[k, a, m]`` receives (oLRP, Loc, FP, FN, threshold).
    """
    n_k = cls_start.shape[0] - 1
    n_a = npig.shape[1]
    n_m = max_dets.shape[0]
    out = np.empty(5)
    for k in range(n_k):
        s0 = cls_start[k]
        s1 = cls_start[k + 1]
        for m in range(n_m):
            cnt = 0
            for i in range(s0, s1):
                if rank[order[i]] < max_dets[m]:
                    cnt += 1
            sel = np.empty(cnt, dtype=np.int64)
            c = 0
            for i in range(s0, s1):
                if rank[order[i]] < max_dets[m]:
                    sel[c] = order[i]
                    c += 1
            for a in range(n_a):
                if npig[k, a] == 0:
                    continue
                _accumulate_one(
                    sel,
                    scores,
                    matched,
                    ignored,
                    match_iou,
                    a,
                    npig[k, a],
                    rec_thrs,
                    tau,
                    precision,
                    recall,
                    score_at,
                    k,
                    m,
                    out,
                )
                for q in range(5):
                    olrp[k, a, m, q] = out[q]
