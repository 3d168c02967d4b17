"""lrpbook: the LRP Error, ranking-based losses and imbalance tools of object detection.

A package and an executable book built from Kemal Öksüz, *Identifying and Addressing Imbalance
Problems in Visual Detection* (PhD thesis, METU, 2021).

Submodules (imported on first access, so ``import lrpbook`` stays cheap):

- :mod:`lrpbook.boxes`: box formats and pairwise IoU / GIoU.
- :mod:`lrpbook.data`: synthetic COCO-format datasets and a COCO/LVIS folder loader.
- :mod:`lrpbook.metrics`: LRP Error, oLRP, COCO AP, LVIS and panoptic evaluation.
- :mod:`lrpbook.losses`: the identity update, AP Loss, aLRP Loss and Rank & Sort Loss.
- :mod:`lrpbook.boxgen`: the Bounding Box Generator, pRoI generator and OFB sampling.
- :mod:`lrpbook.imbalance`: the imbalance taxonomy and small tools for each imbalance problem.
- :mod:`lrpbook.models`: detectors trained with ranking-based losses.
- :mod:`lrpbook.train`: the training engine.
- :mod:`lrpbook.config`, :mod:`lrpbook.book`: run mode and chapter helpers.

Example:
    >>> import lrpbook
    >>> lrpbook.__version__
    '0.1.0'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = (
    "boxes",
    "boxgen",
    "book",
    "config",
    "data",
    "imbalance",
    "losses",
    "metrics",
    "models",
    "train",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'lrpbook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES))
