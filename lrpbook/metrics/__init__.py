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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are imported on first access (see __getattr__)
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
    from lrpbook.metrics.lvis import (
        LVIS_OFFICIAL_KEYS,
        LVIS_STATS_KEYS,
        LVISResult,
        evaluate_lvis,
    )
    from lrpbook.metrics.panoptic import PanopticResult, evaluate_panoptic
    from lrpbook.metrics.streaming import LRPMetric
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


#: The submodule that defines each public name. Nothing is imported until a name is first used,
#: so that ``lrpbook-eval`` can start numba on its own terms (see :mod:`lrpbook.metrics.cli`), and
#: ``LRPMetric`` (torch) is never imported by the evaluator.
_HOME = {
    "STATS_KEYS": "coco", "EvalResult": "coco", "evaluate": "coco", "COCOeval": "cocoeval",
    "LRPComponents": "lrp", "OptimalLRP": "lrp", "lrp_error": "lrp", "weighted_lrp": "lrp",
    "pq_components": "lrp", "greedy_match": "lrp", "lrp_curve": "lrp", "optimal_lrp": "lrp",
    "molrp": "lrp", "evaluate_lvis": "lvis", "LVISResult": "lvis", "LVIS_STATS_KEYS": "lvis",
    "LVIS_OFFICIAL_KEYS": "lvis", "evaluate_panoptic": "panoptic",
    "PanopticResult": "panoptic", "LRPMetric": "streaming", "apply_thresholds": "thresholds",
    "save_thresholds": "thresholds", "load_thresholds": "thresholds",
}  # fmt: skip
_SUBMODULES = ("coco", "cocoeval", "lrp", "lvis", "panoptic", "streaming", "thresholds", "cli")


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule) when it is first used."""
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME) | set(_SUBMODULES))
