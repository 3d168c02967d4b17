"""A drop-in for pycocotools' ``COCOeval`` that also reports the optimal LRP (oLRP).

Code written for pycocotools switches by changing one import::

    from lrpbook.metrics.cocoeval import COCOeval   # was: from pycocotools.cocoeval import ...

    E = COCOeval(coco_gt, coco_dt, "bbox")
    E.params.catIds = [1, 3]            # the same Params fields as pycocotools
    E.evaluate(); E.accumulate(); E.summarize()
    E.stats                             # exactly pycocotools' 12 (keypoints: 10) numbers
    E.lrp                               # oLRP and its components (thesis Eqs. 5.2, 5.4-5.7)

Taught in: appendix "Using lrpbook in your project".
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from lrpbook.metrics._io import load_json
from lrpbook.metrics.coco import _IOU_THRS, _KPT_SIGMAS, _REC_THRS, EvalResult, evaluate

__all__ = ["COCOeval", "Params"]


class Params:
    """Evaluation parameters with pycocotools' names and defaults.

    Attributes:
        iouType (str): ``"bbox"``, ``"segm"`` or ``"keypoints"``.
        imgIds (list[int]): images to evaluate (default: all of the ground truth).
        catIds (list[int]): categories to evaluate (default: all of the ground truth).
        iouThrs (ndarray): IoU thresholds, default 0.50:0.05:0.95. oLRP uses the first one.
        recThrs (ndarray): recall thresholds, 0:0.01:1 (fixed: changing them is not supported).
        maxDets (list[int]): ``[1, 10, 100]`` (keypoints ``[20]``).
        areaRng (list[list[float]]): ``[lo, hi]`` per label of ``areaRngLbl``.
        areaRngLbl (list[str]): ``all, small, medium, large`` (keypoints without ``small``).
        useCats (int): 1 evaluates per category; 0 pools all categories into one.

    Taught in: appendix "Using lrpbook in your project".
    """

    def __init__(self, iouType: str = "segm") -> None:  # noqa: N803 - pycocotools' name
        if iouType not in ("bbox", "segm", "keypoints"):
            raise ValueError(f"iouType must be 'bbox', 'segm' or 'keypoints'; got {iouType!r}")
        self.iouType = iouType
        self.imgIds: list[int] = []
        self.catIds: list[int] = []
        self.iouThrs = _IOU_THRS.copy()
        self.recThrs = _REC_THRS.copy()
        kp = iouType == "keypoints"
        self.maxDets = [20] if kp else [1, 10, 100]
        self.areaRngLbl = ["all", "medium", "large"] if kp else ["all", "small", "medium", "large"]
        full = {"all": [0, 1e5**2], "small": [0, 32**2], "medium": [32**2, 96**2],
                "large": [96**2, 1e5**2]}  # fmt: skip
        self.areaRng = [list(full[lbl]) for lbl in self.areaRngLbl]
        self.useCats = 1
        if kp:
            self.kpt_oks_sigmas = _KPT_SIGMAS.copy()


class COCOeval:
    r"""pycocotools' ``COCOeval`` surface on lrpbook's evaluator, with oLRP as well.

    ``evaluate()`` runs :func:`lrpbook.metrics.evaluate` with the selection in :attr:`params`,
    ``accumulate()`` fills :attr:`eval` (``precision`` ``[T, R, K, A, M]``, ``recall``
    ``[T, K, A, M]``, ``scores``, ``counts``, ``params``, ``date``) and ``summarize()`` prints
    pycocotools' lines followed by the oLRP lines and sets :attr:`stats` exactly as pycocotools
    does (including its quirks: ``stats[0]`` looks up ``maxDets == 100``, the keypoint stats
    ``maxDets == 20``; a missing entry gives ``-1``). The oLRP reported with them is the
    minimum over score thresholds of the LRP Error at :math:`\tau` = ``params.iouThrs[0]``:

    .. math::

        \mathrm{oLRP} = \min_{s} \frac{1}{\mathrm{TP} + \mathrm{FP} + \mathrm{FN}}
        \Big(\sum_{\text{TP}} \frac{1 - \mathrm{IoU}}{1 - \tau} + \mathrm{FP}
        + \mathrm{FN}\Big).

    Implements thesis Eqs. (5.2) and (5.7) behind pycocotools' interface.

    Args:
        cocoGt (COCO | dict | str | PathLike): the ground truth (a pycocotools ``COCO``, a dict
            or a path).
        cocoDt (COCO | list | str | PathLike | ndarray): the results (a ``loadRes`` result, a
            list, a path or an ``N x 7`` array).
        iouType (str): ``"segm"`` (pycocotools' default), ``"bbox"`` or ``"keypoints"``.

    Attributes:
        params (Params): the selection, with pycocotools' field names.
        eval (dict): filled by :meth:`accumulate`.
        stats (ndarray): filled by :meth:`summarize`: 12 numbers (keypoints 10).
        result (EvalResult): the full lrpbook result (oLRP, per-class rows, thresholds); the
            property :attr:`lrp` holds its oLRP numbers.

    Note:
        Not provided: ``evalImgs`` and ``ious`` (lrpbook never builds per-image dicts), and
        changing ``recThrs`` or ``kpt_oks_sigmas`` (a ``ValueError``). One deliberate
        difference: keypoints with ``useCats = 0``. pycocotools' ``computeOks`` ignores
        ``useCats`` and looks the ground truths up under category ``-1``, where there are none,
        so no detection ever matches; lrpbook pools the categories as it does for boxes and
        masks (where ``.stats`` equal pycocotools').

    Example:
        >>> E = COCOeval(gt_dict, detections, "bbox")  # doctest: +SKIP
        >>> E.evaluate(); E.accumulate(); E.summarize()  # doctest: +SKIP

    Taught in: appendix "Using lrpbook in your project".
    """

    def __init__(self, cocoGt: Any = None, cocoDt: Any = None, iouType: str = "segm") -> None:  # noqa: N803
        self.cocoGt = cocoGt
        self.cocoDt = cocoDt
        self.params = Params(iouType)
        self.eval: dict[str, Any] = {}
        self.stats: np.ndarray = np.zeros(0)
        self.result: EvalResult | None = None
        self._gt_doc: Any = None
        if cocoGt is not None:
            self._gt_doc = load_json(cocoGt, what="ground truth")
            if isinstance(self._gt_doc, dict):
                self.params.imgIds = sorted(
                    int(im["id"]) for im in self._gt_doc.get("images", []) if isinstance(im, dict)
                )
                self.params.catIds = sorted(
                    int(c["id"]) for c in self._gt_doc.get("categories", []) if isinstance(c, dict)
                )

    @property
    def lrp(self) -> dict[str, float]:
        """``oLRP``, ``oLRP_Loc``, ``oLRP_FP``, ``oLRP_FN`` and the per-size oLRP, after
        :meth:`evaluate` (keys as in :data:`lrpbook.metrics.STATS_KEYS`)."""
        if self.result is None:
            raise RuntimeError("run evaluate() first")
        return {k: v for k, v in self.result.stats.items() if k.startswith("oLRP")}

    def evaluate(self) -> None:
        """Match detections to ground truths for every image, category, area range and maxDet."""
        p = self.params
        if not np.array_equal(np.asarray(p.recThrs, dtype=np.float64), _REC_THRS):
            raise ValueError("changing params.recThrs is not supported by lrpbook's COCOeval")
        if p.iouType == "keypoints" and not np.array_equal(
            np.asarray(getattr(p, "kpt_oks_sigmas", _KPT_SIGMAS)), _KPT_SIGMAS
        ):
            raise ValueError("changing params.kpt_oks_sigmas is not supported")
        p.imgIds = [int(i) for i in np.unique(p.imgIds)]
        if p.useCats:
            p.catIds = [int(c) for c in np.unique(p.catIds)]
        p.maxDets = sorted(int(m) for m in p.maxDets)
        labels = ["all", "medium", "large"] if p.iouType == "keypoints" else [
            "all", "small", "medium", "large"]  # fmt: skip
        if list(p.areaRngLbl) != labels:
            raise ValueError(f"params.areaRngLbl must be {labels}; got {p.areaRngLbl}")
        self.result = evaluate(
            self._gt_doc if self._gt_doc is not None else self.cocoGt,
            self.cocoDt,
            p.iouType,
            img_ids=p.imgIds,
            cat_ids=p.catIds,
            use_cats=bool(p.useCats),
            max_dets=p.maxDets,
            area_ranges=p.areaRng,
            iou_thrs=p.iouThrs,
        )
        self.eval = {}

    def accumulate(self, p: Params | None = None) -> None:
        """Fill :attr:`eval` with the precision / recall / score arrays of pycocotools."""
        if self.result is None:
            raise RuntimeError("Please run evaluate() first")
        r = self.result
        self.eval = {
            "params": p if p is not None else self.params,
            "counts": list(r.precision.shape),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": r.precision,
            "recall": r.recall,
            "scores": r.scores,
        }

    def _stat(self, ap: int = 1, iouThr: float | None = None, areaRng: str = "all",  # noqa: N803
              maxDets: int = 100) -> float:  # fmt: skip
        p = self.params
        iou_str = (f"{p.iouThrs[0]:0.2f}:{p.iouThrs[-1]:0.2f}" if iouThr is None
                   else f"{iouThr:0.2f}")  # fmt: skip
        aind = [i for i, a in enumerate(p.areaRngLbl) if a == areaRng]
        mind = [i for i, m in enumerate(p.maxDets) if m == maxDets]
        s = self.eval["precision"] if ap == 1 else self.eval["recall"]
        if iouThr is not None:
            s = s[np.where(iouThr == np.asarray(p.iouThrs))[0]]
        s = s[:, :, :, aind, mind] if ap == 1 else s[:, :, aind, mind]
        mean_s = -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])
        title = "Average Precision" if ap == 1 else "Average Recall"
        kind = "(AP)" if ap == 1 else "(AR)"
        print(f" {title:<18} {kind} @[ IoU={iou_str:<9} | area={areaRng:>6s} | "
              f"maxDets={maxDets:>3d} ] = {mean_s:0.3f}")  # fmt: skip
        return mean_s

    def summarize(self) -> None:
        """Print pycocotools' summary lines and the oLRP lines; set :attr:`stats`."""
        if not self.eval:
            raise RuntimeError("Please run accumulate() first")
        p, st = self.params, self._stat
        if p.iouType == "keypoints":
            stats = np.zeros((10,))
            args = [(1, None, "all"), (1, 0.5, "all"), (1, 0.75, "all"), (1, None, "medium"),
                    (1, None, "large"), (0, None, "all"), (0, 0.5, "all"), (0, 0.75, "all"),
                    (0, None, "medium"), (0, None, "large")]  # fmt: skip
            for i, (ap, iou, area) in enumerate(args):
                stats[i] = st(ap, iou, area, maxDets=20)
        else:
            m = p.maxDets
            stats = np.zeros((12,))
            stats[0] = st(1)
            stats[1] = st(1, iouThr=0.5, maxDets=m[2])
            stats[2] = st(1, iouThr=0.75, maxDets=m[2])
            stats[3] = st(1, areaRng="small", maxDets=m[2])
            stats[4] = st(1, areaRng="medium", maxDets=m[2])
            stats[5] = st(1, areaRng="large", maxDets=m[2])
            stats[6] = st(0, maxDets=m[0])
            stats[7] = st(0, maxDets=m[1])
            stats[8] = st(0, maxDets=m[2])
            stats[9] = st(0, areaRng="small", maxDets=m[2])
            stats[10] = st(0, areaRng="medium", maxDets=m[2])
            stats[11] = st(0, areaRng="large", maxDets=m[2])
        self.stats = stats
        assert self.result is not None
        lines = self.result.summary().splitlines()
        print("\n".join(" " + ln for ln in lines if ln.startswith("Optimal LRP")))

    def __str__(self) -> str:
        return f"COCOeval(iouType={self.params.iouType!r}, stats={np.round(self.stats, 3)})"
