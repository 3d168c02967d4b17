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
    """RetinaNet anchors :cite:`lin2017focal` for an image: 9 per position on pyramid levels P3-P7.

    At level ``l`` with stride ``s_l`` and base size ``a_l``, every cell centre ``((i + 1/2) s_l,
    (j + 1/2) s_l)`` carries ``len(scales) * len(ratios)`` anchors of area ``(a_l c)^2`` and aspect ratio
    ``h / w = r``. A 1333x800 image gets about 200k anchors.

    Args:
        image_size: ``(width, height)`` in pixels.
        strides, sizes: stride and base anchor size of each level.
        scales, ratios: anchor scales and aspect ratios (height / width).

    Returns:
        Tensor[A, 4]: ``xyxy`` anchors, level by level, row-major positions.

    Raises:
        ValueError: if ``strides`` and ``sizes`` differ in length or the image size is not positive.
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

    Positive (1) if the best IoU is at least ``pos_iou``, negative (0) below ``neg_iou``, ignored (-1)
    in between. With no ground truth every anchor is negative.

    Args:
        anchors (Tensor[A, 4]): ``xyxy`` anchors.
        gt_boxes (Tensor[G, 4]): ``xyxy`` ground truths.
        pos_iou, neg_iou: thresholds, ``0 < neg_iou <= pos_iou <= 1``.

    Returns:
        ``(labels, max_iou, matched)``: Int64Tensor[A] in {-1, 0, 1}, FloatTensor[A] and the index of the
        best ground truth (Int64Tensor[A], -1 without ground truth).

    Raises:
        ValueError: if the thresholds are out of order.
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
    """The FPN level of each RoI :cite:`lin2017fpn`: :math:`k = \\lfloor k_0 + \\log_2(\\sqrt{wh}/224) \\rfloor`.

    Args:
        boxes (Tensor[N, 4]): ``xyxy`` boxes.
        k0: the level of a box of the canonical size.
        canonical: the canonical size (224, the ImageNet input size).
        min_level, max_level: clamp range.

    Returns:
        Int64Tensor[N]: levels in ``[min_level, max_level]``.
    """
    size = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-12).sqrt()
    k = torch.floor(k0 + torch.log2(size / canonical))
    return k.clamp(min_level, max_level).to(torch.int64)
