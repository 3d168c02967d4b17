"""Performance measures of Chapter 5: LRP Error, oLRP, COCO AP in one evaluator, and a CLI.

* :func:`evaluate` -- COCO AP/AR plus oLRP and its components for bbox, segm and keypoints,
  reproducing the official LRP-Error code (:class:`EvalResult`).

Taught in: chapter "LRP Error".
"""

from lrpbook.metrics.coco import STATS_KEYS, EvalResult, evaluate

__all__ = ["STATS_KEYS", "EvalResult", "evaluate"]
