"""Speed and memory of ``lrpbook.metrics.evaluate`` against pycocotools and faster-coco-eval.

Run from the repository root::

    .venv/bin/python benchmarks/eval_speed.py            # COCO scale: 5,000 images, 80 classes,
                                                         # ~36k GT boxes, 500k detections
    .venv/bin/python benchmarks/eval_speed.py --quick    # 500 images, 50k detections (CI size)

The synthetic case is generated with a seeded numpy generator and written to a temporary folder.
Each tool then runs in its own subprocess (so that peak memory is its own): it loads the two
JSON files, evaluates once to warm up (numba compilation, caches), then ``--repeats`` times on a
fresh copy of the inputs (pycocotools mutates its inputs). The time covers the evaluation from
in-memory Python objects to the summary numbers (``loadRes`` + ``evaluate`` + ``accumulate`` +
``summarize`` for the baselines; :func:`lrpbook.metrics.evaluate` for lrpbook, which computes
oLRP and its components as well). Peak memory is the growth of the process' maximum resident set
size during the timed runs (``ru_maxrss`` after minus before). The AP/AR numbers of all three
tools are compared and must agree to 1e-12.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_case(num_images: int, num_classes: int, gt_per_image: float, dets_per_image: int,
              seed: int = 0) -> tuple[dict, list]:  # fmt: skip
    """A COCO-format ground truth and a result list from a seeded fake detector.

    Every image gets Poisson(``gt_per_image``) boxes of random classes (1 % crowd). The detector
    returns, per GT, 1-3 noisy copies (the first one close to the GT, the others looser), then
    random boxes until the image has ``dets_per_image`` detections; like a real detector, those
    concentrate on the classes present in the image plus two confusable classes. Scores of the
    close copies are higher on average, so AP and oLRP are far from their extremes.
    """
    rng = np.random.default_rng(seed)
    size = 640.0
    images = [{"id": int(i + 1), "height": 480, "width": 640} for i in range(num_images)]
    cats = [{"id": int(c + 1), "name": f"class{c + 1}"} for c in range(num_classes)]
    anns: list[dict] = []
    dets: list[dict] = []
    n_gt = rng.poisson(gt_per_image, num_images)
    for i in range(num_images):
        img_id = i + 1
        k = int(n_gt[i])
        wh = np.exp(rng.normal(3.8, 0.9, (k, 2))).clip(4, 400)
        xy = rng.uniform(0, 1, (k, 2)) * (size - wh)
        cls = rng.integers(1, num_classes + 1, k)
        crowd = rng.random(k) < 0.01
        img_dets = []
        for j in range(k):
            box = [float(xy[j, 0]), float(xy[j, 1]), float(wh[j, 0]), float(wh[j, 1])]
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(cls[j]),
                         "bbox": box, "area": box[2] * box[3], "iscrowd": int(crowd[j])})  # fmt: skip
            for c in range(int(rng.integers(1, 4))):
                noise = rng.normal(0, 0.05 * (1 + 2 * c), 4) * np.r_[wh[j], wh[j]]
                b = np.r_[xy[j], wh[j]] + noise
                b[2:] = np.maximum(b[2:], 1.0)
                score = float(np.clip(rng.beta(5, 2) - 0.2 * c, 0.001, 1.0))
                img_dets.append((b, int(cls[j]), score))
        n_rand = max(0, dets_per_image - len(img_dets))
        wh_r = np.exp(rng.normal(3.8, 0.9, (n_rand, 2))).clip(4, 400)
        xy_r = rng.uniform(0, 1, (n_rand, 2)) * (size - wh_r)
        active = np.unique(np.r_[cls, rng.integers(1, num_classes + 1, 2)])
        cls_r = rng.choice(active, n_rand)
        sc_r = rng.beta(1.2, 6, n_rand).clip(0.001, 1.0)
        for j in range(n_rand):
            img_dets.append((np.r_[xy_r[j], wh_r[j]], int(cls_r[j]), float(sc_r[j])))
        for b, c, s in img_dets[:dets_per_image]:
            dets.append({"image_id": img_id, "category_id": c,
                         "bbox": [round(float(v), 2) for v in b], "score": round(s, 5)})  # fmt: skip
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


# ------------------------------------------------------------------------------- workers


def _run_lrpbook(gt: dict, dt: list) -> list[float]:
    from lrpbook.metrics import evaluate

    res = evaluate(gt, dt, "bbox")
    return list(res.stats.values())[:12] + [res.stats["oLRP"]]


def _run_pycocotools(gt: dict, dt: list) -> list[float]:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = gt
        c.createIndex()
        e = COCOeval(c, c.loadRes(dt), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(v) for v in e.stats]


def _run_fce(gt: dict, dt: list) -> list[float]:
    import contextlib
    import io

    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO(gt)
        e = COCOeval_faster(c, c.loadRes(dt), "bbox", print_function=lambda *a, **k: None)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(v) for v in e.stats[:12]]


RUNNERS = {"lrpbook": _run_lrpbook, "pycocotools": _run_pycocotools, "faster-coco-eval": _run_fce}


def _worker(tool: str, gt_path: str, dt_path: str, repeats: int) -> None:
    gt = json.loads(Path(gt_path).read_text())
    dt = json.loads(Path(dt_path).read_text())
    run = RUNNERS[tool]
    # warm-up on a small slice (imports, numba's compiled kernels), so that the memory
    # measurement below sees the evaluation itself
    few = {im["id"] for im in gt["images"][:20]}
    small_gt = dict(gt, annotations=[a for a in gt["annotations"] if a["image_id"] in few])
    run(copy.deepcopy(small_gt), [copy.deepcopy(d) for d in dt if d["image_id"] in few])
    times = []
    growth = 0.0
    for r in range(repeats):
        g, d = copy.deepcopy(gt), copy.deepcopy(dt)
        gc.collect()
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        stats = run(g, d)
        times.append(time.perf_counter() - t0)
        if r == 0:  # ru_maxrss is a high-water mark: only the first run measures growth
            growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        del g, d
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tool": tool, "times": times, "stats": stats,
                      "peak_growth_mib": growth, "maxrss_mib": peak / 1024}))  # fmt: skip


def _spawn(tool: str, gt_path: Path, dt_path: Path, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, str(gt_path), str(dt_path), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 images, 50k detections")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per tool (median)")
    ap.add_argument("--tools", default="lrpbook,pycocotools,faster-coco-eval")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker[0], args.worker[1], args.worker[2], int(args.worker[3]))
        return
    n_img = 500 if args.quick else 5000
    gt, dt = make_case(n_img, 80, 7.3, 100, seed=2021)
    print(f"case: {len(gt['images'])} images, {len(gt['categories'])} classes, "
          f"{len(gt['annotations'])} GT, {len(dt)} detections")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dt))
        del gt, dt
        results = {t: _spawn(t, gt_path, dt_path, args.repeats) for t in args.tools.split(",")}
    ref = results.get("pycocotools", next(iter(results.values())))
    print(
        f"\n{'tool':<18}{'median s':>10}{'min s':>9}{'peak MiB':>10}{'x faster than pycocotools':>28}"
    )
    base_t = (
        statistics.median(results["pycocotools"]["times"]) if "pycocotools" in results else None
    )
    for tool, r in results.items():
        med = statistics.median(r["times"])
        ratio = f"{base_t / med:.1f}x" if base_t else "-"
        print(
            f"{tool:<18}{med:>10.2f}{min(r['times']):>9.2f}{r['peak_growth_mib']:>10.0f}{ratio:>28}"
        )
    for tool, r in results.items():
        diff = np.max(np.abs(np.array(r["stats"][:12]) - np.array(ref["stats"][:12])))
        print(f"AP/AR max |diff| {tool} vs {ref['tool']}: {diff:.2e}"
              + ("" if diff <= 1e-12 else "   <-- MISMATCH"))  # fmt: skip
    if "lrpbook" in results:
        s = results["lrpbook"]["stats"]
        print(f"lrpbook AP = {s[0]:.6f}, oLRP = {s[12]:.6f}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
