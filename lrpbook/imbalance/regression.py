"""Box regression losses and the imbalance in regression loss (thesis Sec. 3.4.1, Table 3.3).

Lp-based losses act on coordinate differences ``b = target - prediction``; IoU-based losses on
``xyxy`` boxes, row by row (``pred[i]`` against ``target[i]``). The IoU loss uses the row-wise
IoU of :mod:`lrpbook.boxes`; GIoU, DIoU and CIoU call :mod:`torchvision.ops`, which has them.

Taught in: chapter "Imbalance problems in object detection".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision import ops

from lrpbook.boxes import _iou_aligned

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

IOU_LOSS_FORMS = ("log", "linear")


def l1_loss(diff: Tensor) -> Tensor:
    """L1 loss, elementwise (thesis Table 3.3; stated in words there).

    .. math::

        L_1(b) = |b|

    Args:
        diff (Tensor[...]): coordinate errors :math:`b`.

    Returns:
        Tensor[...]: :math:`|b|`, same shape.

    Example:
        >>> import torch
        >>> l1_loss(torch.tensor([-2.0, 0.5]))
        tensor([2.0000, 0.5000])

    Taught in: chapter "Imbalance problems in object detection".
    """
    return diff.abs()


def l2_loss(diff: Tensor) -> Tensor:
    """L2 loss in the halved form, elementwise (thesis Table 3.3, Fig. 3.11).

    .. math::

        L_2(b) = \\tfrac12 b^2

    Args:
        diff (Tensor[...]): coordinate errors :math:`b`.

    Returns:
        Tensor[...]: :math:`b^2 / 2`, same shape.

    Note:
        The factor 1/2 is the convention of the L2 column of thesis Fig. 3.11 (0.50, 6.00,
        14.00 for corner errors with :math:`\\sum b^2` = 1, 12, 28); multiply by 2 for the plain
        squared error.

    Example:
        >>> import torch
        >>> l2_loss(torch.tensor([1.0, 2.0]))
        tensor([0.5000, 2.0000])

    Taught in: chapter "Imbalance problems in object detection".
    """
    return 0.5 * diff**2


def smooth_l1_loss(diff: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth L1 loss :cite:`girshick2015fast` (thesis Eq. (3.6)), elementwise.

    .. math::

        L1_{smooth}(b) = \\begin{cases} 0.5\\, b^2 / \\beta, & |b| < \\beta \\\\
        |b| - 0.5\\, \\beta, & \\text{otherwise.} \\end{cases}

    Args:
        diff (Tensor[...]): coordinate errors :math:`b`.
        beta (float): the cut-off :math:`\\beta > 0` between the quadratic and linear parts
            (default 1).

    Returns:
        Tensor[...]: the loss, same shape.

    Raises:
        ValueError: if ``beta <= 0``.

    Note:
        This is the normalised form of PyTorch and fvcore. Thesis Eq. (3.6) writes
        :math:`0.5 b^2` and :math:`\\beta(|b| - 0.5\\beta)`, which is :math:`\\beta` times this
        one; the two are equal for ``beta = 1``.

    Example:
        >>> import torch
        >>> smooth_l1_loss(torch.tensor([0.5, 3.0]))
        tensor([0.1250, 2.5000])

    Taught in: chapter "Imbalance problems in object detection".
    """
    if not beta > 0:
        raise ValueError(f"`beta` must be positive; got {beta}")
    a = diff.abs()
    return torch.where(a < beta, 0.5 * a**2 / beta, a - 0.5 * beta)


def balanced_l1_loss(
    diff: Tensor, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0
) -> Tensor:
    """Balanced L1 loss of Libra R-CNN :cite:`pang2019libra` (thesis Eqs. (3.7)-(3.9)).

    Its gradient is :math:`\\alpha \\ln(\\kappa |b| / \\beta + 1)` for :math:`|b| < \\beta` and
    :math:`\\gamma` otherwise, with :math:`\\alpha \\ln(\\kappa + 1) = \\gamma` (Eq. (3.9)) for
    continuity; integrating gives

    .. math::

        L = \\begin{cases} \\frac{\\alpha}{\\kappa}(\\kappa|b| + \\beta)
        \\ln\\Big(\\frac{\\kappa|b|}{\\beta} + 1\\Big) - \\alpha|b|, & |b| < \\beta \\\\
        \\gamma|b| + \\frac{\\gamma}{\\kappa} - \\alpha\\beta, & \\text{otherwise.} \\end{cases}

    Args:
        diff (Tensor[...]): coordinate errors :math:`b`.
        alpha (float): promotion of the inliers :math:`\\alpha` (default 0.5).
        gamma (float): the gradient bound of the outliers :math:`\\gamma` (default 1.5).
        beta (float): the inlier range :math:`\\beta` (default 1; the thesis fixes it to 1).

    Returns:
        Tensor[...]: the loss, same shape.

    Example:
        >>> import torch
        >>> balanced_l1_loss(torch.tensor([0.0, 2.0]))
        tensor([0.0000, 2.5786])

    Taught in: chapter "Imbalance problems in object detection".
    """
    kappa = math.exp(gamma / alpha) - 1
    a = diff.abs()
    inner = alpha / kappa * (kappa * a + beta) * torch.log(kappa * a / beta + 1) - alpha * a
    outer = gamma * a + gamma / kappa - alpha * beta
    return torch.where(a < beta, inner, outer)


def iou_loss(pred: Tensor, target: Tensor, form: str = "log", eps: float = 1e-6) -> Tensor:
    """IoU loss :cite:`yu2016unitbox` (thesis Eq. (3.11)), row by row.

    The thesis' form (``form="log"``, the default, UnitBox's) and the linear variant:

    .. math::

        L_{IoU} = -\\ln \\mathrm{IoU}(\\hat b_i, b_i), \\qquad
        L_{IoU}^{lin} = 1 - \\mathrm{IoU}(\\hat b_i, b_i).

    Args:
        pred (Tensor[N, 4], float): predicted ``xyxy`` boxes :math:`\\hat b_i`.
        target (Tensor[N, 4] or Tensor[1, 4], float): ground-truth ``xyxy`` boxes :math:`b_i`.
        form (str): ``"log"`` (thesis Eq. (3.11), default) or ``"linear"`` (:math:`1 - IoU`).
        eps (float): for ``form="log"`` the IoU is clamped below at ``eps`` (default 1e-6), so
            disjoint boxes give the finite loss :math:`-\\ln \\epsilon \\approx 13.8` with zero
            gradient instead of infinity and NaN gradients. Ignored by ``"linear"``.

    Returns:
        Tensor[N]: the loss of each row.

    Raises:
        ValueError: on an unknown ``form`` or a non-positive ``eps`` with ``form="log"``.

    Note:
        mmdetection's ``IoULoss`` has the same two modes, with ``"log"`` as its default too.
        Boxes are not validated here (this is a training-loop fast path); use
        :func:`lrpbook.boxes.box_iou_aligned` to check them.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
        >>> t = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
        >>> iou_loss(p, t), iou_loss(p, t, form="linear")
        (tensor([1.0986]), tensor([0.6667]))

    Taught in: chapter "Imbalance problems in object detection".
    """
    if form not in IOU_LOSS_FORMS:
        raise ValueError(f"`form` must be one of {IOU_LOSS_FORMS}; got {form!r}")
    iou = _iou_aligned(pred, target)
    if form == "linear":
        return 1 - iou
    if not eps > 0:
        raise ValueError(f"`eps` must be positive for form='log'; got {eps}")
    return -torch.log(iou.clamp(min=eps))


def giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """GIoU loss :cite:`rezatofighi2019giou` (thesis Eq. (3.15)), row by row.

    .. math::

        L_{GIoU} = 1 - \\mathrm{IoU}(\\hat b_i, b_i) + \\frac{A(e_i) - A(\\hat b_i \\cup b_i)}{A(e_i)},

    with :math:`e_i` the smallest box enclosing both.

    Args:
        pred (Tensor[N, 4], float): predicted ``xyxy`` boxes.
        target (Tensor[N, 4], float): ground-truth ``xyxy`` boxes.

    Returns:
        Tensor[N]: the loss, in [0, 2].

    Note:
        Calls ``torchvision.ops.generalized_box_iou_loss`` (its ``eps=1e-7`` guards the division).

    Example:
        >>> import torch
        >>> giou_loss(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[2.0, 0, 3, 1]]))
        tensor([1.3333])

    Taught in: chapter "Imbalance problems in object detection".
    """
    return ops.generalized_box_iou_loss(pred, target, reduction="none")


def diou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """DIoU loss :cite:`zheng2020diou` (thesis Eq. (3.16)), row by row.

    .. math::

        L_{DIoU} = 1 - \\mathrm{IoU}(\\hat b_i, b_i) + \\frac{d^2(\\hat c_i, c_i)}{\\bar e_i^2},

    with :math:`d` the distance of the box centres and :math:`\\bar e_i` the diagonal of the
    smallest enclosing box.

    Args:
        pred (Tensor[N, 4], float): predicted ``xyxy`` boxes.
        target (Tensor[N, 4], float): ground-truth ``xyxy`` boxes.

    Returns:
        Tensor[N]: the loss, in [0, 2).

    Note:
        Calls ``torchvision.ops.distance_box_iou_loss``.

    Example:
        >>> import torch
        >>> diou_loss(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[0.0, 0, 2, 2]]))
        tensor([0.])

    Taught in: chapter "Imbalance problems in object detection".
    """
    return ops.distance_box_iou_loss(pred, target, reduction="none")


def ciou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """CIoU loss :cite:`zheng2020diou` (thesis Eqs. (3.17)-(3.19)), row by row.

    .. math::

        L_{CIoU} = L_{DIoU} + \\alpha v, \\quad
        v = \\frac{4}{\\pi^2}\\Big(\\arctan\\frac{w}{h} - \\arctan\\frac{\\hat w}{\\hat h}\\Big)^2,
        \\quad \\alpha = \\frac{v}{(1 - \\mathrm{IoU}) + v}.

    Args:
        pred (Tensor[N, 4], float): predicted ``xyxy`` boxes.
        target (Tensor[N, 4], float): ground-truth ``xyxy`` boxes.

    Returns:
        Tensor[N]: the loss.

    Note:
        Calls ``torchvision.ops.complete_box_iou_loss``, which, like the official CIoU code,
        treats :math:`\\alpha` as a constant in the backward pass.

    Example:
        >>> import torch
        >>> ciou_loss(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[0.0, 0, 2, 2]]))
        tensor([0.])

    Taught in: chapter "Imbalance problems in object detection".
    """
    return ops.complete_box_iou_loss(pred, target, reduction="none")
