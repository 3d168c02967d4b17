"""Imbalance problems in object detection (thesis Ch 3): the taxonomy as data and a small tool per problem.

Taught in: chapter "Imbalance problems in object detection".
"""

from lrpbook.imbalance.anchors import fpn_level, label_anchors, retinanet_anchors
from lrpbook.imbalance.regression import (
    balanced_l1_loss,
    ciou_loss,
    diou_loss,
    giou_loss,
    iou_loss,
    l1_loss,
    l2_loss,
    smooth_l1_loss,
)
from lrpbook.imbalance.sampling import (
    focal_weights,
    ghm_weights,
    iou_balanced_sampling,
    ohem,
    pisa_weights,
    random_sampling,
)
from lrpbook.imbalance.taxonomy import PROBLEMS, Method, load_taxonomy, papers_per_problem_year

__all__ = [
    "PROBLEMS",
    "Method",
    "load_taxonomy",
    "papers_per_problem_year",
    "retinanet_anchors",
    "label_anchors",
    "fpn_level",
    "random_sampling",
    "ohem",
    "iou_balanced_sampling",
    "focal_weights",
    "pisa_weights",
    "ghm_weights",
    "l1_loss",
    "l2_loss",
    "smooth_l1_loss",
    "balanced_l1_loss",
    "iou_loss",
    "giou_loss",
    "diou_loss",
    "ciou_loss",
]
