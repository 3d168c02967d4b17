"""AP Loss, aLRP Loss and Rank & Sort Loss: exact, vectorised, with the identity update.

All three rank every entry of ``logits`` together (a detector's ``[anchors x classes]`` logits of a
whole batch, flattened row-major) and are optimised with the identity update of thesis Ch 6
(:mod:`lrpbook.losses.identity_update`). The numbers reproduce the official implementations
(kemaloksuz/aLRPLoss and kemaloksuz/RankSortLoss), quirks included; each quirk is listed in the
function's ``Note``. The official code loops over positives (O(P·N)). Here H is piecewise linear
with breakpoints :math:`\\hat s_i \\pm \\delta` at the P positives, so every sum between positives
and negatives comes from locating each logit among those 2P breakpoints (a uniform grid, O(N) on the
CPU), two histograms and prefix sums, and the N logits are never sorted. The RS sorting terms, sums
over the positives with a larger IoU within a logit range, are 2-d dominance sums answered for all
positives at once in O(P log P) (:mod:`lrpbook.losses._fast`): on the CPU by a compiled
Fenwick-tree sweep, on other devices by a wavelet matrix.

On CUDA (any device but the CPU) the functions make no host-device synchronisation: the positives go
into a buffer of capacity N instead of being counted, and value checks are asynchronous device-side
asserts (``check_values``).

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
from typing import Any

import torch
from torch import Tensor

from lrpbook.losses._fast import NegativeSide, PositiveSide, sync_free

__all__ = ["ap_loss", "alrp_loss", "rank_sort_loss", "alrp_localisation_loss"]

IOU_TOLERANCE = 1e-6
"""IoU targets in ``(1, 1 + IOU_TOLERANCE]`` are rounding errors (e.g. ``1.0000001`` from float32 IoUs):
accepted and clamped to 1. Larger values are rejected."""


def _entry(shape: tuple, flat: int) -> str:
    """The index of flat entry ``flat`` in a tensor of ``shape``, as the user indexes it: ``(3, 7)``."""
    idx = []
    for d in reversed(shape):
        idx.append(flat % d if d else 0)
        flat = flat // d if d else 0
    idx.reverse()
    return str(idx[0]) if len(idx) == 1 else str(tuple(idx))


def _mode(check_values: bool | None, device: torch.device) -> str:
    if check_values is None:
        return "async" if sync_free(device) else "eager"
    return "eager" if check_values else "off"


def _check_finite(x: Tensor, name: str, shape: tuple, mode: str) -> None:
    """Raise (``eager``) or assert on the device (``async``) that ``x`` is finite."""
    if mode == "off" or x.numel() == 0:
        return
    if mode == "async":
        torch._assert_async(torch.isfinite(x).all(), f"`{name}` must be finite")
        return
    if torch.isfinite(
        x.sum()
    ):  # one fast pass; a NaN or inf (or an overflow) makes the sum non-finite
        return
    bad = (~torch.isfinite(x)).nonzero()
    if bad.numel():
        flat = int(bad[0, 0])
        raise ValueError(
            f"`{name}` must be finite; entry {_entry(shape, flat)} is {x[flat].item()}"
        )


def _check_args(logits: Any, targets: Any, delta: Any) -> None:
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("`logits` and `targets` must be torch.Tensors")
    if logits.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"`logits` must be a floating-point tensor; got dtype {logits.dtype}")
    if logits.shape != targets.shape:
        hint = ""
        integer = not (targets.is_floating_point() or targets.dtype == torch.bool)
        if integer and targets.dim() == logits.dim() - 1 and targets.shape == logits.shape[:-1]:
            n, c = (math.prod(targets.shape), logits.shape[-1])
            hint = (
                f". `targets` looks like integer class indices; these losses need one target per logit, "
                f"shape {tuple(logits.shape)}: for N = {n} anchors and C = {c} classes build "
                "`t = torch.zeros(N, C); t[torch.arange(N), labels] = iou` for positives "
                "(the IoU for rank_sort_loss, 1.0 for ap_loss/alrp_loss), leave background rows 0 "
                "and set ignored anchors' rows to -1"
            )
        raise ValueError(
            f"`logits` and `targets` must have the same shape; got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}{hint}"
        )
    if logits.device != targets.device:
        raise ValueError(f"`logits` is on {logits.device} but `targets` on {targets.device}")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta >= 0):
        raise ValueError(f"`delta` must be a finite number >= 0; got {delta!r}")


def _check_targets(t: Tensor, pos: Tensor, neg: Tensor, kind: str, shape: tuple, mode: str) -> None:
    """Every target is -1, 0 or a positive value (1 for binary; an IoU in (0, 1 + tol] otherwise)."""
    if mode == "off" or t.numel() == 0:
        return
    if kind == "binary":
        allowed = "1 (positive), 0 (negative) or -1 (ignored)"
        high_ok = None
    else:
        allowed = f"an IoU in (0, 1] (positive; up to 1 + {IOU_TOLERANCE:g} is taken as 1), 0 (negative) or -1 (ignored)"
        high_ok = t.max() <= 1 + IOU_TOLERANCE
    count = pos.sum() + neg.sum() + (t == -1).sum()
    ok = count == t.numel()
    if high_ok is not None:
        ok = ok & high_ok
    if mode == "async":
        torch._assert_async(ok, f"`targets` entries must be {allowed}")
        return
    if bool(ok):
        return
    good = pos | neg | (t == -1)
    if high_ok is not None:
        good &= t <= 1 + IOU_TOLERANCE
    flat = int((~good).nonzero()[0, 0])
    raise ValueError(
        f"`targets` entries must be {allowed}; entry {_entry(shape, flat)} is {t[flat].item()}"
    )


class _Update(torch.autograd.Function):
    """Loss values whose backward is a dense update (per output) plus updates on a few entries.

    ``forward(logits, values, dense, index, sparse)``: ``values`` (K,), ``dense`` (Kd, N) for the
    first Kd outputs, ``sparse`` (K - Kd, P) added at the flat ``index`` (P,) for the others. Saves
    memory over :class:`~lrpbook.losses.identity_update.IdentityUpdate` when an update (the RS sorting
    update) is zero off the positives.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, values: Tensor, dense: Tensor, index: Tensor, sparse: Tensor
    ):
        ctx.save_for_backward(dense, index, sparse)
        ctx.shape = logits.shape
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor):
        dense, index, sparse = ctx.saved_tensors
        kd = dense.shape[0]
        go = grad_output.to(dense.dtype)
        grad = dense[0] * go[0]
        for k in range(1, kd):
            grad.add_(dense[k] * go[k])
        if sparse.numel():
            grad.index_add_(0, index, (sparse * go[kd:, None]).sum(0))
        return grad.reshape(ctx.shape), None, None, None, None


class _Positives:
    """The positives in ascending logit order (ties by flat position), in a capacity layout.

    CPU: exactly the P positives. Other devices (no synchronisation allowed): N slots, the P positives
    first, then unused slots with ``+inf`` logits, marked by ``valid``.
    """

    def __init__(self, x: Tensor, pos: Tensor):
        n = x.numel()
        self.n = n
        if not sync_free(x.device):
            idx = pos.nonzero().squeeze(1)
            sp = x.index_select(0, idx).to(torch.float64)
            self.valid = None
            self.count = idx.numel()
            self.z = x.new_tensor(float(max(self.count, 1)), dtype=torch.float64)
        else:
            slot = torch.cumsum(pos, 0) - 1
            buf = torch.full((n + 1,), n, dtype=torch.long, device=x.device)
            buf.scatter_(0, torch.where(pos, slot, n), torch.arange(n, device=x.device))
            idx = buf[:n]
            valid = idx < n
            idx = idx.clamp_max(max(n - 1, 0))
            sp = torch.where(valid, x.index_select(0, idx).to(torch.float64), math.inf)
            self.valid = valid
            self.count = None
            self.z = valid.sum().clamp_min(1).to(torch.float64)
        self.order = torch.argsort(sp, stable=True)  # slots, lowest logit first
        self.v = sp[self.order]  # [Pc] ascending
        self.idx = idx[self.order]  # flat index of each sorted slot
        if self.valid is not None:
            self.valid = self.valid[self.order]

    def gather(self, values: Tensor) -> Tensor:
        """``values`` (Tensor[N]) at the sorted positives, float64 (0 in unused slots)."""
        out = values.index_select(0, self.idx).to(torch.float64)
        return out if self.valid is None else torch.where(self.valid, out, 0.0)

    def from_flat_order(self, values: Tensor) -> Tensor:
        """``values`` given per positive in flat order (Tensor[P]) to the sorted slots."""
        if self.valid is None:
            return values[self.order]
        pad = values.new_zeros(self.n - values.numel()) if self.n > values.numel() else values[:0]
        return torch.cat([values, pad])[: self.n][self.order]

    def mask(self, x: Tensor) -> Tensor:
        return x if self.valid is None else torch.where(self.valid, x, 0.0)


def _prepare(logits: Tensor, targets: Tensor, delta: float, kind: str, check_values: bool | None):
    _check_args(logits, targets, delta)
    x = logits.detach().reshape(-1)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    t = targets.detach().reshape(-1)
    if not t.is_floating_point():
        t = t.to(x.dtype)
    mode = _mode(check_values, x.device)
    _check_finite(x, "logits", tuple(logits.shape), mode)
    pos = t == 1 if kind == "binary" else t > 0
    neg = t == 0
    _check_targets(t, pos, neg, kind, tuple(logits.shape), mode)
    return x, t, pos, neg, mode


def _zero(logits: Tensor, k: int) -> Tensor:
    """``k`` zero losses with zero gradient, still in the graph of ``logits``."""
    dense = logits.new_zeros((k, logits.numel()))
    empty = torch.zeros(0, dtype=torch.long, device=logits.device)
    return _Update.apply(logits, logits.new_zeros(k), dense, empty, dense[:0, :0])


def _h0(delta: float) -> float:
    """H(0): 1/2 for the smoothed step, 1 for the hard step (``delta = 0``)."""
    return 1.0 if delta == 0 else 0.5


def _attach(
    logits: Tensor,
    x: Tensor,
    pp: _Positives,
    values: Tensor,
    dense: list[Tensor],
    pos_dense: list[Tensor],
    sparse: list[Tensor],
) -> Tensor:
    """Put the per-positive updates (sorted slots) into the dense updates and attach them to values."""
    dt = x.dtype
    rows = []
    for d, g in zip(dense, pos_dense):
        d.index_add_(0, pp.idx, pp.mask(g).to(dt))  # positives get 0 from the negative share
        rows.append(d)
    sp = torch.stack([pp.mask(g) for g in sparse]).to(dt) if sparse else x.new_zeros(0, 0)
    stacked = rows[0].unsqueeze(0) if len(rows) == 1 else torch.stack(rows)
    return _Update.apply(logits, values.to(logits.dtype), stacked, pp.idx, sp)


def ap_loss(
    logits: Tensor, targets: Tensor, delta: float = 1.0, *, check_values: bool | None = None
) -> Tensor:
    """AP Loss :cite:`chen2019aploss` with the identity update (thesis Eq. (6.2), Sec. 6.3).

    .. math::

        \\mathcal{L}_{AP} = 1 - \\frac{1}{|\\mathcal{P}|}\\sum_{i \\in \\mathcal{P}}
        \\max_{k \\in \\mathcal{P},\\, \\hat s_k \\le \\hat s_i} \\frac{\\mathrm{rank}^+(k)}{\\mathrm{rank}(k)},

    with :math:`\\mathrm{rank}^+(i) = 1 + \\sum_{k \\in \\mathcal{P}, k \\ne i} H(x_{ik})`. The update of
    positive :math:`i` is :math:`-(1 - \\mathrm{prec}_{int}(i))/Z` and it is shared over the negatives in
    proportion to :math:`p(j|i) = H(x_{ij})/N_{FP}(i)` (thesis Sec. 6.3; without interpolation the
    primary terms are :math:`L_{ij} = H(x_{ij})/\\mathrm{rank}(i)`, Eq. (6.13)); :math:`Z = |\\mathcal{P}|`.

    Args:
        logits (Tensor[...], float): logits of any shape, ranked all together.
        targets (Tensor[...]): same shape: 1 positive, 0 negative, -1 ignored.
        delta: smoothing of the step function (default 1.0, as in the official code); 0 = hard step.
        check_values: None (default): check values eagerly on the CPU (errors name the bad entry by
            its index) and with asynchronous device-side asserts elsewhere (no host-device
            synchronisation); True: eager checks everywhere (synchronises on CUDA); False: no value
            checks (shapes and dtypes are always checked).

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
    x, t, pos, neg, _ = _prepare(logits, targets, delta, "binary", check_values)
    pp = _Positives(x, pos)
    if pp.count == 0:
        return _zero(logits, 1)[0]
    side = NegativeSide(x, neg, pp.v, pp.valid, delta)
    nfp = side.nfp()  # [Pc] sorted slots
    rank_pos = pp.mask(PositiveSide(pp.v, pp.valid, delta).above() - _h0(delta) + 1.0)
    prec = rank_pos / (rank_pos + nfp).clamp_min(1e-300)
    err = pp.mask(
        1.0 - torch.cummax(prec, 0).values
    )  # interpolated: running max, lowest logit first
    z = pp.z
    w = torch.where(nfp > 0, err / (nfp.clamp_min(1e-300) * z), 0.0)
    grad = side.share(w, x.dtype)  # [N]: negative j receives sum_i err_i H(x_ij) / (N_FP(i) Z)
    value = (err.sum() / z).reshape(1)
    return _attach(logits, x, pp, value, [grad], [-err / z], [])[0]


def alrp_loss(
    logits: Tensor,
    targets: Tensor,
    loc_errors: Tensor,
    delta: float = 1.0,
    eps: float = 1e-5,
    *,
    check_values: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """aLRP Loss :cite:`oksuz2020alrp`: classification and localisation in one ranking (thesis Ch 7).

    .. math::

        \\mathcal{L}_{aLRP} = \\frac{1}{|\\mathcal{P}|}\\sum_{i \\in \\mathcal{P}}
        \\frac{N_{FP}(i) + \\mathcal{E}_{loc}(i)}{\\mathrm{rank}(i)},\\qquad
        \\mathcal{E}_{loc}(i) = \\sum_{k \\in \\mathcal{P}} H(x_{ik})\\, e_{loc}(k)
        \\quad \\text{(thesis Eqs. (7.2)–(7.5))},

    split into the classification part :math:`\\frac{1}{|\\mathcal{P}|}\\sum_i N_{FP}(i)/\\mathrm{rank}(i)`
    and the localisation part. The classification update of positive :math:`i` (thesis Eq. (7.7)) is
    :math:`-(N_{FP}(i) + \\sum_{k \\ne i} H(x_{ik}) e_{loc}(k)) / (\\mathrm{rank}(i) Z)`, so it carries the
    localisation errors of the positives ranked above it; the negatives share the opposite amount in
    proportion to :math:`H(x_{ij})/N_{FP}(i)`.

    Args:
        logits (Tensor[...], float): logits of any shape, ranked all together.
        targets (Tensor[...]): same shape: 1 positive, 0 negative, -1 ignored.
        loc_errors (Tensor[P], float): the localisation error :math:`e_{loc}` of each positive, in the
            order the positives appear in the flattened input. The thesis defines
            :math:`\\mathcal{E}_{loc}(i) = (1 - \\mathrm{IoU}(i))/(1 - \\tau)` (Eq. (7.3)) and allows a
            GIoU-based error instead; the official heads pass the GIoU loss, in [0, 2]. Its gradient
            comes from the localisation part.
        delta: smoothing of the step (default 1.0); 0 = hard step.
        eps: positives with :math:`N_{FP}(i) \\le` ``eps`` get no classification update (official gate).
        check_values: as in :func:`ap_loss`; also covers ``loc_errors``.

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
    x, t, pos, neg, mode = _prepare(logits, targets, delta, "binary", check_values)
    if not isinstance(loc_errors, Tensor):
        raise TypeError("`loc_errors` must be a torch.Tensor with one entry per positive")
    pp = _Positives(x, pos)
    n_pos = pp.count
    shape_ok = loc_errors.dim() == 1 and (n_pos is None or loc_errors.numel() == n_pos)
    if not shape_ok:
        raise ValueError(
            f"`loc_errors` must have shape ({'P' if n_pos is None else n_pos},), one entry per positive "
            f"in flat order; got shape {tuple(loc_errors.shape)}"
        )
    if n_pos is None and mode != "off":
        torch._assert_async(
            pp.z == max(loc_errors.numel(), 1), "`loc_errors` must have one entry per positive"
        )
    _check_finite(loc_errors.detach(), "loc_errors", tuple(loc_errors.shape), mode)
    if n_pos == 0:
        return _zero(logits, 1)[0], loc_errors.sum() * 0.0
    side = NegativeSide(x, neg, pp.v, pp.valid, delta)
    nfp = side.nfp()
    pside = PositiveSide(pp.v, pp.valid, delta)
    h0, z = _h0(delta), pp.z
    rank = pp.mask(pside.above() - h0 + 1.0 + nfp)
    inv_rank = pp.mask(1.0 / torch.where(rank > 0, rank, 1.0))
    cls_value = ((nfp * inv_rank).sum() / z).reshape(1)
    e = pp.from_flat_order(loc_errors.detach().to(torch.float64).reshape(-1))
    loc_above = pp.mask(pside.above(e) - h0 * e)  # sum_{k != i} H(x_ik) e_k
    gate = nfp > eps
    g_pos = torch.where(gate, -(nfp + loc_above) * inv_rank / z, 0.0)
    w = torch.where(gate, -g_pos / nfp.clamp_min(1e-300), 0.0)
    grad = side.share(
        w, x.dtype
    )  # [N]: negatives share -g_pos(i) in proportion to H(x_ij) / N_FP(i)
    cls = _attach(logits, x, pp, cls_value, [grad], [g_pos], [])[0]
    # localisation part: positives by descending logit (the reverse of the sorted slots)
    e_desc = pp.from_flat_order(loc_errors.reshape(-1)).flip(0)
    running = torch.cumsum(e_desc, 0)
    loc = (running * inv_rank.flip(0).to(running.dtype)).sum() / z.to(running.dtype)
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
    logits: Tensor,
    targets: Tensor,
    delta: float = 0.5,
    eps: float = 1e-10,
    *,
    check_values: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Rank & Sort Loss :cite:`oksuz2021rs` (thesis Ch 8): rank positives above negatives and sort them by IoU.

    For each positive :math:`i` with IoU target :math:`y_i` (thesis Eq. (8.2); :math:`\\ell_R` and
    :math:`\\ell_S` are both Eq. (8.3), the target :math:`\\ell_S^*` is Eq. (8.4)):

    .. math::

        \\ell_R(i) = \\frac{N_{FP}(i)}{\\mathrm{rank}(i)},\\qquad
        \\ell_S(i) = \\frac{\\sum_{k \\in \\mathcal{P}} H(x_{ik})(1 - y_k)}{\\mathrm{rank}^+(i)},\\qquad
        \\ell_S^*(i) = \\frac{\\sum_{k \\in \\mathcal{P}: y_k \\ge y_i} H(x_{ik})(1 - y_k)}
        {\\sum_{k \\in \\mathcal{P}: y_k \\ge y_i} H(x_{ik})},

    :math:`\\mathcal{L}_R = \\frac{1}{|\\mathcal{P}|}\\sum_i \\ell_R(i)` and
    :math:`\\mathcal{L}_S = \\frac{1}{|\\mathcal{P}|}\\sum_i (\\ell_S(i) - \\ell_S^*(i))`. The ranking error
    of a positive is distributed over the negatives above it (:math:`H(x_{ij})/N_{FP}(i)`), its sorting
    error over the positives with lower IoU above it (:math:`H(x_{ik})/\\sum_{k: y_k < y_i} H(x_{ik})`):
    the primary terms and pmfs of thesis Eqs. (8.5)–(8.6), whose updates are Eqs. (8.7)–(8.8). The IoU
    targets are the IoUs between the predicted and ground-truth boxes (thesis Sec. 8.4.2, Eq. (8.10)).

    Args:
        logits (Tensor[...], float): logits of any shape, ranked all together.
        targets (Tensor[...]): same shape: the IoU in (0, 1] for positives, 0 negatives, -1 ignored.
            IoUs up to ``1 + IOU_TOLERANCE`` (1e-6; float32 IoUs can come out as ``1.0000001``) are
            taken as 1. A detector head builds them as ``t = torch.zeros(N, C)``,
            ``t[anchor, label] = iou`` for the positives and ``t[ignored] = -1``.
        delta: smoothing of the step (default 0.5); 0 = hard step.
        eps: official gates: no ranking update when :math:`N_{FP}(i) \\le` ``eps``, no sorting update
            when the sorting denominator is :math:`\\le` ``eps``.
        check_values: as in :func:`ap_loss`.

    Returns:
        ``(ranking_loss, sorting_loss)``, two scalars in [0, 1]. The backward of any weighted sum
        ``a * ranking + b * sorting`` applies ``a`` times the ranking update plus ``b`` times the sorting
        update.

    Raises:
        ValueError: on a shape mismatch (with a recipe when ``targets`` are ``[N]`` class indices),
            non-finite logits, targets outside {-1, 0} ∪ (0, 1 + 1e-6], a negative delta; a bad entry
            is named by its index in the tensor's shape, e.g. ``(2, 3)``.

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
    x, t, pos, neg, _ = _prepare(logits, targets, delta, "continuous", check_values)
    pp = _Positives(x, pos)
    if pp.count == 0:
        zero = _zero(logits, 2)
        return zero[0], zero[1]
    y = pp.mask(pp.gather(t).clamp_max(1.0))  # [Pc] IoU targets; rounding errors above 1 clamped
    z = pp.z
    # Sorting first (it needs the positives only), so that its memory and the negatives' do not add up
    pside = PositiveSide(pp.v, pp.valid, delta)
    rank_pos = pside.above()  # includes the self term H(0)
    safe_rank_pos = torch.where(rank_pos > 0, rank_pos, 1.0)
    l_sort = pp.mask(pside.above(1.0 - y) / safe_rank_pos)
    # Sorting target and update: 2-d dominance sums over (IoU, logit), O(P log P)
    target, g_sort = pside.sorting(y, l_sort, rank_pos, z, eps)
    del pside
    side = NegativeSide(x, neg, pp.v, pp.valid, delta)
    nfp = side.nfp()
    l_rank = pp.mask(nfp / (safe_rank_pos + nfp))
    # Ranking update: -l_R(i)/Z on positive i, shared over negatives by H(x_ij) / N_FP(i).
    gate_r = nfp > eps
    w = torch.where(gate_r, l_rank / (nfp.clamp_min(1e-300) * z), 0.0)
    grad_rank = side.share(w, x.dtype)  # [N]
    del side
    g_rank_pos = torch.where(gate_r, -l_rank / z, 0.0)
    values = torch.stack([l_rank.sum() / z, pp.mask(l_sort - target).sum() / z])
    out = _attach(logits, x, pp, values, [grad_rank], [g_rank_pos], [g_sort])
    return out[0], out[1]
