"""A streaming COCO AP + oLRP metric for training loops (torchmetrics conventions).

:class:`LRPMetric` collects predictions and targets batch by batch with :meth:`~LRPMetric.update`
(torchvision-style lists of dicts of tensors), and :meth:`~LRPMetric.compute` runs
:func:`lrpbook.metrics.evaluate` on everything seen, so its numbers are exactly those of the
offline evaluator. Under ``torch.distributed`` the state of all processes is gathered before
computing, so every rank returns the same result.

Taught in: chapter "LRP Error".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lrpbook.metrics.coco import EvalResult, evaluate

__all__ = ["LRPMetric"]


def _np(x: Any, name: str, i: int, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if shape_tail and (arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail):
        if arr.size == 0:
            return arr.reshape((0, *shape_tail))
        raise ValueError(
            f"`{name}` of element {i} must have shape [N, {shape_tail[0]}]; got {arr.shape}"
        )
    if not shape_tail and arr.ndim != 1:
        raise ValueError(f"`{name}` of element {i} must be 1-D; got shape {arr.shape}")
    return arr


class LRPMetric:
    r"""COCO AP and oLRP (with components) over a stream of batches.

    Follows the torchmetrics protocol -- :meth:`reset`, :meth:`update`, :meth:`compute` -- without
    depending on torchmetrics. Boxes are ``(x1, y1, x2, y2)`` (torchvision's convention) and are
    converted to COCO ``[x, y, w, h]``.

    Args:
        iou_type (str): only ``"bbox"`` is supported in streaming mode. Default ``"bbox"``.
        class_names (dict[int, str], optional): names for the per-class table.
        progress (bool): progress bar in :meth:`compute`. Default ``False``.

    Inputs of :meth:`update`:

    * ``preds`` (list[dict]): per image ``boxes`` (Tensor[N, 4], float, xyxy), ``scores``
      (Tensor[N]), ``labels`` (Tensor[N], int).
    * ``targets`` (list[dict]): per image ``boxes`` (Tensor[M, 4], xyxy), ``labels`` (Tensor[M]),
      optional ``iscrowd`` (Tensor[M], 0/1), ``area`` (Tensor[M]; default box area) and
      ``image_id`` (int or 0-d tensor; default: consecutive ids in update order).

    Example:
        >>> m = LRPMetric()
        >>> m.update([{"boxes": torch.tensor([[0., 0., 10., 10.]]), "scores": torch.tensor([0.9]),
        ...            "labels": torch.tensor([1])}],
        ...          [{"boxes": torch.tensor([[0., 0., 10., 10.]]), "labels": torch.tensor([1])}])
        >>> m.compute().stats["oLRP"]
        0.0

    Taught in: chapter "LRP Error".
    """

    is_differentiable = False
    higher_is_better = False  # for the headline oLRP (AP is higher-better)
    full_state_update = False

    def __init__(self, iou_type: str = "bbox", *, class_names: dict[int, str] | None = None,
                 progress: bool = False) -> None:  # fmt: skip
        if iou_type != "bbox":
            raise ValueError(f"LRPMetric supports iou_type='bbox' only; got {iou_type!r}")
        self.iou_type = iou_type
        self.class_names = dict(class_names or {})
        self.progress = progress
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._images: list[int] = []
        self._gt: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._dt: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._next_id = 0

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        """Add one batch: predictions and targets of the same images, in the same order."""
        if len(preds) != len(targets):
            raise ValueError(
                f"`preds` and `targets` must have the same length; got {len(preds)} and {len(targets)}"
            )
        for i, (p, t) in enumerate(zip(preds, targets)):
            for key in ("boxes", "scores", "labels"):
                if key not in p:
                    raise ValueError(f"prediction {i} has no '{key}'")
            for key in ("boxes", "labels"):
                if key not in t:
                    raise ValueError(f"target {i} has no '{key}'")
            pb = _np(p["boxes"], "boxes", i, (4,)).astype(np.float64)
            ps = _np(p["scores"], "scores", i).astype(np.float64)
            pl = _np(p["labels"], "labels", i).astype(np.int64)
            if not (len(pb) == len(ps) == len(pl)):
                raise ValueError(f"prediction {i}: boxes, scores and labels differ in length")
            tb = _np(t["boxes"], "boxes", i, (4,)).astype(np.float64)
            tl = _np(t["labels"], "labels", i).astype(np.int64)
            crowd = (_np(t["iscrowd"], "iscrowd", i).astype(bool) if "iscrowd" in t
                     else np.zeros(len(tb), dtype=bool))  # fmt: skip
            wh = tb[:, 2:] - tb[:, :2]
            area = (_np(t["area"], "area", i).astype(np.float64) if "area" in t
                    else wh[:, 0] * wh[:, 1])  # fmt: skip
            if "image_id" in t:
                img_id = int(
                    t["image_id"].item()
                    if isinstance(t["image_id"], torch.Tensor)
                    else t["image_id"]
                )
            else:
                img_id = self._next_id
            self._next_id = max(self._next_id, img_id) + 1
            self._images.append(img_id)
            self._gt.append((tb, tl, crowd, area))
            self._dt.append((pb, ps, pl))

    def _gathered(self) -> tuple[list, list, list]:
        state = (self._images, self._gt, self._dt)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            parts: list[Any] = [None] * world
            torch.distributed.all_gather_object(parts, state)
            imgs, gts, dts = [], [], []
            for a, b, c in parts:
                imgs += a
                gts += b
                dts += c
            return imgs, gts, dts
        return state

    def to_coco(self) -> tuple[dict, list[dict]]:
        """The state as a COCO ground-truth dict and a result list (xywh boxes)."""
        imgs, gts, dts = self._gathered()
        seen: dict[int, int] = {}
        anns: list[dict] = []
        results: list[dict] = []
        labels: set[int] = set()
        for img_id, (tb, tl, crowd, area), (pb, ps, pl) in zip(imgs, gts, dts):
            if img_id in seen:
                raise ValueError(f"image_id {img_id} was given twice to update()")
            seen[img_id] = 1
            for b, lab, c, a in zip(tb.tolist(), tl.tolist(), crowd.tolist(), area.tolist()):
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": lab,
                             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": a,
                             "iscrowd": int(c)})  # fmt: skip
                labels.add(lab)
            for b, s, lab in zip(pb.tolist(), ps.tolist(), pl.tolist()):
                results.append({"image_id": img_id, "category_id": lab, "score": s,
                                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})  # fmt: skip
                labels.add(lab)
        cats = [{"id": c, "name": self.class_names.get(c, str(c))} for c in sorted(labels)]
        gt = {"images": [{"id": i} for i in imgs], "annotations": anns, "categories": cats}
        return gt, results

    def compute(self) -> EvalResult:
        """Evaluate everything seen so far (all ranks); see :func:`lrpbook.metrics.evaluate`."""
        gt, dt = self.to_coco()
        return evaluate(gt, dt, self.iou_type, progress=self.progress)
