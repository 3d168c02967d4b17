"""Speed of the Bounding Box Generator against a straightforward loop of Algorithm 1.

Baseline: ``lrpbook.boxgen.generate_boxes_loop`` (one box at a time in pure Python, the same
rectangles and exact IoU tests), measured in the same run. Everything runs on one CPU thread
(``torch.set_num_threads(1)``). Three figures (issue 14 targets in brackets):

1. 1,000 reference boxes x 100 boxes in one ``generate_boxes_batched`` call  [>= 2M boxes/s];
2. one reference box x 10,000 boxes with ``generate_boxes``                    [>= 1M boxes/s];
3. one reference box, n = 1, 10, 100 boxes per call                          [< 200 us/call];

then the rejection statistics of the two corner steps (acceptance rates, and how often a step had
to restart its box: the only departure from exact uniform sampling) over many boxes.

    MPLBACKEND=Agg python benchmarks/boxgen_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from lrpbook import boxgen


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _reference_boxes(num: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g, dtype=torch.float64) * 600
    wh = 4 + torch.rand(num, 2, generator=g, dtype=torch.float64) * 300
    return torch.cat([xy, xy + wh], 1)


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    reps = 3 if args.quick else 7
    g = torch.Generator().manual_seed(0)
    gts = _reference_boxes(1000)
    boxgen.generate_boxes_batched(gts[:2], 0.5, 3, g)  # compile / load the kernels
    boxgen.generate_boxes(gts[0], 0.5, 3, g)
    results = {}
    print(f"one thread; median of {reps}; {_load()}")

    # 1. 1,000 GTs x 100 boxes in one call
    t_fast = _median_time(lambda: boxgen.generate_boxes_batched(gts, 0.5, 100, g), reps)
    n_loop_gt = 10 if args.quick else 50
    t_loop = _median_time(
        lambda: [boxgen.generate_boxes_loop(b, 0.5, 100, seed=i) for i, b in
                 enumerate(gts[:n_loop_gt].tolist())],
        reps,
    )
    fast, loop = 100_000 / t_fast, n_loop_gt * 100 / t_loop
    results["batched_boxes_per_s"] = fast
    print(f"1. 1,000 GTs x 100 boxes, one call: {fast:,.0f} boxes/s "
          f"(loop {loop:,.0f} boxes/s, {fast / loop:.0f}x)   target >= 2,000,000")

    # 2. one GT x 10,000
    gt = torch.tensor([10.0, 10.0, 50.0, 30.0], dtype=torch.float64)
    t_fast = _median_time(lambda: boxgen.generate_boxes(gt, 0.5, 10_000, g), reps)
    n_loop = 2_000 if args.quick else 10_000
    t_loop = _median_time(lambda: boxgen.generate_boxes_loop(gt.tolist(), 0.5, n_loop), reps)
    fast, loop = 10_000 / t_fast, n_loop / t_loop
    results["single_boxes_per_s"] = fast
    print(f"2. 1 GT x 10,000 boxes:            {fast:,.0f} boxes/s "
          f"(loop {loop:,.0f} boxes/s, {fast / loop:.0f}x)   target >= 1,000,000")

    # 3. per-call overhead, one GT, small n
    calls = 300 if args.quick else 3000
    for n in (1, 10, 100):
        t_fast = _median_time(
            lambda n=n: [boxgen.generate_boxes(gt, 0.5, n, g) for _ in range(calls)], reps
        ) / calls
        t_loop = _median_time(
            lambda n=n: [boxgen.generate_boxes_loop(gt.tolist(), 0.5, n) for _ in range(calls)],
            reps,
        ) / calls
        results[f"us_per_call_n{n}"] = t_fast * 1e6
        print(f"3. 1 GT, n = {n:>3} per call:        {t_fast * 1e6:8.1f} us/call "
              f"(loop {t_loop * 1e6:8.1f} us/call, {t_loop / t_fast:.1f}x)   target < 200 us")

    # rejection statistics: acceptance of each step and restarts (departures from exactness)
    n_stat = 200_000 if args.quick else 5_000_000
    print(f"rejection statistics over {n_stat:,} boxes per threshold (reference box {gt.tolist()}):")
    total_restarts = 0
    for t in (0.3, 0.5, 0.7, 0.9, 0.99):
        st = np.zeros(4, dtype=np.int64)
        boxgen._sample(
            gt.numpy()[None], np.array([t]), np.array([np.inf]), np.array([n_stat]),
            np.array([[-np.inf, -np.inf, np.inf, np.inf]]), False, g, stats=st,
        )
        total_restarts += int(st[2])
        print(f"   T = {t:<4}  top-left acceptance {n_stat / st[0]:.3f}, "
              f"bottom-right acceptance {n_stat / st[1]:.3f}, restarts {st[2]}")
    results["restarts"] = total_restarts
    print(f"done; {_load()}")
    return results


if __name__ == "__main__":
    main()
