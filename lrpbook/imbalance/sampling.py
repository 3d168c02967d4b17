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
    """Random hard sampling as in Faster R-CNN: up to ``num * pos_fraction`` positives, negatives fill the rest.

    Args:
        labels (Tensor[N], int): 1 positive, 0 negative, -1 ignored.
        num: size of the sampled set.
        pos_fraction: the desired share of positives.
        generator: a :class:`torch.Generator`.

    Returns:
        Int64Tensor: indices of the sampled examples (positives first).
    """
    pos = torch.nonzero(labels == 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    n_pos = min(len(pos), int(num * pos_fraction))
    n_neg = min(len(neg), num - n_pos)
    pos = pos[torch.randperm(len(pos), generator=generator)[:n_pos]]
    neg = neg[torch.randperm(len(neg), generator=generator)[:n_neg]]
    return torch.cat([pos, neg])


def ohem(losses: Tensor, labels: Tensor, num: int) -> Tensor:
    """Online hard example mining :cite:`shrivastava2016ohem`: the ``num`` non-ignored examples of largest loss.

    Returns:
        Int64Tensor: indices, largest loss first.
    """
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
    """IoU-balanced negative sampling of Libra R-CNN :cite:`pang2019libra`.

    The negatives' IoU range ``[0, neg_iou)`` is split into ``num_bins`` equal bins and the same number of
    negatives is drawn at random from each (bins with too few give all theirs, and the remainder is drawn
    from the rest), which favours hard negatives with larger IoU.

    Args:
        max_iou (Tensor[N]): best IoU of each example with a ground truth.
        labels (Tensor[N], int): 0 marks the negatives to sample from.
        num: how many negatives.
        num_bins: number of IoU bins.
        neg_iou: upper end of the negatives' IoU range.
        generator: a :class:`torch.Generator`.

    Returns:
        Int64Tensor: indices of the sampled negatives.
    """
    neg = torch.nonzero(labels == 0).flatten()
    if num >= len(neg):
        return neg
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
        chosen = torch.cat(
            [chosen, rest[torch.randperm(len(rest), generator=generator)[: num - len(chosen)]]]
        )
    return chosen


def focal_weights(p_correct: Tensor, gamma: float = 2.0) -> Tensor:
    """Focal-loss weights :cite:`lin2017focal` (thesis Eq. (3.2)): :math:`w = (1 - p_s)^\\gamma`.

    ``p_correct`` is the predicted probability of the correct label (the foreground probability for a
    positive, the background probability ``1 - p`` for a negative), so both cases of Eq. (3.2) become one.
    ``gamma = 0`` gives cross-entropy (all weights 1).
    """
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
        values (Tensor[N]): the ranking property (IoU for positives, foreground score for negatives).
        groups (Tensor[N], int): group of each example.
        beta, gamma: PISA's parameters.
        n_max: override of :math:`N_{max}`.

    Returns:
        Tensor[N]: the weights.
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


def ghm_weights(grad_norm: Tensor, epsilon: float = 0.1) -> Tensor:
    """Gradient Harmonizing Mechanism weights :cite:`li2019ghm` (thesis Eq. (3.3)).

    The gradient density of example :math:`i` counts the examples whose gradient norm :math:`g` lies in
    the window :math:`[g_i - \\epsilon/2, g_i + \\epsilon/2)`, divided by the window's length inside [0, 1];
    the weight is :math:`w_i = N / GD(g_i)`, so examples with many similar gradients (typically easy
    negatives) are down-weighted.

    Args:
        grad_norm (Tensor[N]): gradient norms in [0, 1] (``|p - y|`` for sigmoid cross-entropy).
        epsilon: window width.

    Returns:
        Tensor[N]: the weights.
    """
    g = grad_norm.to(torch.float64)
    lo, hi = g - epsilon / 2, g + epsilon / 2
    counts = ((g[None, :] >= lo[:, None]) & (g[None, :] < hi[:, None])).sum(1).to(torch.float64)
    length = hi.clamp(max=1.0) - lo.clamp(min=0.0)
    density = counts / length
    return len(g) / density
