"""A streaming COCO AP + oLRP metric for training loops, built on ``torchmetrics.Metric``.

:class:`LRPMetric` collects predictions and targets batch by batch with :meth:`~LRPMetric.update`
(torchvision-style lists of dicts of tensors), and :meth:`~LRPMetric.compute` runs
:func:`lrpbook.metrics.evaluate` on everything seen, so its numbers are exactly those of the
offline evaluator. torchmetrics brings the rest: ``forward``, ``.to()``, ``state_dict``,
``reset`` and the synchronisation of the state across processes under ``torch.distributed``.

This module imports torch; ``lrpbook.metrics`` imports it only when ``LRPMetric`` is first used.

Taught in: chapter "LRP Error" and appendix "Using lrpbook in your project".
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lrpbook.metrics.coco import EvalResult, evaluate

__all__ = ["LRPMetric", "LRPMetricOutput"]

# columns of the flat states (float64; ids are exact up to 2**53). The rows of ``dets`` and
# ``gts`` follow the rows of ``images`` (``n_det`` and ``n_gt`` of each), and every sync or
# merge concatenates the three lists in the same order, so no per-row image key is needed.
_IMG_COLS = 4  # image_id (NaN: none given), rank, n_det, n_gt
_DET_COLS = 6  # x1, y1, x2, y2, score, label
_GT_COLS = 7  # x1, y1, x2, y2, label, iscrowd, area


class LRPMetricOutput(dict):
    """What :meth:`LRPMetric.compute` returns: a ``dict`` of tensors, with the full result.

    The keys are those of :data:`lrpbook.metrics.STATS_KEYS` (0-d float64 tensors) plus
    ``classes``, ``oLRP_per_class``, ``AP_per_class`` and ``thresholds_per_class`` (1-D, in
    ascending category id). The complete :class:`~lrpbook.metrics.EvalResult` is
    :attr:`result`; its attributes are also reachable directly (``out.stats``, ``out.olrp``,
    ``out.per_class``), the spelling of earlier versions, where ``compute()`` returned it.

    Taught in: appendix "Using lrpbook in your project".
    """

    result: EvalResult

    def __getattr__(self, name: str) -> Any:
        if name == "result":
            raise AttributeError(name)
        try:
            return getattr(self.__dict__["result"], name)
        except KeyError:
            raise AttributeError(name) from None


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
        if arr.size == 0:
            return arr.reshape(0)
        raise ValueError(f"`{name}` of element {i} must be 1-D; got shape {arr.shape}")
    return arr


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


class LRPMetric(Metric):
    r"""COCO AP and oLRP (with components) over a stream of batches, as a torchmetrics metric.

    Each :meth:`update` adds the images of one batch; :meth:`compute` evaluates all of them
    (on every rank: the states are gathered first) with :func:`lrpbook.metrics.evaluate`, whose
    oLRP is the minimum over score thresholds of the LRP Error of thesis Eq. (5.2):

    .. math::

        \mathrm{oLRP} = \min_{s} \frac{1}{\mathrm{TP} + \mathrm{FP} + \mathrm{FN}}
        \Big(\sum_{\text{TP}} \frac{1 - \mathrm{IoU}}{1 - \tau} + \mathrm{FP} + \mathrm{FN}\Big).

    Implements thesis Eqs. (5.2) and (5.7) over the accumulated data.

    Args:
        iou_type (str): only ``"bbox"`` is supported in streaming mode. Default ``"bbox"``.
        class_names (dict[int, str], optional): names for the per-class table.
        progress (bool): progress bar in :meth:`compute`. Default ``False``.
        **kwargs: passed to ``torchmetrics.Metric`` (``dist_sync_on_step``, ``process_group``,
            ``sync_on_compute``, ...).

    Inputs of :meth:`update`:

    * ``preds`` (list[dict]): per image ``boxes`` (Tensor[N, 4], float, xyxy), ``scores``
      (Tensor[N]), ``labels`` (Tensor[N], int).
    * ``targets`` (list[dict]): per image ``boxes`` (Tensor[M, 4], xyxy), ``labels`` (Tensor[M]),
      optional ``iscrowd`` (Tensor[M], 0/1), ``area`` (Tensor[M]; default box area) and
      ``image_id`` (int or 0-d tensor).

    Image ids: an image given with an ``image_id`` that was seen before (on any rank) counts
    once -- its first occurrence is kept -- so the samples that ``DistributedSampler`` repeats to
    even out the ranks are not counted twice. Images without ``image_id`` get fresh ids, unique
    across ranks (``max(given ids) + 1 + k`` in rank, then update order).

    Returns:
        LRPMetricOutput: from :meth:`compute`, a dict of float64 tensors (see there) that also
        carries the full :class:`~lrpbook.metrics.EvalResult` as ``.result``.

    Raises:
        ValueError: ``iou_type`` other than ``"bbox"``; malformed predictions or targets.

    Note:
        Every rank must call :meth:`update` at least once before a distributed
        :meth:`compute` (``DistributedSampler`` guarantees it).

    Example:
        >>> m = LRPMetric()
        >>> m.update([{"boxes": torch.tensor([[0., 0., 10., 10.]]), "scores": torch.tensor([0.9]),
        ...            "labels": torch.tensor([1])}],
        ...          [{"boxes": torch.tensor([[0., 0., 10., 10.]]), "labels": torch.tensor([1]),
        ...            "image_id": 7}])
        >>> float(m.compute()["oLRP"])
        0.0

    Taught in: chapter "LRP Error" and appendix "Using lrpbook in your project".
    """

    is_differentiable = False
    higher_is_better = False  # for the headline oLRP (AP is higher-better)
    full_state_update = False

    def __init__(self, iou_type: str = "bbox", *, class_names: dict[int, str] | None = None,
                 progress: bool = False, **kwargs: Any) -> None:  # fmt: skip
        if iou_type != "bbox":
            raise ValueError(f"LRPMetric supports iou_type='bbox' only; got {iou_type!r}")
        super().__init__(**kwargs)
        self.iou_type = iou_type
        self.class_names = dict(class_names or {})
        self.progress = progress
        self.result: EvalResult | None = None
        self.add_state("images", default=[], dist_reduce_fx="cat")
        self.add_state("dets", default=[], dist_reduce_fx="cat")
        self.add_state("gts", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict], targets: list[dict]) -> None:  # type: ignore[override]
        """Add one batch: predictions and targets of the same images, in the same order."""
        if len(preds) != len(targets):
            raise ValueError(
                f"`preds` and `targets` must have the same length; got {len(preds)} and {len(targets)}"
            )
        rank = float(_rank())
        imgs, dets, gts = [], [], []
        for i, (p, t) in enumerate(zip(preds, targets)):
            for key in ("boxes", "scores", "labels"):
                if key not in p:
                    raise ValueError(f"prediction {i} has no '{key}'")
            for key in ("boxes", "labels"):
                if key not in t:
                    raise ValueError(f"target {i} has no '{key}'")
            pb = _np(p["boxes"], "boxes", i, (4,)).astype(np.float64)
            ps = _np(p["scores"], "scores", i).astype(np.float64)
            pl = _np(p["labels"], "labels", i).astype(np.float64)
            if not (len(pb) == len(ps) == len(pl)):
                raise ValueError(f"prediction {i}: boxes, scores and labels differ in length")
            tb = _np(t["boxes"], "boxes", i, (4,)).astype(np.float64)
            tl = _np(t["labels"], "labels", i).astype(np.float64)
            crowd = (_np(t["iscrowd"], "iscrowd", i).astype(np.float64) if "iscrowd" in t
                     else np.zeros(len(tb)))  # fmt: skip
            wh = tb[:, 2:] - tb[:, :2]
            area = (_np(t["area"], "area", i).astype(np.float64) if "area" in t
                    else wh[:, 0] * wh[:, 1])  # fmt: skip
            if not (len(tb) == len(tl) == len(crowd) == len(area)):
                raise ValueError(f"target {i}: boxes, labels, iscrowd and area differ in length")
            if "image_id" in t:
                v = t["image_id"]
                img_id = float(v.item() if isinstance(v, torch.Tensor) else int(v))
            else:
                img_id = float("nan")
            imgs.append([img_id, rank, float(len(pb)), float(len(tb))])
            dets.append(np.c_[pb, ps, pl])
            gts.append(np.c_[tb, tl, crowd, area])
        n = len(preds)
        dev = self.device
        self.images.append(torch.tensor(np.asarray(imgs).reshape(n, _IMG_COLS), device=dev))
        self.dets.append(torch.from_numpy(np.concatenate(dets or [np.zeros((0, _DET_COLS))])
                                          .reshape(-1, _DET_COLS)).to(dev))  # fmt: skip
        self.gts.append(torch.from_numpy(np.concatenate(gts or [np.zeros((0, _GT_COLS))])
                                         .reshape(-1, _GT_COLS)).to(dev))  # fmt: skip

    def _gathered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def cat(state: Any, cols: int) -> np.ndarray:
            if isinstance(state, list) and len(state) == 0:
                return np.zeros((0, cols))
            t = dim_zero_cat(state) if isinstance(state, list) else state
            return t.detach().cpu().double().numpy().reshape(-1, cols)

        return (cat(self.images, _IMG_COLS), cat(self.dets, _DET_COLS), cat(self.gts, _GT_COLS))

    def to_coco(self) -> tuple[dict, list[dict]]:
        """The (gathered) state as a COCO ground-truth dict and a result list (xywh boxes).

        Repeated image ids are kept once (first occurrence); images without an id get fresh ids.
        """
        imgs, dets, gts = self._gathered()
        given = ~np.isnan(imgs[:, 0])
        ids = imgs[:, 0].copy()
        nxt = (np.nanmax(ids) + 1) if given.any() else 0.0
        ids[~given] = nxt + np.arange(int((~given).sum()))
        _, first = np.unique(ids, return_index=True)
        keep = np.zeros(len(ids), dtype=bool)
        keep[first] = True
        n_det, n_gt = imgs[:, 2].astype(np.int64), imgs[:, 3].astype(np.int64)
        d_keep, g_keep = np.repeat(keep, n_det), np.repeat(keep, n_gt)
        d, d_img = dets[d_keep], np.repeat(ids, n_det)[d_keep]
        g, g_img = gts[g_keep], np.repeat(ids, n_gt)[g_keep]
        labels = sorted(
            set(g[:, 4].astype(np.int64).tolist()) | set(d[:, 5].astype(np.int64).tolist())
        )
        anns = [
            {"id": k + 1, "image_id": int(i), "category_id": int(r[4]),
             "bbox": [r[0], r[1], r[2] - r[0], r[3] - r[1]], "area": float(r[6]),
             "iscrowd": int(r[5])}
            for k, (r, i) in enumerate(zip(g.tolist(), g_img.tolist()))
        ]  # fmt: skip
        results = [
            {"image_id": int(i), "category_id": int(r[5]), "score": r[4],
             "bbox": [r[0], r[1], r[2] - r[0], r[3] - r[1]]}
            for r, i in zip(d.tolist(), d_img.tolist())
        ]  # fmt: skip
        cats = [{"id": c, "name": self.class_names.get(c, str(c))} for c in labels]
        images = [{"id": int(i)} for i in np.sort(ids[keep])]
        return {"images": images, "annotations": anns, "categories": cats}, results

    def compute(self) -> LRPMetricOutput:  # type: ignore[override]
        """Evaluate everything seen so far (all ranks); see :func:`lrpbook.metrics.evaluate`.

        Returns:
            LRPMetricOutput: ``{stat: 0-d tensor}`` for every key of ``STATS_KEYS["bbox"]``, and
            ``classes``, ``oLRP_per_class``, ``AP_per_class``, ``thresholds_per_class``; the full
            :class:`~lrpbook.metrics.EvalResult` is ``.result``.
        """
        gt, dt = self.to_coco()
        res = evaluate(gt, dt, self.iou_type, progress=self.progress)
        self.result = res
        return _output(res)

    def _wrap_compute(self, compute: Any) -> Any:
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(wrapped)
        def inner(*args: Any, **kwargs: Any) -> LRPMetricOutput:
            out = wrapped(*args, **kwargs)
            if "result" in getattr(out, "__dict__", {}) or self.result is None:
                return out
            return _output(self.result, out)  # torchmetrics rebuilt the dict: re-attach

        return inner


def _output(res: EvalResult, values: dict | None = None) -> LRPMetricOutput:
    if values is None:
        values = {k: torch.tensor(v, dtype=torch.float64) for k, v in res.stats.items()}
        rows = res.per_class
        values["classes"] = torch.tensor([r["category_id"] for r in rows], dtype=torch.int64)
        for key, col in (("oLRP_per_class", "oLRP"), ("AP_per_class", "AP"),
                         ("thresholds_per_class", "threshold")):  # fmt: skip
            values[key] = torch.tensor([r[col] for r in rows], dtype=torch.float64)
    out = LRPMetricOutput(values)
    out.__dict__["result"] = res
    return out
