"""Two-stage detectors trained with RS Loss: RS-R-CNN (Faster R-CNN) and RS-Mask R-CNN (thesis Ch 8).

Both stages are sampling-free: the RPN ranks all anchors of the batch and the RoI head ranks all
proposals x classes of the batch (sigmoid classifiers replace the softmax), with IoU targets of the
decoded boxes, GIoU box losses and (Mask R-CNN) a Dice mask loss, each rescaled to the RS Loss value
of its stage (value-based balancing).

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.roi_heads import RoIHeads, project_masks_on_boxes
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import (
    batched_nms,
    clip_boxes_to_image,
    generalized_box_iou_loss,
    remove_small_boxes,
)

from lrpbook.boxes import _iou_aligned
from lrpbook.losses import rank_sort_loss, value_balance

__all__ = ["RSRegionProposalNetwork", "RSRoIHeads", "build_rs_rcnn", "dice_loss"]

_BIG = 10**9  # a "sample size" larger than any number of examples: sampling-free


def _unit_decode(coder, deltas: Tensor) -> Tensor:
    """Decode deltas w.r.t. the unit box: IoU and GIoU are invariant to the anchor's scale/shift."""
    unit = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=deltas.device, dtype=deltas.dtype)
    return coder.decode_single(deltas, unit.expand(deltas.shape[0], 4))


def dice_loss(
    mask_logits: Tensor, mask_targets: Tensor, eps: float = 1e-6, weights: Tensor | None = None
) -> Tensor:
    r"""Dice loss :cite:`milletari2016vnet` of instance masks, optionally score-weighted.

    .. math::

        \mathcal{L}_{mask} = \sum_{i \in \mathcal{P}} \frac{w_i}{\sum_{j \in \mathcal{P}} w_j}
        \Big(1 - \frac{2 \sum_p m_{ip} \hat m_{ip}}{\sum_p m_{ip} + \sum_p \hat m_{ip}}\Big),
        \qquad \hat m = \sigma(\text{logits}),

    with :math:`w_i = 1` (the mean) or the positives' classification scores, as RS-Mask R-CNN
    does (score-based instance weighting, thesis Sec. 8.4.3 and Eq. 8.11).

    Args:
        mask_logits (Tensor[P, M, M], float): mask logits of the positives (their class' channel).
        mask_targets (Tensor[P, M, M], float): the ground-truth masks resampled into the boxes, in [0, 1].
        eps: guards empty masks.
        weights (Tensor[P], float, optional): instance weights (detached scores); ``None``: mean.

    Returns:
        Tensor[] scalar in [0, 1]; 0 with zero gradient when ``P = 0``.

    Example:
        >>> import torch
        >>> t = torch.ones(1, 2, 2)
        >>> round(dice_loss(torch.full((1, 2, 2), 20.0), t).item(), 4)
        0.0
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    p = mask_logits.sigmoid().flatten(1)
    t = mask_targets.flatten(1).to(p.dtype)
    dice = 2 * (p * t).sum(1) / (p.sum(1) + t.sum(1)).clamp_min(eps)
    if weights is None:
        return (1 - dice).mean()
    w = weights.to(dice.dtype)
    return (w * (1 - dice)).sum() / w.sum().clamp_min(1e-12)


class RSRegionProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN with RS Loss over all anchors of the batch (no sampling).

    The objectness logits of all anchors are ranked together: positives (IoU >= 0.7 with a box, or
    a box's best anchor) target the IoU of their decoded proposal with the box, negatives (< 0.3) 0,
    the rest is ignored. The GIoU box loss is weighted by the positives' scores and value-balanced.
    Both are multiplied by ``head_weight`` (0.20, thesis Sec. 8.4.3, line "multiply the losses of
    RPN by 0.20 following aLRP Loss"; ``head_weight=0.20`` in the official configuration).
    ``compute_loss`` returns ``(w (ranking + sorting), w * balanced box loss)``.
    """

    head_weight: float = 0.20

    def compute_loss(  # noqa: D102
        self,
        objectness: Tensor,
        pred_bbox_deltas: Tensor,
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        lab = torch.cat(labels)
        reg = torch.cat(regression_targets)
        logits = objectness.flatten().float()
        pos = lab == 1
        targets = torch.where(lab < 0, -1.0, 0.0).to(logits.dtype)
        if pos.any():
            pred = _unit_decode(self.box_coder, pred_bbox_deltas[pos].float())
            gt = _unit_decode(self.box_coder, reg[pos].float())
            targets[pos] = _iou_aligned(pred.detach(), gt, 1e-12).clamp_min(1e-6)
            w = logits[pos].detach().sigmoid()
            box = (
                w * generalized_box_iou_loss(pred, gt, reduction="none")
            ).sum() / w.sum().clamp_min(1e-12)
        else:
            box = pred_bbox_deltas.sum() * 0.0
        ranking, sorting = rank_sort_loss(logits, targets, 0.5)
        main = ranking + sorting
        w = self.head_weight
        return w * main, w * value_balance(main, box)[0]


class RSRoIHeads(RoIHeads):
    """torchvision's RoI heads with RS Loss, sigmoid classifiers and no sampling (RS-R-CNN).

    Training ranks the logits of all proposals x foreground classes of the batch (the background
    column of the predictor is unused); a positive proposal (IoU >= 0.5) targets the IoU of its
    class-specific decoded box with its box. The GIoU box loss (weighted by the positives' scores)
    and the Dice mask loss are rescaled to the RS Loss value. Inference scores are sigmoids.
    Losses: ``rcnn_ranking``, ``rcnn_sorting``, ``rcnn_box`` and ``rcnn_mask`` (masks only).
    """

    def forward(self, features, proposals, image_shapes, targets=None):  # noqa: D102
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, reg_targets = self.select_training_samples(
            proposals, targets
        )
        feats = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(feats)
        lab = torch.cat(labels)
        reg = torch.cat(reg_targets)
        logits = class_logits[:, 1:].float()
        targets_rs = torch.zeros_like(logits)
        pos = torch.nonzero(lab > 0).squeeze(1)
        if pos.numel():
            cls = lab[pos]
            deltas = box_regression.reshape(lab.shape[0], -1, 4)[pos, cls].float()
            pred = _unit_decode(self.box_coder, deltas)
            gt = _unit_decode(self.box_coder, reg[pos].float())
            targets_rs[pos, cls - 1] = _iou_aligned(pred.detach(), gt, 1e-12).clamp_min(1e-6)
            w = logits[pos, cls - 1].detach().sigmoid()
            box = (
                w * generalized_box_iou_loss(pred, gt, reduction="none")
            ).sum() / w.sum().clamp_min(1e-12)
        else:
            box = box_regression.sum() * 0.0
        ranking, sorting = rank_sort_loss(logits, targets_rs, 0.5)
        main = ranking + sorting
        others = [box]
        if self.has_mask():
            mask_props, mask_idx, mask_lab, rows = [], [], [], []
            cap = getattr(self, "max_mask_proposals", None)
            offset = 0
            for p, m, lb in zip(proposals, matched_idxs, labels):
                keep = torch.nonzero(lb > 0).squeeze(1)
                if cap is not None:  # a memory cap on the positives of the mask head
                    keep = keep[: max(1, cap // len(proposals))]
                mask_props.append(p[keep])
                mask_idx.append(m[keep])
                mask_lab.append(lb[keep])
                rows.append(keep + offset)
                offset += p.shape[0]
            mask_logits = self.mask_predictor(
                self.mask_head(self.mask_roi_pool(features, mask_props, image_shapes))
            )
            size = mask_logits.shape[-1]
            mtargets = [
                project_masks_on_boxes(t["masks"], p, i, size)
                for t, p, i in zip(targets, mask_props, mask_idx)
            ]
            ml = torch.cat(mask_lab)
            picked = mask_logits[torch.arange(ml.shape[0], device=ml.device), ml]
            # score-based weighting of the mask loss (thesis Sec. 8.4.3): the positive's score
            # of its own class, detached, as for the box loss
            scores = class_logits[torch.cat(rows), ml].detach().float().sigmoid()
            others.append(dice_loss(picked.float(), torch.cat(mtargets), weights=scores))
        balanced = value_balance(main, *others)
        losses = {"rcnn_ranking": ranking, "rcnn_sorting": sorting, "rcnn_box": balanced[0]}
        if self.has_mask():
            losses["rcnn_mask"] = balanced[1]
        return [], losses

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):  # noqa: D102
        counts = [p.shape[0] for p in proposals]
        boxes_all = self.box_coder.decode(box_regression, proposals)[:, 1:]
        scores_all = class_logits[:, 1:].sigmoid()
        out_b, out_s, out_l = [], [], []
        for boxes, scores, shape in zip(
            boxes_all.split(counts), scores_all.split(counts), image_shapes
        ):
            boxes = clip_boxes_to_image(boxes, shape).reshape(-1, 4)
            c = scores.shape[1]
            labels = torch.arange(1, c + 1, device=scores.device).repeat(scores.shape[0])
            scores = scores.reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, 1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out_b.append(boxes[keep])
            out_s.append(scores[keep])
            out_l.append(labels[keep])
        return out_b, out_s, out_l


def build_rs_rcnn(
    backbone: nn.Module,
    num_classes: int,
    *,
    masks: bool = False,
    min_size: int = 800,
    max_size: int = 1333,
    proposals_per_image: int = 1000,
    score_thresh: float = 0.40,
    rpn_weight: float = 0.20,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    mask_head_channels: int = 256,
    max_mask_proposals: int | None = None,
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
) -> FasterRCNN:
    """RS-R-CNN / RS-Mask R-CNN: torchvision's Faster/Mask R-CNN with RS Loss in both stages.

    Args:
        backbone: FPN backbone with levels P2-P6 (``build_backbone(..., extra="maxpool")``).
        num_classes: foreground classes ``C``.
        masks: build Mask R-CNN (Dice mask loss) instead of Faster R-CNN.
        min_size, max_size: image resizing (800, 1333 in the thesis).
        proposals_per_image: top-scoring RPN proposals per image trained in the RoI head and used at
            test time (``m = 1000`` in the thesis, all of them, no sampling).
        score_thresh: score threshold of the detections (0.40, thesis Sec. 8.5.1.1: RS-R-CNN's
            scores are larger, so the official configuration raises mmdetection's 0.05 for
            speed; 0.05 keeps the low-score tail that COCO AP counts).
        rpn_weight: multiplies both RPN losses (0.20, thesis Sec. 8.4.3).
        nms_thresh: IoU threshold of the class-wise NMS of the detections (0.5, mmdetection).
        detections_per_img: detections kept per image after NMS (100, COCO's maximum).
        mask_head_channels: channels of the four mask-head convolutions (256; fewer on CPUs).
        max_mask_proposals: at most this many positives per batch train the mask head (``None``:
            all, as in the thesis; a memory cap for small machines).
        anchor_sizes: RPN anchor size per pyramid level (3 aspect ratios each).

    Returns:
        A ``FasterRCNN`` (or ``MaskRCNN``) whose ``rpn`` is a :class:`RSRegionProposalNetwork` and
        whose ``roi_heads`` is a :class:`RSRoIHeads`.

    Taught in: chapter "Detectors trained with ranking-based losses".
    """
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    anchors = AnchorGenerator(
        tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    )
    cls = MaskRCNN if masks else FasterRCNN
    model = cls(
        backbone,
        num_classes=num_classes + 1,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_score_thresh=score_thresh,
        box_nms_thresh=nms_thresh,
        box_detections_per_img=detections_per_img,
    )
    old = model.rpn
    model.rpn = RSRegionProposalNetwork(
        old.anchor_generator,
        old.head,
        0.7,
        0.3,
        _BIG,
        1.0,
        dict(training=2000, testing=1000),
        dict(training=proposals_per_image, testing=proposals_per_image),
        0.7,
    )
    model.rpn.head_weight = rpn_weight
    old = model.roi_heads
    if masks and mask_head_channels != 256:
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        c = mask_head_channels
        old.mask_head = MaskRCNNHeads(backbone.out_channels, [c, c, c, c], 1)
        old.mask_predictor = MaskRCNNPredictor(c, c, num_classes + 1)
    heads = RSRoIHeads(
        old.box_roi_pool,
        old.box_head,
        old.box_predictor,
        0.5,
        0.5,
        _BIG,
        1.0,
        None,
        score_thresh,
        old.nms_thresh,
        old.detections_per_img,
        mask_roi_pool=old.mask_roi_pool,
        mask_head=old.mask_head,
        mask_predictor=old.mask_predictor,
    )
    heads.max_mask_proposals = max_mask_proposals
    model.roi_heads = heads
    return model
