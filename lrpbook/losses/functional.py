"""AP Loss, aLRP Loss and Rank & Sort Loss: exact, vectorised, with the identity update.

All three rank every entry of ``logits`` together (a detector's ``[anchors x classes]`` logits of a
whole batch, flattened row-major) and are optimised with the identity update of thesis Ch 6
(:mod:`lrpbook.losses.identity_update`). The numbers reproduce the official implementations
(kemaloksuz/aLRPLoss and kemaloksuz/RankSortLoss), quirks included; each quirk is listed in the
function's ``Note``. The official code loops over positives (O(P·N)). Here H is piecewise linear
with breakpoints :math:`\\hat s_i \\pm \\delta` at the P positives, so every sum between positives
and negatives comes from one search of each logit among those 2P breakpoints, two histograms and
prefix sums: O(N log P + P log P), and the N logits are never sorted (:mod:`lrpbook.losses._fast`).
The RS sorting terms use a chunked dense pass over positive pairs (O(P^2) time, bounded memory).

Notation (thesis Ch 2): logits :math:`\\hat s`, :math:`x_{ik} = \\hat s_k - \\hat s_i`, smoothed step

.. math::

    H(x) = \\begin{cases} 0 & x \\le -\\delta \\\\ \\frac{x}{2\\delta} + \\frac12 & -\\delta < x < \\delta \\\\
    1 & x \\ge \\delta \\end{cases} \\qquad \\text{(thesis Eq. (6.5))},

and for a positive :math:`i`: :math:`N_{FP}(i) = \\sum_{j \\in \\mathcal{N}} H(x_{ij})`,
:math:`\\mathrm{rank}^+(i)` the number of positives ranked at or above it and
:math:`\\mathrm{rank}(i) = \\mathrm{rank}^+(i) + N_{FP}(i)`.
Negatives with :math:`\\hat s_j < \\min_{i \\in \\mathcal{P}} \\hat s_i - \\delta` have :math:`H = 0`
against every positive; they are pruned and get exactly zero gradient. ``delta = 0`` gives the hard step
:math:`H(x) = [x \\ge 0]`.

Taught in: chapters "Identity update", "aLRP Loss" and "Rank & Sort Loss".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lrpbook.losses._fast import PositiveBreakpoints, SortedWeights, row_chunks, step
from lrpbook.losses.identity_update import identity_update

__all__ = ["ap_loss", "alrp_loss", "rank_sort_loss", "alrp_localisation_loss"]


def _check(logits: Tensor, targets: Tensor, delta: float, kind: str) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("`logits` and `targets` must be torch.Tensors")
    if logits.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"`logits` must be a floating-point tensor; got dtype {logits.dtype}")
    if logits.shape != targets.shape:
        raise ValueError(
            f"`logits` and `targets` must have the same shape; got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if logits.device != targets.device:
        raise ValueError(f"`logits` is on {logits.device} but `targets` on {targets.device}")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta >= 0):
        raise ValueError(f"`delta` must be a finite number >= 0; got {delta!r}")
    s = logits.detach().reshape(-1).to(torch.float64)
    t = targets.detach().reshape(-1).to(torch.float64)
    if s.numel() and not torch.isfinite(s).all():
        bad = int((~torch.isfinite(s)).nonzero()[0, 0])
        raise ValueError(f"`logits` must be finite; flat entry {bad} is {s[bad].item()}")
    if kind == "binary":
        ok = (t == 1) | (t == 0) | (t == -1)
        allowed = "1 (positive), 0 (negative) or -1 (ignored)"
    else:
        ok = ((t > 0) & (t <= 1)) | (t == 0) | (t == -1)
        allowed = "an IoU in (0, 1] (positive), 0 (negative) or -1 (ignored)"
    if t.numel() and not ok.all():
        bad = int((~ok).nonzero()[0, 0])
        raise ValueError(
            f"`targets` entries must be {allowed}; flat entry {bad} is {t[bad].item()}"
        )
    return s, t


def _zero(logits: Tensor, k: int) -> Tensor:
    """``k`` zero losses with zero gradient, still in the graph of ``logits``."""
    values = logits.new_zeros(k, dtype=logits.dtype)
    return identity_update(logits, values, logits.new_zeros((k, *logits.shape)))


def _h0(delta: float) -> float:
    return 1.0 if delta == 0 else 0.5


def _ranks(s: Tensor, t: Tensor, pos: Tensor, delta: float):
    """The rank quantities of the positives and a function sharing their updates over the negatives.

    Returns ``pos_idx`` (Tensor[P] flat indices), ``sp`` (Tensor[P] logits), ``nfp`` (Tensor[P]
    :math:`N_{FP}(i)`), ``pos_above`` (Tensor[P] :math:`\\sum_{k \\in P} H(x_{ik})`, the self term
    :math:`H(0)` included) and ``share``: ``share(w)`` (Tensor[N]) is
    :math:`\\sum_i w_i H(x_{ij})` on every negative ``j`` and 0 elsewhere.
    """
    pos_idx = pos.nonzero().squeeze(1)  # [P]
    sp = s[pos_idx]  # [P]
    neg = t == 0  # [N]
    kernel = PositiveBreakpoints(sp, delta)
    bins = kernel.locate(s)  # [N] place of every logit among the positives' breakpoints
    nfp = kernel.step_above(bins, s, neg)  # [P]; negatives below every breakpoint count 0 (pruned)
    pos_above = SortedWeights(sp).sum_step_above(sp, delta)  # [P]

    def share(w: Tensor) -> Tensor:
        return torch.where(neg, kernel.weighted_step_below(bins, s, w), s.new_zeros(()))

    return pos_idx, sp, nfp, pos_above, share


def ap_loss(logits: Tensor, targets: Tensor, delta: float = 1.0) -> Tensor:
    """AP Loss :cite:`chen2019aploss` with the identity update (thesis Eqs. (6.6)–(6.13)).

    .. math::

        \\mathcal{L}_{AP} = 1 - \\frac{1}{|\\mathcal{P}|}\\sum_{i \\in \\mathcal{P}}
        \\max_{k \\in \\mathcal{P},\\, \\hat s_k \\le \\hat s_i} \\frac{\\mathrm{rank}^+(k)}{\\mathrm{rank}(k)},

    with :math:`\\mathrm{rank}^+(i) = 1 + \\sum_{k \\in \\mathcal{P}, k \\ne i} H(x_{ik})`. The update of
    positive :math:`i` is :math:`-(1 - \\mathrm{prec}_{int}(i))/Z` and it is shared over the negatives in
    proportion to :math:`H(x_{ij})/N_{FP}(i)`; :math:`Z = |\\mathcal{P}|`.

    Args:
        logits (Tensor[...], float): logits of any shape, ranked all together.
        targets (Tensor[...]): same shape: 1 positive, 0 negative, -1 ignored.
        delta: smoothing of the step function (default 1.0, as in the official code); 0 = hard step.

    Returns:
        Tensor[] scalar loss in [0, 1] (lower is better) whose backward applies the identity update.

    Raises:
        ValueError: on a shape mismatch, non-finite logits, targets outside {-1, 0, 1}, a negative delta.
        TypeError: on non-tensor or non-float logits.

    Note:
        As in the official code, the positive itself counts exactly 1 in :math:`\\mathrm{rank}^+`, the
        interpolated precision is a running maximum over positives sorted by logit, and there is no
        eps gate. With no positive the official code crashes; here the loss is 0 with zero gradient.

    Example:
        >>> import torch
        >>> s = torch.tensor([2.0, 0.0, 1.5, -3.0], requires_grad=True)
        >>> loss = ap_loss(s, torch.tensor([1.0, 1.0, 0.0, 0.0]))
        >>> round(loss.item(), 4)  # precisions 1/1.25 and 2/3: errors 0.2 and 1/3
        0.2667

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """
    s, t = _check(logits, targets, delta, "binary")
    pos = t == 1
    n_pos = int(pos.sum())
    if n_pos == 0:
        return _zero(logits, 1)[0]
    pos_idx, sp, nfp, pos_above, share = _ranks(s, t, pos, delta)
    rank_pos = pos_above - _h0(delta) + 1.0
    prec = rank_pos / (rank_pos + nfp)
    order = torch.argsort(sp, stable=True)  # lowest logit first
    prec_int = torch.empty_like(prec)
    prec_int[order] = torch.cummax(prec[order], 0).values
    err = 1.0 - prec_int
    z = float(n_pos)
    w = torch.where(nfp > 0, err / (nfp.clamp_min(1e-300) * z), torch.zeros_like(nfp))
    grad = share(w)  # [N]: negative j receives sum_i err_i H(x_ij) / (N_FP(i) Z)
    grad[pos_idx] = -err / z
    value = err.mean().reshape(1)
    out = identity_update(
        logits, value.to(logits.dtype), grad.reshape(1, *logits.shape).to(logits.dtype)
    )
    return out[0]


def alrp_loss(
    logits: Tensor, targets: Tensor, loc_errors: Tensor, delta: float = 1.0, eps: float = 1e-5
) -> tuple[Tensor, Tensor]:
    """aLRP Loss :cite:`oksuz2020alrp`: classification and localisation in one ranking (thesis Ch 7).

    .. math::

        \\mathcal{L}_{aLRP} = \\frac{1}{|\\mathcal{P}|}\\sum_{i \\in \\mathcal{P}}
        \\frac{N_{FP}(i) + \\mathcal{E}_{loc}(i)}{\\mathrm{rank}(i)},\\qquad
        \\mathcal{E}_{loc}(i) = \\sum_{k \\in \\mathcal{P}} H(x_{ik})\\, e_{loc}(k)
        \\quad \\text{(thesis Eqs. (7.3)–(7.6))},

    split into the classification part :math:`\\frac{1}{|\\mathcal{P}|}\\sum_i N_{FP}(i)/\\mathrm{rank}(i)`
    and the localisation part. The classification update of positive :math:`i` (thesis Eq. (7.7)) is
    :math:`-(N_{FP}(i) + \\sum_{k \\ne i} H(x_{ik}) e_{loc}(k)) / (\\mathrm{rank}(i) Z)`, so it carries the
    localisation errors of the positives ranked above it; the negatives share the opposite amount in
    proportion to :math:`H(x_{ij})/N_{FP}(i)`.

    Args:
        logits (Tensor[...], float): logits of any shape, ranked all together.
        targets (Tensor[...]): same shape: 1 positive, 0 negative, -1 ignored.
        loc_errors (Tensor[P], float): the localisation error :math:`e_{loc}` in [0, 2] (e.g. the GIoU
            loss) of each positive, in the order the positives appear in the flattened input. Its
            gradient comes from the localisation part.
        delta: smoothing of the step (default 1.0); 0 = hard step.
        eps: positives with :math:`N_{FP}(i) \\le` ``eps`` get no classification update (official gate).

    Returns:
        ``(cls_loss, loc_loss)``, two scalars in [0, 1] (lower is better). ``cls_loss`` backpropagates the
        identity update into ``logits``; ``loc_loss`` backpropagates into ``loc_errors`` with the ranks
        treated as constants.

    Raises:
        ValueError: on a shape mismatch (``loc_errors`` must have one entry per positive), non-finite
            values, targets outside {-1, 0, 1}, a negative delta.

    Note:
        The localisation part is built as the official detector heads build it: positives are sorted
        by descending logit (a hard order), and :math:`\\mathcal{L}_{loc} = \\frac{1}{|\\mathcal{P}|}
        \\sum_i \\big(\\sum_{k \\text{ at or above } i} e_{loc}(k)\\big)/\\mathrm{rank}(i)`
        (:func:`alrp_localisation_loss`). Ties among positive logits are broken by flat position. The
        eps gate also blocks the share of gated positives to the negatives. With no positive both parts
        are 0 with zero gradients (the official code crashes).

    Example:
        >>> import torch
        >>> s = torch.tensor([2.0, 0.0, 1.5, -3.0], requires_grad=True)
        >>> e = torch.tensor([0.2, 0.4], requires_grad=True)  # one per positive, flat order
        >>> cls, loc = alrp_loss(s, torch.tensor([1.0, 1.0, 0.0, 0.0]), e)
        >>> round(cls.item(), 4), round(loc.item(), 4)  # ranks 1.25 and 3: (0.25/1.25 + 1/3) / 2
        (0.2667, 0.18)

    Taught in: chapter "aLRP Loss" (``notebooks/06_alrp_loss.md``).
    """
    s, t = _check(logits, targets, delta, "binary")
    pos = t == 1
    n_pos = int(pos.sum())
    if not isinstance(loc_errors, Tensor):
        raise TypeError("`loc_errors` must be a torch.Tensor with one entry per positive")
    if loc_errors.dim() != 1 or loc_errors.numel() != n_pos:
        raise ValueError(
            f"`loc_errors` must have shape ({n_pos},), one entry per positive in flat order; "
            f"got shape {tuple(loc_errors.shape)}"
        )
    if n_pos and not torch.isfinite(loc_errors.detach()).all():
        raise ValueError("`loc_errors` must be finite")
    if n_pos == 0:
        zero = _zero(logits, 1)[0]
        return zero, loc_errors.sum() * 0.0
    e = loc_errors.detach().to(torch.float64)
    pos_idx, sp, nfp, pos_above, share = _ranks(s, t, pos, delta)
    h0 = _h0(delta)
    rank = pos_above - h0 + 1.0 + nfp
    cls_value = (nfp / rank).mean().reshape(1)
    loc_above = SortedWeights(sp, e).sum_step_above(sp, delta) - h0 * e  # sum_{k != i} H(x_ik) e_k
    gate = nfp > eps
    g_pos = torch.where(gate, -(nfp + loc_above) / (rank * n_pos), torch.zeros_like(nfp))
    w = torch.where(gate, -g_pos / nfp.clamp_min(1e-300), torch.zeros_like(nfp))
    grad = share(w)  # [N]: negatives share -g_pos(i) in proportion to H(x_ij) / N_FP(i)
    grad[pos_idx] = g_pos
    cls = identity_update(
        logits, cls_value.to(logits.dtype), grad.reshape(1, *logits.shape).to(logits.dtype)
    )[0]
    loc = alrp_localisation_loss(loc_errors, sp, rank)
    return cls, loc


def alrp_localisation_loss(loc_errors: Tensor, pos_logits: Tensor, ranks: Tensor) -> Tensor:
    """The localisation part of aLRP Loss as the official heads compute it.

    .. math::

        \\mathcal{L}_{loc} = \\frac{1}{|\\mathcal{P}|}\\sum_{i \\in \\mathcal{P}}
        \\frac{\\sum_{k:\\ \\hat s_k \\text{ at or above } \\hat s_i} e_{loc}(k)}{\\mathrm{rank}(i)}

    Args:
        loc_errors (Tensor[P], float): localisation errors of the positives (gradients flow into them).
        pos_logits (Tensor[P], float): the positives' logits (only their order is used).
        ranks (Tensor[P], float): ``rank(i)`` of each positive (treated as constants).

    Returns:
        Tensor[] scalar; 0 when there is no positive.

    Taught in: chapter "aLRP Loss" (``notebooks/06_alrp_loss.md``).
    """
    n = loc_errors.numel()
    if n == 0:
        return loc_errors.sum() * 0.0
    desc = torch.argsort(pos_logits.detach(), stable=True).flip(0)  # highest logit first
    running = torch.cumsum(loc_errors[desc], 0)
    return (running / ranks.detach()[desc].to(running.dtype)).sum() / n


def rank_sort_loss(
    logits: Tensor, targets: Tensor, delta: float = 0.5, eps: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """Rank & Sort Loss :cite:`oksuz2021rs` (thesis Ch 8): rank positives above negatives and sort them by IoU.

    For each positive :math:`i` with IoU target :math:`y_i` (thesis Eqs. (8.3)–(8.6)):

    .. math::

        \\ell_R(i) = \\frac{N_{FP}(i)}{\\mathrm{rank}(i)},\\qquad
        \\ell_S(i) = \\frac{\\sum_{k \\in \\mathcal{P}} H(x_{ik})(1 - y_k)}{\\mathrm{rank}^+(i)},\\qquad
        \\ell_S^*(i) = \\frac{\\sum_{k \\in \\mathcal{P}: y_k \\ge y_i} H(x_{ik})(1 - y_k)}
        {\\sum_{k \\in \\mathcal{P}: y_k \\ge y_i} H(x_{ik})},

    :math:`\\mathcal{L}_R = \\frac{1}{|\\mathcal{P}|}\\sum_i \\ell_R(i)` and
    :math:`\\mathcal{L}_S = \\frac{1}{|\\mathcal{P}|}\\sum_i (\\ell_S(i) - \\ell_S^*(i))`. The ranking error
    of a positive is distributed over the negatives above it (:math:`H(x_{ij})/N_{FP}(i)`), its sorting
    error over the positives with lower IoU above it (:math:`H(x_{ik})/\\sum_{k: y_k < y_i} H(x_{ik})`).

    Args:
        logits (Tensor[...], float): logits of any shape, ranked all together.
        targets (Tensor[...]): same shape: the IoU in (0, 1] for positives, 0 negatives, -1 ignored.
        delta: smoothing of the step (default 0.5); 0 = hard step.
        eps: official gates: no ranking update when :math:`N_{FP}(i) \\le` ``eps``, no sorting update
            when the sorting denominator is :math:`\\le` ``eps``.

    Returns:
        ``(ranking_loss, sorting_loss)``, two scalars in [0, 1]. The backward of any weighted sum
        ``a * ranking + b * sorting`` applies ``a`` times the ranking update plus ``b`` times the sorting
        update.

    Raises:
        ValueError: on a shape mismatch, non-finite logits, targets outside {-1, 0} ∪ (0, 1], a negative
            delta.

    Note:
        Differences from the official code, each on purpose: (1) the official backward multiplies the
        whole update by the upstream gradient of the *first* output only, so ``0.5 * ranking + sorting``
        would get a wrong gradient; here each output has its own update. (2) With no positive the
        official code crashes; here both losses are 0 with zero gradient. Kept official quirks: the
        positive itself counts :math:`H(0) = 1/2` in :math:`\\mathrm{rank}^+(i)` (1 for ``delta = 0``),
        the same ``delta`` smooths positive-positive relations, and the eps gates.

    Example:
        >>> import torch
        >>> s = torch.tensor([3.0, 2.0, -2.0], requires_grad=True)
        >>> r, srt = rank_sort_loss(s, torch.tensor([0.5, 0.9, 0.0]))
        >>> r.item(), round(srt.item(), 4)  # negative pruned; sorting errors 0 and 0.55/1.5 - 0.1
        (0.0, 0.1333)

    Taught in: chapter "Rank & Sort Loss" (``notebooks/07_rank_sort_loss.md``).
    """
    s, t = _check(logits, targets, delta, "continuous")
    pos = t > 0
    n_pos = int(pos.sum())
    if n_pos == 0:
        zero = _zero(logits, 2)
        return zero[0], zero[1]
    # rank_pos includes the self term H(0)
    pos_idx, sp, nfp, rank_pos, share = _ranks(s, t, pos, delta)
    y = t[pos_idx]  # [P] IoU targets
    rank = rank_pos + nfp
    l_rank = nfp / rank
    l_sort = SortedWeights(sp, 1.0 - y).sum_step_above(sp, delta) / rank_pos
    z = float(n_pos)
    # Ranking update: -l_R(i)/Z on positive i, shared over negatives by H(x_ij) / N_FP(i).
    gate_r = nfp > eps
    w = torch.where(gate_r, l_rank / (nfp.clamp_min(1e-300) * z), torch.zeros_like(nfp))
    grad_rank = share(w)  # [N]
    grad_rank[pos_idx] = torch.where(gate_r, -l_rank / z, torch.zeros_like(nfp))
    # Sorting target and update: one chunked dense pass over positive pairs (rows i, columns k).
    target_sort = torch.empty_like(sp)
    g_pos = torch.zeros_like(sp)
    for rows in row_chunks(n_pos, n_pos):
        h = step(sp[None, :] - sp[rows, None], delta)  # [c, P]: H(x_ik)
        h_ge = h * (y[None, :] >= y[rows, None])  # [c, P]: k with IoU >= y_i (i itself included)
        h_lt = h - h_ge  # [c, P]: k with lower IoU, exactly h * (y_k < y_i)
        target_sort[rows] = (h_ge @ (1.0 - y)) / h_ge.sum(1)
        denom = h_lt.sum(1)  # [c]
        err = l_sort[rows] - target_sort[rows]
        gate_s = denom > eps
        g_pos[rows] -= torch.where(gate_s, err / z, torch.zeros_like(err))
        coef = torch.where(gate_s, err / (denom.clamp_min(1e-300) * z), torch.zeros_like(err))
        g_pos += coef @ h_lt  # [P]: what the lower-IoU positives above i receive
    sort_err = l_sort - target_sort
    grad_sort = torch.zeros_like(s)
    grad_sort[pos_idx] = g_pos
    values = torch.stack([l_rank.mean(), sort_err.mean()]).to(logits.dtype)
    updates = torch.stack([grad_rank, grad_sort]).reshape(2, *logits.shape).to(logits.dtype)
    out = identity_update(logits, values, updates)
    return out[0], out[1]
