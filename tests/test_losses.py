"""Tests of lrpbook.losses against the official reference cases, the loop versions and the theory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lrpbook.losses import (
    ALRPLoss,
    APLoss,
    RankSortLoss,
    alrp_loss,
    ap_loss,
    identity_update_from_primary_terms,
    rank_sort_loss,
    value_balance,
)
from lrpbook.losses._fast import DominanceSums, DominanceSweep, count_le
from lrpbook.losses.reference import (
    alrp_loss_loop,
    ap_loss_loop,
    rank_sort_loss_loop,
    smoothed_step,
)


def _rel(got, ref):
    got, ref = np.asarray(got, float), np.asarray(ref, float)
    diff = np.abs(got - ref).max() if got.size else 0.0
    return 0.0 if diff <= 1e-12 else diff / max(np.abs(ref).max(), 1e-300)


def _tol(case):
    if case["name"] == "small_rs_delta0":
        return 1e-6
    return 1e-5 if case["float32"] else 1e-7


@pytest.fixture(scope="module")
def loss_cases(refcases):
    folder = refcases / "losses"
    arrays = np.load(folder / "cases.npz")
    manifest = json.loads((folder / "cases.json").read_text())
    return [
        (
            c,
            {
                k.split("__", 1)[1]: arrays[k]
                for k in arrays.files
                if k.startswith(c["name"] + "__")
            },
        )
        for c in manifest["cases"]
    ]


def _dtype(case):
    return torch.float32 if case["float32"] else torch.float64


def _assert_rs_equals_loop(s, t, delta):
    """RS Loss (values and gradient) equals the loop of the thesis algorithm to rounding."""
    logits = s.clone().requires_grad_(True)
    rank, sort = rank_sort_loss(logits, t, delta)
    (rank + sort).backward()
    r_ref, gr, s_ref, gs = rank_sort_loss_loop(s, t, delta)
    tol = dict(rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(torch.stack([rank, sort]), torch.stack([r_ref, s_ref]), **tol)
    torch.testing.assert_close(logits.grad, gr + gs, **tol)
    return logits, tol


def test_reference_cases_rs(loss_cases):
    n = 0
    for case, z in loss_cases:
        if "rs" not in case["losses"]:
            continue
        s = torch.tensor(z["logits"], dtype=_dtype(case), requires_grad=True)
        t = torch.tensor(z["targets_rs"], dtype=_dtype(case))
        rank, sort = rank_sort_loss(s, t, case["rs_delta"], case["rs_eps"])
        (rank + sort).backward()
        out = case["outputs"]
        tol = _tol(case)
        assert _rel(rank.item(), out["rs_rank_loss"]) <= tol, case["name"]
        assert _rel(sort.item(), out["rs_sort_loss"]) <= tol, case["name"]
        assert _rel(s.grad.numpy(), z["rs_grad"]) <= tol, case["name"]
        n += 1
    assert n >= 10


def test_reference_cases_ap(loss_cases):
    n = 0
    for case, z in loss_cases:
        if "ap" not in case["losses"]:
            continue
        s = torch.tensor(z["logits"], dtype=_dtype(case), requires_grad=True)
        loss = ap_loss(s, torch.tensor(z["targets_bin"], dtype=_dtype(case)), case["ap_delta"])
        loss.backward()
        assert _rel(loss.item(), case["outputs"]["ap_loss"]) <= _tol(case), case["name"]
        assert _rel(s.grad.numpy(), z["ap_grad"]) <= _tol(case), case["name"]
        n += 1
    assert n >= 10


def test_reference_cases_alrp(loss_cases):
    n = 0
    for case, z in loss_cases:
        if "alrp" not in case["losses"]:
            continue
        dt = _dtype(case)
        s = torch.tensor(z["logits"], dtype=dt, requires_grad=True)
        e = torch.tensor(z["reg"], dtype=dt, requires_grad=True)
        cls, loc = alrp_loss(
            s, torch.tensor(z["targets_bin"], dtype=dt), e, case["alrp_delta"], case["alrp_eps"]
        )
        (cls + loc).backward()
        out, tol = case["outputs"], _tol(case)
        assert _rel(cls.item(), out["alrp_cls_loss"]) <= tol, case["name"]
        assert _rel(s.grad.numpy(), z["alrp_grad"]) <= tol, case["name"]
        if out["alrp_pos_logits_tie_free"]:
            assert _rel(loc.item(), out["alrp_loc_loss"]) <= tol, case["name"]
            assert _rel(e.grad.numpy(), z["alrp_loc_grad_reg"]) <= tol, case["name"]
            pos = z["logits"][z["targets_bin"] == 1]
            assert (np.argsort(pos, kind="stable") == z["alrp_order"]).all()
        n += 1
    assert n >= 10


def _random_case(seed, n=400, p=25, ties=False, ignored=10, dtype=torch.float64, shape=None):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, generator=g, dtype=torch.float64) * 1.5 - 1.0
    if ties:
        s = (s * 2).round() / 2  # many exact ties
    t = torch.zeros(n, dtype=torch.float64)
    idx = torch.randperm(n, generator=g)
    t[idx[:p]] = torch.rand(p, generator=g, dtype=torch.float64) * 0.9 + 0.1
    s[idx[:p]] += 1.0
    t[idx[p : p + ignored]] = -1
    if ties:
        t[idx[:p]] = (t[idx[:p]] * 4).ceil() / 4
    shape = shape or (n,)
    return s.to(dtype).reshape(shape), t.to(dtype).reshape(shape)


@pytest.mark.parametrize(
    "seed, ties, dtype, shape",
    [
        (0, False, torch.float64, None),
        (1, True, torch.float64, (40, 10)),
        (2, False, torch.float32, (4, 10, 10)),
        (3, True, torch.float32, None),
    ],
)
@pytest.mark.parametrize("delta", [0.5, 1.0, 0.0])
def test_fast_equals_loop_implementation(seed, ties, dtype, shape, delta):
    s, t = _random_case(seed, ties=ties, dtype=dtype, shape=shape)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-7)
    logits = s.clone().requires_grad_(True)
    rank, sort = rank_sort_loss(logits, t, delta)
    (rank + sort).backward()
    r_ref, gr, s_ref, gs = rank_sort_loss_loop(s, t, delta)
    torch.testing.assert_close(rank.double(), r_ref, **tol)
    torch.testing.assert_close(sort.double(), s_ref, **tol)
    torch.testing.assert_close(logits.grad.double().reshape(-1), gr + gs, **tol)
    binary = torch.where(t > 0, torch.ones_like(t), t)
    logits.grad = None
    loss = ap_loss(logits, binary, delta)
    loss.backward()
    ref, g = ap_loss_loop(s, binary, delta)
    torch.testing.assert_close(loss.double(), ref, **tol)
    torch.testing.assert_close(logits.grad.double().reshape(-1), g, **tol)
    logits.grad = None
    e = (
        torch.rand(
            int((binary == 1).sum()), dtype=dtype, generator=torch.Generator().manual_seed(seed)
        )
        * 2
    )
    e.requires_grad_(True)
    cls, loc = alrp_loss(logits, binary, e, delta)
    (cls + loc).backward()
    c_ref, gc, l_ref, gl = alrp_loss_loop(s, binary, e, delta)
    torch.testing.assert_close(cls.double(), c_ref, **tol)
    torch.testing.assert_close(logits.grad.double().reshape(-1), gc, **tol)
    if not ties:  # with ties the hard order of the localisation part is implementation-defined
        torch.testing.assert_close(loc.double(), l_ref, **tol)
        torch.testing.assert_close(e.grad.double(), gl, **tol)


def test_updates_sum_to_zero_and_respect_signs():
    """Thesis Theorem 2: positive and negative updates have equal total magnitude."""
    s, t = _random_case(7, n=2000, p=60, ignored=100)
    logits = s.clone().requires_grad_(True)
    binary = torch.where(t > 0, torch.ones_like(t), t)
    for make in (
        lambda: rank_sort_loss(logits, t)[0] + rank_sort_loss(logits, t)[1],
        lambda: ap_loss(logits, binary),
        lambda: alrp_loss(logits, binary, torch.rand(60, dtype=torch.float64))[0],
    ):
        logits.grad = None
        make().backward()
        g = logits.grad
        assert abs(g.sum().item()) < 1e-12
        assert (g[t == -1] == 0).all()  # ignored entries get exactly zero
        assert g.abs().sum() > 0
    assert (g[binary == 1] <= 0).all() and (g[binary == 0] >= 0).all()


def test_pruned_negatives_get_exactly_zero():
    s = torch.tensor([2.0, 1.0, 0.5, -0.4, -5.0, -9.0], requires_grad=True)
    t = torch.tensor([1.0, 0.7, 0.0, 0.0, 0.0, 0.0])
    r, so = rank_sort_loss(s, t, 0.5)
    (r + so).backward()
    # negatives below min positive logit (1.0) - delta (0.5) can never outrank a positive
    assert s.grad[3:].tolist() == [0.0, 0.0, 0.0]


def test_weighted_sum_of_rs_outputs_gets_the_weighted_update():
    s, t = _random_case(11)
    logits = s.clone().requires_grad_(True)
    rank, sort = rank_sort_loss(logits, t)
    (0.3 * rank + 2.0 * sort).backward()
    _, gr, _, gs = rank_sort_loss_loop(s, t)
    torch.testing.assert_close(logits.grad, 0.3 * gr + 2.0 * gs, rtol=1e-9, atol=1e-13)
    logits.grad = None
    rank, _ = rank_sort_loss(logits, t)
    rank.backward()  # the sorting output unused: only the ranking update
    torch.testing.assert_close(logits.grad, gr, rtol=1e-9, atol=1e-13)


def test_no_positive_gives_zero_loss_with_zero_gradient_in_the_graph():
    s = torch.randn(50, requires_grad=True)
    t = torch.zeros(50)
    for out in (
        ap_loss(s, t),
        *rank_sort_loss(s, t),
        *alrp_loss(s, t, torch.zeros(0, requires_grad=True)),
    ):
        assert out.item() == 0.0
    (ap_loss(s, t) + sum(rank_sort_loss(s, t))).backward()
    assert s.grad is not None and (s.grad == 0).all()


def test_perfect_ranking_and_sorting_gives_zero_loss():
    s = torch.tensor([5.0, 4.0, 3.0, -3.0, -4.0], requires_grad=True)
    t = torch.tensor([0.9, 0.8, 0.6, 0.0, 0.0])
    r, so = rank_sort_loss(s, t, 0.5)
    assert r.item() == 0.0 and so.item() == pytest.approx(0.0, abs=1e-15)
    assert ap_loss(s, (t > 0).float()).item() == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ap_loss(torch.zeros(3), torch.zeros(4)), "same shape"),
        (lambda: ap_loss(torch.tensor([0.0, float("nan")]), torch.tensor([1.0, 0.0])), "finite"),
        (lambda: ap_loss(torch.zeros(2), torch.tensor([0.5, 0.0])), "targets"),
        (lambda: rank_sort_loss(torch.zeros(2), torch.tensor([1.5, 0.0])), "targets"),
        (lambda: rank_sort_loss(torch.zeros(2), torch.tensor([1.0, 0.0]), delta=-1), "delta"),
        (
            lambda: alrp_loss(torch.zeros(3), torch.tensor([1.0, 1.0, 0.0]), torch.zeros(3)),
            "loc_errors",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_logits_are_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        ap_loss(torch.zeros(3, dtype=torch.int64), torch.zeros(3))


@pytest.mark.parametrize("delta", [1.0, 0.5, 0.0])
def test_identity_update_from_primary_terms_matches_ap_loss(delta):
    """The dense primary-term form of the framework gives the same AP update as ap_loss.

    The self term of rank+ is replaced by exactly 1: H(0) is 1/2 for delta > 0 but 1 for the hard
    step (delta = 0), so hard-coding 0.5 would be wrong there.
    """
    s, t = _random_case(5, n=60, p=6, ignored=0)
    if delta == 0:
        s[:3] = s[3]  # exact ties, where H(0) matters
    binary = torch.where(t > 0, torch.ones_like(t), t)
    pos = torch.nonzero(binary == 1).flatten()
    neg = binary == 0
    H = smoothed_step(s[None, :] - s[pos, None], delta) * neg[None, :]
    h0 = smoothed_step(torch.zeros((), dtype=s.dtype), delta)
    assert h0.item() == (1.0 if delta == 0 else 0.5)
    rank_pos = 1 + smoothed_step(s[pos][None, :] - s[pos][:, None], delta).sum(1) - h0
    prec = rank_pos / (rank_pos + H.sum(1))
    prec_int = torch.stack([prec[s[pos] <= s[i]].max() for i in pos])
    primary = (1 - prec_int)[:, None] * H / H.sum(1, keepdim=True).clamp_min(1e-300)
    loss_pt, grad = identity_update_from_primary_terms(primary, pos, len(pos))
    logits = s.clone().requires_grad_(True)
    loss = ap_loss(logits, binary, delta)
    loss.backward()
    # AP's own term -(1 - prec_int)/Z equals the primary terms given away when N_FP > 0
    torch.testing.assert_close(logits.grad, grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(loss.double(), (1 - prec_int).mean(), rtol=1e-12, atol=1e-14)


def test_self_balance_weight_follows_the_epoch_ratio_and_resumes():
    crit = ALRPLoss()
    s, t = _random_case(3, n=200, p=10, ignored=0)
    binary = torch.where(t > 0, torch.ones_like(t), t)
    e = torch.full((10,), 0.4, dtype=torch.float64)
    out = crit(s, binary, e)
    assert out["sb_weight"].item() == 50.0
    torch.testing.assert_close(out["loss"], out["cls"] + 50.0 * out["loc"])
    crit(s, binary, e)
    expected = (out["cls"].item() + out["loc"].item()) / out["loc"].item()
    assert crit.end_epoch() == pytest.approx(expected)
    clone = ALRPLoss()
    clone.load_state_dict(crit.state_dict())
    assert clone.sb_weight.item() == pytest.approx(expected)


def test_value_balance_rescales_to_the_rs_value_and_keeps_gradients():
    box = torch.tensor(2.0, requires_grad=True)
    main = torch.tensor(0.5)
    (balanced,) = value_balance(main, box * 3)
    assert balanced.item() == pytest.approx(0.5)
    balanced.backward()
    assert box.grad.item() == pytest.approx(3 * 0.5 / 6.0)
    s, t = _random_case(4)
    out = RankSortLoss()(s, t, box * 1.0)
    assert out["loss"].item() == pytest.approx(2 * (out["ranking"] + out["sorting"]).item())
    assert APLoss()(s, torch.where(t > 0, torch.ones_like(t), t)).item() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA unavailable")
def test_cuda_matches_cpu():
    s, t = _random_case(9, n=5000, p=100)
    cpu = rank_sort_loss(s, t)
    gpu = rank_sort_loss(s.cuda(), t.cuda())
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    torch.testing.assert_close(gpu[1].cpu(), cpu[1])


@pytest.mark.parametrize("delta", [0.5, 1.0, 0.0])
def test_fast_equals_loop_with_tied_logits_on_the_breakpoints(delta):
    # logits on a 0.25 grid: ties among positives, among negatives, and negatives exactly at
    # s_i - delta, s_i and s_i + delta, where H changes regime
    g = torch.Generator().manual_seed(7)
    n, p = 300, 40
    s = torch.randint(-12, 8, (n,), generator=g).to(torch.float64) / 4
    t = torch.zeros(n, dtype=torch.float64)
    idx = torch.randperm(n, generator=g)
    t[idx[:p]] = torch.randint(1, 5, (p,), generator=g).to(torch.float64) / 4
    t[idx[p : p + 10]] = -1
    logits, tol = _assert_rs_equals_loop(s, t, delta)
    binary = torch.where(t > 0, torch.ones_like(t), t)
    logits.grad = None
    ap_loss(logits, binary, delta).backward()
    torch.testing.assert_close(logits.grad, ap_loss_loop(s, binary, delta)[1], **tol)
    logits.grad = None
    e = torch.rand(p, dtype=torch.float64, generator=g)
    alrp_loss(logits, binary, e, delta)[0].backward()
    torch.testing.assert_close(logits.grad, alrp_loss_loop(s, binary, e, delta)[1], **tol)


@pytest.mark.parametrize(
    "b, x",
    [
        (torch.randn(500, dtype=torch.float64), torch.randn(10_000, dtype=torch.float64) * 3),
        (  # ties, queries exactly on breakpoints and far outside
            torch.randint(0, 6, (300,)).to(torch.float64) / 2,
            torch.cat([torch.arange(-4, 8).to(torch.float64) / 2, torch.tensor([-1e9, 1e9])]),
        ),
        (  # one value repeated: falls back to searchsorted
            torch.full((50,), 3.0, dtype=torch.float64),
            torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64),
        ),
        (  # large magnitudes, tiny spread: the grid would be too fine, falls back
            1e8 + torch.arange(10, dtype=torch.float64) * 1e-6,
            1e8 + torch.linspace(-1e-5, 2e-5, 101, dtype=torch.float64),
        ),
        (torch.empty(0, dtype=torch.float64), torch.randn(5, dtype=torch.float64)),
    ],
)
def test_count_le_equals_searchsorted(b, x):
    b = torch.sort(b).values
    torch.testing.assert_close(count_le(b, x), torch.searchsorted(b, x, right=True))


@pytest.mark.parametrize("module", ["functional", "modules", "identity_update"])
def test_docstring_examples(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"lrpbook.losses.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("delta", [0.5, 0.0])
@pytest.mark.parametrize("p", [1, 2, 7, 64, 300])
def test_rs_sorting_terms_equal_the_loop_for_many_sizes(p, delta):
    """The O(P log P) dominance sums of the sorting terms, at sizes around powers of two, with ties."""
    g = torch.Generator().manual_seed(p)
    n = 4 * p + 20
    s = torch.randn(n, generator=g, dtype=torch.float64)
    t = torch.zeros(n, dtype=torch.float64)
    idx = torch.randperm(n, generator=g)[:p]
    t[idx] = (torch.rand(p, generator=g, dtype=torch.float64) * 8).ceil() / 8  # tied IoUs
    s[idx[: p // 3]] = 0.25  # tied logits
    _assert_rs_equals_loop(s, t, delta)


def _forbid_syncs(monkeypatch):
    """Make every host-device synchronisation (and the CPU-only shortcuts) raise."""
    import lrpbook.losses._fast as fast
    import lrpbook.losses.functional as functional

    device_path = lambda device: True  # noqa: E731 (the code path taken on CUDA)
    monkeypatch.setattr(fast, "sync_free", device_path)
    monkeypatch.setattr(functional, "sync_free", device_path)

    def forbidden(name):
        def call(*args, **kwargs):
            raise AssertionError(f"host-device synchronisation: {name}")

        return call

    for name in ("item", "cpu", "tolist", "numpy", "nonzero", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden(f"Tensor.{name}"))
    for name in ("nonzero", "bincount", "unique", "masked_select"):
        monkeypatch.setattr(torch, name, forbidden(f"torch.{name}"))


def _all_losses(s, t, delta, check_values=None):
    binary = torch.where(t > 0, torch.ones_like(t), t)
    out = []
    x = s.clone().requires_grad_(True)
    r, so = rank_sort_loss(x, t, delta, check_values=check_values)
    (r + 2 * so).backward()
    out += [r.detach(), so.detach(), x.grad]
    x = s.clone().requires_grad_(True)
    loss = ap_loss(x, binary, delta, check_values=check_values)
    loss.backward()
    out += [loss.detach(), x.grad]
    p = int((binary == 1).sum())
    e = torch.rand(p, dtype=s.dtype, generator=torch.Generator().manual_seed(0)) * 2
    e.requires_grad_(True)
    x = s.clone().requires_grad_(True)
    c, lo = alrp_loss(x, binary, e, delta, check_values=check_values)
    (c + lo).backward()
    return out + [c.detach(), lo.detach(), x.grad, e.grad]


@pytest.mark.parametrize("delta", [0.5, 1.0, 0.0])
@pytest.mark.parametrize("seed, ties, dtype", [(0, False, torch.float64), (1, True, torch.float32)])
def test_device_code_path_makes_no_host_sync_and_equals_the_cpu_path(
    monkeypatch, seed, ties, dtype, delta
):
    """The CUDA code path (forced on the CPU) never calls .item()/.cpu()/nonzero/...; same numbers."""
    s, t = _random_case(seed, ties=ties, dtype=dtype, shape=(40, 10))
    expected = _all_losses(s, t, delta)
    n_pos = int((t > 0).sum())
    with monkeypatch.context() as m:
        _forbid_syncs(m)
        binary = torch.where(t > 0, torch.ones_like(t), t)
        got = []
        x = s.clone().requires_grad_(True)
        r, so = rank_sort_loss(x, t, delta)
        (r + 2 * so).backward()
        got += [r.detach(), so.detach(), x.grad]
        x = s.clone().requires_grad_(True)
        loss = ap_loss(x, binary, delta)
        loss.backward()
        got += [loss.detach(), x.grad]
        e = torch.rand(n_pos, dtype=s.dtype, generator=torch.Generator().manual_seed(0)) * 2
        e.requires_grad_(True)
        x = s.clone().requires_grad_(True)
        c, lo = alrp_loss(x, binary, e, delta)
        (c + lo).backward()
        got += [c.detach(), lo.detach(), x.grad, e.grad]
        crit = ALRPLoss()
        crit(s.clone().requires_grad_(True), binary, e.detach())[
            "loss"
        ].backward()  # the running sums: no sync either
        RankSortLoss()(s.clone().requires_grad_(True), t, e.detach().sum())["loss"].backward()
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-9 if dtype == torch.float64 else 1e-5, atol=1e-12)


def test_device_code_path_without_positives_gives_zero(monkeypatch):
    s = torch.randn(30, dtype=torch.float64)
    t = torch.zeros(30, dtype=torch.float64)
    with monkeypatch.context() as m:
        _forbid_syncs(m)
        x = s.clone().requires_grad_(True)
        r, so = rank_sort_loss(x, t)
        a = ap_loss(x, t)
        c, lo = alrp_loss(x, t, torch.zeros(0, dtype=torch.float64, requires_grad=True))
        (r + so + a + c + lo).backward()
    assert [v.detach().abs().sum() for v in (r, so, a, c, lo, x.grad)] == [0] * 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA unavailable")
def test_cuda_losses_make_no_host_sync():
    s, t = _random_case(9, n=5000, p=100)
    s, t = s.cuda(), t.cuda()
    _all_losses(s, t, 0.5)  # warm-up (lazy CUDA initialisation may synchronise)
    torch.cuda.synchronize()
    binary = torch.where(t > 0, torch.ones_like(t), t)
    e = torch.rand(100, device="cuda", dtype=s.dtype, requires_grad=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        x = s.clone().requires_grad_(True)
        r, so = rank_sort_loss(x, t)
        a = ap_loss(x, binary)
        c, lo = alrp_loss(x, binary, e)
        (r + so + a + c + lo).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_bad_entries_are_reported_by_their_index_in_the_tensor_shape():
    s = torch.zeros(4, 5)
    s[2, 3] = float("nan")
    t = torch.zeros(4, 5)
    t[0, 0] = 1.0
    with pytest.raises(ValueError, match=r"entry \(2, 3\) is nan"):
        rank_sort_loss(s, t)
    s[2, 3] = 0.0
    t[3, 1] = 0.5
    with pytest.raises(ValueError, match=r"entry \(3, 1\) is 0.5"):
        ap_loss(s, t)
    t[3, 1] = 1.5
    with pytest.raises(ValueError, match=r"entry \(3, 1\) is 1.5"):
        rank_sort_loss(s, t)
    with pytest.raises(ValueError, match=r"`loc_errors` must be finite; entry 0 is inf"):
        alrp_loss(s, (t == 1).float(), torch.tensor([float("inf")]))


def test_iou_targets_a_rounding_error_above_one_are_accepted_and_clamped():
    from lrpbook.losses.functional import IOU_TOLERANCE

    s, t = _random_case(12, dtype=torch.float32)
    pos = torch.nonzero(t > 0).flatten()
    t[pos[:5]] = 1.0
    over = t.clone()
    over[pos[:5]] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))  # 1.0000001 (float32)
    assert 1.0 < over[pos[0]].item() <= 1 + IOU_TOLERANCE
    x1, x2 = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    a = rank_sort_loss(x1, t)
    b = rank_sort_loss(x2, over)  # accepted, taken as exactly 1
    sum(a).backward()
    sum(b).backward()
    torch.testing.assert_close(torch.stack(b), torch.stack(a), rtol=0, atol=0)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=0)
    over[pos[0]] = 1 + 10 * IOU_TOLERANCE
    with pytest.raises(ValueError, match="at most|IoU in"):
        rank_sort_loss(s, over)


def test_integer_class_index_targets_get_a_message_that_says_how_to_build_iou_targets():
    logits = torch.zeros(6, 3)
    labels = torch.tensor([0, 2, 1, 0, 0, 1])
    for call in (
        lambda: rank_sort_loss(logits, labels),
        lambda: ap_loss(logits, labels),
        lambda: RankSortLoss()(logits, labels),
    ):
        with pytest.raises(ValueError, match=r"class indices.*torch.zeros\(N, C\).*= iou"):
            call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_rank_sort_loss_module_checks_the_other_losses_like_the_logits(bad):
    s, t = _random_case(4)
    box = torch.tensor(0.3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`other_losses\[1\]` must be finite"):
        RankSortLoss()(s, t, box, torch.tensor(bad, dtype=torch.float64))
    with pytest.raises(ValueError, match="scalar"):
        RankSortLoss()(s, t, torch.ones(3))
    out = RankSortLoss(check_values=False)(s, t, box)  # checks can be switched off
    assert torch.isfinite(out["loss"])


def test_check_values_false_skips_value_checks_and_true_forces_them():
    s = torch.tensor([0.0, 1.0])
    t = torch.tensor([1.0, 0.7])  # 0.7 is not a binary target
    with pytest.raises(ValueError):
        ap_loss(s, t, check_values=True)
    ap_loss(s, t, check_values=False)  # the caller vouches for the values


def test_alrp_self_balance_state_dict_keeps_the_running_sums_and_loads_old_checkpoints():
    s, t = _random_case(3, n=200, p=10, ignored=0)
    binary = torch.where(t > 0, torch.ones_like(t), t)
    e = torch.full((10,), 0.4, dtype=torch.float64)
    crit = ALRPLoss()
    out = crit(s, binary, e)
    assert "sb_weight" in dict(crit.named_buffers()) and "epoch_sums" not in dict(
        crit.named_buffers()
    )
    state = crit.state_dict()
    clone = ALRPLoss()
    clone.load_state_dict(state)
    torch.testing.assert_close(clone.epoch_sums, crit.epoch_sums)
    expected = (out["cls"].item() + out["loc"].item()) / out["loc"].item()
    assert clone.end_epoch() == pytest.approx(expected)
    legacy = {
        "sb_weight": torch.tensor(7.0, dtype=torch.float64),
        "epoch_sums": crit.epoch_sums.clone(),
    }
    old = ALRPLoss()
    old.load_state_dict(legacy)
    assert old.sb_weight.item() == 7.0 and old.end_epoch() == pytest.approx(expected)


_DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
from torch import nn
from lrpbook.losses import ALRPLoss

def batches():
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(8):
        s = torch.randn(300, generator=g, dtype=torch.float64) - 1
        t = torch.zeros(300, dtype=torch.float64)
        p = int(torch.randint(5, 30, (1,), generator=g))
        t[torch.randperm(300, generator=g)[:p]] = 1
        out.append((s, t, torch.rand(p, generator=g, dtype=torch.float64)))
    return out

class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.crit = ALRPLoss()
    def forward(self, s, t, e):
        return self.crit(s * self.scale, t, e)["loss"]

def run(rank, world, path):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", sys.argv[2]
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = nn.parallel.DistributedDataParallel(Head(), broadcast_buffers=True)
    for i, (s, t, e) in enumerate(batches()):
        if i % world == rank:
            model(s, t, e).backward()
    w = model.module.crit.end_epoch()
    with open(f"{path}.{rank}", "w") as f:
        f.write(repr(w))
    dist.destroy_process_group()

if __name__ == "__main__":
    single = ALRPLoss()
    for s, t, e in batches():
        single(s, t, e)
    with open(sys.argv[1] + ".single", "w") as f:
        f.write(repr(single.end_epoch()))
    mp.spawn(run, args=(2, sys.argv[1]), nprocs=2)
"""


def test_alrp_self_balance_under_ddp_equals_the_single_process_weight(tmp_path):
    """2 gloo processes, broadcast_buffers=True: each rank's epoch sums count (all-reduced)."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp_alrp.py"
    script.write_text(_DDP_SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    out = tmp_path / "w"
    proc = subprocess.run(
        [sys.executable, str(script), str(out), port],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = float((tmp_path / "w.single").read_text())
    ranks = [float((tmp_path / f"w.{r}").read_text()) for r in (0, 1)]
    assert single != 50.0
    assert ranks == [pytest.approx(single, rel=1e-12)] * 2


def _brute_dominance(ry, w, r, bounds):
    """``sum_{k < bounds[j, q], ry[k] < r[j, q]} w[m, k]`` from the full P x P mask."""
    k = torch.arange(ry.numel())
    mask = (k < bounds[..., None]) & (ry < r[..., None])
    return torch.einsum("mk,jqk->mjq", w, mask.double())


@pytest.mark.parametrize("p", [1, 2, 7, 64, 301])
def test_dominance_sweep_and_wavelet_matrix_both_equal_the_brute_force_sums(p):
    """The CPU sweep (Fenwick tree) and the wavelet matrix (radix 4 and 2) give the 2-d dominance
    sums of a P x P mask, for per-set and shared rank bounds, whole or split."""
    g = torch.Generator().manual_seed(p)
    ry = torch.randperm(p, generator=g)
    w = torch.randn(3, p, generator=g, dtype=torch.float64)
    r = torch.randint(0, p + 1, (2, p), generator=g)  # R in [0, P] (P: every rank)
    bounds = torch.randint(0, p + 1, (2, p), generator=g)
    bounds[0, 0], bounds[1, -1] = 0, p  # the extreme bounds
    want = _brute_dominance(ry, w, r, bounds)
    want_shared = _brute_dominance(ry, w, r[0].expand(2, p), bounds)
    tol = dict(rtol=1e-12, atol=1e-12)
    for tree in (DominanceSweep(ry), DominanceSums(ry, bits=2), DominanceSums(ry, bits=1)):
        walked = tree.walk(r, bounds)
        torch.testing.assert_close(tree.sums(w, walked), want, **tol)
        for part, half in enumerate(tree.split(walked, 2)):
            torch.testing.assert_close(tree.sums(w, half)[:, 0], want[:, part], **tol)
        torch.testing.assert_close(tree.sums(w, tree.walk(r[0], bounds)), want_shared, **tol)


def test_rank_sort_loss_on_the_cpu_uses_the_compiled_sweep(monkeypatch):
    """The CPU path answers the sorting terms' dominance queries with the sweep, not the wavelet matrix."""
    import lrpbook.losses._fast as fast

    def refuse(*args, **kwargs):
        raise AssertionError("wavelet matrix used on the CPU path")

    monkeypatch.setattr(fast, "DominanceSums", refuse)
    g = torch.Generator().manual_seed(3)
    s = torch.randn(500, generator=g, dtype=torch.float64)
    t = torch.zeros(500, dtype=torch.float64)
    t[:40] = torch.rand(40, generator=g, dtype=torch.float64) * 0.9 + 0.1
    x = s.clone().requires_grad_(True)
    rank, sort = rank_sort_loss(x, t)
    (rank + sort).backward()
    r_ref, gr, s_ref, gs = rank_sort_loss_loop(s, t, 0.5)
    torch.testing.assert_close(
        torch.stack([rank, sort]), torch.stack([r_ref, s_ref]), rtol=1e-10, atol=1e-13
    )
    torch.testing.assert_close(x.grad, gr + gs, rtol=1e-10, atol=1e-13)


def test_sweep_kernel_compiles_without_the_disk_cache_when_caching_is_refused(monkeypatch):
    """Where numba finds no writable cache folder (it raises at decoration), the kernel still works."""
    import numba

    import lrpbook.losses._fast as fast

    real = numba.njit

    def no_cache(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", no_cache)
    monkeypatch.setattr(fast, "_SWEEP", [])
    ry = torch.tensor([2, 0, 1])
    w = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    tree = fast.DominanceSweep(ry)
    got = tree.sums(w, tree.walk(torch.tensor([2, 3]), torch.tensor([[3, 2]])))
    # ranks < 2 among k < 3: w1 + w2; ranks < 3 among k < 2: w0 + w1
    assert got.tolist() == [[[6.0, 3.0]]]
