"""Training configuration: a dataclass, YAML round trip and the thesis' presets.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "TrainConfig",
    "PRESETS",
    "CPU_SIZE",
    "PRESET_SOURCES",
    "preset",
    "preset_value",
    "scaled",
    "load_config",
    "save_config",
]


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the thesis' 1x schedule for RS-ATSS.

    The fields (all have defaults):

    * ``model``: detector name of :func:`lrpbook.models.build`.
    * ``backbone``: backbone name (``resnet50`` in the thesis; ``resnet18`` on CPU).
    * ``weights_backbone``: ``None`` (random), a torchvision weights name (``"IMAGENET1K_V1"``:
      the ImageNet weights of the thesis' configurations, via the torch hub cache) or a local file.
    * ``model_options``: extra keyword arguments of :func:`lrpbook.models.build`.
    * ``data_root``: COCO-format folder; ``train_ann``/``train_images``/``val_ann``/``val_images`` are
      relative to it (COCO 2017 layout by default).
    * ``synthetic``: generate a small synthetic dataset (``lrpbook.data.make_synthetic_coco``) instead.
    * ``synthetic_images``, ``synthetic_classes``, ``image_size``: its size (images per split, classes, pixels).
    * ``epochs``: epochs of the schedule (12 = 1x); ``max_iters`` stops earlier when set.
    * ``batch_size``: images per iteration over all processes (16 in the thesis, 4 per GPU on 4 GPUs).
      With another batch, scale ``lr`` linearly (:func:`scaled`).
    * ``lr``, ``momentum``, ``weight_decay``: SGD (thesis: 0.008 RS-ATSS, 0.012 RS-R-CNN, 0.005 aLRP-ATSS).
    * ``warmup_iters``, ``warmup_ratio``: linear warm-up from ``lr * warmup_ratio`` (500 iterations, 0.001).
    * ``lr_steps``: epochs after which the learning rate is multiplied by ``gamma`` (8 and 11 for 1x).
    * ``grad_clip``: maximum gradient norm, ``None`` off (the thesis' configurations have none).
    * ``amp``: mixed precision on CUDA (ignored on CPU).
    * ``hflip``: random horizontal flip (the thesis' only augmentation in the 1x setting).
    * ``ssd_crop``: ``None``, or train on ``ssd_crop x ssd_crop`` SSD-style crops (photometric
      distortion, zoom-out by up to 4x, a random crop overlapping the boxes by a minimum IoU,
      resize; aLRP Loss' Table 7.1 setting, thesis Sec. 7.4).
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
    grad_clip: float | None = None
    amp: bool = True
    hflip: bool = True
    ssd_crop: int | None = None
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


_COMMON_1X: dict[str, Any] = dict(
    backbone="resnet50",
    weights_backbone="IMAGENET1K_V1",
    batch_size=16,
    momentum=0.9,
    weight_decay=1e-4,
    epochs=12,
    lr_steps=(8, 11),
    gamma=0.1,
    warmup_iters=500,
    warmup_ratio=0.001,
    grad_clip=None,
    hflip=True,
    ssd_crop=None,
)
_TEST_1X: dict[str, Any] = dict(
    min_size=800, max_size=1333, score_thresh=0.05, detections_per_img=100
)


def _full(model: str, lr: float, **options: Any) -> dict[str, Any]:
    opts = dict(_TEST_1X)
    if model not in ("rs_faster_rcnn", "rs_mask_rcnn"):
        opts.update(nms_thresh=0.6, topk_candidates=1000)
    opts.update(options)
    return dict(model=model, lr=lr, **_COMMON_1X, model_options=opts)


#: aLRPLoss500 (thesis Sec. 7.4, Table 7.1): RetinaNet, 32 images of 512 x 512 SSD-style crops,
#: 100 epochs, lr 0.008 decayed at epochs 60 and 80, test at 500 (long side <= 1.66 x 500).
_ALRP_500: dict[str, Any] = dict(
    _COMMON_1X,
    model="alrp_retinanet",
    lr=0.008,
    batch_size=32,
    epochs=100,
    lr_steps=(60, 80),
    warmup_ratio=1 / 3,
    ssd_crop=512,
    model_options=dict(
        min_size=500,
        max_size=833,
        train_min_size=512,
        score_thresh=0.05,
        nms_thresh=0.5,
        topk_candidates=1000,
        detections_per_img=100,
    ),
)

#: The sizes that make a CPU run of a preset (resnet18, narrow FPN and heads, 64-px images of
#: synthetic shapes): everything else (anchors per location, assigner, losses, NMS, score
#: threshold, schedule shape, no clipping) is the thesis' configuration.
CPU_SIZE: dict[str, Any] = dict(
    backbone="resnet18",
    weights_backbone=None,
    synthetic=True,
    image_size=64,
    synthetic_images=32,
    batch_size=4,
    epochs=200,
    lr_steps=(),
    warmup_iters=20,
    num_workers=0,
    ckpt_every=50,
    amp=False,
    ssd_crop=None,
)


def _cpu(full: dict[str, Any], lr: float, **options: Any) -> dict[str, Any]:
    opts = dict(full["model_options"])
    opts.update(fpn_channels=32, min_size=64, max_size=64)
    opts.pop("train_min_size", None)  # no 512 x 512 crops at a CPU size
    if full["model"] in ("rs_faster_rcnn", "rs_mask_rcnn"):
        opts.update(proposals_per_image=128, anchor_sizes=(8, 16, 32, 64, 128))
        opts.update(detections_per_img=20)
    else:
        opts.update(num_convs=2, detections_per_img=20)
    opts.update(options)
    return {**full, **CPU_SIZE, "lr": lr, "model_options": opts}


#: Named configurations. ``*_r50_1x`` (and aLRP's ``*_100e_512``): the thesis' COCO settings,
#: value for value (chapter 08 tabulates each beside its source, :data:`PRESET_SOURCES`);
#: ``*_cpu``: the same detector at a CPU size (:data:`CPU_SIZE`) on synthetic images.
PRESETS: dict[str, dict[str, Any]] = {
    "rs_atss_r50_1x": _full("rs_atss", 0.008),
    "focal_atss_r50_1x": _full("focal_atss", 0.01),
    "alrp_atss_r50_1x": _full("alrp_atss", 0.005),
    "alrp_retinanet_r50_100e_512": _ALRP_500,
    "rs_faster_rcnn_r50_1x": _full("rs_faster_rcnn", 0.012, score_thresh=0.40),
    "rs_mask_rcnn_r50_1x": _full("rs_mask_rcnn", 0.012, score_thresh=0.40),
}
_CPU_LR = dict(
    rs_atss=0.02, focal_atss=0.01, alrp_atss=0.006, alrp_retinanet=0.004, rs_faster_rcnn=0.01
)
PRESETS.update(
    rs_atss_cpu=_cpu(PRESETS["rs_atss_r50_1x"], _CPU_LR["rs_atss"]),
    focal_atss_cpu=_cpu(PRESETS["focal_atss_r50_1x"], _CPU_LR["focal_atss"]),
    alrp_atss_cpu=_cpu(PRESETS["alrp_atss_r50_1x"], _CPU_LR["alrp_atss"]),
    alrp_retinanet_cpu=_cpu(_ALRP_500, _CPU_LR["alrp_retinanet"]),
    # at a CPU size the scores stay low for many iterations: 0.05 keeps the detections that
    # COCO AP counts (the thesis' 0.40 is an inference speed-up)
    rs_faster_rcnn_cpu=_cpu(
        PRESETS["rs_faster_rcnn_r50_1x"], _CPU_LR["rs_faster_rcnn"], score_thresh=0.05
    ),
    rs_mask_rcnn_cpu=_cpu(
        PRESETS["rs_mask_rcnn_r50_1x"],
        _CPU_LR["rs_faster_rcnn"],
        score_thresh=0.05,
        mask_head_channels=32,
        max_mask_proposals=32,
    ),
)

#: Where each value of the full presets comes from: ``(preset, key) -> (thesis/official value,
#: source)``; ``key`` is a :class:`TrainConfig` field or ``model_options.NAME`` /
#: ``MODELS.NAME`` (the detector's defaults in :data:`lrpbook.models.MODELS`).
PRESET_SOURCES: dict[tuple[str, str], tuple[Any, str]] = {}


def _src(name: str, rows: dict[str, tuple[Any, str]]) -> None:
    for key, value in rows.items():
        PRESET_SOURCES[(name, key)] = value


_RS_CFG = "RankSortLoss configs/ranksort_loss/"
_ALRP_CFG = "aLRPLoss configs/alrp_loss/"
_SCHED = ("thesis l.2899; mmdet schedule_1x",)
for _name, _cfg in (
    ("rs_atss_r50_1x", _RS_CFG + "ranksort_atss_r50_fpn_1x_coco.py"),
    ("focal_atss_r50_1x", "mmdetection configs/atss/atss_r50_fpn_1x_coco.py"),
    ("alrp_atss_r50_1x", "thesis l.2899, l.2991, l.3000 (Table 8.4)"),
    ("rs_faster_rcnn_r50_1x", _RS_CFG + "ranksort_faster_rcnn_r50_fpn_1x_coco.py"),
    ("rs_mask_rcnn_r50_1x", _RS_CFG + "ranksort_mask_rcnn_r50_fpn_1x_coco.py"),
):
    _src(
        _name,
        {
            "backbone": ("resnet50", "thesis l.2899 (ResNet-50)"),
            "weights_backbone": ("IMAGENET1K_V1", _cfg + " (torchvision://resnet50)"),
            "batch_size": (16, "thesis l.2899 (4 GPUs x 4 images)"),
            "epochs": (12, "thesis l.2899 (1x)"),
            "lr_steps": ((8, 11), _SCHED[0]),
            "warmup_iters": (500, _SCHED[0]),
            "warmup_ratio": (0.001, _SCHED[0]),
            "momentum": (0.9, _cfg),
            "weight_decay": (1e-4, _cfg),
            "grad_clip": (None, _cfg + " (no optimizer_config.grad_clip)"),
            "model_options.min_size": (800, "thesis l.2899 (1333 x 800)"),
            "model_options.max_size": (1333, "thesis l.2899"),
            "model_options.detections_per_img": (100, _cfg),
        },
    )
_src(
    "rs_atss_r50_1x",
    {
        "lr": (0.008, "thesis l.2991"),
        "model_options.score_thresh": (0.05, _RS_CFG + "ranksort_atss_r50_fpn_1x_coco.py"),
        "model_options.nms_thresh": (0.6, _RS_CFG + "ranksort_atss_r50_fpn_1x_coco.py"),
        "MODELS.aspect_ratios": ((1.0,), "thesis App L.2 (l.4003); official config"),
        "MODELS.anchor_scale": (4.0, "octave_base_scale=4, official config"),
        "MODELS.scales_per_octave": (3, "thesis App L.2 (l.4003); official config"),
        "MODELS.atss_topk": (9, "ATSSAssigner(topk=9), official config"),
        "MODELS.centerness": (False, "thesis l.2907"),
        "MODELS.delta": (0.5, "thesis l.2921, Table P.1"),
    },
)
_src(
    "focal_atss_r50_1x",
    {
        "lr": (0.01, "mmdetection atss_r50_fpn_1x_coco.py"),
        "model_options.score_thresh": (0.05, "mmdetection atss_r50_fpn_1x_coco.py"),
        "model_options.nms_thresh": (0.6, "mmdetection atss_r50_fpn_1x_coco.py"),
        "MODELS.aspect_ratios": ((1.0,), "mmdetection atss_r50_fpn_1x_coco.py"),
        "MODELS.anchor_scale": (8.0, "octave_base_scale=8, mmdetection"),
        "MODELS.scales_per_octave": (1, "mmdetection atss_r50_fpn_1x_coco.py"),
        "MODELS.atss_topk": (9, "ATSSAssigner(topk=9), mmdetection"),
        "MODELS.centerness": (True, "thesis Eq. 8.9 (l.2905)"),
    },
)
_src(
    "alrp_atss_r50_1x",
    {
        "lr": (0.005, "thesis l.3000"),
        "model_options.score_thresh": (
            0.05,
            "ATSS test config (thesis l.2899: only the loss changes)",
        ),
        "model_options.nms_thresh": (0.6, "ATSS test config (thesis l.2899)"),
        "MODELS.aspect_ratios": ((1.0,), "thesis l.2991, App L.2 (aLRPLoss800)"),
        "MODELS.anchor_scale": (4.0, "aLRPLoss configs: octave_base_scale=4"),
        "MODELS.scales_per_octave": (3, "thesis l.2991, App L.2 (aLRPLoss800)"),
        "MODELS.atss_topk": (9, "ATSSAssigner(topk=9)"),
        "MODELS.delta": (1.0, "thesis App P.1 (l.4274)"),
    },
)
for _name in ("rs_faster_rcnn_r50_1x", "rs_mask_rcnn_r50_1x"):
    _src(
        _name,
        {
            "lr": (0.012, "thesis l.2956"),
            "model_options.score_thresh": (0.40, "thesis l.2956; official test_cfg"),
            "model_options.nms_thresh": (0.5, "mmdetection faster_rcnn_r50_fpn rcnn test_cfg"),
            "MODELS.rpn_weight": (0.20, "thesis l.2944; head_weight=0.20, official config"),
            "MODELS.proposals_per_image": (1000, "thesis l.2956 (m = 1000)"),
        },
    )
_A500 = _ALRP_CFG + "alrp_loss_retinanet_r50_fpn_100e_coco500.py"
_src(
    "alrp_retinanet_r50_100e_512",
    {
        "backbone": ("resnet50", "thesis l.2675 (Table 7.1, ResNet-50)"),
        "weights_backbone": ("IMAGENET1K_V1", _A500 + " (torchvision://resnet50)"),
        "batch_size": (32, "thesis l.2671"),
        "lr": (0.008, "thesis l.2671"),
        "epochs": (100, "thesis l.2671"),
        "lr_steps": ((60, 80), "thesis l.2671"),
        "warmup_iters": (500, "aLRPLoss configs/aLRPLoss500_r50.py"),
        "warmup_ratio": (1 / 3, "aLRPLoss configs/aLRPLoss500_r50.py"),
        "momentum": (0.9, "thesis l.2671"),
        "weight_decay": (1e-4, "aLRPLoss configs/aLRPLoss500_r50.py"),
        "grad_clip": (None, _A500),
        "ssd_crop": (512, "thesis l.2671 (SSD augmentation, 512 x 512)"),
        "model_options.min_size": (500, "thesis l.2671 (test short side 500)"),
        "model_options.max_size": (833, "thesis l.2671 (1.66 x 500)"),
        "model_options.train_min_size": (512, "thesis l.2671"),
        "model_options.nms_thresh": (0.5, "thesis l.2671"),
        "model_options.topk_candidates": (1000, "thesis l.2671"),
        "model_options.score_thresh": (0.05, "aLRPLoss RetinaNet test_cfg"),
        "MODELS.assigner": ("max_iou", "aLRPLoss configs/aLRPLoss500_r50.py"),
        "MODELS.aspect_ratios": ((0.5, 1.0, 2.0), "thesis App L.2 (l.4003)"),
        "MODELS.scales_per_octave": (2, "thesis App L.2 (l.4003)"),
        "MODELS.anchor_scale": (4.0, "aLRPLoss configs/aLRPLoss500_r50.py"),
        "MODELS.sb_init": (50.0, "thesis l.2690 (Table 7.3)"),
        "MODELS.delta": (1.0, "aLRPLoss configs/aLRPLoss500_r50.py"),
    },
)


def scaled(name: str, batch_size: int, **overrides: Any) -> TrainConfig:
    r"""A preset at another total batch size, its learning rate scaled linearly.

    The linear scaling rule (Goyal et al. 2017, the "linear scheduling hypothesis" of thesis
    App L.4):

    .. math::

        \mathrm{lr} = \mathrm{lr}_{preset} \cdot \frac{B}{B_{preset}}.

    Args:
        name: a key of :data:`PRESETS`.
        batch_size: the total batch ``B`` (images per iteration over all processes).
        **overrides: other :class:`TrainConfig` fields.

    Returns:
        TrainConfig: the preset with ``batch_size`` and the scaled ``lr``.

    Raises:
        ValueError: on an unknown preset or key.

    Example:
        >>> scaled("rs_atss_r50_1x", 4).lr  # one GPU of 4 images
        0.002

    Taught in: chapter "Detectors trained with ranking-based losses".
    """
    base = preset(name)
    lr = base.lr * batch_size / base.batch_size
    return preset(name, batch_size=batch_size, lr=lr, **overrides)


def preset_value(name: str, key: str) -> Any:
    """The value a preset trains with for a key of :data:`PRESET_SOURCES`.

    Args:
        name: a key of :data:`PRESETS`.
        key: a :class:`TrainConfig` field, ``model_options.NAME`` (the preset's option, else the
            detector's default) or ``MODELS.NAME`` (the detector default of
            :data:`lrpbook.models.MODELS` or of its builder's signature).

    Returns:
        The value (lists as tuples; ``delta=None`` resolved to 0.5 for RS, 1.0 for aLRP).

    Raises:
        ValueError: on an unknown preset; ``KeyError``/``AttributeError`` on an unknown key.

    Example:
        >>> preset_value("rs_atss_r50_1x", "MODELS.scales_per_octave")
        3

    Taught in: chapter "Detectors trained with ranking-based losses" (the preset table).
    """
    import inspect

    from lrpbook.models import MODELS, DenseDetector, build_rs_rcnn

    cfg = preset(name)
    section, _, option = key.partition(".")
    if not option:
        return getattr(cfg, key)
    opts = {**MODELS[cfg.model], **cfg.model_options}
    two_stage = cfg.model in ("rs_faster_rcnn", "rs_mask_rcnn")
    if option in opts:
        value = opts[option]
    else:
        fn = build_rs_rcnn if two_stage else DenseDetector.__init__
        value = inspect.signature(fn).parameters[option].default
    if option == "delta" and value is None:  # DenseDetector: RS 0.5, aLRP 1.0
        value = 0.5 if opts.get("loss") == "rs" else 1.0
    return tuple(value) if isinstance(value, list) else value


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
