"""Training engine and CLI ``lrpbook-train`` for the detectors of :mod:`lrpbook.models`.

- :class:`TrainConfig`, :data:`PRESETS`, :func:`preset`, :func:`load_config`, :func:`save_config`:
  configuration (dataclass, YAML, thesis presets);
- :func:`train`: the loop (AMP, clipping, CSV log, atomic checkpoints, exact resume, DDP, evaluation);
- :func:`evaluate_model`, :func:`predict`, :func:`plot_log`: evaluation with :mod:`lrpbook.metrics`,
  COCO results, loss curves.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from lrpbook.train.config import PRESETS, TrainConfig, load_config, preset, save_config
from lrpbook.train.engine import (
    NonFiniteLossError,
    TrainResult,
    evaluate_model,
    plot_log,
    predict,
    train,
)

__all__ = [
    "TrainConfig",
    "PRESETS",
    "preset",
    "load_config",
    "save_config",
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "evaluate_model",
    "predict",
    "plot_log",
]
