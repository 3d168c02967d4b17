"""Exact sums of the smoothed step in O(N + P log P) on the CPU, for the ranking-based losses.

The smoothed step (thesis Eq. (6.5)) is piecewise linear,

    H(x) = 0 for x <= -delta,  x / (2 delta) + 1/2 for |x| < delta,  1 for x >= delta,

(``delta = 0`` is the hard step ``H(x) = [x >= 0]``), so every sum of H over a sorted set of values
needs only prefix sums of the weights ``w`` and of ``w (v - c)`` over the index ranges that binary
searches give. Values are centred (``v - c``) before the prefix sums to limit cancellation.

- :class:`NegativeSide`: the sums between the P positives and all N entries (``N_FP(i)`` and the share
  of the positives' updates that each negative receives). Every entry is located once among the
  positives' 2P breakpoints (:func:`count_le`); the N entries are never sorted.
- :class:`PositiveSide`: the sums among the positives, including the RS sorting terms, which need
  sums over the positives with a larger (or smaller) IoU *and* a given logit range: a 2-d dominance
  query, answered for every positive at once in O(P log P), with no P x P matrix. On the CPU by
  :class:`DominanceSweep` (a Fenwick tree over the IoU ranks, swept in logit order by a numba
  kernel compiled on first use and cached on disk); on other devices by :class:`DominanceSums` (a
  wavelet matrix over the IoU ranks in logit order, all torch operations, no synchronisation).

Both work on a "capacity" layout: on the CPU the P positives exactly; on other devices (where the
number of positives cannot be read without a host-device synchronisation) a buffer of capacity N whose
unused slots hold ``+inf`` logits and zero weights. There the wavelet matrix of the RS sorting terms
spans N slots: O(N log N) time and memory (about 32 N log2 N bytes, radix 2), the price of not
synchronising; its walk is redone per pass instead of stored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def sync_free(device: torch.device) -> bool:
    """Whether to avoid every host-device synchronisation on ``device`` (all but the CPU)."""
    return device.type != "cpu"


def median_sorted(v: Tensor, valid: Tensor | None) -> Tensor:
    """The (lower) median of the used slots of an ascending ``v``, as a 0-d tensor (0 if none)."""
    if valid is None:
        return v[(v.numel() - 1) // 2] if v.numel() else v.new_zeros(())
    mid = ((valid.sum() - 1).clamp_min(0) // 2).reshape(1)
    c = v.index_select(0, mid)[0]
    return torch.where(torch.isfinite(c), c, 0.0)


def step(x: Tensor, delta: float) -> Tensor:
    """The smoothed step H(x) elementwise (hard step when ``delta == 0``)."""
    if delta == 0:
        return (x >= 0).to(x.dtype)
    return torch.clamp(x / (2 * delta) + 0.5, 0.0, 1.0)


def round_up(b: Tensor, dtype: torch.dtype) -> Tensor:
    """``b`` (float64) rounded up to ``dtype``: for ``x`` of that dtype, ``x >= b  <=>  x >= round_up(b)``."""
    if dtype == torch.float64:
        return b
    r = b.to(dtype)
    return torch.where(r.double() < b, torch.nextafter(r, torch.full_like(r, math.inf)), r)


def count_le(b: Tensor, x: Tensor, cells: int | None = None) -> Tensor:
    """``#{m: b[m] <= x_j}`` for every ``x_j`` (= ``torch.searchsorted(b, x, right=True)``), exactly.

    ``b`` is sorted (float64; rounded up to ``x``'s dtype, which keeps the counts exact). On the CPU a
    binary search per query is slow (a branch misprediction at each of its steps), so here a uniform
    grid of cells over ``[b[0], b[-1]]`` is used: the cell function ``f`` (a subtraction, a
    multiplication, a clamp and a truncation, the same floating-point operations for ``x`` and ``b``)
    is monotone, so every breakpoint in a lower cell is ``<= x`` and every one in a higher cell is
    ``> x``. With at most one breakpoint in ``x``'s cell one comparison finishes the count; entries in
    cells with several breakpoints (ties, clusters) fall back to ``torch.searchsorted``. On other
    devices ``torch.searchsorted`` is used directly (fast there, and it needs no synchronisation).
    """
    bx = round_up(b, x.dtype)
    n = bx.numel()
    if n == 0 or sync_free(x.device):
        return torch.searchsorted(bx, x, right=True)
    lo, hi = float(bx[0]), float(bx[-1])
    if cells is None:
        cells = int(min(max(16 * n, 64), max(x.numel() // 4, 64)))  # tables small next to N
    width = hi - lo
    inv = cells / width if width > 0 and math.isfinite(width) else math.inf
    inv = float(torch.tensor(inv, dtype=x.dtype))  # representable in x's dtype
    if not 0 < inv < math.inf:
        return torch.searchsorted(bx, x, right=True)

    def cell(z: Tensor) -> Tensor:
        return (z - lo).mul_(inv).clamp_(0, cells - 1).to(torch.int64)

    cb = cell(bx)  # [n] non-decreasing
    per_cell = torch.bincount(cb, minlength=cells)
    low = _prefix(per_cell)[:-1]  # #{b in a lower cell}
    many = per_cell > 1
    first = torch.full((cells,), math.inf, dtype=x.dtype, device=x.device)
    first[cb] = bx  # the breakpoint of each cell that holds exactly one (others: fall back)
    c = cell(x)  # [N]
    k = low.index_select(0, c)
    k += x >= first.index_select(0, c)
    if bool(many.any()):
        idx = many.index_select(0, c).nonzero().squeeze(1)
        if idx.numel():
            k[idx] = torch.searchsorted(bx, x.index_select(0, idx), right=True)
    return k


def _prefix(w: Tensor, dim: int = -1) -> Tensor:
    """Cumulative sums with a leading 0 along ``dim``."""
    c = torch.cumsum(w, dim)
    shape = list(c.shape)
    shape[dim] = 1
    return torch.cat([c.new_zeros(shape), c], dim)


class NegativeSide:
    """Sums of H between the positives and all entries, without sorting the entries.

    Args:
        x (Tensor[N], float32/64): the flat logits (every entry).
        neg (Tensor[N], bool): which entries are negatives (the others count for nothing).
        v (Tensor[Pc], float64): the positives' logits sorted ascending (``+inf`` in unused slots).
        valid (Tensor[Pc], bool or None): used slots (None: all).
        delta: the smoothing of H.

    One search places every entry among the breakpoints ``v - delta`` and ``v + delta`` (just ``v``
    for the hard step); entries that are not negatives go to an extra, ignored bin. Then

    - :meth:`nfp`: ``sum_j H(x_j - v_i)`` over the negatives ``j`` for every positive (``N_FP(i)``)
      from the per-bin counts and sums of the negatives;
    - :meth:`share`: ``sum_i w_i H(x_j - v_i)`` for every entry (0 for non-negatives) as
      ``A[bin] + B[bin] (x_j - c)``, with ``A`` and ``B`` from prefix sums over the positives.

    A negative below every breakpoint (H = 0 against every positive: the official pruning) falls in
    bin 0 and gets exactly 0.
    """

    def __init__(self, x: Tensor, neg: Tensor, v: Tensor, valid: Tensor | None, delta: float):
        self.delta, self.valid, self.x = delta, valid, x
        self.v = v
        pc = v.numel()
        self.c = median_sorted(v, valid)
        if delta == 0:
            self.b = v  # [Pc]
            self.n_lo = self.n_hi = torch.arange(pc + 1, device=v.device)
        else:
            b = torch.cat([v - delta, v + delta])  # [2Pc]
            upper = torch.ones(2 * pc, dtype=torch.long, device=v.device)
            upper[:pc] = 0
            order = torch.argsort(b, stable=True)
            self.b = b[order]
            # among the first k breakpoints: how many v + delta (positives with H = 1 there) and
            # how many v - delta (positives with H > 0 there)
            self.n_lo = _prefix(upper[order])
            self.n_hi = _prefix(1 - upper[order])
        self.nb = self.b.numel()
        key = count_le(self.b, x)  # [N] int64 bin of every entry
        key.masked_fill_(~neg, self.nb + 1)  # non-negatives: an extra bin, dropped below
        self.key = key

    def nfp(self) -> Tensor:
        """``sum_{j in N} H(x_j - v_i)`` for every (sorted) positive slot, float64."""
        size = self.nb + 2
        x64 = self.x.to(torch.float64) - self.c
        if not sync_free(self.x.device):
            cnt = torch.bincount(self.key, minlength=size).to(torch.float64)
            sx = torch.bincount(self.key, weights=x64, minlength=size)
        else:  # bincount synchronises on CUDA
            cnt = torch.zeros(size, dtype=torch.float64, device=x64.device)
            cnt.index_add_(0, self.key, torch.ones_like(x64))
            sx = torch.zeros(size, dtype=torch.float64, device=x64.device).index_add_(
                0, self.key, x64
            )
        del x64
        cnt, sx = _prefix(cnt[: self.nb + 1]), _prefix(sx[: self.nb + 1])
        v = self.v
        total = cnt[-1]
        if self.delta == 0:
            out = total - cnt[torch.searchsorted(self.b, v, right=True)]
        else:
            k_lo = torch.searchsorted(self.b, v - self.delta, right=True)
            k_hi = torch.searchsorted(self.b, v + self.delta, right=True)
            lin_n = cnt[k_hi] - cnt[k_lo]
            lin_s = sx[k_hi] - sx[k_lo]
            out = (
                (total - cnt[k_hi]) + (lin_s - lin_n * (v - self.c)) / (2 * self.delta) + lin_n / 2
            )
        return out if self.valid is None else torch.where(self.valid, out, 0.0)

    def share(self, w: Tensor, dtype: torch.dtype) -> Tensor:
        """``sum_i w_i H(x_j - v_i)`` for every entry ``j`` (0 off the negatives), in ``dtype``.

        ``w`` (Tensor[Pc], float64) is in the sorted order of the positives (0 in unused slots).
        """
        if self.valid is not None:
            w = torch.where(self.valid, w, 0.0)
        cw = _prefix(w)
        lo, hi = self.n_lo, self.n_hi  # per bin: positives with H = 1, with H > 0
        a = cw[lo]
        if self.delta == 0:
            bcoef = torch.zeros_like(a)
        else:
            vc = (
                self.v - self.c
                if self.valid is None
                else torch.where(self.valid, self.v - self.c, 0.0)
            )
            cwv = _prefix(w * vc)
            lin_w = cw[hi] - a
            a = a - (cwv[hi] - cwv[lo]) / (2 * self.delta) + lin_w / 2
            bcoef = lin_w / (2 * self.delta)
        zero = a.new_zeros(1)
        a = torch.cat([a, zero]).to(dtype)  # the extra bin of the non-negatives: 0
        if self.delta == 0:
            return a.index_select(0, self.key)
        bcoef = torch.cat([bcoef, zero]).to(dtype)
        d = self.x.to(dtype) - self.c.to(dtype)
        d.mul_(bcoef.index_select(0, self.key))
        return d.add_(a.index_select(0, self.key))


class DominanceSums:
    """For points in logit order ``k = 0..P-1`` with an IoU rank ``ry[k]`` (a permutation of
    ``0..P-1``): sums of weights over ``{k: ry[k] < R, k < u}`` for many queries ``(R, u)`` at once.

    A wavelet matrix of radix ``2**bits`` over the sequence ``ry``: at each digit of the ranks, from
    the most significant, the sequence is stably partitioned by that digit, and per-digit prefix
    counts are kept. A query walks down the digits of ``R`` keeping the range of entries whose higher
    digits equal ``R``'s; at each level, the entries of its range with a smaller digit have a rank
    below ``R`` and are summed (a difference of prefix sums in that level's order), and the range then
    follows the entries with ``R``'s digit. Only index arithmetic and 1-d gathers, vectorised over all
    queries: O(P log P) to build, O(log P) per query (``bits = 2``: 6 levels for P = 3000; in an
    interleaved comparison at P = 3000 radix 4 took 14% less time than radix 2 and radix 8).
    """

    def __init__(self, ry: Tensor, bits: int = 2):
        p = ry.numel()
        self.p, self.bits, self.radix = p, bits, 1 << bits
        nbits = max(1, int(p).bit_length())  # every R <= p is < 2**nbits
        self.nlevels = -(-nbits // bits)
        dev = ry.device
        self.ar = torch.arange(p + 1, device=dev)
        self.groups = torch.arange(self.radix, device=dev)[:, None]
        a, perm = ry, torch.arange(p, device=dev)
        self.levels = []
        for level in reversed(range(self.nlevels)):
            shift = level * bits
            dig = (a >> shift) & (self.radix - 1)
            cnt = _prefix((dig[None, :] == self.groups).to(torch.int64), dim=1)  # [radix, P + 1]
            starts = _prefix(cnt[:, -1])[:-1]  # where each digit's group starts in the next order
            cnt_flat = cnt.reshape(-1)
            new = starts.index_select(0, dig) + cnt_flat.index_select(
                0, dig * (p + 1) + self.ar[:-1]
            )
            na, nperm = torch.empty_like(a), torch.empty_like(perm)
            na[new], nperm[new] = a, perm
            self.levels.append((shift, dig, perm, cnt_flat, starts))
            a, perm = na, nperm

    def walk(self, r: Tensor, bounds: Tensor, lazy: bool = False):
        """Navigate the queries once; returns what :meth:`sums` needs (for any weights).

        Args:
            r (Tensor[Q] or Tensor[J, Q], int64): the IoU-rank bound of each query.
            bounds (Tensor[J, Q], int64 in [0, P]): the logit-order bounds.
            lazy: keep only the queries and redo the walk in every :meth:`sums` (memory O(J Q)
                instead of O(J Q log P): for the capacity-N layout on accelerators).
        """
        jq = tuple(bounds.shape)
        e = bounds.reshape(-1)
        rr = r.reshape(-1) if r.dim() > 1 else r.repeat(jq[0])
        steps = self._steps(rr, e)
        return jq, (steps if lazy else list(steps))

    def _steps(self, rr: Tensor, e: Tensor):
        s = torch.zeros_like(e)
        n = e.numel()
        for shift, _, _, cnt_flat, starts in self.levels:
            d = (rr >> shift) & (self.radix - 1)
            base = d * (self.p + 1)
            se = torch.cat([base + s, base + e])
            yield se.to(
                torch.int32
            )  # entries of [s, e) with a digit < d: ranks below R (stored small)
            st = starts.index_select(0, d)
            got = cnt_flat.index_select(0, se)
            s = st + got[:n]
            e = st + got[n:]

    def split(self, walked, parts: int):
        """Split a walk of ``parts`` query sets stacked along ``J`` into one walk per set."""
        jq, steps = walked
        j = jq[0] // parts
        q = j * math.prod(jq[1:])
        n = math.prod(jq)

        def part(i: int, se: Tensor) -> Tensor:
            lo, hi = i * q, (i + 1) * q
            return torch.cat([se[lo:hi], se[n + lo : n + hi]])

        return [((j, *jq[1:]), [part(i, se) for se in steps]) for i in range(parts)]

    def sums(self, w: Tensor, walked) -> Tensor:
        """``out[m, j, q] = sum_{k: ry[k] < r[q], k < bounds[j, q]} w[m, k]`` (``walked`` from :meth:`walk`).

        Args:
            w (Tensor[M, P], float64).
        """
        jq, steps = walked
        m, p = w.shape[0], self.p
        wt = w.t().contiguous()
        out = w.new_zeros(math.prod(jq), m)
        for (_, dig, perm, _, _), se in zip(self.levels, steps):
            wl = wt.index_select(0, perm)  # [P, M] weights in this level's order
            # less[g]: prefix sums (over positions) of the weights of the entries with a digit < g
            less = w.new_zeros(self.radix, p + 1, m)
            below = (dig[None, :, None] < self.groups[1:, :, None]) * wl[None]  # [radix - 1, P, M]
            torch.cumsum(below, 1, out=less[1:, 1:])
            del below
            got = less.reshape(-1, m).index_select(0, se)
            half = got.shape[0] // 2
            out.add_(got[half:] - got[:half])
        return out.t().reshape(m, *jq)


def _dominance_sweep(ry, w, r, bounds):  # pragma: no cover (compiled by numba)
    """``out[q, m] = sum_{k < bounds[q], ry[k] < r[q]} w[m, k]`` for every query ``q``.

    An offline sweep: the queries are bucketed by their logit-order bound, the points are inserted
    in logit order into a Fenwick tree over the IoU ranks, and each query reads the tree's prefix
    over ranks ``< r[q]`` once every point before its bound is in. O((P + Q) M log P).
    """
    m, p = w.shape
    n = bounds.shape[0]
    start = np.zeros(p + 2, np.int64)
    for q in range(n):
        start[bounds[q] + 1] += 1
    for i in range(p + 1):
        start[i + 1] += start[i]
    order = np.empty(n, np.int64)
    for q in range(n):
        b = bounds[q]
        order[start[b]] = q
        start[b] += 1
    tree = np.zeros((p + 1, m))
    out = np.zeros((n, m))
    k = 0
    for t in range(n):
        q = order[t]
        b = bounds[q]
        while k < b:
            i = ry[k] + 1
            while i <= p:
                for c in range(m):
                    tree[i, c] += w[c, k]
                i += i & -i
            k += 1
        i = r[q]
        while i > 0:
            for c in range(m):
                out[q, c] += tree[i, c]
            i -= i & -i
    return out


_SWEEP = []


def _sweep_kernel():
    """:func:`_dominance_sweep` compiled by numba on first use (cached on disk)."""
    if not _SWEEP:
        import numba

        try:
            jit = numba.njit(cache=True, nogil=True, error_model="numpy")(_dominance_sweep)
        except RuntimeError:  # no writable cache folder: compile in every process instead
            jit = numba.njit(nogil=True, error_model="numpy")(_dominance_sweep)
        _SWEEP.append(jit)
    return _SWEEP[0]


class DominanceSweep:
    """The sums of :class:`DominanceSums` on the CPU, by a compiled Fenwick-tree sweep.

    Same interface (:meth:`walk`, :meth:`split`, :meth:`sums`) and same values up to the order of
    the float64 additions: the points are inserted in logit order into a Fenwick tree over their
    IoU ranks, and every query ``(R, u)`` reads the sum over ranks ``< R`` once the points
    ``k < u`` are in. O((P + Q) log P) per call with no per-level tensor operations (on the CPU the
    wavelet matrix's many small torch calls cost more than the sums themselves at P = 3000). Only
    for CPU tensors (it reads them as numpy arrays).
    """

    def __init__(self, ry: Tensor):
        self.p = ry.numel()
        self.ry = ry.contiguous().numpy()

    def walk(self, r: Tensor, bounds: Tensor, lazy: bool = False):
        """Keep the queries (see :meth:`DominanceSums.walk`; ``lazy`` changes nothing here)."""
        jq = tuple(bounds.shape)
        e = bounds.reshape(-1).contiguous()
        rr = r.reshape(-1) if r.dim() > 1 else r.repeat(jq[0])
        return jq, (rr.contiguous().numpy(), e.numpy())

    def split(self, walked, parts: int):
        """Split the queries of ``parts`` sets stacked along ``J`` into one set each."""
        jq, (rr, e) = walked
        j = jq[0] // parts
        q = j * math.prod(jq[1:])
        return [
            ((j, *jq[1:]), (rr[i * q : (i + 1) * q], e[i * q : (i + 1) * q])) for i in range(parts)
        ]

    def sums(self, w: Tensor, walked) -> Tensor:
        """``out[m, j, q] = sum_{k: ry[k] < r[q], k < bounds[j, q]} w[m, k]`` (Tensor[M, J, Q])."""
        jq, (rr, e) = walked
        out = _sweep_kernel()(self.ry, w.detach().contiguous().numpy(), rr, e)
        return torch.from_numpy(out).t().reshape(w.shape[0], *jq)


class PositiveSide:
    """Sums of H among the positives, in their sorted (ascending logit) order.

    Args:
        v (Tensor[Pc], float64): sorted logits (``+inf`` in unused slots, which come last).
        valid (Tensor[Pc], bool or None): used slots.
        delta: smoothing of H.
    """

    def __init__(self, v: Tensor, valid: Tensor | None, delta: float):
        self.v, self.valid, self.delta = v, valid, delta
        self.c = median_sorted(v, valid)
        self.vc = v - self.c if valid is None else torch.where(valid, v - self.c, 0.0)
        if delta == 0:
            self.a = torch.searchsorted(v, v)  # H(v_k - v_i) = 1 for k >= a_i
            self.b = self.a
        else:
            self.a = torch.searchsorted(v, v - delta, right=True)  # k < a: H = 0
            self.b = torch.searchsorted(v, v + delta)  # k >= b: H = 1; linear in between

    def mask(self, x: Tensor) -> Tensor:
        return x if self.valid is None else torch.where(self.valid, x, 0.0)

    def above(self, w: Tensor | None = None) -> Tensor:
        """``sum_k w_k H(v_k - v_i)`` for every positive ``i`` (``w = 1`` when None), self included."""
        w = self.mask(torch.ones_like(self.v) if w is None else w)
        cw = _prefix(w)
        out = cw[-1] - cw[self.b]
        if self.delta:
            cwv = _prefix(w * self.vc)
            lin_w = cw[self.b] - cw[self.a]
            lin_wv = cwv[self.b] - cwv[self.a]
            out = out + (lin_wv - lin_w * self.vc) / (2 * self.delta) + lin_w / 2
        return self.mask(out)

    def below(self, w: Tensor) -> Tensor:
        """``sum_i w_i H(v_k - v_i)`` for every positive ``k`` (the transposed sum), self included."""
        if self.delta == 0:
            cw = _prefix(self.mask(w))
            return self.mask(cw[torch.searchsorted(self.v, self.v, right=True)])
        w = self.mask(w)
        cw, cwv = _prefix(w), _prefix(w * self.vc)
        lin_w = cw[self.b] - cw[self.a]
        lin_wv = cwv[self.b] - cwv[self.a]
        return self.mask(cw[self.a] + (lin_w * self.vc - lin_wv) / (2 * self.delta) + lin_w / 2)

    def sorting(self, y: Tensor, l_sort: Tensor, rank_pos: Tensor, z: Tensor, eps: float):
        """The RS sorting terms: target sorting error, sorting error and the sorting update.

        Returns ``(target, grad)`` (Tensor[Pc] float64 each, sorted order): the target sorting error
        ``sum_{y_k >= y_i} H(x_ik)(1 - y_k) / sum_{y_k >= y_i} H(x_ik)`` and the update of every
        positive from the sorting errors (``-err_i / Z`` where the denominator
        ``D(i) = sum_{y_k < y_i} H(x_ik)`` exceeds ``eps``, plus what it receives from the
        higher-IoU positives below it).
        """
        p = self.v.numel()
        ys = y if self.valid is None else torch.where(self.valid, y, math.inf)
        y_order = torch.argsort(ys, stable=True)
        ry = torch.empty_like(y_order)
        ry[y_order] = torch.arange(p, device=y.device)
        y_asc = ys[y_order]
        if self.valid is None and not sync_free(y.device):
            tree = DominanceSweep(ry)  # CPU: one compiled sweep per call
        else:
            tree = DominanceSums(ry, bits=2 if self.valid is None else 1)  # capacity N: less memory
        delta = self.delta
        one = self.mask(torch.ones_like(self.v))
        inv = self.mask(1.0 - y)
        # r_lt = #{y_k < y_i} and r_le = #{y_k <= y_i}: the ends of each run of equal IoUs
        ar = torch.arange(p, device=y.device)
        new = torch.ones(p, dtype=torch.bool, device=y.device)
        new[1:] = y_asc[1:] != y_asc[:-1]
        start = torch.cummax(torch.where(new, ar, 0), 0).values
        last = torch.ones_like(new)
        last[:-1] = new[1:]
        end = torch.cummin(torch.where(last, ar + 1, p).flip(0), 0).values.flip(0)
        r_lt, r_le = torch.empty_like(ry), torch.empty_like(ry)
        r_lt[y_order], r_le[y_order] = start, end
        # every dominance query of both passes walks the tree once; without tied IoUs (checked on
        # the CPU only) {y_k <= y_i} is {y_k < y_i} plus i itself, so one set of queries serves both
        bound = torch.searchsorted(self.v, self.v, right=True) if delta == 0 else self.b
        tie_free = self.valid is None and bool((r_le - r_lt == 1).all())
        if tie_free:
            walk_lt = walk_le = tree.walk(r_lt, torch.stack([self.a, bound]))
        else:
            rs = torch.stack([r_lt, r_lt, r_le, r_le])
            walk_lt, walk_le = tree.split(
                tree.walk(rs, torch.stack([self.a, bound, self.a, bound])), 2
            )
        # D(i) and the numerator over the lower-IoU positives (y_k < y_i: a prefix of the IoU order)
        w = (
            torch.stack([one, inv])
            if delta == 0
            else torch.stack([one, inv, one * self.vc, inv * self.vc])
        )
        whole = _prefix(w.index_select(1, y_order), dim=-1).index_select(1, r_lt)  # [M, P]
        if delta == 0:
            lt = whole - tree.sums(w, walk_lt)[:, 0]  # k >= a_i: H = 1 (bounds: a_i, unused)
        else:
            s = tree.sums(w, walk_lt)  # [4, 2, P]
            lin = s[:, 1] - s[:, 0]
            lt = (whole[:2] - s[:2, 1]) + (lin[2:] - lin[:2] * self.vc) / (2 * delta) + lin[:2] / 2
        d, num_lt = self.mask(lt[0]), self.mask(lt[1])
        ge = rank_pos - d  # sum over y_k >= y_i (self included, so >= H(0) > 0 for used slots)
        target = self.mask((self.above(inv) - num_lt) / torch.where(ge > 0, ge, 1.0))
        err = self.mask(l_sort - target)
        gate = d > eps
        coef = torch.where(gate, err / (d.clamp_min(1e-300) * z), 0.0)
        # what positive k receives: sum over i with y_i > y_k of coef_i H(v_k - v_i)
        # = (sum over all i) - (sum over i with y_i <= y_k: a prefix of the IoU order)
        if delta == 0:
            recv_le = tree.sums(coef[None], walk_le)[0, 1]  # i < #{v_i <= v_k}: H = 1
        else:
            s = tree.sums(torch.stack([coef, coef * self.vc]), walk_le)  # [2, 2, P]
            lin = s[:, 1] - s[:, 0]
            recv_le = s[0, 0] + (lin[0] * self.vc - lin[1]) / (2 * delta) + lin[0] / 2
        if tie_free:  # the walk was for y_i < y_k: add i = k itself, H(0) coef_k
            recv_le = recv_le + (1.0 if delta == 0 else 0.5) * coef
        recv = self.below(coef) - recv_le
        grad = self.mask(recv - torch.where(gate, err / z, 0.0))
        return target, grad
