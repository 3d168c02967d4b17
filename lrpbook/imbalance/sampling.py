"""Sampling and weighting methods for the foreground-background imbalance (thesis Sec. 3.2.1, Table 3.1).

Hard sampling chooses which examples enter the loss (``w_ij`` in {0, 1} in thesis Eq. (3.1)); soft
sampling gives each a weight in [0, 1].

Taught in: chapter "Imbalance problems in object detection".
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "random_sampling",
    "ohem",
    "iou_balanced_sampling",
    "focal_weights",
    "pisa_weights",
    "ghm_weights",
]


def random_sampling(
    labels: Tensor, num: int, pos_fraction: float = 0.25, generator: torch.Generator | None = None
) -> Tensor:
    """Random hard sampling as in the R-CNN family (thesis Sec. 3.2.1.1).

    Up to :math:`\\lfloor n f \\rfloor` positives are drawn uniformly at random, and negatives
    fill the rest of the budget :math:`n`; every chosen example gets weight :math:`w_{ij} = 1` in
    thesis Eq. (3.1), the others 0:

    .. math::

        n_+ = \\min(|\\mathcal{P}|, \\lfloor n f \\rfloor), \\qquad
        n_- = \\min(|\\mathcal{N}|, n - n_+).

    Args:
        labels (Tensor[N], int): 1 positive, 0 negative, -1 ignored.
        num (int): size :math:`n` of the sampled set.
        pos_fraction (float): the desired share :math:`f` of positives (default 0.25).
        generator (torch.Generator, optional): source of randomness.

    Returns:
        Int64Tensor[n_+ + n_-]: indices of the sampled examples (positives first).

    Raises:
        ValueError: if ``num < 0`` or ``pos_fraction`` is outside [0, 1].

    Example:
        >>> import torch
        >>> labels = torch.tensor([1, 1, 0, 0, 0, 0])
        >>> idx = random_sampling(labels, 3, 1 / 3, torch.Generator().manual_seed(0))
        >>> labels[idx].tolist()
        [1, 0, 0]

    Taught in: chapter "Imbalance problems in object detection".
    """
    if num < 0:
        raise ValueError(f"`num` must be non-negative; got {num}")
    if not 0 <= pos_fraction <= 1:
        raise ValueError(f"`pos_fraction` must be in [0, 1]; got {pos_fraction}")
    pos = torch.nonzero(labels == 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    n_pos = min(len(pos), int(num * pos_fraction))
    n_neg = min(len(neg), num - n_pos)
    pos = pos[torch.randperm(len(pos), generator=generator)[:n_pos]]
    neg = neg[torch.randperm(len(neg), generator=generator)[:n_neg]]
    return torch.cat([pos, neg])


def ohem(losses: Tensor, labels: Tensor, num: int) -> Tensor:
    """Online hard example mining :cite:`shrivastava2016ohem` (thesis Sec. 3.2.1.1).

    Keeps the ``num`` non-ignored examples (positives and negatives alike) with the largest loss:

    .. math::

        \\mathcal{S} = \\operatorname{top-}n \\big\\{\\mathcal{L}_i : s_i \\ge 0\\big\\}.

    The thesis describes OHEM in words (no equation number). Passing labels in which the
    positives are marked ignored (-1) gives SSD's negative-only mining.

    Args:
        losses (Tensor[N], float): per-example loss, e.g. cross-entropy :math:`-\\ln p_s`.
        labels (Tensor[N], int): 1 positive, 0 negative, -1 ignored.
        num (int): how many examples :math:`n` to keep.

    Returns:
        Int64Tensor[min(num, #non-ignored)]: indices, largest loss first (ties keep input order).

    Raises:
        ValueError: if ``num < 0`` or the shapes of ``losses`` and ``labels`` differ.

    Example:
        >>> import torch
        >>> ce = -torch.log(torch.tensor([0.8, 0.2, 0.1, 0.3, 0.6, 1.0]))
        >>> ohem(ce, torch.tensor([1, 1, 0, 0, 0, 0]), 3).tolist()
        [2, 1, 3]

    Taught in: chapter "Imbalance problems in object detection".
    """
    if num < 0:
        raise ValueError(f"`num` must be non-negative; got {num}")
    if losses.shape != labels.shape:
        raise ValueError(
            f"`losses` and `labels` must have the same shape; got {tuple(losses.shape)} "
            f"and {tuple(labels.shape)}"
        )
    valid = torch.nonzero(labels >= 0).flatten()
    order = torch.argsort(losses[valid], descending=True, stable=True)
    return valid[order[:num]]


def iou_balanced_sampling(
    max_iou: Tensor,
    labels: Tensor,
    num: int,
    num_bins: int = 3,
    neg_iou: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """IoU-balanced negative sampling of Libra R-CNN :cite:`pang2019libra` (thesis Sec. 3.2.1.1).

    The negatives' IoU range :math:`[0, \\tau_-)` (``tau_- = neg_iou``) is split into
    :math:`K` = ``num_bins`` equal bins, and :math:`\\lfloor n / K \\rfloor` negatives are drawn
    uniformly at random from each bin:

    .. math::

        \\mathcal{S} = \\bigcup_{k=0}^{K-1} \\mathrm{sample}\\Big(\\big\\{i \\in \\mathcal{N}:
        \\lfloor K\\,\\mathrm{IoU}_i / \\tau_- \\rfloor = k\\big\\},\\
        \\lfloor n / K \\rfloor\\Big).

    Bins with too few negatives give all theirs, and the shortfall (and the remainder
    :math:`n - K \\lfloor n/K \\rfloor`) is drawn at random from the negatives not yet chosen,
    as in Libra R-CNN. The thesis states the method in words (no equation number); its toy
    example (Table 3.1) uses :math:`K = 2`.

    Args:
        max_iou (Tensor[N], float): best IoU of each example with a ground truth.
        labels (Tensor[N], int): 0 marks the negatives to sample from.
        num (int): how many negatives, :math:`n`.
        num_bins (int): number of IoU bins :math:`K` (default 3, as in Libra R-CNN).
        neg_iou (float): upper end :math:`\\tau_-` of the negatives' IoU range (default 0.5).
        generator (torch.Generator, optional): source of randomness.

    Returns:
        Int64Tensor[min(num, #negatives)]: indices of the sampled negatives, bin by bin (lowest IoU
        bin first), then the remainder. With ``num`` at least the number of negatives, all of them.

    Raises:
        ValueError: if ``num_bins < 1``, ``num < 0``, ``neg_iou <= 0``, or if the budget cannot
            give every bin one draw (``0 < num < num_bins`` while there are more negatives than
            ``num``): the method would silently become random sampling.

    Note:
        Earlier versions of lrpbook fell back to random sampling when ``num < num_bins``;
        this now raises, because the result would not be IoU-balanced sampling at all.

    Example:
        >>> import torch
        >>> iou = torch.tensor([0.95, 0.55, 0.35, 0.15, 0.06, 0.00])
        >>> labels = torch.tensor([1, 1, 0, 0, 0, 0])
        >>> g = torch.Generator().manual_seed(0)
        >>> idx = iou_balanced_sampling(iou, labels, 2, num_bins=2, generator=g)
        >>> round(iou[idx].max().item(), 2)   # one draw from the upper bin [0.25, 0.5)
        0.35

    Taught in: chapter "Imbalance problems in object detection".
    """
    if num_bins < 1:
        raise ValueError(f"`num_bins` must be at least 1; got {num_bins}")
    if num < 0:
        raise ValueError(f"`num` must be non-negative; got {num}")
    if not neg_iou > 0:
        raise ValueError(f"`neg_iou` must be positive; got {neg_iou}")
    neg = torch.nonzero(labels == 0).flatten()
    if num >= len(neg):
        return neg
    if 0 < num < num_bins:
        raise ValueError(
            f"`num`={num} cannot give each of the `num_bins`={num_bins} IoU bins one negative; "
            "use num >= num_bins or fewer bins (the thesis' toy example uses num_bins=2)"
        )
    bins = torch.clamp((max_iou[neg] / neg_iou * num_bins).long(), 0, num_bins - 1)
    per_bin = num // num_bins
    chosen = []
    for b in range(num_bins):
        members = neg[bins == b]
        take = min(per_bin, len(members))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    chosen = torch.cat(chosen)
    if len(chosen) < num:
        rest = neg[~torch.isin(neg, chosen)]
        extra = torch.randperm(len(rest), generator=generator)[: num - len(chosen)]
        chosen = torch.cat([chosen, rest[extra]])
    return chosen


def focal_weights(p_correct: Tensor, gamma: float = 2.0) -> Tensor:
    """Focal-loss weights :cite:`lin2017focal` (thesis Eq. (3.2)).

    With :math:`p_s` the predicted probability of the correct label (the foreground probability
    :math:`\\hat p` of a positive, the background probability :math:`1 - \\hat p` of a negative),
    both cases of Eq. (3.2) become one:

    .. math::

        w = (1 - p_s)^{\\gamma}, \\qquad \\text{i.e. } (1 - \\hat p)^{\\gamma}
        \\text{ if } s = 1, \\quad \\hat p^{\\gamma} \\text{ if } s = 0.

    Args:
        p_correct (Tensor[N], float): :math:`p_s` in [0, 1].
        gamma (float): the focusing parameter :math:`\\gamma \\ge 0` (default 2); 0 gives
            cross-entropy (all weights 1).

    Returns:
        Tensor[N]: the weights, in [0, 1].

    Raises:
        ValueError: if ``gamma < 0``.

    Example:
        >>> import torch
        >>> focal_weights(torch.tensor([0.8, 0.1]), gamma=1.0)
        tensor([0.2000, 0.9000])

    Taught in: chapter "Imbalance problems in object detection".
    """
    if gamma < 0:
        raise ValueError(f"`gamma` must be non-negative; got {gamma}")
    return (1 - p_correct) ** gamma


def pisa_weights(
    values: Tensor, groups: Tensor, beta: float = 0.0, gamma: float = 1.0, n_max: int | None = None
) -> Tensor:
    """Prime Sample Attention weights :cite:`cao2020pisa` (thesis Eqs. (3.4), (3.5)).

    Within each group (a class; positives ranked by IoU, negatives by foreground score) examples are
    ranked by ``values`` in descending order, :math:`r_i = 0, 1, \\dots`, and

    .. math::

        \\bar r_i = \\frac{N_{max} - r_i}{N_{max}}, \\qquad w_i = ((1 - \\beta)\\bar r_i + \\beta)^\\gamma,

    where :math:`N_{max}` is the largest group size (or ``n_max`` if given).

    Args:
        values (Tensor[N], float): the ranking property (IoU for positives, foreground score for
            negatives).
        groups (Tensor[N], int): group of each example.
        beta (float): PISA's :math:`\\beta`, the minimum weight's share (default 0).
        gamma (float): PISA's :math:`\\gamma` (default 1).
        n_max (int, optional): override of :math:`N_{max}`.

    Returns:
        Tensor[N], float64: the weights. Ties in ``values`` keep input order.

    Note:
        The official PISA code also rescales the weighted loss to keep its sum; this function
        returns the weights of Eq. (3.5) only.

    Example:
        >>> import torch
        >>> pisa_weights(torch.tensor([0.95, 0.55]), torch.tensor([1, 1])).tolist()
        [1.0, 0.5]

    Taught in: chapter "Imbalance problems in object detection".
    """
    ranks = torch.empty(len(values), dtype=torch.float64)
    sizes = []
    for g in torch.unique(groups):
        idx = torch.nonzero(groups == g).flatten()
        order = idx[torch.argsort(values[idx], descending=True, stable=True)]
        ranks[order] = torch.arange(len(idx), dtype=torch.float64)
        sizes.append(len(idx))
    n_max = float(n_max if n_max is not None else max(sizes, default=1))
    r_bar = (n_max - ranks) / n_max
    return ((1 - beta) * r_bar + beta) ** gamma


def ghm_weights(grad_norm: Tensor, epsilon: float = 0.1, tol: float = 1e-6) -> Tensor:
    """Gradient Harmonizing Mechanism weights :cite:`li2019ghm` (thesis Eq. (3.3)).

    The gradient density of example :math:`i` counts the examples whose gradient norm lies within
    :math:`\\epsilon/2` of :math:`g_i`, divided by the length of that window inside [0, 1]; the
    weight is the inverse density relative to the batch size :math:`|P|`:

    .. math::

        GD(g_i) = \\frac{\\#\\{k : |g_k - g_i| \\le \\epsilon/2\\}}
        {\\min(g_i + \\epsilon/2, 1) - \\max(g_i - \\epsilon/2, 0)}, \\qquad
        w_i = \\frac{|P|}{GD(g_i)} .

    Thesis Eq. (3.3) writes :math:`w_i = 1 / (G(i)/|P|)` with :math:`G(i)` "the count of samples
    whose gradient norm is close"; the window-length normalisation is that of the GHM paper.
    Examples with many similar gradients (typically easy negatives) are down-weighted.

    Args:
        grad_norm (Tensor[N], float): gradient norms :math:`g` in [0, 1] (``|p - y|`` for sigmoid
            cross-entropy).
        epsilon (float): window width :math:`\\epsilon` (default 0.1).
        tol (float): gradient norms within ``tol`` of a window edge count as inside (default 1e-6),
            so that the result does not depend on how ``1 - 0.8`` rounds in float32 or float64.

    Returns:
        Tensor[N], float64: the weights.

    Raises:
        ValueError: if ``epsilon`` is not in (0, 1] or ``tol`` is negative.

    Note:
        The GHM paper uses a half-open window :math:`[g_i - \\epsilon/2, g_i + \\epsilon/2)`, and
        its official code approximates the density with fixed bins. Both agree with this closed
        window except for gradients exactly :math:`\\epsilon/2` apart, as in the thesis' toy
        example of Table 3.1, where the closed window reproduces three of its six entries.

    Example:
        >>> import torch
        >>> ghm_weights(torch.tensor([0.2, 0.8, 0.9, 0.7, 0.4, 0.0]), epsilon=0.4)
        tensor([0.8000, 0.8000, 0.6000, 0.8000, 1.2000, 0.6000], dtype=torch.float64)

    Taught in: chapter "Imbalance problems in object detection".
    """
    if not 0 < epsilon <= 1:
        raise ValueError(f"`epsilon` must be in (0, 1]; got {epsilon}")
    if tol < 0:
        raise ValueError(f"`tol` must be non-negative; got {tol}")
    g = grad_norm.to(torch.float64)
    half = epsilon / 2
    close = (g[None, :] - g[:, None]).abs() <= half + tol  # [N, N]
    counts = close.sum(1).to(torch.float64)
    length = (g + half).clamp(max=1.0) - (g - half).clamp(min=0.0)
    density = counts / length
    return len(g) / density
