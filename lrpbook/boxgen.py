"""The Bounding Box Generator, the positive-RoI generator and OFB sampling (thesis Ch 4, App B).

Given a reference box :math:`B = [x_1, y_1, x_2, y_2]` and a threshold :math:`T`, Algorithm 1 of the
thesis generates a box :math:`\\bar B` with :math:`\\mathrm{IoU}(B, \\bar B) \\ge T` in two steps:

1. the top-left corner :math:`TL(\\bar B)` is drawn uniformly from its feasible region, the set of
   points :math:`(\\bar x_1, \\bar y_1)` for which the box :math:`[\\bar x_1, \\bar y_1, x_2, y_2]`
   (bottom-right corner kept at :math:`BR(B)`) has IoU at least :math:`T` (thesis Eqs. (4.1),
   (4.2), Table B.1);
2. the bottom-right corner is drawn uniformly from its feasible region given that top-left corner
   (Tables B.2, B.3).

As in the thesis, the order of the two steps is chosen at random for every box (top-left first or
bottom-right first), which makes the distribution isotropic around :math:`B`.

Each corner is drawn by rejection sampling (thesis Sec. 4.3.1.2) from the *tight* enclosing
rectangle of its region, whose sides are the min and max bounds of thesis Tables B.1 and B.2:

- top-left: :math:`\\bar x_1 \\in [x_2 - w/T,\\ x_2 - wT]`,
  :math:`\\bar y_1 \\in [y_2 - h/T,\\ y_2 - hT]` (:math:`w, h` the width and height of :math:`B`);
- bottom-right, with :math:`\\alpha = \\max(\\bar x_1, x_1)`, :math:`\\beta = \\max(\\bar y_1, y_1)`,
  :math:`I = (x_2 - \\alpha)(y_2 - \\beta)` and :math:`E = I/T - A(B) + I`:
  :math:`\\bar x_2 \\le \\bar x_1 + E / (y_2 - \\bar y_1)` (Table B.2, region II) and
  :math:`\\bar x_2 \\ge` the region IV bound of Table B.2; symmetrically for :math:`\\bar y_2`.

A candidate is accepted when the IoU inequality holds, evaluated in float64 (the thesis traces the
boundary as a polygon at steps of :math:`10^{-4}`; here membership is tested exactly). With these
rectangles about half of the candidates of either step are accepted for :math:`T \\ge 0.3` (fewer for
smaller :math:`T`), and the bottom-right step accepts at least about 40 % for :math:`T \\ge 0.3` and
4 % for :math:`T \\ge 0.01` (measured on grids and random samples of top-left corners; chapter
"The Bounding Box Generator" shows the measurement for :math:`T \\ge 0.1`; only corners within
rounding error of their region's boundary, which step 1 practically never draws, accept less).
So no fallback is needed: a step that fails 1,000 times in a row restarts the whole box.
For step 1 that changes nothing (it only draws again from the same rectangle); for step 2, where the
acceptance is at least 4 %, a restart happens with probability below
:math:`0.96^{1000} < 10^{-17}` per box. Finally every box is checked again on the
returned values (after a cast to float32 when the reference box is float32), with the floating-point
operations of :func:`lrpbook.boxes._iou_aligned` in the same order (the tests check that both give
the same bits); a box that fails an ``iou_max`` or image constraint is
regenerated whole, which samples exactly the uniform distribution conditioned on the constraints.

The sampling loops are compiled with numba (first use compiles them, a few seconds, and caches them
on disk) and run one box after the other on one thread. Their random numbers come from a splitmix64
stream seeded by one draw from the given :class:`torch.Generator` (so ``torch.manual_seed`` or a
seeded generator makes the boxes reproducible).

Taught in: chapter "The Bounding Box Generator".
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numba as nb
import numpy as np
import torch
from torch import Tensor

from .boxes import _iou_aligned

__all__ = [
    "generate_boxes",
    "generate_boxes_batched",
    "generate_boxes_loop",
    "IOU_DISTRIBUTIONS",
    "iou_distribution_weights",
    "fg_balanced_allocation",
    "generate_prois",
    "generate_prois_batch",
    "ofb_probabilities",
    "ofb_sample",
]

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_STEP_ROUNDS = 1000  # candidates per corner step before the box restarts (see the module docstring)
_BOX_TRIES = 10_000  # whole boxes per requested box against iou_max / the image before giving up


def box_iou_pairwise(a: Tensor, b: Tensor) -> Tensor:
    """IoU of corresponding rows (kept for compatibility; use :func:`lrpbook.boxes.box_iou_aligned`).

    The unvalidated :func:`lrpbook.boxes._iou_aligned`; ``b`` may be one box of shape ``(4,)``.
    """
    return _iou_aligned(a, b)


# --- the compiled core: one box at a time, in coordinates where B = [0, 0, w, h] -------------------


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@nb.njit(**_JIT)
def _rand(state):  # pragma: no cover - compiled
    """A uniform float64 in [0, 1) from the splitmix64 stream ``state[0]`` (53 random bits)."""
    z = state[0] + _GOLDEN
    state[0] = z
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@nb.njit(**_JIT)
def _iou(a, b, c, d, x1, y1, x2, y2):  # pragma: no cover - compiled
    """IoU of [a, b, c, d] with [x1, y1, x2, y2]: the operations of ``boxes._iou_aligned``."""
    area_a = (c - a) * (d - b)
    area_b = (x2 - x1) * (y2 - y1)
    iw = max(min(c, x2) - max(a, x1), 0.0)
    ih = max(min(d, y2) - max(b, y1), 0.0)
    inter = iw * ih
    return inter / (area_a + area_b - inter)


@nb.njit(**_JIT)
def _tl_rect(w, h, t):  # pragma: no cover - compiled
    """Tight enclosing rectangle of the top-left region of B = [0, 0, w, h] (Table B.1)."""
    return w - w / t, w - w * t, h - h / t, h - h * t


@nb.njit(**_JIT)
def _br_rect(w, h, t, a, b):  # pragma: no cover - compiled
    """Tight enclosing rectangle of the bottom-right region given TL = (a, b) (Table B.2)."""
    area = w * h
    al, be = max(a, 0.0), max(b, 0.0)
    inter = (w - al) * (h - be)  # A(B n B_bar) when BR(B_bar) = BR(B)
    e = inter / t - area + inter  # largest area of a box with that intersection
    c_hi = a + e / (h - b)  # region II max bound
    d_hi = b + e / (w - a)  # region III max bound
    s = (w - a) * (h - b)
    f = (1.0 + t) * inter - t * (area + s)  # >= 0 for a feasible TL
    c_lo = w - f / ((1.0 + t) * (h - be) - t * (h - b))  # region IV min bound
    d_lo = h - f / ((1.0 + t) * (w - al) - t * (w - a))  # region I min bound
    # the region always contains BR(B) = (w, h); the clamps only undo rounding errors
    return min(c_lo, w), max(c_hi, w), min(d_lo, h), max(d_hi, h)


@nb.njit(**_JIT)
def _sample_tl(w, h, t, rng, stats):  # pragma: no cover - compiled
    """Step 1: a top-left corner (a, b), uniform where IoU([a, b, w, h], [0, 0, w, h]) >= t.

    Rejection from the rectangle of Table B.1; returns ``(a, b, accepted)``.
    """
    a_lo, a_hi, b_lo, b_hi = _tl_rect(w, h, t)
    for _ in range(_STEP_ROUNDS):
        stats[0] += 1
        a = a_lo + (a_hi - a_lo) * _rand(rng)
        b = b_lo + (b_hi - b_lo) * _rand(rng)
        if _iou(a, b, w, h, 0.0, 0.0, w, h) >= t:
            return a, b, True
    return 0.0, 0.0, False


@nb.njit(**_JIT)
def _sample_br(w, h, t, a, b, rng, stats):  # pragma: no cover - compiled
    """Step 2: a bottom-right corner (c, d) given (a, b), uniform where the IoU is >= t.

    Rejection from the rectangle of Table B.2; returns ``(c, d, accepted)``.
    """
    c_lo, c_hi, d_lo, d_hi = _br_rect(w, h, t, a, b)
    for _ in range(_STEP_ROUNDS):
        stats[1] += 1
        c = c_lo + (c_hi - c_lo) * _rand(rng)
        d = d_lo + (d_hi - d_lo) * _rand(rng)
        if c > a and d > b and _iou(a, b, c, d, 0.0, 0.0, w, h) >= t:
            return c, d, True
    return w, h, False


@nb.njit(**_JIT)
def _sample_local(w, h, t, rng, stats):  # pragma: no cover - compiled
    """One box [a, b, c, d] with IoU >= t against [0, 0, w, h] (Algorithm 1).

    The corner order is random: bottom-right first is top-left first on B mirrored through its
    centre. Returns the box and whether both steps succeeded within ``_STEP_ROUNDS`` candidates.
    """
    flip = _rand(rng) < 0.5
    a, b, ok = _sample_tl(w, h, t, rng, stats)
    if not ok:
        return a, b, w, h, False
    c, d, ok = _sample_br(w, h, t, a, b, rng, stats)
    if flip:
        return w - c, h - d, w - a, h - b, ok
    return a, b, c, d, ok


@nb.njit(**_JIT)
def _generate_kernel(gts, t_lo, t_hi, counts, limits, f32, seed, out, stats):  # pragma: no cover
    """Fill ``out`` with ``counts[g]`` boxes per reference box ``gts[g]``, grouped by g.

    ``limits[g] = (x_min, y_min, x_max, y_max)`` is the image (infinite when there is none).
    ``stats`` counts TL candidates, BR candidates, step restarts and rejected whole boxes.
    Returns -1, or the index of a reference box for which a box could not be generated.
    """
    rng = np.empty(1, dtype=np.uint64)
    rng[0] = np.uint64(seed)
    j = 0
    for g in range(gts.shape[0]):
        x1, y1, x2, y2 = gts[g, 0], gts[g, 1], gts[g, 2], gts[g, 3]
        w, h, t, u = x2 - x1, y2 - y1, t_lo[g], t_hi[g]
        for _ in range(counts[g]):
            done = False
            for _try in range(_BOX_TRIES):
                a, b, c, d, ok = _sample_local(w, h, t, rng, stats)
                if not ok:
                    stats[2] += 1
                    continue
                p, q, r, s = a + x1, b + y1, c + x1, d + y1
                if f32:
                    p, q = np.float64(np.float32(p)), np.float64(np.float32(q))
                    r, s = np.float64(np.float32(r)), np.float64(np.float32(s))
                iou = _iou(p, q, r, s, x1, y1, x2, y2)
                if (
                    r > p
                    and s > q
                    and iou >= t
                    and iou < u
                    and p >= limits[g, 0]
                    and q >= limits[g, 1]
                    and r <= limits[g, 2]
                    and s <= limits[g, 3]
                ):
                    out[j, 0], out[j, 1], out[j, 2], out[j, 3] = p, q, r, s
                    done = True
                    break
                stats[3] += 1
            if not done:
                return g
            j += 1
    return -1


def _sample(
    gts: np.ndarray,
    t_lo: np.ndarray,
    t_hi: np.ndarray,
    counts: np.ndarray,
    limits: np.ndarray,
    f32: bool,
    generator: torch.Generator | None,
    stats: np.ndarray | None = None,
) -> Tensor:
    """Run the kernel on validated float64 arrays; return float64 boxes grouped by reference box."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    out = np.empty((int(counts.sum()), 4), dtype=np.float64)
    if stats is None:
        stats = np.zeros(4, dtype=np.int64)
    bad = _generate_kernel(gts, t_lo, t_hi, counts, limits, f32, seed, out, stats)
    if bad >= 0:
        hi = None if math.isinf(t_hi[bad]) else float(t_hi[bad])
        lim = limits[bad].tolist()
        raise RuntimeError(
            f"could not generate the boxes of reference box {bad} {gts[bad].tolist()} with "
            f"iou_min={float(t_lo[bad])}, iou_max={hi} inside the image limits {lim}: "
            f"{_BOX_TRIES} tries per box failed, the constraints leave too little room"
        )
    return torch.from_numpy(out)


# --- validation -------------------------------------------------------------------------------


def _as_float_list(x, name: str) -> list[float]:
    if isinstance(x, Tensor):
        return x.detach().cpu().tolist()
    return list(np.asarray(x, dtype=np.float64).tolist())


def _check_gt(gt_box, image_size) -> list[float]:
    try:
        g = _as_float_list(gt_box, "gt_box")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`gt_box` must be four numbers (x1, y1, x2, y2); got {gt_box!r}") from exc
    shape = tuple(gt_box.shape) if isinstance(gt_box, Tensor) else np.shape(g)
    if shape != (4,):
        raise ValueError(
            f"`gt_box` must be one (x1, y1, x2, y2) box of shape (4,); got shape {shape}"
        )
    if not all(math.isfinite(v) for v in g):
        raise ValueError(f"`gt_box` must be finite; got {g}")
    if not (g[2] > g[0] and g[3] > g[1]):
        raise ValueError(f"`gt_box` is degenerate (needs x2 > x1 and y2 > y1); got {g}")
    if image_size is not None:
        width, height = _check_image_size(image_size)
        if g[0] < 0 or g[1] < 0 or g[2] > width or g[3] > height:
            raise ValueError(
                f"`gt_box` {g} lies outside the image of size (width, height) = {tuple(image_size)}"
            )
    return g


def _check_image_size(image_size) -> tuple[float, float]:
    try:
        ok = len(image_size) == 2 and all(float(v) > 0 for v in image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok or not all(math.isfinite(float(v)) for v in image_size):
        raise ValueError(
            f"`image_size` must be (width, height) with positive finite entries; got {image_size!r}"
        )
    return float(image_size[0]), float(image_size[1])


def _check_ious(iou_min, iou_max) -> None:
    if isinstance(iou_min, bool) or not (isinstance(iou_min, (int, float)) and 0 < iou_min < 1):
        raise ValueError(f"`iou_min` must be in (0, 1); got {iou_min!r}")
    if iou_max is not None and not (
        isinstance(iou_max, (int, float)) and iou_min < iou_max <= 1
    ):
        raise ValueError(
            f"`iou_max` must satisfy iou_min < iou_max <= 1; got iou_min={iou_min}, iou_max={iou_max}"
        )


def _per_gt(x, num: int, name: str, dtype) -> np.ndarray:
    """A scalar or one value per reference box, as a float64/int64 array of length ``num``."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"`{name}` must be a number or {num} numbers; got {x!r}")
    if arr.ndim == 0:
        arr = np.full(num, arr.item())
    if arr.shape != (num,):
        raise ValueError(
            f"`{name}` must be a number or have one entry per reference box, shape ({num},); "
            f"got shape {arr.shape}"
        )
    if dtype is np.int64:
        if arr.dtype.kind not in "iub" and not (
            arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
        ):
            raise ValueError(f"`{name}` must hold integers; got {x!r}")
    return arr.astype(dtype)


# --- public API -------------------------------------------------------------------------------


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

    Each box is drawn in the two steps of Algorithm 1, in a random order per box; each corner is
    uniform over its feasible region (thesis Sec. 4.3.1):

    .. math::

        TL(\\bar B) \\sim \\mathcal{U}\\{(\\bar x_1, \\bar y_1) :
        \\mathrm{IoU}(B, [\\bar x_1, \\bar y_1, x_2, y_2]) \\ge T\\},\\quad
        BR(\\bar B) \\sim \\mathcal{U}\\{(\\bar x_2, \\bar y_2) :
        \\mathrm{IoU}(B, [\\bar x_1, \\bar y_1, \\bar x_2, \\bar y_2]) \\ge T\\}.

    Implements thesis Algorithm 1 with the bounds of Eq. (4.1) and Tables B.1–B.2.

    Args:
        gt_box (Tensor[4], float): the reference box ``(x1, y1, x2, y2)`` with ``x2 > x1``,
            ``y2 > y1`` (a sequence of four numbers is accepted too).
        iou_min (float): the threshold :math:`T` in (0, 1); every box has ``IoU >= iou_min``.
        n (int): number of boxes (>= 0).
        generator (torch.Generator, optional): for reproducibility (the same seed gives the same
            boxes); default: torch's global generator.
        iou_max (float, optional): upper bound, ``iou_min < iou_max <= 1``: every box has
            ``IoU < iou_max`` (boxes at or above it are regenerated). Default: none.
        image_size (tuple, optional): ``(width, height)``: every box lies inside
            ``[0, width] x [0, height]`` (boxes outside are regenerated); ``gt_box`` must lie inside
            the image. Default: none.

    Returns:
        Tensor[n, 4]: ``xyxy`` boxes on the CPU, float64, or float32 when ``gt_box`` is a float32
        tensor (the guarantee is checked on the returned values). The IoU is not uniform: it
        concentrates near ``iou_min`` (thesis Fig. 4.5).

    Raises:
        ValueError: on a degenerate, non-finite or malformed ``gt_box``, ``iou_min`` outside (0, 1),
            ``iou_max <= iou_min``, a ``gt_box`` outside the image, or a negative ``n``.
        RuntimeError: if the constraints leave too little room to generate the boxes (e.g. an
            ``iou_max`` barely above ``iou_min`` with a tight image).

    Note:
        The official code traces the region boundaries as polygons at steps of :math:`10^{-4}` and
        draws from their bounding boxes; lrpbook tests membership with the exact inequality in
        float64 and draws from the tight rectangles of Tables B.1–B.2, so no box can fall below
        :math:`T` by a discretisation error. The random numbers come from a splitmix64 stream
        seeded by one draw from ``generator``.

    Example:
        >>> import torch
        >>> from lrpbook.boxes import box_iou_aligned
        >>> g = torch.Generator().manual_seed(0)
        >>> gt = torch.tensor([10.0, 10.0, 50.0, 30.0], dtype=torch.float64)
        >>> boxes = generate_boxes(gt, 0.7, 1000, g)
        >>> boxes.shape
        torch.Size([1000, 4])
        >>> bool((box_iou_aligned(boxes, gt[None]) >= 0.7).all())
        True

    Taught in: chapter "The Bounding Box Generator".
    """
    g = _check_gt(gt_box, image_size)
    _check_ious(iou_min, iou_max)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative integer; got {n!r}")
    f32 = isinstance(gt_box, Tensor) and gt_box.dtype == torch.float32
    inf = math.inf
    limits = [-inf, -inf, inf, inf] if image_size is None else [0.0, 0.0, *map(float, image_size)]
    boxes = _sample(
        np.array([g], dtype=np.float64),
        np.array([float(iou_min)]),
        np.array([inf if iou_max is None else float(iou_max)]),
        np.array([n], dtype=np.int64),
        np.array([limits], dtype=np.float64),
        f32,
        generator,
    )
    return boxes.float() if f32 else boxes


def generate_boxes_batched(
    gt_boxes: Tensor,
    iou_min: float | Sequence[float] | Tensor,
    counts: int | Sequence[int] | Tensor,
    generator: torch.Generator | None = None,
    *,
    iou_max: float | Sequence[float] | Tensor | None = None,
    image_size: tuple[float, float] | Tensor | None = None,
) -> Tensor:
    """:func:`generate_boxes` for many reference boxes at once, each with its own count and bounds.

    Draws ``counts[g]`` boxes around every ``gt_boxes[g]`` in one compiled pass, with the same
    distribution and guarantee as :func:`generate_boxes`:

    .. math::

        T_g \\le \\mathrm{IoU}(B_g, \\bar B) < U_g \\quad \\text{for every box generated from } B_g.

    Implements thesis Algorithm 1, batched as ``genRoIs`` of Algorithm 2 uses it.

    Args:
        gt_boxes (Tensor[G, 4], float): reference boxes ``xyxy`` (any ``G >= 0``).
        iou_min (float or Tensor[G]): the threshold :math:`T_g` of each box, in (0, 1).
        counts (int or Tensor[G], int): boxes per reference box (>= 0).
        generator (torch.Generator, optional): for reproducibility.
        iou_max (float or Tensor[G], optional): upper bound :math:`U_g` of each box, in
            ``(iou_min, 1]``, or ``inf`` for none. Default: none.
        image_size (tuple or Tensor[G, 2], optional): ``(width, height)`` for all boxes or one per
            reference box (boxes of several images in one call). Default: none.

    Returns:
        Tensor[sum(counts), 4]: the boxes of ``gt_boxes[0]`` first, then those of ``gt_boxes[1]``,
        and so on (``torch.repeat_interleave(torch.arange(G), counts)`` gives each box's reference).
        float32 when ``gt_boxes`` is a float32 tensor, else float64. With one reference box and the
        same generator state the result equals :func:`generate_boxes`'.

    Raises:
        ValueError: on malformed ``gt_boxes`` (the message names the row), bounds or counts of the
            wrong shape or outside their ranges, or a reference box outside its image.
        RuntimeError: if the constraints leave too little room for some reference box.

    Example:
        >>> import torch
        >>> gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 40.0, 20.0]])
        >>> boxes = generate_boxes_batched(gts, [0.5, 0.8], [3, 2], torch.Generator().manual_seed(0))
        >>> boxes.shape, boxes.dtype
        (torch.Size([5, 4]), torch.float32)

    Taught in: chapter "The Bounding Box Generator".
    """
    f32 = isinstance(gt_boxes, Tensor) and gt_boxes.dtype == torch.float32
    if isinstance(gt_boxes, Tensor):
        gts = gt_boxes.detach().cpu().to(torch.float64).numpy()
    else:
        gts = np.asarray(gt_boxes, dtype=np.float64)
    if gts.ndim != 2 or gts.shape[1] != 4:
        if gts.size == 0 and gts.ndim <= 2:
            gts = gts.reshape(0, 4)
        else:
            raise ValueError(f"`gt_boxes` must have shape (G, 4); got shape {gts.shape}")
    gts = np.ascontiguousarray(gts)
    num = len(gts)
    finite = np.isfinite(gts).all(1)
    valid = finite & (gts[:, 2] > gts[:, 0]) & (gts[:, 3] > gts[:, 1])
    if not valid.all():
        row = int(np.flatnonzero(~valid)[0])
        why = "is not finite" if not finite[row] else "is degenerate (needs x2 > x1 and y2 > y1)"
        raise ValueError(f"`gt_boxes` row {row} {why}: {gts[row].tolist()}")
    t_lo = _per_gt(iou_min, num, "iou_min", np.float64)
    if not ((t_lo > 0) & (t_lo < 1)).all():
        row = int(np.flatnonzero(~((t_lo > 0) & (t_lo < 1)))[0])
        raise ValueError(f"`iou_min` must be in (0, 1); got {t_lo[row]} for reference box {row}")
    t_hi = np.full(num, np.inf) if iou_max is None else _per_gt(iou_max, num, "iou_max", np.float64)
    good = (t_hi > t_lo) & ((t_hi <= 1) | np.isposinf(t_hi))
    if not good.all():
        row = int(np.flatnonzero(~good)[0])
        raise ValueError(
            f"`iou_max` must satisfy iou_min < iou_max <= 1 (or be inf); got iou_min={t_lo[row]}, "
            f"iou_max={t_hi[row]} for reference box {row}"
        )
    cnt = _per_gt(counts, num, "counts", np.int64)
    if (cnt < 0).any():
        row = int(np.flatnonzero(cnt < 0)[0])
        raise ValueError(f"`counts` must be >= 0; got {cnt[row]} for reference box {row}")
    limits = np.empty((num, 4))
    limits[:, :2], limits[:, 2:] = -np.inf, np.inf
    if image_size is not None:
        if isinstance(image_size, Tensor):
            image_size = image_size.detach().cpu().numpy()
        size = np.asarray(image_size, dtype=np.float64)
        if size.shape == (2,):
            size = np.broadcast_to(_check_image_size(size.tolist()), (num, 2))
        if size.shape != (num, 2) or not (np.isfinite(size) & (size > 0)).all():
            raise ValueError(
                f"`image_size` must be (width, height) or one positive (width, height) per reference "
                f"box, shape ({num}, 2); got {image_size!r}"
            )
        limits[:, :2], limits[:, 2:] = 0.0, size
        inside = (gts[:, :2] >= 0).all(1) & (gts[:, 2:] <= size).all(1)
        if not inside.all():
            row = int(np.flatnonzero(~inside)[0])
            raise ValueError(
                f"`gt_boxes` row {row} {gts[row].tolist()} lies outside its image of size "
                f"(width, height) = {tuple(size[row].tolist())}"
            )
    boxes = _sample(gts, t_lo, t_hi, cnt, limits, f32, generator)
    return boxes.float() if f32 else boxes


def generate_boxes_loop(
    gt_box: Sequence[float], iou_min: float, n: int, seed: int = 0
) -> list[list[float]]:
    """A straightforward loop version of Algorithm 1 (one box at a time, pure Python floats).

    The same steps as :func:`generate_boxes` written as plainly as possible: the corner order is
    random per box (bottom-right first is top-left first on the box mirrored through the origin),
    each corner is drawn from the tight rectangle of thesis Tables B.1–B.2 until it passes the
    exact IoU test. It is the readable version shown in the chapter and the baseline of
    ``benchmarks/boxgen_speed.py``; it does not validate its input.

    .. math::

        \\mathrm{IoU}(B, \\bar B) \\ge T \\quad \\text{for every generated } \\bar B.

    Implements thesis Algorithm 1.

    Args:
        gt_box (sequence of 4 floats): the reference box ``(x1, y1, x2, y2)``.
        iou_min (float): the threshold :math:`T` in (0, 1).
        n (int): number of boxes.
        seed (int): seed of the :class:`random.Random` stream (default 0).

    Returns:
        A list of ``n`` boxes ``[x1, y1, x2, y2]``.

    Example:
        >>> boxes = generate_boxes_loop([0.0, 0.0, 4.0, 2.0], 0.5, 3, seed=1)
        >>> len(boxes), len(boxes[0])
        (3, 4)

    Taught in: chapter "The Bounding Box Generator".
    """
    rng = random.Random(seed)
    t = iou_min

    def iou(box, ref):
        iw = max(0.0, min(box[2], ref[2]) - max(box[0], ref[0]))
        ih = max(0.0, min(box[3], ref[3]) - max(box[1], ref[1]))
        inter = iw * ih
        area = (ref[2] - ref[0]) * (ref[3] - ref[1])
        return inter / ((box[2] - box[0]) * (box[3] - box[1]) + area - inter)

    def top_left_first(ref):
        x1, y1, x2, y2 = ref
        w, h, area = x2 - x1, y2 - y1, (x2 - x1) * (y2 - y1)
        while True:  # step 1: top-left corner, BR kept at BR(B) (Table B.1)
            a = rng.uniform(x2 - w / t, x2 - w * t)
            b = rng.uniform(y2 - h / t, y2 - h * t)
            if iou([a, b, x2, y2], ref) >= t:
                break
        alpha, beta = max(a, x1), max(b, y1)
        inter = (x2 - alpha) * (y2 - beta)
        e = inter / t - area + inter
        s = (x2 - a) * (y2 - b)
        f = (1 + t) * inter - t * (area + s)
        c_lo = x2 - f / ((1 + t) * (y2 - beta) - t * (y2 - b))  # Table B.2
        d_lo = y2 - f / ((1 + t) * (x2 - alpha) - t * (x2 - a))
        c_hi, d_hi = a + e / (y2 - b), b + e / (x2 - a)
        for _ in range(_STEP_ROUNDS):  # step 2: bottom-right corner given TL
            c, d = rng.uniform(c_lo, c_hi), rng.uniform(d_lo, d_hi)
            if c > a and d > b and iou([a, b, c, d], ref) >= t:
                return [a, b, c, d]
        return None  # a float-rounding corner case: start the box again

    x1, y1, x2, y2 = (float(v) for v in gt_box)
    boxes = []
    while len(boxes) < n:
        if rng.random() < 0.5:
            box = top_left_first([x1, y1, x2, y2])
        else:  # bottom-right first = top-left first on B mirrored through 0
            box = top_left_first([-x2, -y2, -x1, -y1])
            box = box and [-box[2], -box[3], -box[0], -box[1]]
        if box is not None:
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
    with :func:`generate_boxes_batched`, all of them in one call.

    .. math::

        \\Pr(\\text{bin } k) = W_{IoU}[k], \\qquad
        \\psi_{IoU}[k] \\le \\mathrm{IoU}(B_g, \\bar B) < \\psi_{IoU}[k+1].

    Implements thesis Algorithm 2.

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
        ValueError: on malformed boxes, labels of another length, bins that are not increasing in
            (0, 1), a ground truth outside the image, or ``num_rois > 0`` without ground truth.

    Example:
        >>> import torch
        >>> gts = torch.tensor([[10.0, 10.0, 50.0, 30.0], [60.0, 20.0, 100.0, 90.0]])
        >>> rois, labels, idx = generate_prois(gts, torch.tensor([1, 2]), 32,
        ...                                    generator=torch.Generator().manual_seed(0))
        >>> rois.shape, labels.bincount().tolist()
        (torch.Size([32, 4]), [0, 16, 16])

    Taught in: chapter "The Bounding Box Generator".
    """
    sizes = None if image_size is None else [image_size]
    return _prois([gt_boxes], [gt_labels], num_rois, iou_bins, iou_distribution, sizes, generator,
                  names=["`gt_boxes`"])[0]


def _prois(
    gt_boxes, gt_labels, num_rois, iou_bins, iou_distribution, image_sizes, generator, names,
    empty_ok=False,
):
    """Algorithm 2 for several images, with one call of the compiled generator for all of them."""
    edges = [float(v) for v in iou_bins]
    if (
        not edges
        or any(not 0 < e < 1 for e in edges)
        or any(b <= a for a, b in zip(edges, edges[1:]))
    ):
        raise ValueError(f"`iou_bins` must be increasing values in (0, 1); got {iou_bins!r}")
    if image_sizes is not None and len(image_sizes) != len(gt_boxes):
        raise ValueError(
            f"`image_sizes` must have one (width, height) per image ({len(gt_boxes)}); "
            f"got {len(image_sizes)}"
        )
    weights = iou_distribution_weights(iou_distribution, len(edges))
    num_bins = len(edges)
    lower = torch.tensor(edges, dtype=torch.float64)
    upper = torch.tensor(edges[1:] + [math.inf], dtype=torch.float64)
    plans, req_boxes, req_lo, req_hi, req_counts, req_sizes = [], [], [], [], [], []
    for i, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels)):
        name = names[i]
        boxes = torch.as_tensor(boxes, dtype=torch.float64).detach().cpu()
        labels = torch.as_tensor(labels)
        if boxes.numel() == 0 and boxes.dim() <= 2:
            boxes = boxes.reshape(0, 4)
        if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
            raise ValueError(
                f"{name} must be (G, 4) and its labels (G,); got {tuple(boxes.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if image_sizes is not None:
            width, height = _check_image_size(image_sizes[i])
            outside = (boxes[:, :2] < 0).any(1) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
            if outside.any():
                row = int(outside.nonzero()[0, 0])
                raise ValueError(
                    f"{name} row {row} {boxes[row].tolist()} lies outside the image of size "
                    f"(width, height) = {(width, height)}"
                )
            req_sizes.append(torch.tensor([[width, height]]).expand(len(boxes) * num_bins, 2))
        n_image = 0 if empty_ok and len(boxes) == 0 else num_rois
        per_gt = fg_balanced_allocation(labels, n_image)
        gt_index = torch.repeat_interleave(torch.arange(len(boxes)), per_gt)
        bins = (
            torch.multinomial(weights, n_image, replacement=True, generator=generator)
            if n_image
            else gt_index
        )
        # one request per (ground truth, IoU bin)
        request = gt_index * num_bins + bins
        plans.append((labels, gt_index, torch.argsort(request, stable=True)))
        req_boxes.append(boxes.repeat_interleave(num_bins, 0))
        req_lo.append(lower.repeat(len(boxes)))
        req_hi.append(upper.repeat(len(boxes)))
        req_counts.append(torch.bincount(request, minlength=len(boxes) * num_bins))
    if not plans:
        return []
    generated = generate_boxes_batched(
        torch.cat(req_boxes),
        torch.cat(req_lo),
        torch.cat(req_counts),
        generator,
        iou_max=torch.cat(req_hi),
        image_size=None if image_sizes is None else torch.cat(req_sizes),
    )
    out, start = [], 0
    for labels, gt_index, order in plans:
        rois = torch.empty(len(gt_index), 4, dtype=torch.float64)
        rois[order] = generated[start : start + len(gt_index)]
        start += len(gt_index)
        out.append((rois, labels[gt_index], gt_index))
    return out


def generate_prois_batch(
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    num_rois: int = 32,
    *,
    iou_bins: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    iou_distribution: str | Sequence[float] = "uniform",
    image_sizes: Sequence[tuple[float, float]] | None = None,
    generator: torch.Generator | None = None,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """:func:`generate_prois` for every image of a batch, with one call of the generator.

    Each image gets its own allocation and IoU bins exactly as :func:`generate_prois` draws them;
    the boxes of all images are then generated by one :func:`generate_boxes_batched` call, which is
    what a training step needs (one call per iteration instead of one per image or per ground truth).

    .. math::

        \\mathrm{RoIs}_i = \\mathrm{generatePRoI}(GTs_i, \\psi_{IoU}, W_{IoU}, RoINum),
        \\quad i = 1, \\dots, \\text{batch size}.

    Implements thesis Algorithm 2, batched over images.

    Args:
        gt_boxes (list of Tensor[G_i, 4], float): the ``xyxy`` ground truths of each image.
        gt_labels (list of Tensor[G_i], int): their classes.
        num_rois (int): positive RoIs per image (default 32, as in the thesis).
        iou_bins (sequence of float): increasing lower edges of the IoU bins, in (0, 1).
        iou_distribution (str or sequence of float): see :func:`iou_distribution_weights`.
        image_sizes (list of (width, height), optional): keeps each image's RoIs inside it.
        generator (torch.Generator, optional): for reproducibility.

    Returns:
        One ``(rois, labels, gt_index)`` per image, as :func:`generate_prois` returns them; an image
        without ground truth gets no RoIs (empty tensors). With one image and the same generator
        state the result equals :func:`generate_prois`'.

    Raises:
        ValueError: as :func:`generate_prois`, naming the image (``gt_boxes[i]``) and row, or when
            the lists have different lengths.

    Example:
        >>> import torch
        >>> boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[5.0, 5.0, 40.0, 20.0]])]
        >>> labels = [torch.tensor([1]), torch.tensor([3])]
        >>> out = generate_prois_batch(boxes, labels, 8, generator=torch.Generator().manual_seed(0))
        >>> [tuple(rois.shape) for rois, _, _ in out]
        [(8, 4), (8, 4)]

    Taught in: chapter "The Bounding Box Generator".
    """
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(
            f"`gt_boxes` and `gt_labels` must have one entry per image; got {len(gt_boxes)} and "
            f"{len(gt_labels)}"
        )
    names = [f"`gt_boxes[{i}]`" for i in range(len(gt_boxes))]
    return _prois(gt_boxes, gt_labels, num_rois, iou_bins, iou_distribution, image_sizes,
                  generator, names, empty_ok=True)


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
