"""Positive/negative assignment of anchors to ground-truth boxes: ATSS and max-IoU.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["atss_assign", "max_iou_assign"]


def atss_assign(
    anchors: Tensor,
    num_anchors_per_level: list[int],
    gt_boxes: Tensor,
    topk: int = 9,
    anchors_per_location: int = 1,
) -> tuple[Tensor, Tensor]:
    r"""Adaptive Training Sample Selection (ATSS) :cite:`zhang2020atss`.

    For every ground truth :math:`g`: on each pyramid level take the ``topk`` anchors whose centres are
    closest to the centre of :math:`g` (``topk * anchors_per_location`` when several anchors share a
    location); over these candidates :math:`\mathcal{C}_g` compute the IoU threshold

    .. math::

        t_g = \mathrm{mean}_{a \in \mathcal{C}_g} \mathrm{IoU}(a, g) +
        \mathrm{std}_{a \in \mathcal{C}_g} \mathrm{IoU}(a, g),

    and make a candidate positive when its IoU is at least :math:`t_g` and its centre lies inside
    :math:`g`. An anchor positive for several boxes goes to the one with the largest IoU. There are no
    ignored anchors.

    Args:
        anchors (Tensor[N, 4], float): ``xyxy`` anchors of one image, level by level.
        num_anchors_per_level (list[int]): how many of ``anchors`` each level holds (sums to N).
        gt_boxes (Tensor[G, 4], float): ``xyxy`` ground-truth boxes (``G = 0`` allowed).
        topk: candidates per level (9, as in ATSS and the thesis' configurations).
        anchors_per_location: multiplies the candidates per level (``topk * anchors_per_location``).
            Default 1: the ATSS assigner of the thesis' configurations takes ``topk`` anchors per
            level however many anchors share a location; :class:`~lrpbook.models.DenseDetector`
            uses 1.

    Returns:
        ``(matched, iou)``: Int64Tensor[N], the index of the assigned box or ``-1`` for a negative,
        and Tensor[N], the IoU of each anchor with its assigned box (0 for negatives).

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 30, 30], [-10, -10, 20, 20],
        ...                   [-20, -20, 30, 30], [100, 100, 110, 110]])
        >>> atss_assign(a, [5], torch.tensor([[0.0, 0, 10, 10]]), topk=4)[0].tolist()
        [0, -1, -1, -1, -1]
    """
    n = anchors.shape[0]
    matched = torch.full((n,), -1, dtype=torch.long, device=anchors.device)
    best_iou = torch.zeros(n, dtype=anchors.dtype, device=anchors.device)
    if gt_boxes.numel() == 0 or n == 0:
        return matched, best_iou
    ious = box_iou(anchors, gt_boxes)  # [N, G]
    ac = (anchors[:, :2] + anchors[:, 2:]) / 2
    gc = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    dist = torch.cdist(ac, gc)  # [N, G]
    candidates = []
    start = 0
    for count in num_anchors_per_level:
        k = min(topk * anchors_per_location, count)
        _, idx = dist[start : start + count].topk(k, dim=0, largest=False)
        candidates.append(idx + start)
        start += count
    cand = torch.cat(candidates, 0)  # [K, G]
    cand_iou = ious.gather(0, cand)
    thr = cand_iou.mean(0) + cand_iou.std(0) if cand.shape[0] > 1 else cand_iou.mean(0)
    is_pos = cand_iou >= thr[None, :]
    cx, cy = ac[cand, 0], ac[cand, 1]  # [K, G]
    eps = 0.01
    inside = (
        (cx - gt_boxes[None, :, 0] > eps)
        & (cy - gt_boxes[None, :, 1] > eps)
        & (gt_boxes[None, :, 2] - cx > eps)
        & (gt_boxes[None, :, 3] - cy > eps)
    )
    is_pos &= inside
    overlaps = torch.full_like(ious, -1.0)
    g_idx = torch.arange(gt_boxes.shape[0], device=anchors.device).expand_as(cand)
    overlaps[cand[is_pos], g_idx[is_pos]] = cand_iou[is_pos]
    value, arg = overlaps.max(1)
    pos = value >= 0
    matched[pos] = arg[pos]
    best_iou[pos] = ious[pos, arg[pos]]
    return matched, best_iou


def max_iou_assign(
    anchors: Tensor,
    gt_boxes: Tensor,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    low_quality: bool = True,
) -> tuple[Tensor, Tensor]:
    """RetinaNet's max-IoU assignment :cite:`lin2017focal`.

    An anchor is positive for its best box when their IoU is at least ``pos_iou``, negative when its
    best IoU is below ``neg_iou`` and ignored in between. With ``low_quality`` each box also claims the
    anchors of its own highest IoU (so no box goes without a positive).

    Args:
        anchors (Tensor[N, 4], float): ``xyxy`` anchors.
        gt_boxes (Tensor[G, 4], float): ``xyxy`` boxes (``G = 0`` allowed).
        pos_iou: positive threshold (0.5).
        neg_iou: negative threshold (0.4).
        low_quality: allow each box's best anchors as positives (True, as in RetinaNet).

    Returns:
        ``(matched, iou)``: Int64Tensor[N] with the box index, ``-1`` negative or ``-2`` ignored, and
        the IoU with the best box.

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12], [20, 20, 30, 30]])
        >>> max_iou_assign(a, torch.tensor([[0.0, 0, 10, 10]]), pos_iou=0.9, neg_iou=0.5)[0].tolist()
        [0, -2, -1]
    """
    n = anchors.shape[0]
    if gt_boxes.numel() == 0 or n == 0:
        z = torch.zeros(n, dtype=anchors.dtype, device=anchors.device)
        return torch.full((n,), -1, dtype=torch.long, device=anchors.device), z
    ious = box_iou(anchors, gt_boxes)
    best, arg = ious.max(1)
    matched = torch.full((n,), -2, dtype=torch.long, device=anchors.device)
    matched[best < neg_iou] = -1
    matched[best >= pos_iou] = arg[best >= pos_iou]
    if low_quality:
        gt_best = ious.max(0).values
        a_idx, g_idx = torch.nonzero(
            (ious == gt_best[None, :]) & (gt_best[None, :] > 0), as_tuple=True
        )
        matched[a_idx] = g_idx
        best = best.clone()
        best[a_idx] = ious[a_idx, g_idx]
    return matched, torch.where(matched >= 0, best, torch.zeros_like(best))
