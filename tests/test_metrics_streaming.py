"""The streaming metric is a torchmetrics metric: dict of tensors from compute (full result
kept), forward, .to(), state_dict, repeated image ids counted once, and DDP with 2 gloo
processes giving exactly the offline numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torchmetrics import Metric

from lrpbook.metrics import EvalResult, LRPMetric, evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def close(a, b) -> bool:
    """Equal up to the rounding of the xyxy -> xywh conversion ((x + w) - x is not always w)."""
    return a == pytest.approx(b, rel=1e-12, abs=1e-12)


def case(seed: int = 0, n_img: int = 10):
    rng = np.random.default_rng(seed)
    images = [{"id": 100 + i} for i in range(n_img)]
    anns, dets = [], []
    for im in images:
        for _ in range(int(rng.integers(1, 5))):
            x, y, w, h = rng.uniform(0, 80), rng.uniform(0, 80), *rng.uniform(5, 60, 2)
            c = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
            b = np.array([x, y, w, h]) + rng.normal(0, 3, 4)
            b[2:] = np.maximum(b[2:], 1)
            dets.append({"image_id": im["id"], "category_id": c, "bbox": b.tolist(),
                         "score": float(rng.random())})  # fmt: skip
        for _ in range(int(rng.integers(0, 4))):
            dets.append({"image_id": im["id"], "category_id": int(rng.integers(1, 4)),
                         "bbox": [*rng.uniform(0, 80, 2), *rng.uniform(5, 40, 2)],
                         "score": float(rng.random() * 0.5)})  # fmt: skip
    cats = [{"id": c, "name": str(c)} for c in (1, 2, 3)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def per_image(gt, dets, with_ids=True):
    out = []
    for im in gt["images"]:
        ds = [d for d in dets if d["image_id"] == im["id"]]
        gs = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
        p = {"boxes": torch.tensor([xyxy(d["bbox"]) for d in ds], dtype=torch.float64).reshape(-1, 4),
             "scores": torch.tensor([d["score"] for d in ds], dtype=torch.float64),
             "labels": torch.tensor([d["category_id"] for d in ds])}  # fmt: skip
        t = {"boxes": torch.tensor([xyxy(a["bbox"]) for a in gs], dtype=torch.float64).reshape(-1, 4),
             "labels": torch.tensor([a["category_id"] for a in gs]),
             "area": torch.tensor([a["area"] for a in gs], dtype=torch.float64)}  # fmt: skip
        if with_ids:
            t["image_id"] = torch.tensor(im["id"])
        out.append((p, t))
    return out


def test_is_a_torchmetrics_metric_returning_a_dict_of_tensors():
    gt, dets = case(0)
    m = LRPMetric()
    assert isinstance(m, Metric)
    for p, t in per_image(gt, dets):
        m.update([p], [t])
    out = m.compute()
    ref = evaluate(gt, dets)
    assert isinstance(out, dict) and all(isinstance(v, torch.Tensor) for v in out.values())
    for k, v in ref.stats.items():
        assert close(out[k].item(), v), k
    assert out["classes"].tolist() == [1, 2, 3]
    assert isinstance(out.result, EvalResult)
    assert all(close(out.result.stats[k], v) for k, v in ref.stats.items())
    assert out.stats is out.result.stats  # the spelling of earlier versions still works


def test_forward_gives_the_batch_value_and_accumulates():
    gt, dets = case(1)
    pairs = per_image(gt, dets)
    m = LRPMetric()
    first = m(*map(list, zip(*pairs[:3])))
    sub_ids = {im["id"] for im in gt["images"][:3]}
    sub_gt = dict(gt, images=gt["images"][:3],
                  annotations=[a for a in gt["annotations"] if a["image_id"] in sub_ids])  # fmt: skip
    sub = evaluate(sub_gt, [d for d in dets if d["image_id"] in sub_ids])
    assert close(first["AP"].item(), sub.stats["AP"])
    m(*map(list, zip(*pairs[3:])))
    assert close(m.compute()["oLRP"].item(), evaluate(gt, dets).stats["oLRP"])


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric:UserWarning")
def test_state_dict_round_trip_and_to():
    gt, dets = case(2)
    m = LRPMetric().to(torch.device("cpu"))
    m.persistent(True)
    for p, t in per_image(gt, dets):
        m.update([p], [t])
    sd = m.state_dict()
    assert {"images", "dets", "gts"} <= set(sd)
    m2 = LRPMetric()
    m2.persistent(True)
    m2.load_state_dict(sd)
    assert m2.compute()["AP"].item() == m.compute()["AP"].item()
    assert close(m.compute()["AP"].item(), evaluate(gt, dets).stats["AP"])


def test_repeated_image_ids_count_once_and_missing_ids_are_unique():
    gt, dets = case(3)
    pairs = per_image(gt, dets)
    m = LRPMetric()
    for p, t in pairs + pairs[:2]:  # what DistributedSampler does to even out the ranks
        m.update([p], [t])
    assert close(m.compute()["AP"].item(), evaluate(gt, dets).stats["AP"])
    m = LRPMetric()
    for p, t in per_image(gt, dets, with_ids=False):
        m.update([p], [t])
    g, _ = m.to_coco()
    assert len({im["id"] for im in g["images"]}) == len(gt["images"])
    assert close(m.compute()["AP"].item(), evaluate(gt, dets).stats["AP"])


SCRIPT = """
import json, sys
import numpy as np
import torch
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_metrics_streaming import case, per_image
from lrpbook.metrics import LRPMetric

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
gt, dets = case(4, n_img=7)
pairs = per_image(gt, dets)
# DistributedSampler without shuffle: rank r takes indices r, r + world, ...; the list is
# padded by repeating its first samples so that every rank has the same count
n = len(pairs)
total = -(-n // world) * world
idx = (list(range(n)) + list(range(total - n)))[rank::world]
m = LRPMetric()
for i in idx:
    m.update([pairs[i][0]], [pairs[i][1]])
out = m.compute()
auto = LRPMetric()  # no image ids: fresh ids must not collide across ranks
for i in range(rank, n, world):
    p, t = pairs[i]
    t = {{k: v for k, v in t.items() if k != "image_id"}}
    auto.update([p], [t])
out2 = auto.compute()
if rank == 0:
    json.dump({{"stats": {{k: float(v) for k, v in out.items() if v.ndim == 0}},
               "auto_images": len(out2.result.params["img_ids"]),
               "auto_AP": float(out2["AP"])}}, open({out!r}, "w"))
dist.destroy_process_group()
"""


def test_ddp_two_gloo_processes_equal_the_offline_evaluator(tmp_path):
    out = tmp_path / "out.json"
    script = tmp_path / "ddp_metric.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=os.path.join(REPO, "tests"),
                                                    out=str(out))))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    gt, dets = case(4, n_img=7)
    ref = evaluate(gt, dets)
    for k, v in ref.stats.items():
        assert close(got["stats"][k], v), k
    assert got["auto_images"] == 7 and close(got["auto_AP"], ref.stats["AP"])


def test_bad_inputs_are_clear_errors():
    m = LRPMetric()
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match="same length"):
        m.update([], [{"boxes": box, "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="iou_type"):
        LRPMetric("segm")
