"""Training engine and CLI ``lrpbook-train`` for the detectors of :mod:`lrpbook.models`.

- :class:`TrainConfig`, :data:`PRESETS`, :data:`PRESET_SOURCES`, :func:`preset`,
  :func:`preset_value`, :func:`scaled`, :func:`load_config`, :func:`save_config`: configuration
  (dataclass, YAML, the thesis' presets and their sources, the linear scaling rule);
- :func:`train`: the loop (AMP, clipping, CSV log, atomic checkpoints, exact resume, DDP, evaluation);
- :func:`evaluate_model`, :func:`predict`, :func:`plot_log`: evaluation with :mod:`lrpbook.metrics`,
  COCO results, loss curves.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from lrpbook.train.config import (
    CPU_SIZE,
    PRESET_SOURCES,
    PRESETS,
    TrainConfig,
    load_config,
    preset,
    preset_value,
    save_config,
    scaled,
)
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
    "PRESET_SOURCES",
    "CPU_SIZE",
    "preset",
    "preset_value",
    "scaled",
    "load_config",
    "save_config",
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "evaluate_model",
    "predict",
    "plot_log",
]
