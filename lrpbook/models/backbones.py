"""Backbones with a feature pyramid (FPN) from torchvision parts, without downloads by default.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model_weights, mobilenet_v3_large, resnet
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
        weights_backbone: ``None`` (default, random initialisation, nothing is downloaded); a
            torchvision weights name such as ``"IMAGENET1K_V1"`` (the ImageNet weights that the
            thesis' configurations load, ``torchvision://resnet50``) or ``"DEFAULT"``, read from
            the torch hub cache (``torch.hub.get_dir()/checkpoints``) and downloaded there once if
            missing; or the path of a local ``.pth`` file (a state dict of the torchvision
            network, optionally under a ``"state_dict"`` or ``"model"`` key).
        fpn_channels: channels of every pyramid level (256 in the thesis; smaller for CPU runs).
        extra: ``"p6p7"`` (RetinaNet/ATSS: levels P3-P7 from C3-C5) or ``"maxpool"`` (Faster/Mask
            R-CNN: P2-P6 from C2-C5).
        trainable_layers: ResNet stages that train when pretrained weights are used (5 = all);
            ignored, i.e. all train, when ``weights_backbone`` is ``None``.

    Returns:
        BackboneWithFPN: a module mapping images ``[B, 3, H, W]`` to an ordered dict of pyramid maps,
        with ``out_channels == fpn_channels``.

    Raises:
        ValueError: on an unknown ``name`` or ``extra``, or an unknown weights name.
        FileNotFoundError: a local weights file that does not exist, or ImageNet weights that are
            neither in the hub cache nor downloadable (offline machine); the message names the
            path and how to provide the file.

    Note:
        Batch normalisation is frozen (torchvision's ``FrozenBatchNorm2d``), as in the thesis'
        mmdetection configurations; with random weights it is the identity.

    Taught in: chapter "Detectors trained with ranking-based losses".
    """
    if name not in BACKBONES:
        raise ValueError(f"`name` must be one of {BACKBONES}; got {name!r}")
    if extra not in ("p6p7", "maxpool"):
        raise ValueError(f"`extra` must be 'p6p7' or 'maxpool'; got {extra!r}")
    state = None if weights_backbone is None else _load_weights(name, weights_backbone)
    if weights_backbone is None:
        trainable_layers = 5
    if name.startswith("resnet"):
        body = getattr(resnet, name)(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
        if state is not None:
            _load_into(body, state, weights_backbone)
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
        net = mobilenet_v3_large(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
        if state is not None:
            _load_into(net, state, weights_backbone)
        body = net.features
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


def _is_path(weights: str) -> bool:
    return (
        os.sep in weights
        or "/" in weights
        or weights.endswith((".pth", ".pt", ".bin", ".ckpt"))
        or Path(weights).exists()
    )


def _load_weights(name: str, weights: str) -> dict:
    """State dict of ``weights`` (a local file, or a torchvision weights name via the hub cache)."""
    if _is_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"`weights_backbone` file {str(path)!r} does not exist. Provide a state dict of "
                f"torchvision's {name} saved with torch.save (e.g. downloaded on a machine with "
                "internet), or pass a weights name such as 'IMAGENET1K_V1' to use the torch hub "
                "cache, or None for random weights."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict):
            raise ValueError(f"`weights_backbone` file {str(path)!r} holds no state dict")
        return state
    try:
        enum = get_model_weights(name)
        w = enum.DEFAULT if weights == "DEFAULT" else enum[weights.split(".")[-1]]
    except KeyError:
        options = ["DEFAULT"] + [m.name for m in get_model_weights(name)]
        raise ValueError(
            f"unknown `weights_backbone` {weights!r} for {name}; use one of {options}, "
            "a local file path, or None"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    try:
        return w.get_state_dict(progress=False)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise FileNotFoundError(
            f"ImageNet weights {weights!r} of {name} are not in the torch hub cache at "
            f"{str(cached)!r} and could not be downloaded ({err}). On a machine with internet, "
            f"download {w.url} and copy it to that path (or set TORCH_HOME), or pass the file "
            "itself: weights_backbone='/path/to/file.pth'."
        ) from err


def _load_into(net: nn.Module, state: dict, source: str) -> None:
    """Load ``state`` into ``net``; a classifier head may be missing, nothing else."""
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("fc.", "classifier."))]
    if missing:
        raise ValueError(
            f"`weights_backbone` {source!r} does not fit the backbone: {len(missing)} missing "
            f"parameters, e.g. {missing[:3]}"
        )
