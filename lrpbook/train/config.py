"""Training configuration: a dataclass, YAML round trip and the thesis' presets.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "PRESETS", "preset", "load_config", "save_config"]


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the thesis' 1x schedule for RS-ATSS.

    The fields (all have defaults):

    * ``model``: detector name of :func:`lrpbook.models.build`.
    * ``backbone``: backbone name (``resnet50`` in the thesis; ``resnet18`` on CPU).
    * ``weights_backbone``: ``None`` (random) or a torchvision weights name (``"DEFAULT"``: ImageNet).
    * ``model_options``: extra keyword arguments of :func:`lrpbook.models.build`.
    * ``data_root``: COCO-format folder; ``train_ann``/``train_images``/``val_ann``/``val_images`` are
      relative to it (COCO 2017 layout by default).
    * ``synthetic``: generate a small synthetic dataset (``lrpbook.data.make_synthetic_coco``) instead.
    * ``synthetic_images``, ``synthetic_classes``, ``image_size``: its size (images per split, classes, pixels).
    * ``epochs``: epochs of the schedule (12 = 1x); ``max_iters`` stops earlier when set.
    * ``batch_size``: images per iteration over all processes (16 in the thesis, 4 per GPU on 4 GPUs).
    * ``lr``, ``momentum``, ``weight_decay``: SGD (thesis: 0.008 RS-ATSS, 0.012 RS-R-CNN, 0.005 aLRP-ATSS).
    * ``warmup_iters``, ``warmup_ratio``: linear warm-up from ``lr * warmup_ratio`` (500 iterations, 0.001).
    * ``lr_steps``: epochs after which the learning rate is multiplied by ``gamma`` (8 and 11 for 1x).
    * ``grad_clip``: maximum gradient norm (35, mmdetection's setting for these detectors), ``None`` off.
    * ``amp``: mixed precision on CUDA (ignored on CPU).
    * ``hflip``: random horizontal flip (the thesis' only augmentation in the 1x setting).
    * ``num_workers``: data-loader workers per process.
    * ``log_every``, ``ckpt_every``: logging and checkpoint periods in iterations.
    * ``eval_at_end``, ``eval_every_epoch``: evaluation with :func:`lrpbook.metrics.evaluate` (the
      per-epoch ``stats`` go to ``metrics_epochNNN.json``).
    * ``seed``: everything random derives from it (data order, flips, initialisation).
    * ``device``: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    model: str = "rs_atss"
    backbone: str = "resnet50"
    weights_backbone: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    train_ann: str = "annotations/instances_train2017.json"
    train_images: str = "train2017"
    val_ann: str = "annotations/instances_val2017.json"
    val_images: str = "val2017"
    synthetic: bool = False
    synthetic_images: int = 24
    synthetic_classes: int = 3
    image_size: int = 64
    epochs: int = 12
    max_iters: int | None = None
    batch_size: int = 16
    lr: float = 0.008
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    lr_steps: tuple[int, ...] = (8, 11)
    gamma: float = 0.1
    grad_clip: float | None = 35.0
    amp: bool = True
    hflip: bool = True
    num_workers: int = 2
    log_every: int = 1
    ckpt_every: int = 1000
    eval_at_end: bool = True
    eval_every_epoch: bool = False
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.lr_steps = tuple(int(s) for s in self.lr_steps)
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(
                f"`batch_size` and `epochs` must be >= 1; got {self.batch_size}, {self.epochs}"
            )
        if self.max_iters is not None and self.max_iters < 0:
            raise ValueError(f"`max_iters` must be >= 0 or None; got {self.max_iters}")

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` (tuples as lists), suitable for YAML and for checkpoints."""
        d = dataclasses.asdict(self)
        d["lr_steps"] = list(self.lr_steps)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}; known keys: {sorted(names)}")
        return cls(**data)


def _cpu(model: str, lr: float, **extra: Any) -> dict[str, Any]:
    opts = dict(fpn_channels=32, min_size=64, max_size=64)
    if model in ("rs_faster_rcnn", "rs_mask_rcnn"):
        opts.update(
            proposals_per_image=128, anchor_sizes=(8, 16, 32, 64, 128), detections_per_img=20
        )
    else:
        opts.update(strides=(8, 16, 32, 64, 128), num_convs=2)
        opts["anchor_scale"] = 2.0 if model == "focal_atss" else 1.5
    return dict(
        model=model,
        backbone="resnet18",
        model_options=opts,
        synthetic=True,
        batch_size=4,
        lr=lr,
        epochs=200,
        warmup_iters=5,
        lr_steps=(),
        num_workers=0,
        ckpt_every=10,
        amp=False,
        **extra,
    )


#: Named configurations. ``*_r50_1x``: the thesis' COCO settings (ResNet-50-FPN, 16 images of
#: 1333x800 per iteration, 12 epochs, SGD, learning rate decay at epochs 8 and 11; thesis Sec. 8.4 and
#: App K/N); ``*_cpu``: tiny synthetic runs of the same code for CPUs and tests.
PRESETS: dict[str, dict[str, Any]] = {
    "rs_atss_r50_1x": dict(model="rs_atss", lr=0.008),
    "focal_atss_r50_1x": dict(model="focal_atss", lr=0.01),
    "alrp_retinanet_r50_1x": dict(model="alrp_retinanet", lr=0.005),
    "alrp_retinanet_r50_100e_512": dict(
        model="alrp_retinanet",
        lr=0.008,
        batch_size=32,
        epochs=100,
        lr_steps=(60, 80),
        model_options=dict(min_size=512, max_size=853),
    ),
    "rs_faster_rcnn_r50_1x": dict(model="rs_faster_rcnn", lr=0.012),
    "rs_mask_rcnn_r50_1x": dict(model="rs_mask_rcnn", lr=0.012),
    "rs_atss_cpu": _cpu("rs_atss", 0.03),
    "focal_atss_cpu": _cpu("focal_atss", 0.01),
    "alrp_retinanet_cpu": _cpu("alrp_retinanet", 0.004, grad_clip=5.0),
    "rs_faster_rcnn_cpu": _cpu("rs_faster_rcnn", 0.01),
    "rs_mask_rcnn_cpu": {
        **_cpu("rs_mask_rcnn", 0.01),
        "model_options": {
            **_cpu("rs_mask_rcnn", 0.01)["model_options"],
            "mask_head_channels": 32,
            "max_mask_proposals": 32,
        },
    },
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a preset of :data:`PRESETS`, with ``overrides`` applied.

    Raises:
        ValueError: on an unknown preset name or configuration key.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name], **overrides})


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML file of :class:`TrainConfig` fields; a ``preset:`` key starts from that preset."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a YAML mapping of configuration keys is expected")
    name = data.pop("preset", None)
    return preset(name, **data) if name else TrainConfig.from_dict(data)


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML (``load_config`` reads it back to an equal config)."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
