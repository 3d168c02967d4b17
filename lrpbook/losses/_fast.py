"""Sums of the smoothed step over sorted logits, in O((n + m) log m) with prefix sums.

The smoothed step (thesis Eq. (6.5)) is piecewise linear,

    H(x) = 0 for x <= -delta,  x / (2 delta) + 1/2 for |x| < delta,  1 for x >= delta,

so for queries ``q`` and weighted values ``(v_k, w_k)`` sorted by ``v``, ``sum_k w_k H(v_k - q)`` needs
only the totals of ``w`` and ``w v`` over two index ranges found by binary search. Values are centred
(``v - c``) before the prefix sums to limit cancellation. ``delta = 0`` is the hard step
``H(x) = [x >= 0]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class SortedWeights:
    """Values sorted ascending with prefix sums of ``w`` and ``w (v - c)``."""

    def __init__(self, values: Tensor, weights: Tensor | None = None, centre: Tensor | None = None):
        order = torch.argsort(values, stable=True)
        self.v = values[order]
        self.c = self.v.median() if centre is None else centre
        w = torch.ones_like(self.v) if weights is None else weights[order]
        zero = self.v.new_zeros(1)
        self.cw = torch.cat([zero, torch.cumsum(w, 0)])
        self.cwv = torch.cat([zero, torch.cumsum(w * (self.v - self.c), 0)])

    def sum_step_above(self, q: Tensor, delta: float) -> Tensor:
        """``sum_k w_k H(v_k - q)`` for every query: the (weighted) mass ranked above each ``q``."""
        total = self.cw[-1]
        if delta == 0:
            r = torch.searchsorted(self.v, q, right=False)
            return total - self.cw[r]
        lo = torch.searchsorted(self.v, q - delta, right=True)
        hi = torch.searchsorted(self.v, q + delta, right=False)
        lin_w = self.cw[hi] - self.cw[lo]
        lin_wv = self.cwv[hi] - self.cwv[lo]
        return (total - self.cw[hi]) + (lin_wv - lin_w * (q - self.c)) / (2 * delta) + lin_w / 2

    def sum_step_below(self, q: Tensor, delta: float) -> Tensor:
        """``sum_k w_k H(q - v_k)`` for every query: the (weighted) mass that each ``q`` ranks above."""
        if delta == 0:
            return self.cw[torch.searchsorted(self.v, q, right=True)]
        lo = torch.searchsorted(self.v, q - delta, right=True)
        hi = torch.searchsorted(self.v, q + delta, right=False)
        lin_w = self.cw[hi] - self.cw[lo]
        lin_wv = self.cwv[hi] - self.cwv[lo]
        return self.cw[lo] + (lin_w * (q - self.c) - lin_wv) / (2 * delta) + lin_w / 2


def count_le(b: Tensor, x: Tensor, max_levels: int = 6) -> Tensor:
    """``#{m: b[m] <= x_j}`` for every ``x_j`` (= ``torch.searchsorted(b, x, right=True)``), faster.

    For many unsorted queries into a short sorted ``b`` (N logits into 2P breakpoints) a binary search
    per query is slow on CPU (a branch misprediction at each of its ``log2(2P)`` steps). Here a uniform
    grid of ``4 * len(b)`` cells over ``[b[0], b[-1]]`` gives each query, by arithmetic, a range of
    ``b`` that contains the answer (its cell widened by one cell on each side, so that rounding of the
    cell index cannot miss it); a few vectorised bisection steps finish within that range. When ties
    or clusters make some range long (more than ``2**max_levels`` entries), or the grid is too fine for
    float64, it falls back to ``torch.searchsorted``. The result is exact either way.
    """
    n = b.numel()
    if n == 0 or x.device.type != "cpu":  # on GPUs torch.searchsorted is fast already
        return torch.searchsorted(b, x, right=True)
    lo, hi = float(b[0]), float(b[-1])
    cells = 4 * n
    width = (hi - lo) / cells
    if not width > 1e-10 * (abs(lo) + abs(hi)):
        return torch.searchsorted(b, x, right=True)
    # grid edges e_-1 .. e_C+1
    edges = lo + width * torch.arange(-1, cells + 2, dtype=b.dtype, device=b.device)
    edges[0], edges[-1] = -math.inf, math.inf
    at = torch.searchsorted(b, edges, right=True)  # #{b <= e}
    low, up = at[:-3], at[3:]  # cell c: #{b <= e_(c-1)} and #{b <= e_(c+2)}
    levels = int((up - low).max()).bit_length()
    if levels > max_levels:
        return torch.searchsorted(b, x, right=True)
    cell = ((x - lo) / width).floor_().clamp_(0, cells - 1).long()  # [N]
    k = low.index_select(0, cell)  # [N] a count known to be <= the answer
    pad = torch.cat([b, b.new_full((1 << levels,), math.inf)])
    for level in reversed(range(levels)):
        cand = k + (1 << level)
        k = torch.where(pad.index_select(0, cand - 1) <= x, cand, k)
    return k


class PositiveBreakpoints:
    """Sums of H between the few positives and all N entries, without sorting the N entries.

    The positives' logits ``v`` (sorted) give the breakpoints of H: ``v - delta`` and ``v + delta``
    (just ``v`` for the hard step). One binary search places every entry ``x_j`` among them
    (``locate``, O(N log P)); then

    - ``step_above``: ``sum_j m_j H(x_j - v_i)`` for every positive (e.g. ``N_FP(i)``) from two
      histograms of the entries over the ``2P + 1`` bins (count and centred sum) and their prefix sums;
    - ``weighted_step_below``: ``sum_i w_i H(x_j - v_i)`` for every entry (e.g. the update of the
      negatives) from prefix sums of ``w`` and ``w v`` over the sorted positives.

    An entry below every breakpoint (a negative with H = 0 against every positive: the official
    pruning) falls in bin 0, counts for nothing and gets exactly 0.
    """

    def __init__(self, positives: Tensor, delta: float):
        self.delta = delta
        self.order = torch.argsort(positives, stable=True)
        self.v = positives[self.order]  # [P] ascending
        self.c = self.v.median()
        n = self.v.numel()
        if delta == 0:
            self.b = self.v  # [P]
            self.n_lo = self.n_hi = torch.arange(n + 1, device=self.v.device)
        else:
            b = torch.cat([self.v - delta, self.v + delta])  # [2P]
            upper = torch.cat([torch.zeros(n), torch.ones(n)]).to(self.v.device, torch.long)
            order = torch.argsort(b, stable=True)
            self.b = b[order]
            zero = upper.new_zeros(1)
            # among the first k breakpoints: how many v + delta (entries fully above those
            # positives) and how many v - delta (entries at least in their linear part)
            self.n_lo = torch.cat([zero, torch.cumsum(upper[order], 0)])
            self.n_hi = torch.cat([zero, torch.cumsum(1 - upper[order], 0)])

    def locate(self, x: Tensor) -> Tensor:
        """Bin of every entry: the number of breakpoints ``<= x_j``."""
        return count_le(self.b, x)

    def step_above(self, bins: Tensor, x: Tensor, mask: Tensor) -> Tensor:
        """``sum_j mask_j H(x_j - v_i)`` for every positive ``i`` (in the original order)."""
        m = mask.to(x.dtype)
        size = self.b.numel() + 1
        zero = x.new_zeros(1)
        cnt = torch.cat([zero, torch.cumsum(torch.bincount(bins, weights=m, minlength=size), 0)])
        csum = torch.cat(
            [zero, torch.cumsum(torch.bincount(bins, weights=(x - self.c) * m, minlength=size), 0)]
        )
        v = self.v[torch.argsort(self.order)]  # back to the original order
        total = cnt[-1]
        if self.delta == 0:
            return total - cnt[torch.searchsorted(self.b, v, right=True)]
        k_lo = torch.searchsorted(self.b, v - self.delta, right=True)
        k_hi = torch.searchsorted(self.b, v + self.delta, right=True)
        lin_n = cnt[k_hi] - cnt[k_lo]
        lin_s = csum[k_hi] - csum[k_lo]
        return (total - cnt[k_hi]) + (lin_s - lin_n * (v - self.c)) / (2 * self.delta) + lin_n / 2

    def weighted_step_below(self, bins: Tensor, x: Tensor, w: Tensor) -> Tensor:
        """``sum_i w_i H(x_j - v_i)`` for every entry ``j``; ``w`` in the positives' original order."""
        ws = w[self.order]
        zero = ws.new_zeros(1)
        cw = torch.cat([zero, torch.cumsum(ws, 0)])
        lo = self.n_lo.index_select(0, bins)  # positives with v_i + delta <= x_j: H = 1
        if self.delta == 0:
            return cw.index_select(0, lo)
        cwv = torch.cat([zero, torch.cumsum(ws * (self.v - self.c), 0)])
        hi = self.n_hi.index_select(0, bins)  # positives with v_i - delta <= x_j: H > 0 (or at 0)
        cw_lo = cw.index_select(0, lo)  # index_select: much faster than cw[lo] on CPU
        lin_w = cw.index_select(0, hi) - cw_lo
        lin_wv = cwv.index_select(0, hi) - cwv.index_select(0, lo)
        return cw_lo + (lin_w * (x - self.c) - lin_wv) / (2 * self.delta) + lin_w / 2


def step(x: Tensor, delta: float) -> Tensor:
    """The smoothed step H(x) elementwise (hard step when ``delta == 0``)."""
    if delta == 0:
        return (x >= 0).to(x.dtype)
    return torch.clamp(x / (2 * delta) + 0.5, 0.0, 1.0)


def row_chunks(n_rows: int, n_cols: int, budget: int = 1 << 17):
    """Slices of rows so that each dense block has about ``budget`` entries.

    The default (1 MiB of float64 per block) keeps the blocks in the CPU cache: on the 2-core test
    machine it was 2-3x faster than 32 MiB blocks for P = 3000, and it bounds the memory.
    """
    rows = max(1, budget // max(1, n_cols))
    for start in range(0, n_rows, rows):
        yield slice(start, min(n_rows, start + rows))
