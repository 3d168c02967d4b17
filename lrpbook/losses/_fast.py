"""Sums of the smoothed step over sorted logits, in O((n + m) log m) with prefix sums.

The smoothed step (thesis Eq. (6.5)) is piecewise linear,

    H(x) = 0 for x <= -delta,  x / (2 delta) + 1/2 for |x| < delta,  1 for x >= delta,

so for queries ``q`` and weighted values ``(v_k, w_k)`` sorted by ``v``, ``sum_k w_k H(v_k - q)`` needs
only the totals of ``w`` and ``w v`` over two index ranges found by binary search. Values are centred
(``v - c``) before the prefix sums to limit cancellation. ``delta = 0`` is the hard step
``H(x) = [x >= 0]``.
"""

from __future__ import annotations

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


def step(x: Tensor, delta: float) -> Tensor:
    """The smoothed step H(x) elementwise (hard step when ``delta == 0``)."""
    if delta == 0:
        return (x >= 0).to(x.dtype)
    return torch.clamp(x / (2 * delta) + 0.5, 0.0, 1.0)


def row_chunks(n_rows: int, n_cols: int, budget: int = 1 << 22):
    """Slices of rows so that each dense block has about ``budget`` entries."""
    rows = max(1, budget // max(1, n_cols))
    for start in range(0, n_rows, rows):
        yield slice(start, min(n_rows, start + rows))
