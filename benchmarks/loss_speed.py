"""Forward + backward time and peak memory of the ranking-based losses.

Baselines in the same run: the loop implementations of the thesis algorithms
(``lrpbook.losses.reference``, O(P·N) like the official code) and torchvision's ``sigmoid_focal_loss`` on the
same logits. Sizes: 1e5, 1e6, 1e7 logits x P in {100, 1000, 3000} (``--quick``: 1e5 and 1e6 only).

    MPLBACKEND=Agg python benchmarks/loss_speed.py [--quick] [--device cuda] [--loop-max 1e6]

The loop baseline is measured up to ``--loop-max`` logits; above that its time is extrapolated linearly
in N from the largest measured size (the loop is O(P·N)) and marked with '~'.

Peak memory is the extra memory one forward + backward needs: on CUDA ``torch.cuda.max_memory_allocated``
above the level before the call; on CPU the peak resident set size (``/proc/self/statm``, sampled every
0.2 ms by a thread, in a separate untimed call) above the level before the call. During that call glibc's
mmap threshold is lowered to 64 KiB (``mallopt``) so that every tensor is mapped freshly and returned on
free, after ``malloc_trim(0)`` (otherwise memory kept from earlier calls hides the peak); allocations that live less than
~0.2 ms may still be missed, so small sizes under-report.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import threading
import time

import torch
from torchvision.ops import sigmoid_focal_loss

from lrpbook.losses import alrp_loss, ap_loss, rank_sort_loss
from lrpbook.losses.reference import alrp_loss_loop, ap_loss_loop, rank_sort_loss_loop


def make_inputs(n: int, p: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, generator=g) * 1.5 - 4.5  # detector-like negatives
    t = torch.zeros(n)
    idx = torch.randperm(n, generator=g)[:p]
    s[idx] = torch.randn(p, generator=g) * 1.6 - 1.2
    t[idx] = torch.rand(p, generator=g) * 0.9 + 0.1
    return s.to(device), t.to(device)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_mib(fn, device) -> float:
    """Extra memory (MiB) of one call of ``fn`` at its peak (see the module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    libc = _libc()
    libc.malloc_trim(0)  # give back free heap pages, so that re-using them shows in the RSS
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 16)  # fresh mappings for every tensor, unmapped on free
    base, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.0002)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest dynamic threshold
    return max(0, max(peak[0], rss()) - base) / 2**20


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


class _NoLibc:
    """Stand-in where glibc is missing: the measurement is then less reliable."""

    def mallopt(self, *args) -> int:
        return 0

    def malloc_trim(self, *args) -> int:
        return 0


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both must exist)
        return libc
    except (OSError, AttributeError):
        return _NoLibc()


def timed(fn, device, repeats):
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loop-max", type=float, default=1e6)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("Skipped: CUDA unavailable")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(1e5), int(1e6)] if args.quick else [int(1e5), int(1e6), int(1e7)]
    ps = [100, 1000] if args.quick else [100, 1000, 3000]
    print(
        f"device {args.device}, {torch.get_num_threads()} threads; times are medians, forward+backward"
    )
    print(
        f"{'loss':>5} {'N':>9} {'P':>5} {'loop s':>10} {'focal s':>9} {'lrpbook s':>10} "
        f"{'vs loop':>9} {'vs focal':>9} {'MiB loop':>9} {'MiB focal':>9} {'MiB ours':>9}"
    )
    loop_cache: dict = {}
    for n in sizes:
        for p in ps:
            bench_case(n, p, args, loop_cache)


def bench_case(n: int, p: int, args, loop_cache: dict) -> None:
    """Time one (N, P) size for every loss and print its rows."""
    s, t = make_inputs(n, p, args.device)
    binary = (t > 0).to(s.dtype)
    e = torch.rand(p, device=args.device)

    def focal():
        x = s.clone().requires_grad_(True)
        sigmoid_focal_loss(x, binary, reduction="sum").div(p).backward()

    runs = {
        "rs": (
            lambda: sum(rank_sort_loss(s.clone().requires_grad_(True), t)).backward(),
            lambda: rank_sort_loss_loop(s, t),
        ),
        "ap": (
            lambda: ap_loss(s.clone().requires_grad_(True), binary).backward(),
            lambda: ap_loss_loop(s, binary),
        ),
        "alrp": (
            lambda: sum(
                alrp_loss(s.clone().requires_grad_(True), binary, e.clone().requires_grad_(True))
            ).backward(),
            lambda: alrp_loss_loop(s, binary, e),
        ),
    }
    reps = 3 if n <= 1e6 else 1
    t_focal = timed(focal, args.device, reps)
    m_focal = peak_memory_mib(focal, args.device)
    for name, (fast, loop) in runs.items():
        t_fast = timed(fast, args.device, reps)
        m_fast = peak_memory_mib(fast, args.device)
        if n <= args.loop_max:
            t_loop = timed(loop, args.device, 1)
            m_loop = f"{peak_memory_mib(loop, args.device):9.1f}"
            loop_cache[(name, p)] = (n, t_loop)
            mark = " "
        else:
            n0, t0 = loop_cache[(name, p)]
            t_loop = t0 * n / n0
            m_loop, mark = f"{'-':>9}", "~"
        print(
            f"{name:>5} {n:>9.0e} {p:>5} {mark}{t_loop:>9.3f} {t_focal:>9.4f} {t_fast:>10.4f} "
            f"{t_loop / t_fast:>8.1f}x {t_fast / t_focal:>8.2f}x {m_loop} {m_focal:9.1f} {m_fast:9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
