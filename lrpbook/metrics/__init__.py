"""Performance measures of Chapter 5: LRP Error, oLRP, COCO AP in one evaluator, and a CLI.

* :func:`evaluate` -- COCO AP/AR plus oLRP and its components for bbox, segm and keypoints,
  reproducing the official LRP-Error code (:class:`EvalResult`);
* :class:`COCOeval` -- pycocotools' ``COCOeval`` surface (``params``, ``evaluate``,
  ``accumulate``, ``summarize``, ``stats``) on the same evaluator, with oLRP as well;
* :mod:`~lrpbook.metrics.lrp` -- LRP on hard predictions, oLRP, moLRP, weighted LRP, PQ;
* :mod:`~lrpbook.metrics.thresholds` -- LRP-optimal thresholds for deployment;
* :func:`evaluate_lvis` -- LVIS (federated) AP and oLRP with rare/common/frequent groups;
* :func:`evaluate_panoptic` -- PQ and LRP of panoptic segmentations (PNG + JSON);
* :class:`LRPMetric` -- the same evaluator as a streaming metric for training loops (a
  ``torchmetrics.Metric``; imported on first access, so ``import lrpbook.metrics`` and the CLI
  import no torch);
* ``lrpbook-eval`` -- the command line (:mod:`lrpbook.metrics.cli`).

Taught in: chapter "LRP Error".
"""

from lrpbook.metrics.coco import STATS_KEYS, EvalResult, evaluate
from lrpbook.metrics.cocoeval import COCOeval
from lrpbook.metrics.lrp import (
    LRPComponents,
    OptimalLRP,
    greedy_match,
    lrp_curve,
    lrp_error,
    molrp,
    optimal_lrp,
    pq_components,
    weighted_lrp,
)
from lrpbook.metrics.lvis import LVIS_OFFICIAL_KEYS, LVIS_STATS_KEYS, LVISResult, evaluate_lvis
from lrpbook.metrics.panoptic import PanopticResult, evaluate_panoptic
from lrpbook.metrics.thresholds import apply_thresholds, load_thresholds, save_thresholds

__all__ = [
    "STATS_KEYS",
    "EvalResult",
    "evaluate",
    "COCOeval",
    "LRPComponents",
    "OptimalLRP",
    "lrp_error",
    "weighted_lrp",
    "pq_components",
    "greedy_match",
    "lrp_curve",
    "optimal_lrp",
    "molrp",
    "evaluate_lvis",
    "LVISResult",
    "LVIS_STATS_KEYS",
    "LVIS_OFFICIAL_KEYS",
    "evaluate_panoptic",
    "PanopticResult",
    "LRPMetric",
    "apply_thresholds",
    "save_thresholds",
    "load_thresholds",
]


def __getattr__(name: str):
    """Import the torch-based streaming metric only when it is first used."""
    if name == "LRPMetric":
        from lrpbook.metrics.streaming import LRPMetric

        globals()["LRPMetric"] = LRPMetric
        return LRPMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"LRPMetric"})
