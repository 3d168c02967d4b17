"""Detectors trained with ranking-based losses, built from torchvision components (thesis Ch 7-8).

:func:`build` creates one by name:

- ``rs_atss``: ATSS with RS Loss, no centerness, value-based balancing (the thesis' headline, Ch 8);
- ``focal_atss``: the same detector with Focal Loss, GIoU and centerness (baseline);
- ``alrp_retinanet``: RetinaNet with aLRP Loss and self-balance (Ch 7, Table 7.1);
- ``alrp_atss``: ATSS with aLRP Loss (Table 8.4);
- ``rs_faster_rcnn`` / ``rs_mask_rcnn``: sampling-free RS-R-CNN and RS-Mask R-CNN (Ch 8).

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lrpbook.models.assigners import atss_assign, max_iou_assign
from lrpbook.models.backbones import BACKBONES, build_backbone
from lrpbook.models.dense import DenseDetector, DenseHead
from lrpbook.models.rcnn import RSRegionProposalNetwork, RSRoIHeads, build_rs_rcnn, dice_loss

__all__ = [
    "MODELS",
    "build",
    "BACKBONES",
    "build_backbone",
    "atss_assign",
    "max_iou_assign",
    "DenseHead",
    "DenseDetector",
    "RSRegionProposalNetwork",
    "RSRoIHeads",
    "build_rs_rcnn",
    "dice_loss",
]

# The anchors, assigner and NMS of RS-ATSS, shared by aLRP-ATSS (Table 8.4).
_RS_ATSS_ANCHORS: dict[str, Any] = dict(
    assigner="atss",
    centerness=False,
    anchor_scale=4.0,
    scales_per_octave=3,
    aspect_ratios=(1.0,),
    nms_thresh=0.6,
)

#: Default options of each detector (any of them can be overridden through ``build(**options)``).
#: They are the thesis' configurations; chapter 08 tabulates them beside their sources.
MODELS: dict[str, dict[str, Any]] = {
    # RS-ATSS: the anchor configuration of aLRP Loss for ranking-based losses (thesis Sec.
    # 8.5.1.2, App L.2): one aspect ratio (1.0), octave base scale 4, 3 scales per octave, i.e.
    # 3 anchors per location; ATSS top-k 9 per level; NMS IoU 0.6 (official configuration)
    "rs_atss": dict(loss="rs", **_RS_ATSS_ANCHORS),
    # ATSS with Focal Loss: one anchor per location (octave base scale 8), centerness head
    "focal_atss": dict(
        loss="focal", assigner="atss", centerness=True, anchor_scale=8.0, nms_thresh=0.6
    ),
    # aLRP Loss on ATSS as in Table 8.4 (1x, 1333 x 800): the same anchors as RS-ATSS
    "alrp_atss": dict(loss="alrp", **_RS_ATSS_ANCHORS),
    # aLRPLoss500 of Table 7.1: RetinaNet, max-IoU assigner (0.5 / 0.4), 3 ratios x 2 scales
    # (App L.2), NMS IoU 0.5 on the 1000 top-scoring detections (thesis Sec. 7.4)
    "alrp_retinanet": dict(
        loss="alrp",
        assigner="max_iou",
        centerness=False,
        anchor_scale=4.0,
        scales_per_octave=2,
        aspect_ratios=(0.5, 1.0, 2.0),
        nms_thresh=0.5,
    ),
    # RS-R-CNN (thesis Sec. 8.4.3, 8.5.1.1): RPN losses x 0.20, no sampling, sigmoid
    # classifiers, m = 1000 proposals per image, NMS score threshold 0.40
    "rs_faster_rcnn": dict(masks=False),
    "rs_mask_rcnn": dict(masks=True),
}


def build(
    name: str,
    num_classes: int,
    backbone: str = "resnet50",
    weights_backbone: str | None = None,
    **options: Any,
) -> nn.Module:
    """Build a detector of the thesis by name.

    Args:
        name: one of :data:`MODELS` (``rs_atss``, ``focal_atss``, ``alrp_atss``,
            ``alrp_retinanet``, ``rs_faster_rcnn``, ``rs_mask_rcnn``).
        num_classes: foreground classes ``C`` (labels ``1..C``; 80 for COCO).
        backbone: one of :data:`~lrpbook.models.backbones.BACKBONES` (``"resnet50"``, the thesis'
            backbone; ``"resnet18"`` for CPU runs).
        weights_backbone: ``None`` (default: random weights, nothing downloads) or a torchvision
            weights name such as ``"DEFAULT"`` (ImageNet, downloaded once).
        **options: ``fpn_channels`` (256) and ``trainable_layers`` go to the backbone; the rest to
            :class:`~lrpbook.models.dense.DenseDetector` (one-stage) or
            :func:`~lrpbook.models.rcnn.build_rs_rcnn` (two-stage), overriding :data:`MODELS`.

    Returns:
        nn.Module: in training mode ``model(images, targets)`` returns a dict of losses (their sum is
        the loss to minimise); in eval mode ``model(images)`` returns one ``{"boxes", "scores",
        "labels"[, "masks"]}`` per image, in torchvision's convention.

    Raises:
        ValueError: on an unknown ``name`` or ``backbone``.

    Example:
        >>> import torch
        >>> m = build("rs_atss", 3, backbone="resnet18", fpn_channels=32, min_size=64, max_size=64)
        >>> losses = m([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[8.0, 8, 40, 40]]),
        ...                                      "labels": torch.tensor([2])}])
        >>> sorted(losses)
        ['box', 'ranking', 'sorting']

    Taught in: chapter "Detectors trained with ranking-based losses".
    """
    if name not in MODELS:
        raise ValueError(f"`name` must be one of {sorted(MODELS)}; got {name!r}")
    opts = {**MODELS[name], **options}
    bb_opts = {k: opts.pop(k) for k in ("fpn_channels", "trainable_layers") if k in opts}
    two_stage = name in ("rs_faster_rcnn", "rs_mask_rcnn")
    bb = build_backbone(
        backbone,
        weights_backbone=weights_backbone,
        extra="maxpool" if two_stage else "p6p7",
        **bb_opts,
    )
    if two_stage:
        return build_rs_rcnn(bb, num_classes, **opts)
    return DenseDetector(bb, num_classes, **opts)
