"""Loop implementations of AP, aLRP and RS Loss that follow the thesis algorithms line by line.

One Python iteration per positive and vector operations over the other examples: O(P·N) time, like the
official implementations. They are slow on purpose and serve as the readable version in the chapters,
as the baseline of ``benchmarks/loss_speed.py`` and as an independent check of the fast functions in
:mod:`lrpbook.losses.functional`. Each returns plain tensors (loss values and the update vectors), in
float64, for flat 1-D inputs.

Taught in: chapters "Identity update", "aLRP Loss" and "Rank & Sort Loss".
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["smoothed_step", "ap_loss_loop", "alrp_loss_loop", "rank_sort_loss_loop"]


def smoothed_step(x: Tensor, delta: float) -> Tensor:
    """H(x) of thesis Eq. (6.5): 0 below -delta, 1 above delta, linear in between; hard step if delta = 0.

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """
    if delta == 0:
        return (x >= 0).to(x.dtype)
    return torch.clamp(x / (2 * delta) + 0.5, min=0, max=1)


def _setup(logits: Tensor, targets: Tensor, positive: Tensor, delta: float):
    s = logits.detach().reshape(-1).to(torch.float64)
    t = targets.detach().reshape(-1).to(torch.float64)
    pos_idx = torch.nonzero(positive(t)).flatten()
    if len(pos_idx) == 0:
        return s, t, pos_idx, pos_idx
    neg_idx = torch.nonzero((t == 0) & (s >= s[pos_idx].min() - delta)).flatten()
    return s, t, pos_idx, neg_idx


def ap_loss_loop(logits: Tensor, targets: Tensor, delta: float = 1.0) -> tuple[Tensor, Tensor]:
    """AP Loss and its identity update by a loop over positives (thesis Algorithm 3, Sec. 6.3).

    Returns:
        ``(loss, grad)``: a scalar and the update vector (Tensor[n], float64, flat order).

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """
    s, t, pos_idx, neg_idx = _setup(logits, targets, lambda t: t == 1, delta)
    grad = torch.zeros_like(s)
    if len(pos_idx) == 0:
        return s.new_zeros(()), grad
    z = len(pos_idx)
    prec = s.new_zeros(z)
    for p, i in enumerate(pos_idx):
        h_pos = smoothed_step(s[pos_idx] - s[i], delta)
        rank_pos = 1 + h_pos.sum() - h_pos[p]  # the positive itself counts exactly 1
        h = smoothed_step(s[neg_idx] - s[i], delta)
        prec[p] = rank_pos / (rank_pos + h.sum())
    loss = 0.0
    for i in pos_idx:
        lower = s[pos_idx] <= s[i]
        prec_int = prec[lower].max()  # interpolated precision
        err = 1 - prec_int
        loss += err / z
        h = smoothed_step(s[neg_idx] - s[i], delta)  # recomputed: O(N) memory, not O(P N)
        nfp = h.sum()
        grad[i] -= err / z
        if nfp > 0:
            grad[neg_idx] += err * h / (nfp * z)
    return torch.as_tensor(loss, dtype=torch.float64), grad


def alrp_loss_loop(
    logits: Tensor, targets: Tensor, loc_errors: Tensor, delta: float = 1.0, eps: float = 1e-5
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """aLRP Loss by a loop over positives (thesis Algorithm 3 with the update of Eq. (7.7), Sec. 7.3).

    Returns:
        ``(cls_loss, cls_grad, loc_loss, loc_grad)``: ``cls_grad`` is the update w.r.t. the logits
        (Tensor[n]); ``loc_grad`` the gradient of ``loc_loss`` w.r.t. ``loc_errors`` (Tensor[P]), ranks
        held constant; positives in flat order.

    Taught in: chapter "aLRP Loss" (``notebooks/06_alrp_loss.md``).
    """
    s, t, pos_idx, neg_idx = _setup(logits, targets, lambda t: t == 1, delta)
    e = loc_errors.detach().reshape(-1).to(torch.float64)
    grad = torch.zeros_like(s)
    z = len(pos_idx)
    if z == 0:
        return s.new_zeros(()), grad, s.new_zeros(()), e.clone()
    rank = s.new_zeros(z)
    cls = 0.0
    for p, i in enumerate(pos_idx):
        h_pos = smoothed_step(s[pos_idx] - s[i], delta)
        h_pos[p] = 0.0  # k != i
        h = smoothed_step(s[neg_idx] - s[i], delta)
        nfp = h.sum()
        rank[p] = 1 + h_pos.sum() + nfp
        cls += nfp / rank[p] / z
        if nfp > eps:
            g = (nfp + (h_pos * e).sum()) / (rank[p] * z)
            grad[i] -= g
            grad[neg_idx] += g * h / nfp
    order = sorted(range(z), key=lambda p: -s[pos_idx[p]].item())  # descending logit, stable
    loc, running, loc_grad = 0.0, 0.0, s.new_zeros(z)
    for p in order:  # from the top: each positive's running sum of e_loc over those at or above it
        running += e[p]
        loc += running / rank[p] / z
    # d loc / d e_q = sum over positives at or below q of 1 / (rank z): a suffix sum in that order
    inv = torch.tensor(
        [1 / (rank[p].item() * z) for p in order], dtype=torch.float64, device=s.device
    )
    loc_grad[torch.tensor(order, device=s.device)] = torch.flip(
        torch.cumsum(torch.flip(inv, [0]), 0), [0]
    )
    return torch.as_tensor(cls), grad, torch.as_tensor(loc), loc_grad


def rank_sort_loss_loop(
    logits: Tensor, targets: Tensor, delta: float = 0.5, eps: float = 1e-10
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """RS Loss by a loop over positives (thesis Algorithm 3 with the primary terms of Eqs. (8.5)–(8.6)).

    Returns:
        ``(ranking_loss, ranking_grad, sorting_loss, sorting_grad)``, updates as Tensor[n] float64.

    Taught in: chapter "Rank & Sort Loss" (``notebooks/07_rank_sort_loss.md``).
    """
    s, t, pos_idx, neg_idx = _setup(logits, targets, lambda t: t > 0, delta)
    g_rank, g_sort = torch.zeros_like(s), torch.zeros_like(s)
    z = len(pos_idx)
    if z == 0:
        return s.new_zeros(()), g_rank, s.new_zeros(()), g_sort
    y = t[pos_idx]
    rank_loss = sort_loss = 0.0
    for p, i in enumerate(pos_idx):
        h_pos = smoothed_step(s[pos_idx] - s[i], delta)  # includes k = i: H(0)
        h = smoothed_step(s[neg_idx] - s[i], delta)
        nfp, rank_pos = h.sum(), h_pos.sum()
        l_rank = nfp / (rank_pos + nfp)
        l_sort = (h_pos * (1 - y)).sum() / rank_pos
        ge = y >= y[p]
        target = (h_pos[ge] * (1 - y[ge])).sum() / h_pos[ge].sum()
        rank_loss += l_rank / z
        sort_loss += (l_sort - target) / z
        if nfp > eps:
            g_rank[i] -= l_rank / z
            g_rank[neg_idx] += l_rank * h / (nfp * z)
        lower = y < y[p]
        d = h_pos[lower].sum()
        if d > eps:
            g_sort[i] -= (l_sort - target) / z
            g_sort[pos_idx[lower]] += (l_sort - target) * h_pos[lower] / (d * z)
    return torch.as_tensor(rank_loss), g_rank, torch.as_tensor(sort_loss), g_sort
