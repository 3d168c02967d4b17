"""One-stage detectors (ATSS, RetinaNet) trained with RS Loss, aLRP Loss or Focal Loss.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import (
    batched_nms,
    generalized_box_iou_loss,
    remove_small_boxes,
    sigmoid_focal_loss,
)

from lrpbook.boxes import _iou_aligned
from lrpbook.boxes import box_iou_aligned as box_iou_aligned  # re-export (old import path)
from lrpbook.losses import ALRPLoss, RankSortLoss, rank_sort_loss, value_balance
from lrpbook.models.assigners import atss_assign, max_iou_assign

__all__ = ["DenseHead", "DenseDetector"]

_LOSSES = ("rs", "focal", "alrp")


class DenseHead(nn.Module):
    """RetinaNet/ATSS head: a classification and a box tower of ``num_convs`` 3x3 convolutions.

    Args:
        in_channels: channels of the pyramid levels.
        num_anchors: anchors per location ``A``.
        num_classes: foreground classes ``C`` (sigmoid classifiers, no background column).
        num_convs: convolutions per tower (4 in the thesis).
        centerness: add ATSS' centerness branch (on the box tower).
        prior: initial foreground probability of the classifiers (0.01, RetinaNet's prior).

    ``forward(features)`` returns ``(cls [B, N, C], box [B, N, 4], ctr [B, N] or None)`` with the
    locations of all levels concatenated (level, y, x, anchor order, as torchvision's anchors).
    """

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        num_convs: int = 4,
        centerness: bool = False,
        prior: float = 0.01,
    ) -> None:
        super().__init__()
        groups = 32  # GroupNorm(32) at 256 channels; at least 8 channels per group otherwise
        while groups > 1 and (in_channels % groups or in_channels // groups < 8):
            groups //= 2

        def tower() -> nn.Sequential:
            layers: list[nn.Module] = []
            for _ in range(num_convs):
                layers += [
                    nn.Conv2d(in_channels, in_channels, 3, padding=1),
                    nn.GroupNorm(groups, in_channels),
                    nn.ReLU(inplace=True),
                ]
            return nn.Sequential(*layers)

        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.cls_tower = tower()
        self.box_tower = tower()
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.box_deltas = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        self.ctr = nn.Conv2d(in_channels, num_anchors, 3, padding=1) if centerness else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:  # noqa: D102
        cls_out, box_out, ctr_out = [], [], []
        a, c = self.num_anchors, self.num_classes
        for x in features:
            b, _, h, w = x.shape
            t = self.cls_tower(x)
            cls_out.append(
                self.cls_logits(t).view(b, a, c, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, c)
            )
            t = self.box_tower(x)
            box_out.append(
                self.box_deltas(t).view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
            )
            if self.ctr is not None:
                ctr_out.append(self.ctr(t).view(b, a, h, w).permute(0, 2, 3, 1).reshape(b, -1))
        ctr = torch.cat(ctr_out, 1) if ctr_out else None
        return torch.cat(cls_out, 1), torch.cat(box_out, 1), ctr


class DenseDetector(nn.Module):
    r"""A one-stage detector on an FPN backbone whose classifier is trained by a ranking-based loss.

    With ``loss="rs"`` (RS-ATSS, thesis Sec. 8.3-8.4) the classification logits of **all anchors x
    classes of the batch** are ranked together by Rank & Sort Loss; the target of a positive (its
    class at an anchor assigned to a box) is the IoU of its *decoded* prediction with the box
    (detached), negatives get 0. The box loss is GIoU weighted by the positives' scores
    :math:`s_i` (the anchor's largest class probability, detached: the score-based instance weighting
    of thesis Table 8.1) and rescaled to the value of the RS Loss every iteration (value-based
    balancing, Sec. 8.4.2, Eq. 8.10):

    .. math::

        \mathcal{L} = \mathcal{L}_{RS} + \frac{\mathcal{L}_{RS}}{\mathcal{L}_{box}}
        \mathcal{L}_{box},\qquad
        \mathcal{L}_{box} = \frac{\sum_{i \in \mathcal{P}} s_i\,(1 - \mathrm{GIoU}_i)}
        {\sum_{i \in \mathcal{P}} s_i}.

    With ``loss="alrp"`` (aLRP Loss, Ch 7) the same logits are ranked by aLRP Loss with binary targets
    and the localisation error :math:`e_{loc}(i) = (1 - \mathrm{GIoU}_i)/2` of every positive; the
    total is :math:`\mathcal{L}_{cls} + w_{SB}\mathcal{L}_{loc}` with the self-balance weight of
    :class:`~lrpbook.losses.ALRPLoss` (call :meth:`end_epoch` every epoch). With ``loss="focal"`` it is
    the ATSS baseline: Focal Loss normalised by the number of positives, GIoU weighted by the
    centerness targets (weight 2) and the centerness branch trained by binary cross-entropy.

    Args:
        backbone: a module with ``out_channels`` returning an ordered dict of pyramid maps
            (:func:`~lrpbook.models.backbones.build_backbone`).
        num_classes: foreground classes ``C`` (labels ``1..C``).
        loss: ``"rs"``, ``"alrp"`` or ``"focal"``.
        assigner: ``"atss"`` or ``"max_iou"`` (RetinaNet: IoU >= 0.5 positive, < 0.4 negative).
        centerness: add the centerness branch (ATSS with Focal Loss); its score multiplies the
            classification score at inference (geometric mean).
        anchor_scale: anchor size in strides (8 for ATSS' single anchor, 4 for RetinaNet's octave base).
        scales_per_octave: anchor sizes per level (1 for ATSS, 3 for RetinaNet).
        aspect_ratios: anchor aspect ratios per location (``(1.0,)`` or ``(0.5, 1.0, 2.0)``).
        strides: strides of the pyramid levels (8-128 for P3-P7).
        min_size, max_size: images are resized so that the short side is ``min_size`` and the long
            side at most ``max_size`` (800, 1333 in the thesis).
        num_convs: convolutions per head tower.
        delta: smoothing of the ranking loss' step function (RS 0.5, aLRP 1.0 when ``None``).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: inference settings (0.05,
            0.6, 100, 1000 per level as in mmdetection's ATSS).
        sb_init: aLRP Loss' self-balance weight of the first epoch (50, thesis Sec. 7.4).
        atss_topk: ATSS candidates per pyramid level (9, whatever the anchors per location, as the
            ATSS assigner of the official configurations).
        train_min_size: short side of the training images when it differs from the test size
            (``None``: ``min_size``; 512 for aLRP Loss' 512 x 512 SSD-style crops, Table 7.1).
        min_box_size: detections narrower or lower than this (pixels) are removed before NMS
            (``torchvision.ops.remove_small_boxes``), so no degenerate box is ever returned.
        sorting: with ``loss="rs"``, keep RS Loss' sorting term (True); False trains with the
            ranking term alone (the ablation of thesis Sec. 8.5.1.1, "contribution of the
            sorting error"), the box loss balanced to the ranking loss.

    Raises:
        ValueError: on an unknown ``loss`` or ``assigner``; in training, on malformed targets
            (the message names the image index and, for a degenerate box, the box index), as
            torchvision's detectors do.

    ``forward(images, targets=None)``: in training mode returns a dict of losses whose sum is the
    total loss; in eval mode a list of ``{"boxes", "scores", "labels"}`` in input image coordinates.

    Taught in: chapter "Detectors trained with ranking-based losses".
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        loss: str = "rs",
        assigner: str = "atss",
        centerness: bool = False,
        anchor_scale: float = 8.0,
        scales_per_octave: int = 1,
        aspect_ratios: tuple[float, ...] = (1.0,),
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        min_size: int = 800,
        max_size: int = 1333,
        num_convs: int = 4,
        delta: float | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        sb_init: float = 50.0,
        atss_topk: int = 9,
        train_min_size: int | None = None,
        min_box_size: float = 1e-2,
        sorting: bool = True,
    ) -> None:
        super().__init__()
        if loss not in _LOSSES:
            raise ValueError(f"`loss` must be one of {_LOSSES}; got {loss!r}")
        if assigner not in ("atss", "max_iou"):
            raise ValueError(f"`assigner` must be 'atss' or 'max_iou'; got {assigner!r}")
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1; got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.loss_name = loss
        self.assigner = assigner
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
        )
        sizes = tuple(
            tuple(anchor_scale * s * 2 ** (i / scales_per_octave) for i in range(scales_per_octave))
            for s in strides
        )
        self.anchor_generator = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(strides))
        self.anchors_per_location = scales_per_octave * len(aspect_ratios)
        self.head = DenseHead(
            backbone.out_channels, self.anchors_per_location, num_classes, num_convs, centerness
        )
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        if loss == "rs":
            self.rs_loss = RankSortLoss(0.5 if delta is None else delta)
        elif loss == "alrp":
            self.alrp_loss = ALRPLoss(1.0 if delta is None else delta, sb_init=sb_init)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.atss_topk = atss_topk
        self.min_box_size = min_box_size
        self.sorting = sorting
        self.test_min_size = min_size
        self.train_min_size = min_size if train_min_size is None else train_min_size

    def end_epoch(self) -> dict[str, float]:
        """Epoch hook of the trainer: updates aLRP Loss' self-balance weight (no-op otherwise)."""
        if self.loss_name == "alrp":
            return {"sb_weight": self.alrp_loss.end_epoch()}
        return {}

    # ------------------------------------------------------------------------------------------
    def forward(self, images: list[Tensor], targets: list[dict] | None = None):  # noqa: D102
        if self.training:
            _check_targets(targets, len(images), self.num_classes)
        sizes = [tuple(img.shape[-2:]) for img in images]
        size = self.train_min_size if self.training else self.test_min_size
        self.transform.min_size = (size,)
        image_list, targets = self.transform(images, targets)
        feats = list(self.backbone(image_list.tensors).values())
        cls, box, ctr = self.head(feats)
        anchors = self.anchor_generator(image_list, feats)
        counts = [f.shape[-2] * f.shape[-1] * self.anchors_per_location for f in feats]
        if self.training:
            return self.compute_loss(cls, box, ctr, anchors, counts, targets)
        dets = self.postprocess(cls, box, ctr, anchors, counts, image_list.image_sizes)
        return self.transform.postprocess(dets, image_list.image_sizes, sizes)

    def assign(self, anchors: Tensor, counts: list[int], boxes: Tensor) -> Tensor:
        """Index of the assigned box per anchor (``-1`` negative, ``-2`` ignored)."""
        if self.assigner == "atss":
            return atss_assign(anchors, counts, boxes, self.atss_topk)[0]
        return max_iou_assign(anchors, boxes)[0]

    def compute_loss(self, cls, box, ctr, anchors, counts, targets) -> dict[str, Tensor]:
        """The training losses of a batch (see the class docstring)."""
        b, n, c = cls.shape
        labels = torch.zeros(b, n, dtype=torch.long, device=cls.device)
        gt_boxes = torch.zeros(b, n, 4, dtype=box.dtype, device=cls.device)
        ignored = torch.zeros(b, n, dtype=torch.bool, device=cls.device)
        for i, (anc, t) in enumerate(zip(anchors, targets)):
            keep = t.get("iscrowd", torch.zeros_like(t["labels"])) == 0
            g_boxes, g_labels = t["boxes"][keep], t["labels"][keep]
            matched = self.assign(anc, counts, g_boxes)
            pos = matched >= 0
            labels[i, pos] = g_labels[matched[pos]]
            gt_boxes[i, pos] = g_boxes[matched[pos]].to(box.dtype)
            ignored[i] = matched == -2
        pos = labels > 0
        all_anchors = torch.stack(anchors)
        p_anchors, p_gt = all_anchors[pos], gt_boxes[pos]
        p_pred = self.box_coder.decode_single(box[pos].float(), p_anchors)
        p_cls = labels[pos] - 1
        n_pos = int(pos.sum())
        if self.loss_name == "rs":
            targets_rs = torch.zeros_like(cls, dtype=torch.float32)
            targets_rs[ignored] = -1.0
            if n_pos:
                iou = _iou_aligned(p_pred.detach(), p_gt, 1e-12).clamp_min(1e-6)
                targets_rs[pos.nonzero(as_tuple=True) + (p_cls,)] = iou
                weights = cls[pos].detach().float().sigmoid().max(1).values
                giou = generalized_box_iou_loss(p_pred, p_gt, reduction="none")
                box_loss = (weights * giou).sum() / weights.sum().clamp_min(1e-12)
            else:
                box_loss = box.sum() * 0.0
            if not self.sorting:  # ablation of thesis Sec. 8.5.1.1: the ranking term alone
                ranking, _ = rank_sort_loss(cls.float(), targets_rs, self.rs_loss.delta)
                return {"ranking": ranking, "box": value_balance(ranking, box_loss)[0]}
            out = self.rs_loss(cls.float(), targets_rs, box_loss)
            return {"ranking": out["ranking"], "sorting": out["sorting"], "box": out["others"][0]}
        if self.loss_name == "alrp":
            targets_b = torch.zeros_like(cls, dtype=torch.float32)
            targets_b[ignored] = -1.0
            targets_b[pos.nonzero(as_tuple=True) + (p_cls,)] = 1.0
            loc_err = generalized_box_iou_loss(p_pred, p_gt, reduction="none") / 2.0
            out = self.alrp_loss(cls.float(), targets_b, loc_err)
            return {"cls": out["cls"], "loc": out["sb_weight"].to(out["loc"].dtype) * out["loc"]}
        # focal baseline (ATSS)
        onehot = torch.zeros_like(cls, dtype=torch.float32)
        onehot[pos.nonzero(as_tuple=True) + (p_cls,)] = 1.0
        valid = ~ignored
        norm = _reduce_mean(torch.tensor(float(n_pos), device=cls.device)).clamp_min(1.0)
        focal = sigmoid_focal_loss(cls[valid].float(), onehot[valid], reduction="sum") / norm
        if n_pos:
            ctr_t = _centerness_targets(p_anchors, p_gt)
            giou = generalized_box_iou_loss(p_pred, p_gt, reduction="none")
            ctr_norm = _reduce_mean(ctr_t.sum()).clamp_min(1e-6)
            box_loss = 2.0 * (ctr_t * giou).sum() / ctr_norm
            ctr_loss = (
                F.binary_cross_entropy_with_logits(ctr[pos].float(), ctr_t, reduction="sum") / norm
            )
        else:
            box_loss = box.sum() * 0.0
            ctr_loss = ctr.sum() * 0.0 if ctr is not None else box.sum() * 0.0
        out = {"focal": focal, "box": box_loss}
        if ctr is not None:
            out["centerness"] = ctr_loss
        return out

    @torch.no_grad()
    def postprocess(self, cls, box, ctr, anchors, counts, image_sizes) -> list[dict[str, Tensor]]:
        """Top-k per level, decoding, class-wise NMS, ``detections_per_img`` best per image."""
        results = []
        for i, anc in enumerate(anchors):
            boxes_all, scores_all, labels_all = [], [], []
            start = 0
            for count in counts:
                sl = slice(start, start + count)
                start += count
                scores = cls[i, sl].float().sigmoid()
                if ctr is not None:
                    scores = (scores * ctr[i, sl].float().sigmoid()[:, None]).sqrt()
                flat = scores.flatten()
                keep = flat > self.score_thresh
                flat = flat[keep]
                idx = keep.nonzero().squeeze(1)
                k = min(self.topk_candidates, idx.numel())
                flat, order = flat.topk(k)
                idx = idx[order]
                a_idx, c_idx = idx // self.num_classes, idx % self.num_classes
                dec = self.box_coder.decode_single(box[i, sl][a_idx].float(), anc[sl][a_idx])
                h, w = image_sizes[i]
                dec[:, 0::2] = dec[:, 0::2].clamp(0, w)
                dec[:, 1::2] = dec[:, 1::2].clamp(0, h)
                keep = remove_small_boxes(dec, self.min_box_size)
                dec, flat, c_idx = dec[keep], flat[keep], c_idx[keep]
                boxes_all.append(dec)
                scores_all.append(flat)
                labels_all.append(c_idx + 1)
            boxes_c, scores_c, labels_c = map(torch.cat, (boxes_all, scores_all, labels_all))
            keep = batched_nms(boxes_c, scores_c, labels_c, self.nms_thresh)[
                : self.detections_per_img
            ]
            results.append(
                OrderedDict(boxes=boxes_c[keep], scores=scores_c[keep], labels=labels_c[keep])
            )
        return results


def _check_targets(targets: list[dict] | None, n_images: int, num_classes: int) -> None:
    """Raise ``ValueError`` naming the image (and box) of a malformed training target."""
    if targets is None:
        raise ValueError("`targets` are required in training mode")
    if len(targets) != n_images:
        raise ValueError(f"got {n_images} images but {len(targets)} targets")
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
            raise ValueError(f"target {i} must be a dict with 'boxes' and 'labels'")
        boxes, labels = t["boxes"], t["labels"]
        if not torch.is_tensor(boxes) or boxes.dim() != 2 or boxes.shape[-1] != 4:
            shape = tuple(boxes.shape) if torch.is_tensor(boxes) else type(boxes)
            raise ValueError(f"target {i}: 'boxes' must be a Tensor[G, 4]; got {shape}")
        if not torch.is_tensor(labels) or labels.shape != boxes.shape[:1]:
            raise ValueError(f"target {i}: 'labels' must be a Tensor[{boxes.shape[0]}]")
        if not torch.isfinite(boxes).all():
            bad = int((~torch.isfinite(boxes)).any(1).nonzero()[0])
            raise ValueError(f"target {i}: box {bad} is not finite: {boxes[bad].tolist()}")
        degenerate = boxes[:, 2:] <= boxes[:, :2]
        if degenerate.any():
            bad = int(degenerate.any(1).nonzero()[0])
            raise ValueError(
                "All bounding boxes should have positive height and width. Found invalid box "
                f"{boxes[bad].tolist()} (box {bad}) for target at index {i}."
            )
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
            raise ValueError(
                f"target {i}: labels must be in 1..{num_classes}; got {labels.tolist()}"
            )


def _centerness_targets(anchors: Tensor, gt: Tensor) -> Tensor:
    c = (anchors[:, :2] + anchors[:, 2:]) / 2
    lr = torch.stack([c[:, 0] - gt[:, 0], gt[:, 2] - c[:, 0]], 1).clamp_min(0)
    tb = torch.stack([c[:, 1] - gt[:, 1], gt[:, 3] - c[:, 1]], 1).clamp_min(0)
    ratio = (lr.min(1).values / lr.max(1).values.clamp_min(1e-12)) * (
        tb.min(1).values / tb.max(1).values.clamp_min(1e-12)
    )
    return ratio.sqrt()


def _reduce_mean(x: Tensor) -> Tensor:
    """Mean over the processes of a DDP run (identity otherwise), as mmdetection's ATSS head."""
    if dist.is_available() and dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x = x / dist.get_world_size()
    return x
