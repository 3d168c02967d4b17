"""Speed and memory of ``lrpbook-eval`` against pycocotools and faster-coco-eval.

Run from the repository root::

    .venv/bin/python benchmarks/eval_speed.py            # COCO scale: 5,000 images, 80 classes,
                                                         # ~36k GT boxes, 500k detections
    .venv/bin/python benchmarks/eval_speed.py --quick    # 500 images, 50k detections (CI size)

The synthetic case is generated with a seeded numpy generator and written to a temporary folder.
Two measurements per tool:

* **whole process** (what a user waits for at the shell): a fresh Python process that imports
  the tool, reads the two JSON files and prints the summary -- ``python -m lrpbook.metrics coco
  GT DT`` (the ``lrpbook-eval`` command) for lrpbook; ``COCO(gt)``, ``loadRes(dt)``,
  ``evaluate``, ``accumulate``, ``summarize`` for pycocotools and faster-coco-eval. Wall time,
  and peak memory as the child's maximum resident set size (``getrusage(RUSAGE_CHILDREN)`` in a
  small wrapper process per run). Each tool runs once before the timed runs (numba's on-disk
  cache, the OS file cache);
* **in process**: each tool in its own subprocess loads the JSON once, evaluates a small slice
  to warm up, then times ``--repeats`` evaluations from in-memory Python objects (``loadRes`` +
  ``evaluate`` + ``accumulate`` + ``summarize`` for the baselines;
  :func:`lrpbook.metrics.evaluate`, which computes oLRP and its components as well).

The ratios against pycocotools and faster-coco-eval are printed for wall time and for CPU time
(user + system of the child: on a shared, loaded machine the wall time of a short process is
mostly waiting for a core, so the CPU-time ratio is the steadier one), with the load average
(the figures only compare within one run). The AP/AR numbers of all three tools are compared and
must agree to 1e-12.
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


_WHOLE = {
    "lrpbook": "import sys; from lrpbook.metrics.cli import console_main; "
    "sys.argv = ['lrpbook-eval', 'coco', sys.argv[1], sys.argv[2], '--iou-type', 'bbox']; "
    "raise SystemExit(console_main())",
    "pycocotools": "import sys\nfrom pycocotools.coco import COCO\n"
    "from pycocotools.cocoeval import COCOeval\nc = COCO(sys.argv[1])\n"
    "e = COCOeval(c, c.loadRes(sys.argv[2]), 'bbox')\ne.evaluate(); e.accumulate(); e.summarize()",
    "faster-coco-eval": "import sys\nfrom faster_coco_eval import COCO, COCOeval_faster\n"
    "c = COCO(sys.argv[1])\ne = COCOeval_faster(c, c.loadRes(sys.argv[2]), 'bbox')\n"
    "e.evaluate(); e.accumulate(); e.summarize()",
}

# a wrapper process per run, so that RUSAGE_CHILDREN's high-water mark is this run's alone
_WRAP = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "dt = time.perf_counter() - t\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'rc': p.returncode, 'wall_s': dt, 'maxrss_mib': ru.ru_maxrss / 1024,"
    " 'cpu_s': ru.ru_utime + ru.ru_stime, 'err': p.stderr.decode()[-1500:]}))"
)


def whole_process(tool: str, gt_path: Path, dt_path: Path, repeats: int) -> dict:
    """Wall time and peak RSS of a fresh process running ``tool`` end to end (median of runs)."""
    cmd = [sys.executable, "-c", _WHOLE[tool], str(gt_path), str(dt_path)]
    runs = []
    for r in range(repeats + 1):  # the first run warms the caches and is not counted
        out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True,
                             check=False)  # fmt: skip
        res = json.loads(out.stdout.strip().splitlines()[-1])
        if res["rc"] != 0:
            raise RuntimeError(f"{tool} whole-process run failed:\n{res['err']}")
        if r > 0:
            runs.append(res)
    return {
        "wall_s": statistics.median(x["wall_s"] for x in runs),
        "cpu_s": statistics.median(x["cpu_s"] for x in runs),
        "maxrss_mib": max(x["maxrss_mib"] for x in runs),
    }


def _spawn(tool: str, gt_path: Path, dt_path: Path, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, str(gt_path), str(dt_path), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 images, 50k detections")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per tool (median)")
    ap.add_argument("--skip-in-process", action="store_true",
                    help="only the whole-process measurement")  # fmt: skip
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
    load0 = os.getloadavg()
    tools = args.tools.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dt))
        del gt, dt
        whole = {t: whole_process(t, gt_path, dt_path, args.repeats) for t in tools}
        results = {}
        if not args.skip_in_process:
            results = {t: _spawn(t, gt_path, dt_path, args.repeats) for t in tools}
    load1 = os.getloadavg()
    print(f"\nload average (1, 5, 15 min): before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; cores: {os.cpu_count()}")  # fmt: skip
    print(f"\nwhole process{'':<5}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}")
    for tool, w in whole.items():
        print(f"{tool:<18}{w['wall_s']:>9.2f}{w['cpu_s']:>9.2f}{w['maxrss_mib']:>10.0f}")
    if "lrpbook" in whole:
        me = whole["lrpbook"]
        for base, target in (("pycocotools", 20.0), ("faster-coco-eval", 3.0)):
            if base in whole:
                for what in ("wall_s", "cpu_s"):
                    ratio = whole[base][what] / me[what]
                    kind = "wall time" if what == "wall_s" else "CPU time"
                    print(f"lrpbook-eval is {ratio:.1f}x faster than {base} (whole process, "
                          f"{kind}; target >= {target:g}x)"
                          + ("" if ratio >= target else "   <-- BELOW TARGET"))  # fmt: skip
        if "pycocotools" in whole:
            mem = me["maxrss_mib"] / whole["pycocotools"]["maxrss_mib"]
            print(f"lrpbook-eval peak memory = {mem:.2f}x pycocotools' (target <= 0.6)"
                  + ("" if mem <= 0.6 else "   <-- ABOVE TARGET"))
    if not results:
        return
    ref = results.get("pycocotools", next(iter(results.values())))
    print(
        f"\nin process{'':<9}{'median s':>9}{'min s':>9}{'peak MiB':>10}{'x faster than pycocotools':>28}"
    )
    base_t = (
        statistics.median(results["pycocotools"]["times"]) if "pycocotools" in results else None
    )
    for tool, r in results.items():
        med = statistics.median(r["times"])
        ratio = f"{base_t / med:.1f}x" if base_t else "-"
        print(
            f"{tool:<18}{med:>9.2f}{min(r['times']):>9.2f}{r['peak_growth_mib']:>10.0f}{ratio:>28}"
        )
    for tool, r in results.items():
        diff = np.max(np.abs(np.array(r["stats"][:12]) - np.array(ref["stats"][:12])))
        print(f"AP/AR max |diff| {tool} vs {ref['tool']}: {diff:.2e}"
              + ("" if diff <= 1e-12 else "   <-- MISMATCH"))  # fmt: skip
    if "lrpbook" in results:
        s = results["lrpbook"]["stats"]
        print(f"lrpbook AP = {s[0]:.6f}, oLRP = {s[12]:.6f}")


if __name__ == "__main__":
    main()
