"""Anchors, their labels and FPN levels: the foreground-background and scale imbalance (thesis Ch 3).

Taught in: chapter "Imbalance problems in object detection".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["retinanet_anchors", "label_anchors", "fpn_level"]


def retinanet_anchors(
    image_size: tuple[int, int] = (1333, 800),
    strides: Sequence[int] = (8, 16, 32, 64, 128),
    sizes: Sequence[float] = (32, 64, 128, 256, 512),
    scales: Sequence[float] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> Tensor:
    """RetinaNet anchors :cite:`lin2017focal` for an image: 9 per position on levels P3-P7.

    At level ``l`` with stride :math:`s_l` and base size :math:`a_l`, every cell centre carries
    ``len(scales) * len(ratios)`` anchors, one per scale :math:`c` and aspect ratio :math:`r`:

    .. math::

        \\Big(\\big(i + \\tfrac12\\big)s_l, \\big(j + \\tfrac12\\big)s_l\\Big), \\qquad
        w = \\frac{a_l c}{\\sqrt r}, \\quad h = a_l c \\sqrt r .

    A 1333x800 image gets 200,700 anchors (thesis Ch 1: "more than 150k").

    Args:
        image_size (tuple[int, int]): ``(width, height)`` in pixels (default ``(1333, 800)``).
        strides (Sequence[int]): stride of each level (default 8 to 128).
        sizes (Sequence[float]): base anchor size of each level (default 32 to 512).
        scales (Sequence[float]): anchor scales :math:`c` (default :math:`2^{0}, 2^{1/3}, 2^{2/3}`).
        ratios (Sequence[float]): aspect ratios :math:`r = h / w` (default 0.5, 1, 2).

    Returns:
        Tensor[A, 4], float32: ``xyxy`` anchors, level by level, row-major positions, the
        ``len(scales) * len(ratios)`` shapes of a position consecutive.

    Raises:
        ValueError: if ``strides`` and ``sizes`` differ in length or the image size is not positive.

    Example:
        >>> retinanet_anchors((1333, 800)).shape
        torch.Size([200700, 4])

    Taught in: chapter "Imbalance problems in object detection".
    """
    if len(strides) != len(sizes):
        raise ValueError(
            f"`strides` and `sizes` must have the same length; got {len(strides)} and {len(sizes)}"
        )
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"`image_size` must be positive; got {image_size!r}")
    out = []
    for stride, size in zip(strides, sizes):
        ws = torch.tensor(
            [size * c / math.sqrt(r) for c in scales for r in ratios], dtype=torch.float32
        )
        hs = torch.tensor(
            [size * c * math.sqrt(r) for c in scales for r in ratios], dtype=torch.float32
        )
        xs = (torch.arange(math.ceil(width / stride)) + 0.5) * stride
        ys = (torch.arange(math.ceil(height / stride)) + 0.5) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)  # [positions, 1]
        level = torch.stack(
            [cx - ws / 2, cy - hs / 2, cx + ws / 2, cy + hs / 2], -1
        )  # [positions, k, 4]
        out.append(level.reshape(-1, 4))
    return torch.cat(out)


def label_anchors(
    anchors: Tensor, gt_boxes: Tensor, pos_iou: float = 0.5, neg_iou: float = 0.4
) -> tuple[Tensor, Tensor, Tensor]:
    """Label anchors by their best IoU with the ground truths (the RetinaNet rule).

    .. math::

        s_i = \\begin{cases} 1, & \\max_g \\mathrm{IoU}(a_i, g) \\ge \\tau_+ \\\\
        0, & \\max_g \\mathrm{IoU}(a_i, g) < \\tau_- \\\\ -1, & \\text{otherwise (ignored)}
        \\end{cases}

    With no ground truth every anchor is negative. Thesis Fig. 3.4 uses this rule with
    :math:`\\tau_+ = 0.5`, :math:`\\tau_- = 0.4`.

    Args:
        anchors (Tensor[A, 4], float): ``xyxy`` anchors.
        gt_boxes (Tensor[G, 4], float): ``xyxy`` ground truths.
        pos_iou (float): :math:`\\tau_+` (default 0.5).
        neg_iou (float): :math:`\\tau_-` (default 0.4), ``0 < neg_iou <= pos_iou <= 1``.

    Returns:
        ``(labels, max_iou, matched)``: Int64Tensor[A] in {-1, 0, 1}, FloatTensor[A] and the
        index of the best ground truth (Int64Tensor[A], -1 without ground truth).

    Raises:
        ValueError: if the thresholds are out of order.

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10], [50.0, 50, 60, 60]])
        >>> label_anchors(a, torch.tensor([[0.0, 0, 10, 10]]))[0].tolist()
        [1, 0, 0]

    Taught in: chapter "Imbalance problems in object detection".
    """
    if not 0 < neg_iou <= pos_iou <= 1:
        raise ValueError(
            f"need 0 < neg_iou <= pos_iou <= 1; got neg_iou={neg_iou}, pos_iou={pos_iou}"
        )
    if gt_boxes.numel() == 0:
        n = len(anchors)
        return (
            torch.zeros(n, dtype=torch.int64),
            torch.zeros(n),
            torch.full((n,), -1, dtype=torch.int64),
        )
    max_iou, matched = box_iou(anchors, gt_boxes).max(1)
    labels = torch.full(max_iou.shape, -1, dtype=torch.int64)
    labels[max_iou < neg_iou] = 0
    labels[max_iou >= pos_iou] = 1
    return labels, max_iou, matched


def fpn_level(
    boxes: Tensor, k0: int = 4, canonical: float = 224.0, min_level: int = 2, max_level: int = 5
) -> Tensor:
    """The FPN level of each RoI :cite:`lin2017fpn` (thesis Sec. 3.3, scale imbalance).

    .. math::

        k = \\min\\Big(k_{max}, \\max\\Big(k_{min},
        \\Big\\lfloor k_0 + \\log_2 \\frac{\\sqrt{wh}}{224} \\Big\\rfloor\\Big)\\Big)

    Args:
        boxes (Tensor[N, 4], float): ``xyxy`` boxes.
        k0 (int): the level of a box of the canonical size (default 4).
        canonical (float): the canonical size (default 224, the ImageNet input size).
        min_level (int): lower clamp :math:`k_{min}` (default 2).
        max_level (int): upper clamp :math:`k_{max}` (default 5).

    Returns:
        Int64Tensor[N]: levels in ``[min_level, max_level]``.

    Example:
        >>> import torch
        >>> fpn_level(torch.tensor([[0.0, 0, 224, 224], [0.0, 0, 56, 56]])).tolist()
        [4, 2]

    Taught in: chapter "Imbalance problems in object detection".
    """
    size = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-12).sqrt()
    k = torch.floor(k0 + torch.log2(size / canonical))
    return k.clamp(min_level, max_level).to(torch.int64)
