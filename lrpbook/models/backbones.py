"""Backbones with a feature pyramid (FPN) from torchvision parts, without downloads by default.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

__all__ = ["BACKBONES", "build_backbone"]

#: Backbone names accepted by :func:`build_backbone` (ResNet-50 for full runs, ResNet-18 or
#: MobileNet-V3 for CPU runs).
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large")


def build_backbone(
    name: str = "resnet50",
    *,
    weights_backbone: str | None = None,
    fpn_channels: int = 256,
    extra: str = "p6p7",
    trainable_layers: int = 3,
) -> BackboneWithFPN:
    """A backbone with FPN :cite:`lin2017fpn` whose outputs are P3-P7 (one-stage) or P2-P6 (two-stage).

    Args:
        name: one of :data:`BACKBONES`. Default ``"resnet50"``.
        weights_backbone: ``None`` (default, random initialisation, nothing is downloaded) or a
            torchvision weights name such as ``"DEFAULT"`` (ImageNet weights, downloaded once).
        fpn_channels: channels of every pyramid level (256 in the thesis; smaller for CPU runs).
        extra: ``"p6p7"`` (RetinaNet/ATSS: levels P3-P7 from C3-C5) or ``"maxpool"`` (Faster/Mask
            R-CNN: P2-P6 from C2-C5).
        trainable_layers: ResNet stages that train when pretrained weights are used (5 = all);
            ignored, i.e. all train, when ``weights_backbone`` is ``None``.

    Returns:
        BackboneWithFPN: a module mapping images ``[B, 3, H, W]`` to an ordered dict of pyramid maps,
        with ``out_channels == fpn_channels``.

    Raises:
        ValueError: on an unknown ``name`` or ``extra``.

    Note:
        Batch normalisation is frozen (torchvision's ``FrozenBatchNorm2d``), as in the thesis'
        mmdetection configurations; with random weights it is the identity.

    Taught in: chapter "Detectors trained with ranking-based losses".
    """
    if name not in BACKBONES:
        raise ValueError(f"`name` must be one of {BACKBONES}; got {name!r}")
    if extra not in ("p6p7", "maxpool"):
        raise ValueError(f"`extra` must be 'p6p7' or 'maxpool'; got {extra!r}")
    if weights_backbone is None:
        trainable_layers = 5
    if name.startswith("resnet"):
        body = getattr(resnet, name)(
            weights=weights_backbone, norm_layer=misc_nn_ops.FrozenBatchNorm2d
        )
        layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        if trainable_layers == 5:
            layers.append("bn1")
        for pname, param in body.named_parameters():
            if all(not pname.startswith(layer) for layer in layers):
                param.requires_grad_(False)
        c5 = body.inplanes
        channels = [c5 // 8, c5 // 4, c5 // 2, c5]
        stages = [1, 2, 3, 4] if extra == "maxpool" else [2, 3, 4]
        return_layers = {f"layer{k}": str(i) for i, k in enumerate(stages)}
        in_list = [channels[k - 1] for k in stages]
    else:
        body = mobilenet_v3_large(
            weights=weights_backbone, norm_layer=misc_nn_ops.FrozenBatchNorm2d
        )
        body = body.features
        stage_idx = [i for i, b in enumerate(body) if getattr(b, "_is_cn", False)] + [len(body) - 1]
        picks = stage_idx[-4:] if extra == "maxpool" else stage_idx[-3:]
        return_layers = {str(k): str(i) for i, k in enumerate(picks)}
        in_list = [body[k].out_channels for k in picks]
    blocks: nn.Module
    if extra == "p6p7":
        blocks = LastLevelP6P7(fpn_channels, fpn_channels)
    else:
        blocks = LastLevelMaxPool()
    return BackboneWithFPN(body, return_layers, in_list, fpn_channels, extra_blocks=blocks)
