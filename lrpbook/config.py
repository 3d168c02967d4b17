"""Run-mode settings shared by the chapters, the trainer and the benchmarks.

The same notebooks run in two modes:

- **quick** (the default): CPU-sized problems on synthetic data, so that every chapter executes in
  seconds when the book is built.
- **full** (``LRPBOOK_FULL=1``): the thesis-sized experiments, meant for a GPU machine with a COCO-format
  dataset under ``LRPBOOK_DATA``.

Environment variables:

``LRPBOOK_FULL``
    ``1``/``true``/``yes``/``on`` selects full mode; ``0``/``false``/``no``/``off`` or unset selects quick
    mode. Any other value is an error.
``LRPBOOK_DATA``
    Root folder of local datasets (e.g. ``$LRPBOOK_DATA/coco/annotations/instances_val2017.json``).
``LRPBOOK_DEVICE``
    Overrides the device choice (``cpu``, ``cuda``, ``cuda:1``, ...).

Taught in: chapter "Preface" and chapter "Detection basics and notation".
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["quick", "full", "device", "data_root", "describe"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def full() -> bool:
    """Whether full (thesis-sized, GPU) mode is selected through ``LRPBOOK_FULL``.

    Returns:
        ``True`` when ``LRPBOOK_FULL`` is one of ``1, true, yes, on`` (any case).

    Raises:
        ValueError: if ``LRPBOOK_FULL`` holds anything else than the accepted true/false spellings.
    """
    raw = os.environ.get("LRPBOOK_FULL", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"LRPBOOK_FULL must be one of 1/true/yes/on or 0/false/no/off; got {os.environ['LRPBOOK_FULL']!r}"
    )


def quick() -> bool:
    """Whether quick (CPU-sized, synthetic data) mode is selected: the negation of :func:`full`."""
    return not full()


def device() -> torch.device:
    """The device to run on: ``$LRPBOOK_DEVICE`` if set, else CUDA when available, else the CPU.

    Raises:
        ValueError: if ``LRPBOOK_DEVICE`` is not a valid device string, or names CUDA on a machine
            without CUDA.
    """
    raw = os.environ.get("LRPBOOK_DEVICE", "").strip()
    if raw:
        try:
            dev = torch.device(raw)
        except RuntimeError as exc:
            raise ValueError(f"LRPBOOK_DEVICE={raw!r} is not a valid torch device string") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"LRPBOOK_DEVICE={raw!r} asks for CUDA, but CUDA is not available here"
            )
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_root() -> Path | None:
    """The root folder of local datasets from ``$LRPBOOK_DATA``, or ``None`` when it is not set.

    Raises:
        ValueError: if ``LRPBOOK_DATA`` is set but is not an existing folder.
    """
    raw = os.environ.get("LRPBOOK_DATA", "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ValueError(f"LRPBOOK_DATA={raw!r} is not an existing folder")
    return path


def describe() -> str:
    """A one-line summary of the run mode, e.g. ``"quick mode on cpu, no data root"``."""
    mode = "full" if full() else "quick"
    root = data_root()
    where = f"data root {root}" if root is not None else "no data root"
    return f"{mode} mode on {device()}, {where}"
