"""Tests of lrpbook.train: config round trip, a synthetic run, exact resume, NaN stop, CLI."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from lrpbook.train import (
    PRESET_SOURCES,
    PRESETS,
    NonFiniteLossError,
    TrainConfig,
    engine,
    load_config,
    preset,
    preset_value,
    save_config,
    scaled,
    train,
)
from lrpbook.train.cli import main


def _cfg(model="rs_atss", **kw):
    base = dict(synthetic_images=8, max_iters=6, ckpt_every=3, eval_at_end=False)
    base.update(kw)
    return preset(f"{model}_cpu", **base)


def test_config_yaml_round_trip(tmp_path):
    cfg = preset("rs_atss_r50_1x", max_iters=7, lr_steps=(3, 5))
    path = save_config(cfg, tmp_path / "c.yaml")
    assert load_config(path) == cfg
    (tmp_path / "p.yaml").write_text("preset: rs_faster_rcnn_r50_1x\nbatch_size: 8\n")
    loaded = load_config(tmp_path / "p.yaml")
    assert loaded.model == "rs_faster_rcnn" and loaded.lr == 0.012 and loaded.batch_size == 8
    assert loaded.epochs == 12 and loaded.lr_steps == (8, 11)
    with pytest.raises(ValueError, match="unknown configuration keys"):
        TrainConfig.from_dict({"modle": "rs_atss"})


def test_presets_hold_to_the_table_of_thesis_values():
    """Every value of chapter 08's preset table is the value the preset trains with."""
    full = [n for n in PRESETS if not n.endswith("_cpu")]
    assert {n for n, _ in PRESET_SOURCES} == set(full)
    for (name, key), (expected, source) in PRESET_SOURCES.items():
        assert source, (name, key)
        assert preset_value(name, key) == expected, (name, key)
    # facts of the thesis checked independently of the table
    assert (
        preset_value("rs_atss_r50_1x", "MODELS.scales_per_octave")
        * len(preset_value("rs_atss_r50_1x", "MODELS.aspect_ratios"))
        == 3
    )  # App L.2, line 4003: 3 anchors per location
    assert preset("rs_faster_rcnn_r50_1x").lr == 0.012  # line 2956
    assert preset_value("rs_faster_rcnn_r50_1x", "MODELS.rpn_weight") == 0.20  # line 2944
    assert preset_value("rs_mask_rcnn_r50_1x", "model_options.score_thresh") == 0.40
    assert all(preset(n).grad_clip is None for n in full)  # no clipping in any configuration
    a500 = preset("alrp_retinanet_r50_100e_512")
    assert (a500.batch_size, a500.lr, a500.epochs, a500.ssd_crop) == (32, 0.008, 100, 512)
    assert preset("alrp_atss_r50_1x").lr == 0.005  # line 3000


def test_cpu_presets_keep_the_thesis_detector_and_change_only_sizes():
    for name in PRESETS:
        if not name.endswith("_cpu"):
            continue
        cpu = preset(name)
        assert cpu.grad_clip is None and cpu.backbone == "resnet18" and cpu.synthetic
        assert cpu.model_options["min_size"] == cpu.image_size
        full = [n for n in PRESETS if n.startswith(cpu.model) and not n.endswith("_cpu")][0]
        for key in ("aspect_ratios", "scales_per_octave", "anchor_scale", "nms_thresh"):
            if key in PRESETS[full]["model_options"]:
                assert cpu.model_options[key] == PRESETS[full]["model_options"][key]


def test_linear_scaling_rule():
    cfg = scaled("rs_atss_r50_1x", 4)
    assert cfg.batch_size == 4 and cfg.lr == pytest.approx(0.008 * 4 / 16)
    assert scaled("alrp_retinanet_r50_100e_512", 8).lr == pytest.approx(0.002)


def test_ssd_crops_keep_boxes_inside_and_are_reproducible():
    g = torch.Generator()
    img = torch.rand(3, 60, 90)
    tgt = {
        "boxes": torch.tensor([[10.0, 5, 40, 50], [50, 20, 85, 55]]),
        "labels": torch.tensor([1, 2]),
    }
    for seed in range(20):
        out, t = engine._ssd_augment(img, tgt, 32, g.manual_seed(seed))
        out2, t2 = engine._ssd_augment(img, tgt, 32, g.manual_seed(seed))
        assert out.shape == (3, 32, 32) and torch.equal(out, out2)
        assert torch.equal(t["boxes"], t2["boxes"]) and len(t["boxes"]) == len(t["labels"])
        b = t["boxes"]
        assert ((b >= 0) & (b <= 32)).all() and (b[:, 2:] > b[:, :2]).all()
    assert torch.equal(tgt["boxes"][0], torch.tensor([10.0, 5, 40, 50]))  # input untouched


def test_lr_schedule_warmup_and_steps():
    cfg = TrainConfig(warmup_iters=10, warmup_ratio=0.1, lr_steps=(2, 3), gamma=0.1)
    f = engine._lr_factor(cfg, iters_per_epoch=100)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(150) == 1.0 and f(200) == pytest.approx(0.1) and f(300) == pytest.approx(0.01)


def test_synthetic_run_writes_outputs_and_evaluates(tmp_path):
    res = train(_cfg(eval_at_end=True, max_iters=8), tmp_path, progress=False)
    assert res.iterations == 8
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 8 and "loss" in rows[0] and {"ranking", "sorting", "box"} <= set(rows[0])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "AP" in metrics and "oLRP" in metrics and 0 <= metrics["oLRP"] <= 1
    assert (tmp_path / "thresholds.json").is_file() and (tmp_path / "last.pt").is_file()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 8


@pytest.mark.parametrize("model", ["rs_atss", "alrp_retinanet"])
def test_resume_reproduces_uninterrupted_run(tmp_path, model):
    full = train(_cfg(model, max_iters=6), tmp_path / "a", progress=False)
    train(_cfg(model, max_iters=3), tmp_path / "b", progress=False)
    resumed = train(_cfg(model, max_iters=6), tmp_path / "b", resume=True, progress=False)
    assert resumed.iterations == 6
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    if model == "alrp_retinanet":  # the self-balance weight was updated at the epoch ends
        assert float(sb["alrp_loss.sb_weight"]) != 50.0
    la = [r["loss"] for r in csv.DictReader(open(tmp_path / "a" / "log.csv"))]
    lb = [r["loss"] for r in csv.DictReader(open(tmp_path / "b" / "log.csv"))]
    assert la == lb


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = engine.build_model
    calls = {"n": 0}

    def poisoned(cfg, num_classes):
        model = real(cfg, num_classes)
        forward = model.forward

        def fwd(images, targets=None):
            out = forward(images, targets)
            if model.training:
                calls["n"] += 1
                if calls["n"] == 5:
                    out["ranking"] = out["ranking"] * float("nan")
            return out

        model.forward = fwd
        return model

    monkeypatch.setattr(engine, "build_model", poisoned)
    with pytest.raises(NonFiniteLossError, match="iteration 5"):
        train(_cfg(max_iters=8, ckpt_every=2), tmp_path, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_cli_synthetic_run(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "--model",
            "rs_atss",
            "--synthetic",
            "--max-iters",
            "4",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    for name in ("log.csv", "last.pt", "metrics.json", "loss.png", "config.yaml"):
        assert (out / name).is_file(), name
    assert "oLRP" in capsys.readouterr().out
    assert main(["--model", "rs_atss", "--out", str(tmp_path / "x")]) == 2  # no data given


def test_ddp_two_cpu_processes_with_torchrun(tmp_path):
    """``torchrun --nproc_per_node=2 -m lrpbook.train`` on CPU (gloo): one log, gathered evaluation."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "lrpbook.train",
           "--model", "rs_atss", "--synthetic", "--max-iters", "3", "--device", "cpu", "--out", str(out),
           "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    dets = json.loads((out / "detections.json").read_text())
    gt_ids = {
        im["id"]
        for im in json.loads((out / "data/val/annotations/instances_val.json").read_text())[
            "images"
        ]
    }
    assert {d["image_id"] for d in dets} <= gt_ids
    assert "oLRP" in json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize(
    "model",
    ["rs_atss", "focal_atss", "alrp_atss", "alrp_retinanet", "rs_faster_rcnn", "rs_mask_rcnn"],
)
def test_every_model_trains_and_evaluates(tmp_path, model):
    res = train(
        _cfg(model, max_iters=2, synthetic_images=6, eval_at_end=True), tmp_path, progress=False
    )
    assert {"AP", "AP50", "oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN"} <= set(res.metrics)
    assert -1 <= res.metrics["AP"] <= 1 and 0 <= res.metrics["oLRP"] <= 1
    if model == "rs_mask_rcnn":  # masks are encoded as RLE and evaluated too
        segm = json.loads((tmp_path / "metrics_segm.json").read_text())
        assert "oLRP" in segm and (tmp_path / "thresholds_segm.json").is_file()


# ------------------------------------------------------------------ benchmark scripts
def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spearman_and_true_positive_pairs_by_hand():
    exp = _script("ranking_experiment")
    assert exp.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert exp.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)  # ties averaged
    gt = {
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10]},
        ]
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 8], "score": 0.8},  # duplicate
        {"image_id": 1, "category_id": 1, "bbox": [21, 20, 10, 10], "score": 0.5},
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.7},  # wrong class
    ]
    scores, ious = exp.true_positive_pairs(gt, dets)
    assert scores == [0.9, 0.5] and ious == pytest.approx([1.0, 90 / 110])


def test_ranking_experiment_script_runs_at_a_tiny_size(tmp_path):
    exp = _script("ranking_experiment")
    out = exp.main(["--tiny", "--seeds", "0", "--out", str(tmp_path / "r.csv")])
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# ") and "UTC" in lines[0]
    rows = list(csv.DictReader(lines[1:]))
    assert [r["method"] for r in rows] == list(exp.METHODS)
    for r in rows:
        assert 0 <= float(r["oLRP"]) <= 1 and float(r["AP"]) <= 1


def test_gpu_suite_runs_on_cpu_at_a_tiny_size(tmp_path):
    suite = _script("gpu_suite")
    rep = suite.main(["--tiny", "--repeats", "1", "--iters", "3", "--out", str(tmp_path / "g")])
    assert rep["device"] == "cpu" and json.loads((tmp_path / "g").read_text()) == rep
    for row in rep["a_loss_speed"]:
        assert row["rs_s"] > 0 and row["rs_vs_focal"] == pytest.approx(row["rs_s"] / row["focal_s"])
    assert rep["b_train_iteration"]["rs_atss_s"] > 0
    assert rep["c_short_training"]["iterations"] == 3
    assert suite.detector_logits() == 4 * 3 * 80 * sum(
        -(-800 // s) * -(-1333 // s) for s in (8, 16, 32, 64, 128)
    )


def test_cli_scales_the_learning_rate_with_the_batch(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", "rs_atss", "--synthetic", "--batch-size", "2", "--max-iters", "0"]
    rc = main([*args, "--no-eval", "--device", "cpu", "--out", str(out), "--no-progress"])
    assert rc == 0
    base = preset("rs_atss_cpu")
    want = base.lr * 2 / base.batch_size
    assert f"lr scaled linearly to {want:g}" in capsys.readouterr().err
    assert load_config(out / "config.yaml").lr == pytest.approx(want)
