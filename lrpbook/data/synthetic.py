"""Deterministic synthetic COCO-format datasets whose imbalances are under control.

Real detection datasets cannot be downloaded when the book is built or the tests run, so lrpbook
generates small ones: PNG images of simple shapes on a noisy background, plus an instances JSON in the
COCO format (boxes, polygon or RLE segmentation, crowd regions, optional keypoints). The knobs create
the imbalances the book studies (thesis Ch 3): class frequencies (foreground-foreground imbalance),
objects per image, object scales (scale imbalance), where objects sit (object location imbalance) and
how much they overlap.

Taught in: chapter "Detection basics and notation".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from lrpbook.boxes import box_iou_aligned

__all__ = ["SyntheticCoco", "make_synthetic_coco", "SHAPES"]

#: The shape drawn for class ``c`` is ``SHAPES[(c - 1) % 4]``.
SHAPES = ("rectangle", "ellipse", "triangle", "diamond")

_PALETTE = np.array(
    [
        [230, 60, 60],
        [60, 170, 75],
        [60, 100, 230],
        [240, 200, 40],
        [160, 60, 200],
        [40, 200, 210],
        [240, 130, 40],
        [200, 200, 200],
    ],
    dtype=np.float64,
)

_KEYPOINT_NAMES = ["top", "right", "bottom", "left"]


@dataclass(frozen=True)
class SyntheticCoco:
    """A generated dataset on disk.

    Attributes:
        root: the dataset folder.
        image_dir: the folder of PNG images (``root / "images" / split``).
        ann_file: the instances JSON (``root / "annotations" / f"instances_{split}.json"``).
        dataset: the same JSON as a dict (COCO format).
    """

    root: Path
    image_dir: Path
    ann_file: Path
    dataset: dict


def _class_probabilities(class_frequencies: Any, num_classes: int) -> np.ndarray:
    if class_frequencies is None or (
        isinstance(class_frequencies, str) and class_frequencies == "uniform"
    ):
        p = np.ones(num_classes)
    elif isinstance(class_frequencies, str) and class_frequencies == "longtail":
        # Zipf-like long tail: class k (1-based) has weight 1 / k^1.5.
        p = 1.0 / np.arange(1, num_classes + 1) ** 1.5
    elif isinstance(class_frequencies, str):
        raise ValueError(
            f"`class_frequencies` must be None, 'uniform', 'longtail' or a sequence of "
            f"{num_classes} non-negative weights; got {class_frequencies!r}"
        )
    else:
        p = np.asarray(class_frequencies, dtype=np.float64)
        if p.shape != (num_classes,) or not np.all(np.isfinite(p)) or (p < 0).any() or p.sum() <= 0:
            raise ValueError(
                f"`class_frequencies` must hold {num_classes} finite, non-negative weights with a "
                f"positive sum; got {class_frequencies!r}"
            )
    return p / p.sum()


def _shape_polygon(shape: str, x1: float, y1: float, x2: float, y2: float) -> list[float]:
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    if shape == "rectangle":
        pts = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    elif shape == "triangle":
        pts = [(cx, y1), (x2, y2), (x1, y2)]
    elif shape == "diamond":
        pts = [(cx, y1), (x2, cy), (cx, y2), (x1, cy)]
    else:  # ellipse as a 32-gon that touches its box at the four extreme points
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = list(zip(cx + w / 2 * np.sin(t), cy - h / 2 * np.cos(t)))
    return [round(float(v), 2) for p in pts for v in p]


def _overlaps_below(box: list[float], placed: list[list[float]], overlap: float) -> bool:
    """Whether ``box`` (xyxy) has IoU <= ``overlap`` with every box in ``placed``.

    Uses :func:`lrpbook.boxes.box_iou_aligned` in float64, whose arithmetic is the scalar
    formula's (so the generated datasets are unchanged).
    """
    if not placed:
        return True
    others = torch.tensor(placed, dtype=torch.float64)
    mine = torch.tensor([box], dtype=torch.float64).expand_as(others)
    return bool((box_iou_aligned(mine, others) <= overlap).all())


def _check_pair(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> tuple:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair (low, high); got {value!r}") from None
    if integer and not (isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer))):
        raise ValueError(f"`{name}` must be a pair of integers; got {value!r}")
    if not (lo <= a <= b <= hi):
        raise ValueError(f"`{name}` must satisfy {lo} <= low <= high <= {hi}; got {value!r}")
    return a, b


def make_synthetic_coco(
    out_dir: str | Path,
    *,
    num_images: int = 32,
    num_classes: int = 4,
    image_size: int | tuple[int, int] = (128, 128),
    seed: int = 0,
    class_frequencies: Any = None,
    objects_per_image: tuple[int, int] = (1, 6),
    scale: tuple[float, float] = (0.1, 0.45),
    spatial_bias: float = 0.0,
    overlap: float = 0.3,
    empty_fraction: float = 0.0,
    crowd_fraction: float = 0.0,
    keypoints: bool = False,
    segmentation: str = "polygon",
    split: str = "train",
    overwrite: bool = False,
) -> SyntheticCoco:
    """Generate a COCO-format dataset of simple shapes, deterministically from ``seed``.

    Each object of class ``c`` is a filled shape (``SHAPES[(c - 1) % 4]``) in a class colour, drawn on a
    noisy grey background in random order (later objects occlude earlier ones; masks and boxes are
    *amodal*, i.e. the full shape). An object's box side ``sqrt(w h)`` is ``u * min(width, height)``
    with ``u`` log-uniform in ``scale``, and its aspect ratio is log-uniform in [1/2, 2].

    Args:
        out_dir: folder to create; must not exist or be empty unless ``overwrite=True``.
        num_images: number of images (>= 1).
        num_classes: number of categories (ids ``1..num_classes``).
        image_size: ``(width, height)`` in pixels, each >= 16; an int gives a square image.
        seed: the random seed; the same arguments give byte-identical PNG and JSON files.
        class_frequencies: ``None``/``"uniform"``, ``"longtail"`` (weight of class ``k`` is
            ``k^-1.5``), or a sequence of ``num_classes`` non-negative weights.
        objects_per_image: ``(low, high)``, the number of objects of an image is uniform in it.
        scale: ``(low, high)`` in (0, 1]: relative object size range (see above).
        spatial_bias: in [0, 1): 0 places object centres uniformly; larger values pull them towards the
            top-left quarter of the image (centre coordinates ``~ Beta(1, 1 + 8 * spatial_bias)``).
        overlap: in [0, 1]: the largest IoU allowed between two objects of an image (placement is
            retried up to 50 times, then the object is dropped).
        empty_fraction: in [0, 1]: share of images that get no object at all.
        crowd_fraction: in [0, 1]: share of images that also get one ``iscrowd=1`` region (an
            uncompressed RLE rectangle labelled with a random class).
        keypoints: also write 4 keypoints per object (the top, right, bottom and left extreme points of
            its shape) and the keypoint metadata in the categories.
        segmentation: ``"polygon"``, ``"rle"`` (compressed RLE strings) or ``"mixed"`` (every other object).
        split: name used in file and folder names (``instances_{split}.json``, ``images/{split}``).
        overwrite: replace the files of an existing non-empty ``out_dir``.

    Returns:
        SyntheticCoco: paths and the dataset dict.

    Raises:
        ValueError: on a knob outside its range (the message names the knob).
        FileExistsError: if ``out_dir`` exists and is not empty while ``overwrite`` is False.

    Example:
        >>> import tempfile
        >>> ds = make_synthetic_coco(tempfile.mkdtemp() + "/d", num_images=2, seed=0)
        >>> len(ds.dataset["images"]), ds.ann_file.name
        (2, 'instances_train.json')
    """
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"`num_images` must be a positive integer; got {num_images!r}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer; got {num_classes!r}")
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    _check_pair("image_size", image_size, 16, 1 << 14, integer=True)
    width, height = int(image_size[0]), int(image_size[1])
    lo_n, hi_n = _check_pair("objects_per_image", objects_per_image, 0, 1000, integer=True)
    lo_s, hi_s = _check_pair("scale", scale, 1e-3, 1.0)
    if not 0 <= spatial_bias < 1:
        raise ValueError(f"`spatial_bias` must be in [0, 1); got {spatial_bias!r}")
    for name, value in (
        ("overlap", overlap),
        ("empty_fraction", empty_fraction),
        ("crowd_fraction", crowd_fraction),
    ):
        if not 0 <= value <= 1:
            raise ValueError(f"`{name}` must be in [0, 1]; got {value!r}")
    if segmentation not in ("polygon", "rle", "mixed"):
        raise ValueError(
            f"`segmentation` must be 'polygon', 'rle' or 'mixed'; got {segmentation!r}"
        )
    probs = _class_probabilities(class_frequencies, int(num_classes))

    root = Path(out_dir)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} exists and is not empty; pass overwrite=True to replace its synthetic files"
        )
    image_dir = root / "images" / split
    ann_dir = root / "annotations"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    categories = []
    for c in range(1, num_classes + 1):
        cat = {"id": c, "name": f"{SHAPES[(c - 1) % 4]}_{c}", "supercategory": "shape"}
        if keypoints:
            cat["keypoints"] = list(_KEYPOINT_NAMES)
            cat["skeleton"] = [[1, 2], [2, 3], [3, 4], [4, 1]]
        categories.append(cat)

    images, annotations = [], []
    side = min(width, height)
    for img_id in range(1, num_images + 1):
        background = 110 + rng.normal(0.0, 12.0, size=(height, width, 3))
        canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        n_obj = 0 if rng.random() < empty_fraction else int(rng.integers(lo_n, hi_n + 1))
        placed: list[list[float]] = []
        for _ in range(n_obj):
            cls = int(rng.choice(num_classes, p=probs)) + 1
            for _try in range(50):
                size = side * math.exp(rng.uniform(math.log(lo_s), math.log(hi_s)))
                aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
                w = min(width - 2.0, max(2.0, size * math.sqrt(aspect)))
                h = min(height - 2.0, max(2.0, size / math.sqrt(aspect)))
                if spatial_bias > 0:
                    u, v = rng.beta(1.0, 1.0 + 8.0 * spatial_bias, size=2)
                else:
                    u, v = rng.random(2)
                cx = w / 2 + u * (width - w)
                cy = h / 2 + v * (height - h)
                box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                box = [round(float(b), 2) for b in box]
                if _overlaps_below(box, placed, overlap):
                    break
            else:
                continue
            placed.append(box)
            poly = _shape_polygon(SHAPES[(cls - 1) % 4], *box)
            colour = _PALETTE[(cls - 1) % len(_PALETTE)] * (0.85 + 0.3 * rng.random())
            draw.polygon(
                [(poly[i], poly[i + 1]) for i in range(0, len(poly), 2)],
                fill=tuple(int(v) for v in np.clip(colour, 0, 255)),
            )
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], height, width))
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": img_id,
                "category_id": cls,
                "bbox": [box[0], box[1], round(box[2] - box[0], 2), round(box[3] - box[1], 2)],
                "area": float(mask_utils.area(rle)),
                "iscrowd": 0,
            }
            use_rle = segmentation == "rle" or (segmentation == "mixed" and ann["id"] % 2 == 0)
            if use_rle:
                ann["segmentation"] = {
                    "size": [height, width],
                    "counts": rle["counts"].decode("ascii"),
                }
            else:
                ann["segmentation"] = [poly]
            if keypoints:
                xs, ys = poly[0::2], poly[1::2]
                extremes = [
                    int(np.argmin(ys)),
                    int(np.argmax(xs)),
                    int(np.argmax(ys)),
                    int(np.argmin(xs)),
                ]
                kps = []
                for k in extremes:
                    kps += [round(xs[k], 2), round(ys[k], 2), 2]
                ann["keypoints"] = kps
                ann["num_keypoints"] = 4
            annotations.append(ann)
        if rng.random() < crowd_fraction:
            cw, ch = (
                int(rng.integers(side // 4, side // 2)),
                int(rng.integers(side // 4, side // 2)),
            )
            x0, y0 = int(rng.integers(0, width - cw)), int(rng.integers(0, height - ch))
            m = np.zeros((height, width), dtype=np.uint8)
            m[y0 : y0 + ch, x0 : x0 + cw] = 1
            flat = m.flatten(order="F")
            starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
            counts = np.diff(np.concatenate([[0], starts, [flat.size]])).tolist()
            if flat[0] == 1:  # COCO run lengths always start with a run of zeros
                counts = [0, *counts]
            crowd = {
                "id": len(annotations) + 1,
                "image_id": img_id,
                "category_id": int(rng.choice(num_classes, p=probs)) + 1,
                "bbox": [float(x0), float(y0), float(cw), float(ch)],
                "area": float(cw * ch),
                "iscrowd": 1,
                "segmentation": {"size": [height, width], "counts": counts},
            }
            if keypoints:
                crowd["keypoints"] = [0] * 12
                crowd["num_keypoints"] = 0
            annotations.append(crowd)
        file_name = f"{img_id:06d}.png"
        canvas.save(image_dir / file_name, format="PNG", optimize=False)
        images.append({"id": img_id, "file_name": file_name, "width": width, "height": height})

    dataset = {
        "info": {"description": "lrpbook synthetic shapes", "version": "1", "seed": int(seed)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    ann_file = ann_dir / f"instances_{split}.json"
    ann_file.write_text(json.dumps(dataset, separators=(",", ":")), encoding="utf-8")
    return SyntheticCoco(root=root, image_dir=image_dir, ann_file=ann_file, dataset=dataset)
