"""Time per training iteration: RS-ATSS vs the Focal-Loss ATSS on the same batch.

The thesis reports that RS Loss costs about 1.5x the iteration time of the Focal-Loss detector
(thesis Sec. 8.5); the target with lrpbook's vectorised loss is at most 1.1x. Two comparisons:

* ``same anchors``: both detectors with ATSS' single anchor per location (isolates the loss);
* ``thesis anchors``: RS-ATSS with its 3 anchors per location (ratio 1, 3 scales; thesis App L.2)
  vs Focal ATSS.

Each timing: warm-up, then the median of ``--repeats`` iterations (forward, backward, SGD step).

Usage::

    python benchmarks/train_step.py            # CPU, small (2 images of 128x128, ResNet-18)
    python benchmarks/train_step.py --quick    # CI-sized
    python benchmarks/train_step.py --full --device cuda   # ResNet-50, 4 images of 800x1333
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lrpbook.models import build


def _batch(n: int, h: int, w: int, classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, h, w, generator=g))
        k = 6
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = (torch.rand(k, 2, generator=g) * 0.25 + 0.05) * torch.tensor([w, h])
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1),
                "labels": torch.randint(1, classes + 1, (k,), generator=g),
            }
        )
    return images, targets


def time_step(
    name: str, images, targets, device, repeats: int, warmup: int, **opts
) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build(name, opts.pop("num_classes"), **opts).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    images = [i.to(device) for i in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - tic)
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times), mem


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--full", action="store_true", help="thesis size (ResNet-50, 800x1333, 80 classes)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    if args.full:
        n, h, w, classes = 4, 800, 1333, 80
        common = dict(backbone="resnet50", num_classes=classes, min_size=800, max_size=1333)
        repeats, warmup = args.repeats or 20, 5
    elif args.quick:
        n, h, w, classes = 2, 64, 64, 3
        common = dict(
            backbone="resnet18", num_classes=classes, fpn_channels=32, min_size=64, max_size=64
        )
        repeats, warmup = args.repeats or 3, 1
    else:
        n, h, w, classes = 2, 128, 128, 10
        common = dict(
            backbone="resnet18", num_classes=classes, fpn_channels=64, min_size=128, max_size=128
        )
        repeats, warmup = args.repeats or 9, 2
    images, targets = _batch(n, h, w, classes)
    one_anchor = dict(anchor_scale=8.0, scales_per_octave=1, aspect_ratios=(1.0,))
    rows = []
    base, base_mem = time_step("focal_atss", images, targets, device, repeats, warmup, **common)
    for label, extra in (("same anchors (1/loc)", one_anchor), ("thesis anchors (3/loc)", {})):
        t, mem = time_step("rs_atss", images, targets, device, repeats, warmup, **common, **extra)
        rows.append((label, t, mem))
    print(
        f"device={device}  batch={n}x{h}x{w}  classes={classes}  backbone={common['backbone']}  repeats={repeats}"
    )
    print(
        f"{'comparison':26s} {'focal_atss s/it':>16s} {'rs_atss s/it':>14s} {'ratio':>7s} {'peak MiB (rs)':>14s}"
    )
    for label, t, mem in rows:
        print(f"{label:26s} {base:16.4f} {t:14.4f} {t / base:7.2f} {mem:14.1f}")
    print(f"(focal_atss peak MiB {base_mem:.1f}; thesis: RS ~1.5x; target <= 1.1x)")


if __name__ == "__main__":
    main()
