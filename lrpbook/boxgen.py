"""The Bounding Box Generator, the positive-RoI generator and OFB sampling (thesis Ch 4, App B).

Given a reference box :math:`B = [x_1, y_1, x_2, y_2]` and a threshold :math:`T`, Algorithm 1 of the
thesis generates a box :math:`\\bar B` with :math:`\\mathrm{IoU}(B, \\bar B) \\ge T` in two steps:

1. the top-left corner :math:`TL(\\bar B)` is drawn from its feasible region, the set of points
   :math:`(\\bar x_1, \\bar y_1)` for which the box :math:`[\\bar x_1, \\bar y_1, x_2, y_2]` (bottom-right
   corner kept at :math:`BR(B)`) has IoU at least :math:`T` (thesis Eqs. (4.1), (4.2), Table B.1);
2. the bottom-right corner is drawn from its feasible region given that top-left corner
   (Tables B.2, B.3).

Each corner is drawn uniformly from the enclosing rectangle of its region and accepted if it lies in the
region (rejection sampling, thesis Sec. 4.3.1.2). Here the membership test is the exact IoU inequality
evaluated in float64 (not a discretised polygon), the enclosing rectangles are the exact closed-form
bounds below, and the whole procedure is vectorised over boxes:

- top-left: :math:`\\bar x_1 \\in [x_2 - w/T,\\ x_2 - wT]`, :math:`\\bar y_1 \\in [y_2 - h/T,\\ y_2 - hT]`
  (:math:`w, h` the width and height of :math:`B`; the upper ends are thesis Eq. (4.1));
- bottom-right, with :math:`\\alpha = \\max(\\bar x_1, x_1)`, :math:`\\beta = \\max(\\bar y_1, y_1)` and
  :math:`I = (x_2 - \\alpha)(y_2 - \\beta)`: :math:`\\bar x_2 \\in [\\alpha + T A(B)/(y_2 - \\beta),\\
  \\bar x_1 + (I/T - A(B) + I)/(y_2 - \\bar y_1)]` (the upper end is Table B.2, region II) and
  symmetrically for :math:`\\bar y_2`.

As in the thesis, the order of the two steps is chosen at random for every box (top-left first or
bottom-right first), which makes the distribution of the generated boxes isotropic around :math:`B`.
Because the bottom-right corner :math:`BR(B)` is always feasible once the top-left corner is, a box whose
second step is not accepted within a few rounds falls back to it, so generation always terminates.

Taught in: chapter "The Bounding Box Generator".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "generate_boxes",
    "generate_boxes_loop",
    "box_iou_pairwise",
    "IOU_DISTRIBUTIONS",
    "iou_distribution_weights",
    "fg_balanced_allocation",
    "generate_prois",
    "ofb_probabilities",
    "ofb_sample",
]

_ROUNDS = 64  # rejection rounds per corner step before the fallback
_OUTER_ROUNDS = 2000  # rounds of whole boxes against iou_max / the image before giving up


def box_iou_pairwise(a: Tensor, b: Tensor) -> Tensor:
    """IoU of corresponding rows of two ``xyxy`` box tensors (thesis Eq. (2.2)).

    The same arithmetic as :func:`torchvision.ops.box_iou` (intersection clamped at 0, union = sum of
    areas minus intersection), one pair per row.

    Args:
        a (Tensor[N, 4]): boxes.
        b (Tensor[N, 4] or Tensor[4]): boxes (broadcast against ``a``).

    Returns:
        Tensor[N]: the IoUs.
    """
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a + area_b - inter)


def _check_gt(gt_box: Tensor, image_size: Sequence[float] | None) -> Tensor:
    if not isinstance(gt_box, Tensor):
        gt_box = torch.as_tensor(gt_box, dtype=torch.float64)
    if gt_box.shape != (4,):
        raise ValueError(
            f"`gt_box` must be one (x1, y1, x2, y2) box of shape (4,); got shape {tuple(gt_box.shape)}"
        )
    g = gt_box.detach().to(torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError(f"`gt_box` must be finite; got {gt_box.tolist()}")
    if not (g[2] > g[0] and g[3] > g[1]):
        raise ValueError(
            f"`gt_box` is degenerate (needs x2 > x1 and y2 > y1); got {gt_box.tolist()}"
        )
    if image_size is not None:
        if len(image_size) != 2 or not all(float(v) > 0 for v in image_size):
            raise ValueError(
                f"`image_size` must be (width, height) with positive entries; got {image_size!r}"
            )
        width, height = float(image_size[0]), float(image_size[1])
        if g[0] < 0 or g[1] < 0 or g[2] > width or g[3] > height:
            raise ValueError(
                f"`gt_box` {gt_box.tolist()} lies outside the image of size (width, height) = {tuple(image_size)}"
            )
    return g


def _check_ious(iou_min: float, iou_max: float | None) -> None:
    if not (isinstance(iou_min, (int, float)) and 0 < iou_min < 1):
        raise ValueError(f"`iou_min` must be in (0, 1); got {iou_min!r}")
    if iou_max is not None and not (iou_min < iou_max <= 1):
        raise ValueError(
            f"`iou_max` must satisfy iou_min < iou_max <= 1; got iou_min={iou_min}, iou_max={iou_max}"
        )


def _uniform(lo: Tensor, hi: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(lo.shape, dtype=torch.float64, generator=generator)
    return lo + u * (hi - lo)


def _sample_top_left(gt: Tensor, t: float, n: int, generator) -> Tensor:
    """Top-left corners (n, 2) of boxes [x, y, x2, y2] with IoU >= t against gt (exact rejection)."""
    x1, y1, x2, y2 = gt.tolist()
    w, h = x2 - x1, y2 - y1
    lo = torch.tensor([x2 - w / t, y2 - h / t], dtype=torch.float64)
    hi = torch.tensor([x2 - w * t, y2 - h * t], dtype=torch.float64)
    out = torch.empty(n, 2, dtype=torch.float64)
    todo = torch.arange(n)
    for _ in range(_ROUNDS * 4):
        if len(todo) == 0:
            return out
        cand = _uniform(lo.expand(len(todo), 2), hi.expand(len(todo), 2), generator)
        boxes = torch.cat([cand, gt[2:].expand(len(todo), 2)], 1)
        ok = box_iou_pairwise(boxes, gt) >= t
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
    out[todo] = gt[:2]  # unreachable in practice (acceptance rate > 1/4); BR(B)=TL(B) box is valid
    return out


def _sample_bottom_right(gt: Tensor, t: float, tl: Tensor, generator) -> Tensor:
    """Bottom-right corners (n, 2) given top-left corners tl (n, 2), IoU >= t (exact, with fallback)."""
    x1, y1, x2, y2 = gt.tolist()
    area = (x2 - x1) * (y2 - y1)
    a, b = tl[:, 0], tl[:, 1]
    alpha, beta = a.clamp(min=x1), b.clamp(min=y1)
    inter = (x2 - alpha) * (y2 - beta)  # intersection when BR = BR(B)
    extra = inter / t - area + inter
    lo = torch.stack([alpha + t * area / (y2 - beta), beta + t * area / (x2 - alpha)], 1)
    hi = torch.stack([a + extra / (y2 - b), b + extra / (x2 - a)], 1)
    lo = torch.minimum(lo, hi)
    out = gt[2:].expand(len(tl), 2).clone()  # fallback: BR(B) is feasible for every accepted TL
    # Two dense rounds over all boxes (no indexing: most boxes are accepted here), then compaction.
    done = torch.zeros(len(tl), dtype=torch.bool)
    for _ in range(2):
        cand = _uniform(lo, hi, generator)
        ok = (
            (box_iou_pairwise(torch.cat([tl, cand], 1), gt) >= t)
            & (cand[:, 0] > tl[:, 0])
            & (cand[:, 1] > tl[:, 1])
            & ~done
        )
        out = torch.where(ok[:, None], cand, out)
        done |= ok
    todo = (~done).nonzero().squeeze(1)
    tl_t, lo_t, hi_t = tl[todo], lo[todo], hi[todo]
    for _ in range(_ROUNDS - 2):
        if len(todo) == 0:
            break
        cand = _uniform(lo_t, hi_t, generator)
        boxes = torch.cat([tl_t, cand], 1)
        ok = (
            (box_iou_pairwise(boxes, gt) >= t)
            & (cand[:, 0] > tl_t[:, 0])
            & (cand[:, 1] > tl_t[:, 1])
        )
        out[todo[ok]] = cand[ok]
        keep = ~ok
        todo, tl_t, lo_t, hi_t = todo[keep], tl_t[keep], lo_t[keep], hi_t[keep]
    return out


def _one_round(gt: Tensor, t: float, n: int, generator) -> Tensor:
    # Random order per box: bottom-right first is top-left first on the box mirrored through the origin.
    flip = torch.rand(n, generator=generator) < 0.5
    mirrored = torch.stack([-gt[2], -gt[3], -gt[0], -gt[1]])
    boxes = torch.empty(n, 4, dtype=torch.float64)
    for mask, ref, sign in ((~flip, gt, 1.0), (flip, mirrored, -1.0)):
        k = int(mask.sum())
        if k == 0:
            continue
        tl = _sample_top_left(ref, t, k, generator)
        br = _sample_bottom_right(ref, t, tl, generator)
        b = torch.cat([tl, br], 1)
        if sign < 0:
            b = -b[:, [2, 3, 0, 1]]
        boxes[mask] = b
    return boxes


def generate_boxes(
    gt_box: Tensor,
    iou_min: float,
    n: int,
    generator: torch.Generator | None = None,
    *,
    iou_max: float | None = None,
    image_size: tuple[float, float] | None = None,
) -> Tensor:
    """Generate ``n`` boxes around ``gt_box`` with IoU at least ``iou_min`` (thesis Algorithm 1).

    Args:
        gt_box (Tensor[4], float): the reference box ``(x1, y1, x2, y2)`` with ``x2 > x1``, ``y2 > y1``.
        iou_min: the threshold :math:`T` in (0, 1); every box has ``IoU >= iou_min``.
        n: number of boxes (>= 0).
        generator: a :class:`torch.Generator` for reproducibility (the same seed gives the same boxes).
        iou_max: optional upper bound, ``iou_min < iou_max <= 1``: every box has ``IoU < iou_max``
            (boxes at or above it are regenerated).
        image_size: optional ``(width, height)``: every box lies inside ``[0, width] x [0, height]``
            (boxes outside are regenerated); ``gt_box`` must lie inside the image.

    Returns:
        Tensor[n, 4]: ``xyxy`` boxes, float64, or float32 when ``gt_box`` is float32 (the guarantee is
        checked on the returned values). The spatial distribution is uniform within each step's feasible
        region (as in the thesis); the IoU is not uniform, it concentrates near ``iou_min`` (Fig. 4.5).

    Raises:
        ValueError: on a degenerate or non-finite ``gt_box``, ``iou_min`` outside (0, 1),
            ``iou_max <= iou_min``, a ``gt_box`` outside the image, or a negative ``n``.
        RuntimeError: if the constraints leave too little room to generate the boxes (e.g. an
            ``iou_max`` barely above ``iou_min`` with a tight image).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> boxes = generate_boxes(torch.tensor([10.0, 10.0, 50.0, 30.0]), 0.7, 1000, g)
        >>> bool((box_iou_pairwise(boxes.double(), torch.tensor([10.0, 10.0, 50.0, 30.0]).double()) >= 0.7).all())
        True
    """
    gt = _check_gt(gt_box, image_size)
    _check_ious(iou_min, iou_max)
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative integer; got {n!r}")
    out_dtype = (
        gt_box.dtype
        if isinstance(gt_box, Tensor) and gt_box.dtype == torch.float32
        else torch.float64
    )
    out = torch.empty(n, 4, dtype=torch.float64)
    todo = torch.arange(n)
    for _ in range(_OUTER_ROUNDS):
        if len(todo) == 0:
            return out.to(out_dtype)
        cand = _one_round(gt, float(iou_min), len(todo), generator)
        check = cand.to(out_dtype).to(torch.float64)
        iou = box_iou_pairwise(check, gt)
        ok = (iou >= iou_min) & (check[:, 2] > check[:, 0]) & (check[:, 3] > check[:, 1])
        if iou_max is not None:
            ok &= iou < iou_max
        if image_size is not None:
            ok &= (check[:, 0] >= 0) & (check[:, 1] >= 0)
            ok &= (check[:, 2] <= float(image_size[0])) & (check[:, 3] <= float(image_size[1]))
        out[todo[ok]] = check[ok]
        todo = todo[~ok]
    if len(todo):
        raise RuntimeError(
            f"could not generate {len(todo)} of {n} boxes satisfying iou_min={iou_min}, iou_max={iou_max}, "
            f"image_size={image_size} around {gt.tolist()}: the constraints leave too little room"
        )
    return out.to(out_dtype)


def generate_boxes_loop(
    gt_box: Sequence[float], iou_min: float, n: int, seed: int = 0
) -> list[list[float]]:
    """A straightforward loop version of Algorithm 1 (one box at a time, pure Python floats).

    Each corner is drawn by rejection from the same enclosing rectangles as :func:`generate_boxes`, with
    the same exact IoU test. It is the readable version shown in the chapter and the baseline of
    ``benchmarks/boxgen_speed.py``. It draws top-left first for every box (no random order).

    Returns:
        A list of ``n`` boxes ``[x1, y1, x2, y2]``.
    """
    import random

    rng = random.Random(seed)
    x1, y1, x2, y2 = (float(v) for v in gt_box)
    w, h, area = x2 - x1, y2 - y1, (x2 - x1) * (y2 - y1)

    def iou(b):
        iw = max(0.0, min(b[2], x2) - max(b[0], x1))
        ih = max(0.0, min(b[3], y2) - max(b[1], y1))
        inter = iw * ih
        return inter / (area + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    boxes = []
    for _ in range(n):
        while True:  # step 1: top-left corner with BR fixed at BR(B)
            a = rng.uniform(x2 - w / iou_min, x2 - w * iou_min)
            b = rng.uniform(y2 - h / iou_min, y2 - h * iou_min)
            if iou([a, b, x2, y2]) >= iou_min:
                break
        alpha, beta = max(a, x1), max(b, y1)
        inter = (x2 - alpha) * (y2 - beta)
        extra = inter / iou_min - area + inter
        c_lo, c_hi = alpha + iou_min * area / (y2 - beta), a + extra / (y2 - b)
        d_lo, d_hi = beta + iou_min * area / (x2 - alpha), b + extra / (x2 - a)
        box = [a, b, x2, y2]
        for _try in range(_ROUNDS):  # step 2: bottom-right corner given the top-left one
            c, d = rng.uniform(min(c_lo, c_hi), c_hi), rng.uniform(min(d_lo, d_hi), d_hi)
            if c > a and d > b and iou([a, b, c, d]) >= iou_min:
                box = [a, b, c, d]
                break
        boxes.append(box)
    return boxes


#: Names of the IoU distributions of the pRoI generator (see :func:`iou_distribution_weights`).
IOU_DISTRIBUTIONS = ("uniform", "left-skewed", "right-skewed")


def iou_distribution_weights(name: str | Sequence[float], num_bins: int) -> Tensor:
    """Bin weights :math:`W_{IoU}` of the pRoI generator (thesis Algorithm 2).

    The thesis names three IoU distributions without giving their weights; lrpbook defines them as
    linear ramps over the ``num_bins`` bins (lowest IoU bin first):

    - ``"uniform"``: :math:`w_k \\propto 1`;
    - ``"left-skewed"``: :math:`w_k \\propto k` (k = 1..K): mass on high IoUs, a long tail to the left;
    - ``"right-skewed"``: :math:`w_k \\propto K + 1 - k`: mass on low IoUs, like RPN proposals (Fig. 4.5).

    Args:
        name: one of :data:`IOU_DISTRIBUTIONS`, or explicit non-negative weights (one per bin).
        num_bins: the number of IoU bins.

    Returns:
        Tensor[num_bins], float64, summing to 1.

    Raises:
        ValueError: on an unknown name or malformed weights.
    """
    k = torch.arange(1, num_bins + 1, dtype=torch.float64)
    if isinstance(name, str):
        if name == "uniform":
            w = torch.ones(num_bins, dtype=torch.float64)
        elif name == "left-skewed":
            w = k
        elif name == "right-skewed":
            w = num_bins + 1 - k
        else:
            raise ValueError(
                f"`iou_distribution` must be one of {IOU_DISTRIBUTIONS} or weights; got {name!r}"
            )
    else:
        w = torch.as_tensor(name, dtype=torch.float64)
        if w.shape != (num_bins,) or (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(
                f"IoU bin weights must be {num_bins} non-negative numbers with a positive sum; got {name!r}"
            )
    return w / w.sum()


def fg_balanced_allocation(labels: Tensor, num_rois: int) -> Tensor:
    """``fgBalancedRoIAlloc`` of Algorithm 2: how many RoIs to generate for each ground truth.

    ``num_rois`` is first split equally over the classes present in ``labels``, then each class's share
    equally over its ground truths; remainders go to the first classes and ground truths in order, so
    the counts sum to exactly ``num_rois``.

    Args:
        labels (Tensor[G], int): class of each ground truth.
        num_rois: total number of RoIs (>= 0).

    Returns:
        Tensor[G], int64: RoIs per ground truth.

    Raises:
        ValueError: if ``labels`` is empty while ``num_rois > 0``.
    """
    labels = torch.as_tensor(labels)
    if labels.numel() == 0:
        if num_rois > 0:
            raise ValueError("cannot allocate RoIs: `labels` is empty (no ground truth)")
        return torch.zeros(0, dtype=torch.int64)
    classes = torch.unique(labels, sorted=True)
    counts = torch.zeros(len(labels), dtype=torch.int64)
    per_class = [
        num_rois // len(classes) + (1 if i < num_rois % len(classes) else 0)
        for i in range(len(classes))
    ]
    for c, share in zip(classes.tolist(), per_class):
        idx = torch.nonzero(labels == c).flatten()
        base, rest = divmod(share, len(idx))
        counts[idx] = base
        counts[idx[:rest]] += 1
    return counts


def generate_prois(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    num_rois: int = 32,
    *,
    iou_bins: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    iou_distribution: str | Sequence[float] = "uniform",
    image_size: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The positive RoI generator (thesis Algorithm 2).

    Allocates ``num_rois`` over the ground truths with :func:`fg_balanced_allocation`, draws an IoU bin
    for each RoI from the multinomial :math:`W_{IoU}` over the bins :math:`\\psi_{IoU}` (``iou_bins``: bin
    ``k`` is ``[iou_bins[k], iou_bins[k+1])``, the last one ``[iou_bins[-1], 1]``), and generates the box
    with :func:`generate_boxes`.

    Args:
        gt_boxes (Tensor[G, 4], float): ``xyxy`` ground-truth boxes.
        gt_labels (Tensor[G], int): their classes.
        num_rois: number of positive RoIs (the thesis uses 32 per image).
        iou_bins: increasing lower edges of the IoU bins, in (0, 1).
        iou_distribution: a name of :data:`IOU_DISTRIBUTIONS` or weights (see
            :func:`iou_distribution_weights`).
        image_size: optional ``(width, height)`` to keep RoIs inside the image.
        generator: a :class:`torch.Generator`.

    Returns:
        ``(rois, labels, gt_index)``: Tensor[num_rois, 4] (float64), Tensor[num_rois] (the class of the
        ground truth each RoI was generated from) and Tensor[num_rois] (its index in ``gt_boxes``).

    Raises:
        ValueError: on malformed boxes, labels of another length, or bins that are not increasing in (0, 1).
    """
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float64)
    gt_labels = torch.as_tensor(gt_labels)
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4 or gt_labels.shape != (gt_boxes.shape[0],):
        raise ValueError(
            f"`gt_boxes` must be (G, 4) and `gt_labels` (G,); got {tuple(gt_boxes.shape)} and {tuple(gt_labels.shape)}"
        )
    edges = [float(v) for v in iou_bins]
    if (
        not edges
        or any(not 0 < e < 1 for e in edges)
        or any(b <= a for a, b in zip(edges, edges[1:]))
    ):
        raise ValueError(f"`iou_bins` must be increasing values in (0, 1); got {iou_bins!r}")
    weights = iou_distribution_weights(iou_distribution, len(edges))
    per_gt = fg_balanced_allocation(gt_labels, num_rois)
    gt_index = torch.repeat_interleave(torch.arange(len(gt_boxes)), per_gt)
    bins = (
        torch.multinomial(weights, num_rois, replacement=True, generator=generator)
        if num_rois
        else gt_index
    )
    rois = torch.empty(num_rois, 4, dtype=torch.float64)
    for g in range(len(gt_boxes)):
        for k in range(len(edges)):
            sel = torch.nonzero((gt_index == g) & (bins == k)).flatten()
            if len(sel) == 0:
                continue
            upper = edges[k + 1] if k + 1 < len(edges) else None
            rois[sel] = generate_boxes(
                gt_boxes[g], edges[k], len(sel), generator, iou_max=upper, image_size=image_size
            )
    return rois, gt_labels[gt_index], gt_index


def ofb_probabilities(labels: Tensor) -> Tensor:
    """Online foreground-balanced (OFB) sampling probabilities (thesis Sec. 4.6.1).

    A positive RoI of class :math:`c` is drawn with probability :math:`p = 1/(C k_c)`, where :math:`C` is
    the number of classes among the positives of the batch and :math:`k_c` the number of positives of
    class :math:`c`; every class then receives the same expected share.

    Args:
        labels (Tensor[R], int): the classes of the positive RoIs of a batch.

    Returns:
        Tensor[R], float64, summing to 1 (empty for no RoI).
    """
    labels = torch.as_tensor(labels)
    if labels.numel() == 0:
        return torch.zeros(0, dtype=torch.float64)
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / (len(classes) * counts[inverse].to(torch.float64))


def ofb_sample(labels: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``num`` positive RoIs without replacement with the OFB probabilities.

    Args:
        labels (Tensor[R], int): classes of the candidate positive RoIs.
        num: how many to keep; all of them when ``num >= R``.
        generator: a :class:`torch.Generator`.

    Returns:
        Tensor[min(num, R)], int64: indices into ``labels``.
    """
    p = ofb_probabilities(labels)
    if num >= len(p):
        return torch.arange(len(p))
    return torch.multinomial(p, num, replacement=False, generator=generator)
