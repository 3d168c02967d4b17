"""Bounding boxes: formats, areas, pairwise IoU and GIoU (the bottom layer of lrpbook).

Conventions (thesis Ch 2):

- ``xyxy``: ``(x1, y1, x2, y2)``, top-left and bottom-right corners, ``x1 <= x2`` and ``y1 <= y2``.
  This is the format of every tensor API in lrpbook and torchvision.
- ``xywh``: ``(x, y, w, h)``, top-left corner, width and height: the COCO annotation format.
- ``cxcywh``: ``(cx, cy, w, h)``, centre, width and height: common in regression targets.

Coordinates are continuous (no ``+1`` on widths), as in pycocotools and torchvision.

The intersection over union of two boxes :math:`B` and :math:`\\hat{B}` (thesis Eq. (2.2)) is

.. math::

    \\mathrm{IoU}(B, \\hat{B}) = \\frac{|B \\cap \\hat{B}|}{|B \\cup \\hat{B}|},

and the generalised IoU :cite:`rezatofighi2019giou` subtracts the share of the smallest enclosing box
:math:`C` not covered by the union:

.. math::

    \\mathrm{GIoU}(B, \\hat{B}) = \\mathrm{IoU}(B, \\hat{B}) - \\frac{|C \\setminus (B \\cup \\hat{B})|}{|C|}.

The pairwise functions call :mod:`torchvision.ops`, which already implements them exactly; this module adds
input validation with clear errors and the format conversions.

Taught in: chapter "Detection basics and notation".
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision import ops

__all__ = [
    "BOX_FORMATS",
    "box_convert",
    "box_area",
    "box_iou",
    "box_iou_aligned",
    "generalized_box_iou",
]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _check_boxes(boxes: Tensor, name: str, fmt: str = "xyxy") -> Tensor:
    if not isinstance(boxes, Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor of shape (N, 4); got {type(boxes).__name__}"
        )
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"`{name}` must have shape (N, 4); got shape {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor; got dtype {boxes.dtype}")
    if boxes.numel() and not torch.isfinite(boxes).all():
        bad = int((~torch.isfinite(boxes)).any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"`{name}` has a non-finite coordinate in row {bad}: {boxes[bad].tolist()}"
        )
    if fmt == "xyxy" and boxes.numel():
        wrong = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if wrong.any():
            bad = int(wrong.nonzero()[0, 0])
            raise ValueError(
                f"`{name}` row {bad} is not a valid (x1, y1, x2, y2) box (needs x1 <= x2 and y1 <= y2): "
                f"{boxes[bad].tolist()}"
            )
    elif fmt in ("xywh", "cxcywh") and boxes.numel():
        wrong = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
        if wrong.any():
            bad = int(wrong.nonzero()[0, 0])
            raise ValueError(
                f"`{name}` row {bad} has a negative width or height: {boxes[bad].tolist()}"
            )
    return boxes


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between the ``xyxy``, ``xywh`` (COCO) and ``cxcywh`` formats.

    Args:
        boxes (Tensor[N, 4], float): boxes in ``in_fmt``.
        in_fmt: one of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``.
        out_fmt: one of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``.

    Returns:
        Tensor[N, 4]: a new tensor in ``out_fmt`` (the input is never modified).

    Raises:
        ValueError: on an unknown format, a shape other than (N, 4), non-finite coordinates, or boxes
            that are invalid in ``in_fmt`` (``x2 < x1`` for ``xyxy``, negative sizes otherwise).
        TypeError: if ``boxes`` is not a floating-point tensor.

    Example:
        >>> import torch
        >>> box_convert(torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "xywh", "xyxy")
        tensor([[10., 20., 40., 60.]])
    """
    for arg, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"`{arg}` must be one of {BOX_FORMATS}; got {fmt!r}")
    _check_boxes(boxes, "boxes", in_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    return ops.box_convert(boxes, in_fmt, out_fmt)


def box_area(boxes: Tensor) -> Tensor:
    """Area ``(x2 - x1) * (y2 - y1)`` of each ``xyxy`` box.

    Args:
        boxes (Tensor[N, 4], float): ``xyxy`` boxes.

    Returns:
        Tensor[N]: the areas.

    Raises:
        ValueError, TypeError: on malformed boxes (see :func:`box_convert`).
    """
    _check_boxes(boxes, "boxes")
    return ops.box_area(boxes)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of two sets of ``xyxy`` boxes (thesis Eq. (2.2)).

    Args:
        boxes1 (Tensor[N, 4], float): ``xyxy`` boxes.
        boxes2 (Tensor[M, 4], float): ``xyxy`` boxes.

    Returns:
        Tensor[N, M]: ``IoU(boxes1[i], boxes2[j])`` in [0, 1]. Two empty boxes at the same place give
        NaN (0/0), as in torchvision.

    Raises:
        ValueError, TypeError: on malformed boxes (see :func:`box_convert`).

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
        >>> b = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
        >>> box_iou(a, b)
        tensor([[0.3333]])
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    return ops.box_iou(boxes1, boxes2)


def _iou_aligned(a: Tensor, b: Tensor, eps: float = 0.0) -> Tensor:
    """Row-wise IoU without validation (the fast path behind :func:`box_iou_aligned`)."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    if eps > 0:
        union = union.clamp_min(eps)
    return inter / union


def box_iou_aligned(boxes1: Tensor, boxes2: Tensor, *, eps: float = 0.0) -> Tensor:
    """IoU of corresponding rows of two sets of ``xyxy`` boxes (thesis Eq. (2.2)).

    Where :func:`box_iou` compares every box with every box (an ``N x M`` matrix), this compares
    ``boxes1[i]`` with ``boxes2[i]`` only: the form that regression losses, assigners and the
    Bounding Box Generator need. The arithmetic is torchvision's (intersection clamped at 0,
    union = sum of the areas minus the intersection), so ``box_iou_aligned(a, b)`` equals the
    diagonal of ``box_iou(a, b)`` bit for bit.

    .. math::

        \\mathrm{IoU}_i = \\frac{|B_i \\cap \\hat{B}_i|}{|B_i| + |\\hat{B}_i| - |B_i \\cap \\hat{B}_i|}

    Args:
        boxes1 (Tensor[N, 4], float): ``xyxy`` boxes.
        boxes2 (Tensor[N, 4] or Tensor[1, 4], float): ``xyxy`` boxes, broadcast against ``boxes1``.
        eps (float): lower clamp of the union (default 0: two empty boxes at the same place give
            NaN, as in torchvision; detectors pass a small ``eps`` to get 0 instead).

    Returns:
        Tensor[N]: the IoU of each pair, in [0, 1].

    Raises:
        ValueError, TypeError: on malformed boxes (see :func:`box_convert`), or when the two
            shapes do not broadcast.

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
        >>> b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
        >>> box_iou_aligned(a, b)
        tensor([0.3333, 1.0000])

    Taught in: chapter "Detection basics and notation".
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    if boxes2.shape[0] not in (1, boxes1.shape[0]):
        raise ValueError(
            "`boxes1` and `boxes2` must have the same number of rows (or `boxes2` one row); "
            f"got {boxes1.shape[0]} and {boxes2.shape[0]}"
        )
    return _iou_aligned(boxes1, boxes2, eps)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU of two sets of ``xyxy`` boxes :cite:`rezatofighi2019giou`.

    Args:
        boxes1 (Tensor[N, 4], float): ``xyxy`` boxes.
        boxes2 (Tensor[M, 4], float): ``xyxy`` boxes.

    Returns:
        Tensor[N, M]: GIoU in [-1, 1]; ``1 - GIoU`` is the GIoU loss used as the localisation error of
        aLRP Loss and RS Loss.

    Raises:
        ValueError, TypeError: on malformed boxes (see :func:`box_convert`).
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    return ops.generalized_box_iou(boxes1, boxes2)
