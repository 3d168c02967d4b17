"""Boxes per second of the Bounding Box Generator against a straightforward loop of Algorithm 1.

Baseline: ``lrpbook.boxgen.generate_boxes_loop`` (one box at a time, the same exact rejection tests).
Both run on one CPU thread (``torch.set_num_threads(1)``).

    MPLBACKEND=Agg python benchmarks/boxgen_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lrpbook.boxgen import generate_boxes, generate_boxes_loop


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    n_fast = 100_000 if args.quick else 1_000_000
    n_loop = 2_000 if args.quick else 20_000
    gt = torch.tensor([10.0, 10.0, 50.0, 30.0], dtype=torch.float64)
    print(f"one thread; {n_fast} boxes (lrpbook) and {n_loop} boxes (loop) per run, median of 3")
    print(f"{'iou_min':>7} {'loop boxes/s':>14} {'lrpbook boxes/s':>16} {'ratio':>8}")
    for t in (0.5, 0.7, 0.9):
        g = torch.Generator().manual_seed(0)
        generate_boxes(gt, t, 1000, g)  # warm-up
        fast, loop = [], []
        for rep in range(3):
            start = time.perf_counter()
            generate_boxes(gt, t, n_fast, g)
            fast.append(n_fast / (time.perf_counter() - start))
            start = time.perf_counter()
            generate_boxes_loop(gt.tolist(), t, n_loop, seed=rep)
            loop.append(n_loop / (time.perf_counter() - start))
        f, lp = statistics.median(fast), statistics.median(loop)
        print(f"{t:>7} {lp:>14,.0f} {f:>16,.0f} {f / lp:>7.0f}x", flush=True)


if __name__ == "__main__":
    main()
