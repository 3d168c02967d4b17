"""Forward + backward time and peak memory of RS, aLRP and AP Loss against focal loss.

Two sizes (issue 14): 1e7 logits / 1,000 positives and 1e5 logits / 3,000 positives, on ONE CPU thread
by default. Baselines measured in the same run: torchvision's ``sigmoid_focal_loss`` on the same logits
(the ratios that count), and the loop implementations of the thesis algorithms
(``lrpbook.losses.reference``: one iteration per positive, O(P·N) like the official code; on CUDA this
is the straightforward GPU loop over positives).

    MPLBACKEND=Agg python benchmarks/loss_speed.py [--quick] [--device cuda] [--threads 1]

Times are medians over interleaved rounds (focal, RS, AP, aLRP, focal, ...), so that a change of the
machine's load hits every loss alike. On the CPU two clocks are shown: wall time and the thread's CPU
time (less sensitive to other processes on a loaded machine). The loop baseline is measured on the
first ``--loop-positives`` positives only (default: 100, or 1e8 / N where that is fewer, at least 5:
100 at 1e5 logits, 10 at 1e7; all of them with ``--full-loop``) and scaled
linearly to P (its cost is linear in P), marked ``~``.

Peak memory is the extra memory one forward + backward needs: on CUDA ``torch.cuda.max_memory_allocated``
above the level before the call; on the CPU the peak resident set size (``/proc/self/statm``, sampled
every 0.2 ms by a thread, in a separate untimed call) above the level before the call. During that call
glibc's mmap threshold is lowered to 64 KiB (``mallopt``) so that every tensor is mapped freshly and
returned on free, after ``malloc_trim(0)`` (otherwise memory kept from earlier calls hides the peak);
allocations that live less than ~0.2 ms may still be missed, so small sizes under-report (below 1e6
logits the median of 5 such calls is shown).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import threading
import time

import torch
from torchvision.ops import sigmoid_focal_loss

from lrpbook.losses import alrp_loss, ap_loss, rank_sort_loss
from lrpbook.losses.reference import alrp_loss_loop, ap_loss_loop, rank_sort_loss_loop

SIZES = [(10_000_000, 1_000), (100_000, 3_000)]
QUICK_SIZES = [(1_000_000, 1_000), (100_000, 3_000)]


def make_inputs(n: int, p: int, device: str, seed: int = 0):
    """Detector-like logits: negatives N(-4.5, 1.5), positives N(-1.2, 1.6) with IoUs in (0.1, 1]."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, generator=g) * 1.5 - 4.5
    t = torch.zeros(n)
    idx = torch.randperm(n, generator=g)[:p]
    s[idx] = torch.randn(p, generator=g) * 1.6 - 1.2
    t[idx] = torch.rand(p, generator=g) * 0.9 + 0.1
    return s.to(device), t.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


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


def peak_memory_mib(fn, device: str) -> float:
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


def interleaved(fns: dict, device: str, rounds: int) -> tuple[dict, dict]:
    """Median wall and thread-CPU seconds of each function, run in interleaved rounds."""
    for fn in fns.values():  # warm-up
        fn()
    sync(device)
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            sync(device)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.thread_time() - c0)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}


def loop_time(name: str, s, t, binary, e, p: int, keep: int, device: str) -> float:
    """Seconds of the loop version, measured with the first ``keep`` positives, scaled to ``p``."""
    pos = (t > 0).nonzero().squeeze(1)
    drop = pos[keep:]
    t2, b2 = t.clone(), binary.clone()
    t2[drop] = -1  # ignored: the loop visits only the kept positives
    b2[drop] = -1
    fn = {
        "rs": lambda: rank_sort_loss_loop(s, t2),
        "ap": lambda: ap_loss_loop(s, b2),
        "alrp": lambda: alrp_loss_loop(s, b2, e[:keep]),
    }[name]
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * p / min(keep, p)


def bench_case(n: int, p: int, args) -> list[dict]:
    """Time one (N, P) size for focal loss and every ranking loss; returns one row per loss."""
    dev = args.device
    s, t = make_inputs(n, p, dev)
    binary = (t > 0).to(s.dtype)
    e = torch.rand(p, device=dev) * 2

    def focal():
        x = s.clone().requires_grad_(True)
        sigmoid_focal_loss(x, binary, reduction="sum").div(p).backward()

    def rs():
        x = s.clone().requires_grad_(True)
        sum(rank_sort_loss(x, t)).backward()

    def ap():
        x = s.clone().requires_grad_(True)
        ap_loss(x, binary).backward()

    def alrp():
        x = s.clone().requires_grad_(True)
        sum(alrp_loss(x, binary, e.clone().requires_grad_(True))).backward()

    fns = {"focal": focal, "rs": rs, "ap": ap, "alrp": alrp}
    rounds = args.rounds or (3 if n >= 5_000_000 else 15)
    wall, cpu = interleaved(fns, dev, rounds)
    reps = 1 if n >= 1_000_000 else 5  # small sizes: the RSS sampling is noisy, take a median
    mem = {
        k: statistics.median(peak_memory_mib(fn, dev) for _ in range(reps)) for k, fn in fns.items()
    }
    keep = p if args.full_loop else args.loop_positives or max(5, min(100, 10**8 // n))
    rows = []
    for name in ("focal", "rs", "ap", "alrp"):
        loop = None if name == "focal" else loop_time(name, s, t, binary, e, p, keep, dev)
        rows.append(
            dict(
                loss=name,
                n=n,
                p=p,
                wall=wall[name],
                cpu=cpu[name],
                mem=mem[name],
                loop=loop,
                loop_scaled=keep < p,
                r_wall=wall[name] / wall["focal"],
                r_cpu=cpu[name] / cpu["focal"],
                r_mem=mem[name] / max(mem["focal"], 1e-9),
            )  # fmt: skip
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1e6 / 1,000 instead of 1e7 / 1,000")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument(
        "--rounds", type=int, default=0, help="timed rounds (default 3 at 1e7, 15 else)"
    )
    ap.add_argument(
        "--loop-positives", type=int, default=0, help="default: 100, or 1e8 / N if fewer"
    )
    ap.add_argument("--full-loop", action="store_true", help="run the loop over every positive")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("Skipped: CUDA unavailable (run with --device cuda on a machine with a GPU)")
        return
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(
        f"device {args.device} ({where or platform.machine()}), {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}; load average before: {os.getloadavg()[0]:.2f}"
    )
    print(
        "forward + backward, medians of interleaved rounds; ratios against focal loss of the same run"
    )
    head = (
        f"{'loss':>5} {'N':>8} {'P':>5} {'wall ms':>9} {'cpu ms':>9} {'x focal':>8} {'cpu x':>7} "
        f"{'MiB':>8} {'mem x':>6} {'loop s':>9} {'vs loop':>8}"
    )
    print(head)
    sizes = QUICK_SIZES if args.quick else SIZES
    for n, p in sizes:
        for r in bench_case(n, p, args):
            loop = (
                "" if r["loop"] is None else f"{'~' if r['loop_scaled'] else ' '}{r['loop']:8.2f}"
            )
            vs = "" if r["loop"] is None else f"{r['loop'] / r['wall']:7.0f}x"
            print(
                f"{r['loss']:>5} {n:>8.0e} {p:>5} {r['wall'] * 1e3:9.2f} {r['cpu'] * 1e3:9.2f} "
                f"{r['r_wall']:7.2f}x {r['r_cpu']:6.2f}x {r['mem']:8.1f} {r['r_mem']:5.2f}x "
                f"{loop:>9} {vs:>8}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
