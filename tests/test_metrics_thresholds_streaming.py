"""apply_thresholds / threshold export, and the streaming LRPMetric against evaluate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lrpbook.metrics import LRPMetric, apply_thresholds, evaluate, load_thresholds, save_thresholds
from lrpbook.metrics._io import load_json


def load_case(refcases, name):
    folder = refcases / "lrp" / "cases" / name
    if not folder.is_dir():
        pytest.skip(f"reference case lrp/{name} not in this set")
    gt = load_json(next(folder.glob("gt.json*")), what="gt")
    dt = load_json(next(folder.glob("dt.json*")), what="dt")
    return gt, dt


@pytest.mark.parametrize("name", ["bbox_small", "bbox_ties", "bbox_medium"])
def test_thresholding_at_lrp_optimal_keeps_every_class_olrp(refcases, name):
    """Claim: cutting each class at s* keeps a prefix of its ranking that contains the optimum,
    so re-evaluating the hard predictions gives the same per-class oLRP."""
    gt, dt = load_case(refcases, name)
    with pytest.warns(UserWarning) if name != "bbox_small" else _nullcontext():
        before = evaluate(gt, dt)
        hard = apply_thresholds(dt, before)
        after = evaluate(gt, hard)
    assert len(hard) < len(dt)
    for b, a in zip(before.per_class, after.per_class):
        assert a["oLRP"] == b["oLRP"] or (a["oLRP"] == -1 == b["oLRP"])
    assert after.stats["oLRP"] == before.stats["oLRP"]
    assert after.stats["AP"] <= before.stats["AP"]  # AP only loses from thresholding


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_apply_thresholds_special_values_and_roundtrip(tmp_path):
    dets = [
        {"category_id": 1, "score": 0.9}, {"category_id": 1, "score": 0.3},
        {"category_id": 2, "score": 0.99}, {"category_id": 3, "score": 0.1},
        {"category_id": 4, "score": 0.5},
    ]  # fmt: skip
    thr = {1: 0.3, 2: float("nan"), 3: -1.0}
    kept = apply_thresholds(dets, thr)
    assert kept == [dets[0], dets[1], dets[3], dets[4]]  # nan drops class 2; -1/missing keep
    assert apply_thresholds(dets, thr, default=0.4) == [dets[0], dets[1], dets[4]]
    p = save_thresholds(thr, tmp_path / "thr.json")
    doc = json.loads(p.read_text())
    assert doc["thresholds"]["2"] is None
    back = load_thresholds(p)
    assert back[1] == 0.3 and math.isnan(back[2]) and back[3] == -1
    assert apply_thresholds(dets, p) == kept
    with pytest.raises(ValueError, match="index 0"):
        apply_thresholds([{"score": 1.0}], thr)
    with pytest.raises(TypeError):
        apply_thresholds(dets, 0.5)


def test_save_thresholds_from_result_has_names(refcases, tmp_path):
    gt, dt = load_case(refcases, "bbox_tiny")
    res = evaluate(gt, dt)
    doc = json.loads(save_thresholds(res, tmp_path / "t.json").read_text())
    assert doc["thresholds"]["1"] == 0.3 and doc["thresholds"]["5"] == -1
    assert set(doc["names"]) == {str(c) for c in res.params["cat_ids"]}


def to_batches(gt, dt, n_batches=3, give_ids=True):
    by_img_gt = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        by_img_gt[a["image_id"]].append(a)
    by_img_dt = {im["id"]: [] for im in gt["images"]}
    for d in dt:
        by_img_dt[d["image_id"]].append(d)
    ids = [im["id"] for im in gt["images"]]
    batches = []
    for chunk in np.array_split(np.array(ids), n_batches):
        preds, targets = [], []
        for i in chunk.tolist():
            ds, gs = by_img_dt[i], by_img_gt[i]
            xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
            preds.append({
                "boxes": torch.tensor([xyxy(d["bbox"]) for d in ds], dtype=torch.float64).reshape(-1, 4),
                "scores": torch.tensor([d["score"] for d in ds], dtype=torch.float64),
                "labels": torch.tensor([d["category_id"] for d in ds], dtype=torch.int64),
            })  # fmt: skip
            t = {
                "boxes": torch.tensor([xyxy(g["bbox"]) for g in gs], dtype=torch.float64).reshape(-1, 4),
                "labels": torch.tensor([g["category_id"] for g in gs], dtype=torch.int64),
                "iscrowd": torch.tensor([g.get("iscrowd", 0) for g in gs]),
                "area": torch.tensor([g["area"] for g in gs], dtype=torch.float64),
            }  # fmt: skip
            if give_ids:
                t["image_id"] = torch.tensor(i)
            targets.append(t)
        batches.append((preds, targets))
    return batches


def test_streaming_metric_equals_evaluate_on_refcase(refcases):
    gt, dt = load_case(refcases, "bbox_small")
    ref = evaluate(gt, dt)
    m = LRPMetric()
    for preds, targets in to_batches(gt, dt):
        m.update(preds, targets)
    res = m.compute()
    for key, val in ref.stats.items():
        assert res.stats[key] == pytest.approx(val, rel=1e-9, abs=1e-12), key
    np.testing.assert_allclose(res.olrp, ref.olrp, rtol=1e-9)
    m.reset()
    assert m.to_coco()[0]["images"] == []


def test_streaming_generates_ids_in_update_order_and_validates():
    m = LRPMetric()
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    for _ in range(2):
        m.update([{"boxes": box, "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}],
                 [{"boxes": box, "labels": torch.tensor([0])}])  # fmt: skip
    gt, res = m.to_coco()
    assert [im["id"] for im in gt["images"]] == [0, 1]
    assert m.compute().stats["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="scores"):
        m.update(
            [{"boxes": box, "labels": torch.tensor([0])}],
            [{"boxes": box, "labels": torch.tensor([0])}],
        )
    with pytest.raises(ValueError, match="shape"):
        m.update([{"boxes": torch.ones(2, 3), "scores": torch.ones(2), "labels": torch.ones(2)}],
                 [{"boxes": box, "labels": torch.tensor([0])}])  # fmt: skip
    with pytest.raises(ValueError, match="iou_type"):
        LRPMetric("segm")


def test_streaming_gathers_under_torch_distributed(refcases, tmp_path):
    """With a (single-process, gloo) process group the state goes through all_gather_object."""
    import torch.distributed as dist

    gt, dt = load_case(refcases, "bbox_tiny")
    ref = evaluate(gt, dt)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        assert dist.is_initialized()
        m = LRPMetric()
        for preds, targets in to_batches(gt, dt, n_batches=2):
            m.update(preds, targets)
        res = m.compute()
    finally:
        dist.destroy_process_group()
    for key, val in ref.stats.items():
        assert res.stats[key] == pytest.approx(val, rel=1e-9, abs=1e-12), key
