"""Box regression losses and the imbalance in regression loss (thesis Sec. 3.4.1, Table 3.3).

Lp-based losses act on coordinate differences ``b = target - prediction``; IoU-based losses on boxes.
The IoU-based ones reuse :mod:`torchvision.ops` where it has them.

Taught in: chapter "Imbalance problems in object detection".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision import ops

__all__ = [
    "l1_loss",
    "l2_loss",
    "smooth_l1_loss",
    "balanced_l1_loss",
    "iou_loss",
    "giou_loss",
    "diou_loss",
    "ciou_loss",
]


def l1_loss(diff: Tensor) -> Tensor:
    """:math:`|b|` elementwise."""
    return diff.abs()


def l2_loss(diff: Tensor) -> Tensor:
    """:math:`\\frac12 b^2` elementwise (the convention of Fig. 3.11: errors 1, 2 give 0.5, 2)."""
    return 0.5 * diff**2


def smooth_l1_loss(diff: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth L1 :cite:`girshick2015fast` (thesis Eq. (3.6)).

    :math:`0.5 b^2 / \\beta` for :math:`|b| < \\beta`, :math:`|b| - 0.5\\beta` otherwise (the common
    normalised form; with ``beta = 1`` it equals Eq. (3.6)).
    """
    a = diff.abs()
    return torch.where(a < beta, 0.5 * a**2 / beta, a - 0.5 * beta)


def balanced_l1_loss(
    diff: Tensor, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0
) -> Tensor:
    """Balanced L1 of Libra R-CNN :cite:`pang2019libra` (thesis Eqs. (3.7), (3.8)).

    Its gradient is :math:`\\alpha \\ln(\\kappa |b| / \\beta + 1)` for :math:`|b| < \\beta` and
    :math:`\\gamma` otherwise, with :math:`\\alpha \\ln(\\kappa + 1) = \\gamma` for continuity; integrating gives

    .. math::

        L = \\frac{\\alpha}{\\kappa}(\\kappa|b| + \\beta)\\ln\\Big(\\frac{\\kappa|b|}{\\beta} + 1\\Big) - \\alpha|b|
        \\ (|b| < \\beta), \\qquad \\gamma|b| + \\frac{\\gamma}{\\kappa} - \\alpha\\beta \\ \\text{otherwise}.
    """
    kappa = math.exp(gamma / alpha) - 1
    a = diff.abs()
    inner = alpha / kappa * (kappa * a + beta) * torch.log(kappa * a / beta + 1) - alpha * a
    outer = gamma * a + gamma / kappa - alpha * beta
    return torch.where(a < beta, inner, outer)


def iou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """IoU loss :cite:`yu2016unitbox` in its common form :math:`1 - \\mathrm{IoU}` (pairwise rows, ``xyxy``)."""
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = ops.box_area(pred) + ops.box_area(target) - inter
    return 1 - inter / union


def giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """GIoU loss :cite:`rezatofighi2019giou`: :math:`1 - \\mathrm{GIoU}` (torchvision)."""
    return ops.generalized_box_iou_loss(pred, target, reduction="none")


def diou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """DIoU loss :cite:`zheng2020diou`: :math:`1 - \\mathrm{IoU} + d^2/c^2` (torchvision)."""
    return ops.distance_box_iou_loss(pred, target, reduction="none")


def ciou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """CIoU loss :cite:`zheng2020diou`: DIoU plus an aspect-ratio term (torchvision)."""
    return ops.complete_box_iou_loss(pred, target, reduction="none")
