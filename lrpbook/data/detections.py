"""A fake detector with controllable flaws, for experiments on evaluation measures.

Taught in: chapter "Detection basics and notation" and chapter "LRP Error".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lrpbook.metrics._io import load_json

__all__ = ["simulate_detections"]


def simulate_detections(
    gt: dict | str | Path,
    *,
    loc_noise: float = 0.1,
    fp_per_image: float = 1.0,
    miss_rate: float = 0.1,
    score_noise: float = 0.1,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Turn ground truth into COCO-format detections with chosen localisation, FP and FN flaws.

    For every non-crowd ground truth: with probability ``miss_rate`` it is missed (an FN); otherwise a
    detection of the same class is made by adding Gaussian noise of standard deviation
    ``loc_noise * w`` (``* h``) to its x (y) corner coordinates. Its score is
    ``clip(0.3 + 0.6 * IoU + N(0, score_noise^2), 0.001, 0.999)`` so that better-localised detections
    tend to score higher. Each image also gets ``Poisson(fp_per_image)`` false positives: random boxes
    of random classes with scores ``U(0, 1)``.

    Args:
        gt: a COCO instances dict or the path of its JSON file.
        loc_noise: relative corner noise (>= 0); 0 gives exact boxes.
        fp_per_image: mean number of false positives per image (>= 0).
        miss_rate: probability that an object gets no detection, in [0, 1].
        score_noise: standard deviation of the score noise (>= 0).
        seed: random seed; the same inputs give the same detections.

    Returns:
        A list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts, the format of a
        COCO results file, in image order.

    Raises:
        ValueError: on a knob outside its range, or a ``gt`` without images/annotations/categories.
    """
    if isinstance(gt, (str, Path)):
        gt = load_json(gt, what="ground truth")
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"`gt` must be a COCO instances dict; it has no {key!r}")
    for name, value in (
        ("loc_noise", loc_noise),
        ("fp_per_image", fp_per_image),
        ("score_noise", score_noise),
    ):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}")
    if not 0 <= miss_rate <= 1:
        raise ValueError(f"`miss_rate` must be in [0, 1]; got {miss_rate!r}")
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    by_image: dict[Any, list[dict]] = {img["id"]: [] for img in gt["images"]}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    out: list[dict[str, Any]] = []
    for img in gt["images"]:
        width, height = float(img.get("width", 640)), float(img.get("height", 480))
        for ann in by_image.get(img["id"], []):
            if rng.random() < miss_rate:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            noise = rng.normal(0.0, loc_noise, size=4) * np.array([w, h, w, h])
            x1, y1, x2, y2 = np.array([x, y, x + w, y + h]) + noise
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
            x2, y2 = max(x2, x1 + 1.0), max(y2, y1 + 1.0)
            iw = max(0.0, min(x + w, x2) - max(x, x1))
            ih = max(0.0, min(y + h, y2) - max(y, y1))
            inter = iw * ih
            iou = inter / (w * h + (x2 - x1) * (y2 - y1) - inter)
            score = float(np.clip(0.3 + 0.6 * iou + rng.normal(0.0, score_noise), 0.001, 0.999))
            out.append(
                {
                    "image_id": img["id"],
                    "category_id": ann["category_id"],
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "score": score,
                }
            )
        for _ in range(int(rng.poisson(fp_per_image))):
            w = float(rng.uniform(0.05, 0.4) * width)
            h = float(rng.uniform(0.05, 0.4) * height)
            x = float(rng.uniform(0, width - w))
            y = float(rng.uniform(0, height - h))
            out.append(
                {
                    "image_id": img["id"],
                    "category_id": int(rng.choice(cat_ids)),
                    "bbox": [x, y, w, h],
                    "score": float(rng.uniform(0.0, 1.0)),
                }
            )
    return out
