"""GPU suite: the speed of the ranking-based losses and detectors, and a short AMP training run.

Three measurements, run together (``--only a b c`` selects):

a. forward + backward time of RS Loss, aLRP Loss and AP Loss against Focal Loss (torchvision's
   ``sigmoid_focal_loss``, normalised by the positives) at 1e7 logits / 1,000 positives and at a
   detector-batch size (4 images of 800 x 1333, RS-ATSS' 3 anchors per location on P3-P7,
   80 classes: 5.4e6 logits, 1,000 positives);
b. one training iteration (forward, backward, SGD step) of RS-ATSS against Focal-Loss ATSS:
   ResNet-50-FPN, 4 images of 800 x 1333, 80 classes, AMP (the thesis reports about 1.5x,
   Sec. 8.5.2.1; the goal of lrpbook's vectorised loss is at most 1.1x);
c. a few hundred iterations of RS-ATSS (the ``rs_atss_cpu`` preset's detector) on synthetic data
   with AMP; the loss must go down (mean of the last 20 iterations below the first 20).

Timings: median of ``--repeats`` after warm-up, ``torch.cuda.synchronize`` around each. The
report (stdout, and ``--out`` as JSON) names the device, the date and the load average.

Usage::

    python benchmarks/gpu_suite.py --device cuda --out gpu_suite.json   # on a GPU (~5 min)
    python benchmarks/gpu_suite.py --tiny                               # CPU smoke test (tests)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.ops import sigmoid_focal_loss

from lrpbook.losses import alrp_loss, ap_loss, rank_sort_loss
from lrpbook.models import build


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, repeats: int, warmup: int) -> float:
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        tic = time.perf_counter()
        fn()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


def detector_logits(images: int = 4, h: int = 800, w: int = 1333, anchors: int = 3) -> int:
    """Logits of a dense detector batch: images x anchors x classes(80) over P3-P7."""
    locs = sum(-(-h // s) * -(-w // s) for s in (8, 16, 32, 64, 128))
    return images * locs * anchors * 80


def loss_speed(n: int, p: int, device: torch.device, repeats: int, warmup: int) -> dict:
    """(a) forward + backward seconds of each loss on ``n`` logits with ``p`` positives."""
    g = torch.Generator(device="cpu").manual_seed(0)
    logits0 = torch.randn(n, generator=g).to(device)
    pos = torch.randperm(n, generator=g)[:p].to(device)
    iou = (torch.rand(p, generator=g) * 0.5 + 0.5).to(device)
    binary = torch.zeros(n, device=device)
    binary[pos] = 1.0
    soft = torch.zeros(n, device=device)
    soft[pos] = iou
    loc = (1 - iou) / 2

    def run(kind: str):
        logits = logits0.clone().requires_grad_(True)
        if kind == "focal":
            loss = sigmoid_focal_loss(logits, binary, reduction="sum") / p
        elif kind == "rs":
            r, s = rank_sort_loss(logits, soft)
            loss = r + s
        elif kind == "alrp":
            c, lo = alrp_loss(logits, binary, loc)
            loss = c + lo
        else:
            loss = ap_loss(logits, binary)
        loss.backward()

    out = {"logits": n, "positives": p}
    for kind in ("focal", "rs", "alrp", "ap"):
        out[f"{kind}_s"] = _median_time(lambda k=kind: run(k), device, repeats, warmup)
    for kind in ("rs", "alrp", "ap"):
        out[f"{kind}_vs_focal"] = out[f"{kind}_s"] / out["focal_s"]
    return out


def _batch(n: int, h: int, w: int, classes: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, h, w, generator=g).to(device))
        k = 7  # COCO's mean number of objects per image
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = (torch.rand(k, 2, generator=g) * 0.25 + 0.05) * torch.tensor([w, h])
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1).to(device),
                "labels": torch.randint(1, classes + 1, (k,), generator=g).to(device),
            }
        )
    return images, targets


def train_iteration(
    opts: dict, n: int, h: int, w: int, device: torch.device, amp: bool, repeats: int, warmup: int
) -> dict:
    """(b) seconds per training iteration of RS-ATSS and Focal-Loss ATSS on the same batch."""
    classes = opts.pop("num_classes")
    images, targets = _batch(n, h, w, classes, device)
    out = {"images": n, "size": [h, w], "amp": amp and device.type == "cuda"}
    for name in ("focal_atss", "rs_atss"):
        torch.manual_seed(0)
        model = build(name, classes, **opts).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        scaler = torch.amp.GradScaler(device.type, enabled=out["amp"])

        def step(model=model, opt=opt, scaler=scaler):
            with torch.autocast(device.type, enabled=out["amp"]):
                loss = sum(model(images, targets).values())
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        out[f"{name}_s"] = _median_time(step, device, repeats, warmup)
        if device.type == "cuda":
            out[f"{name}_peak_MiB"] = torch.cuda.max_memory_allocated(device) / 2**20
        del model, opt
    out["rs_vs_focal"] = out["rs_atss_s"] / out["focal_atss_s"]
    return out


def short_training(iters: int, device: torch.device, amp: bool) -> dict:
    """(c) ``iters`` iterations of RS-ATSS on synthetic data (AMP on CUDA); loss goes down?"""
    from lrpbook.train import preset, train

    with tempfile.TemporaryDirectory(prefix="lrpbook_gpu_suite_") as tmp:
        cfg = preset(
            "rs_atss_cpu",
            max_iters=iters,
            amp=amp,
            device=device.type,
            eval_at_end=False,
            ckpt_every=0,
            synthetic_images=32,
        )
        res = train(cfg, Path(tmp) / "run", progress=False)
    losses = [r["loss"] for r in res.history]
    k = max(1, min(20, len(losses) // 3))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return {
        "iterations": res.iterations,
        "amp": amp and device.type == "cuda",
        "loss_first": first,
        "loss_last": last,
        "loss_goes_down": last < first,
        "sec_per_iter": statistics.median(r["sec_per_iter"] for r in res.history),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the suite; returns (and prints) the report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="CPU-sized smoke test")
    p.add_argument("--only", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--iters", type=int, default=None, help="iterations of (c)")
    p.add_argument("--out", help="write the report as JSON")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    report: dict = {
        "date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "load_avg_1min": os.getloadavg()[0],
        "tiny": args.tiny,
    }
    if args.tiny:
        sizes = [(10_000, 10), (20_000, 20)]
        opts = dict(backbone="resnet18", num_classes=3, fpn_channels=16, min_size=64, max_size=64)
        batch, repeats, warmup, iters = (2, 64, 64), args.repeats or 2, 1, args.iters or 4
    else:
        sizes = [(10_000_000, 1000), (detector_logits(), 1000)]
        opts = dict(backbone="resnet50", num_classes=80, min_size=800, max_size=1333)
        batch, repeats, warmup, iters = (4, 800, 1333), args.repeats or 10, 3, args.iters or 300
    if "a" in args.only:
        report["a_loss_speed"] = [loss_speed(n, q, device, repeats, warmup) for n, q in sizes]
    if "b" in args.only:
        report["b_train_iteration"] = train_iteration(
            dict(opts), *batch, device, True, repeats, warmup
        )
    if "c" in args.only:
        report["c_short_training"] = short_training(iters, device, True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return report


if __name__ == "__main__":
    main()
