"""Data for lrpbook: synthetic COCO-format datasets, a COCO/LVIS folder loader, a fake detector.

- :func:`make_synthetic_coco` writes a deterministic dataset of simple shapes (PNG + instances JSON)
  whose class frequencies, object counts, scales, placement and overlap are knobs.
- :class:`CocoDetection` reads a COCO-format folder (real COCO or LVIS on your disk, or a synthetic
  one) into ``(image, target)`` pairs for torchvision detectors; :func:`collate_fn` batches them.
- :func:`simulate_detections` turns ground truth into detections with controlled flaws.

Taught in: chapter "Detection basics and notation".
"""

from lrpbook.data.coco import CocoDetection, collate_fn, load_coco_json
from lrpbook.data.detections import simulate_detections
from lrpbook.data.synthetic import SHAPES, SyntheticCoco, make_synthetic_coco

__all__ = [
    "SHAPES",
    "SyntheticCoco",
    "make_synthetic_coco",
    "CocoDetection",
    "collate_fn",
    "load_coco_json",
    "simulate_detections",
]
