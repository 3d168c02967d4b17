"""Tests of lrpbook.boxgen with an independent IoU check (torchvision, float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.ops import box_iou

from lrpbook import boxgen
from lrpbook.boxes import _iou_aligned, box_iou_aligned

GTS = {
    "ordinary": [10.0, 10.0, 50.0, 30.0],
    "thin": [5.0, 5.0, 6.0, 500.0],
    "tiny": [0.0, 0.0, 1e-3, 5e-4],
    "sub-pixel": [3.2, 4.7, 3.9, 5.1],
    "huge-offset": [1e6, 2e6, 1e6 + 800.0, 2e6 + 600.0],
    "extreme-aspect": [0.0, 0.0, 1000.0, 2.0],
}


def _iou(boxes, gt):
    return box_iou(boxes.double(), torch.as_tensor(gt, dtype=torch.float64)[None])[:, 0]


@pytest.mark.parametrize("name", list(GTS))
@pytest.mark.parametrize("iou_min", [0.3, 0.5, 0.75, 0.95])
def test_every_box_is_valid_and_at_or_above_iou_min(name, iou_min):
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor(GTS[name], dtype=torch.float64)
    boxes = boxgen.generate_boxes(gt, iou_min, 2000, g)
    assert boxes.shape == (2000, 4) and boxes.dtype == torch.float64
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    iou = _iou(boxes, gt)
    assert (iou >= iou_min).all(), f"min IoU {iou.min().item()} < {iou_min}"
    # not degenerate: the boxes really vary, and reach well above the threshold
    assert boxes.std(0).min() > 0 and iou.max() > iou_min + (1 - iou_min) * 0.3


@pytest.mark.parametrize("iou_min, iou_max", [(0.5, 0.6), (0.8, 0.9), (0.3, 0.35)])
def test_iou_max_and_image_bounds_hold(iou_min, iou_max):
    g = torch.Generator().manual_seed(1)
    gt = torch.tensor([20.0, 10.0, 60.0, 38.0])
    boxes = boxgen.generate_boxes(gt, iou_min, 3000, g, iou_max=iou_max, image_size=(64, 40))
    assert (
        boxes.dtype == torch.float32
    )  # float32 in, float32 out, guarantee checked on those values
    iou = _iou(boxes, gt)
    assert (iou >= iou_min).all() and (iou < iou_max).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 40).all()


def test_same_seed_same_boxes_and_input_not_mutated():
    gt = torch.tensor([1.0, 2.0, 30.0, 40.0])
    before = gt.clone()
    a = boxgen.generate_boxes(gt, 0.6, 100, torch.Generator().manual_seed(5))
    b = boxgen.generate_boxes(gt, 0.6, 100, torch.Generator().manual_seed(5))
    c = boxgen.generate_boxes(gt, 0.6, 100, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(gt, before)


def test_both_corner_orders_make_the_distribution_isotropic():
    g = torch.Generator().manual_seed(2)
    gt = torch.tensor([0.0, 0.0, 40.0, 40.0], dtype=torch.float64)
    boxes = boxgen.generate_boxes(gt, 0.5, 40000, g)
    centre_shift = ((boxes[:, :2] + boxes[:, 2:]) / 2 - 20).mean(0)
    size = (boxes[:, 2:] - boxes[:, :2]).mean(0)
    assert centre_shift.abs().max() < 0.3  # symmetric around the reference centre
    assert (size - size.mean()).abs().max() < 0.3


def test_loop_version_satisfies_the_same_guarantee_and_picks_the_corner_order_at_random():
    gt = [10.0, 10.0, 50.0, 30.0]
    boxes = torch.tensor(boxgen.generate_boxes_loop(gt, 0.7, 4000, seed=3), dtype=torch.float64)
    assert (_iou(boxes, gt) >= 0.7).all()
    # top-left first only would shift the centres up-left; random order keeps them at (30, 20)
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2).mean(0)
    assert (centre - torch.tensor([30.0, 20.0], dtype=torch.float64)).abs().max() < 0.2
    # the compatibility alias is the package's row-wise IoU
    torch.testing.assert_close(
        boxgen.box_iou_pairwise(boxes, torch.tensor(gt, dtype=torch.float64)), _iou(boxes, gt),
        rtol=0, atol=0,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gt_box=torch.tensor([5.0, 5.0, 5.0, 9.0]), iou_min=0.5), "degenerate"),
        (dict(gt_box=torch.tensor([0.0, 0.0, 1.0]), iou_min=0.5), "shape"),
        (dict(gt_box=torch.tensor([0.0, 0.0, float("inf"), 1.0]), iou_min=0.5), "finite"),
        (dict(gt_box=torch.tensor([0.0, 0.0, 2.0, 2.0]), iou_min=1.0), "iou_min"),
        (dict(gt_box=torch.tensor([0.0, 0.0, 2.0, 2.0]), iou_min=0.0), "iou_min"),
        (dict(gt_box=torch.tensor([0.0, 0.0, 2.0, 2.0]), iou_min=0.5, iou_max=0.5), "iou_max"),
        (
            dict(gt_box=torch.tensor([0.0, 0.0, 20.0, 2.0]), iou_min=0.5, image_size=(10, 10)),
            "outside the image",
        ),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        boxgen.generate_boxes(n=3, **kwargs)


def test_fg_balanced_allocation_splits_per_class_then_per_object():
    labels = torch.tensor([4, 4, 4, 4, 7, 9])  # a PASCAL-like image: 4 bottles, 1 person, 1 chair
    counts = boxgen.fg_balanced_allocation(labels, 32)
    assert counts.sum() == 32
    per_class = {c: int(counts[labels == c].sum()) for c in (4, 7, 9)}
    assert max(per_class.values()) - min(per_class.values()) <= 1
    assert counts[:4].max() - counts[:4].min() <= 1
    with pytest.raises(ValueError, match="no ground truth"):
        boxgen.fg_balanced_allocation(torch.zeros(0, dtype=torch.int64), 4)


@pytest.mark.parametrize("dist", boxgen.IOU_DISTRIBUTIONS)
def test_prois_follow_the_requested_iou_distribution(dist):
    g = torch.Generator().manual_seed(4)
    gts = torch.tensor([[10.0, 10.0, 50.0, 30.0], [60.0, 20.0, 100.0, 90.0]])
    rois, labels, idx = boxgen.generate_prois(
        gts, torch.tensor([1, 2]), 3000, iou_distribution=dist, generator=g
    )
    iou = box_iou_aligned(rois, gts[idx].double())
    assert (iou >= 0.5).all()
    bins = torch.bucketize(iou, torch.tensor([0.6, 0.7, 0.8, 0.9], dtype=torch.float64), right=True)
    freq = torch.bincount(bins, minlength=5).double() / len(iou)
    expected = boxgen.iou_distribution_weights(dist, 5)
    assert (freq - expected).abs().max() < 0.03
    assert torch.equal(labels, torch.tensor([1, 2])[idx])


def test_iou_weights_definitions_and_errors():
    w = boxgen.iou_distribution_weights("left-skewed", 4)
    torch.testing.assert_close(w, torch.tensor([1.0, 2, 3, 4], dtype=torch.float64) / 10)
    assert boxgen.iou_distribution_weights("right-skewed", 4)[0] == w[-1]
    with pytest.raises(ValueError, match="iou_distribution"):
        boxgen.iou_distribution_weights("bell", 4)


def test_ofb_probabilities_are_one_over_c_times_kc_and_balance_classes():
    labels = torch.tensor([3, 3, 3, 3, 5, 8, 8])
    p = boxgen.ofb_probabilities(labels)
    torch.testing.assert_close(
        p, torch.tensor([1 / 12] * 4 + [1 / 3] + [1 / 6] * 2, dtype=torch.float64)
    )
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(3000):
        first = labels[boxgen.ofb_sample(labels, 1, g)]
        counts += torch.tensor([(first == c).sum().item() for c in (3, 5, 8)])
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.03
    assert torch.equal(boxgen.ofb_sample(labels, 10), torch.arange(7))


# --- exactness of the compiled core ------------------------------------------------------------


def test_compiled_iou_is_bit_identical_to_the_package_row_wise_iou():
    g = torch.Generator().manual_seed(7)
    ref = torch.tensor([3.25, -1.5, 40.0, 12.75], dtype=torch.float64)
    xy = torch.rand(3000, 2, generator=g, dtype=torch.float64) * 60 - 10
    boxes = torch.cat([xy, xy + torch.rand(3000, 2, generator=g, dtype=torch.float64) * 40], 1)
    boxes[1000:2000] = boxes[1000:2000].float().double()  # float32-rounded coordinates too
    expected = _iou_aligned(boxes, ref[None])
    got = torch.tensor([boxgen._iou(*b, *ref.tolist()) for b in boxes.tolist()], dtype=torch.float64)
    assert torch.equal(got, expected)


def _tl_first_stats():
    return np.zeros(4, dtype=np.int64), np.array([12345], dtype=np.uint64)


def _brute_force_tl(w, h, t, n, seed):
    """Top-left corners uniform on the feasible region, by rejection from a generous rectangle."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(o) for o in out) < n:
        a = rng.uniform(w - 2 * w / t, w, 4 * n)
        b = rng.uniform(h - 2 * h / t, h, 4 * n)
        iw, ih = w - np.maximum(a, 0), h - np.maximum(b, 0)
        iou = iw * ih / ((w - a) * (h - b) + w * h - iw * ih)
        out.append(np.stack([a, b], 1)[iou >= t])
    return np.concatenate(out)[:n]


@pytest.mark.parametrize("w, h, t", [(1.0, 1.0, 0.5), (4.0, 1.0, 0.3), (2.0, 3.0, 0.9)])
def test_top_left_step_is_uniform_on_its_feasible_region(w, h, t):
    st, rng = _tl_first_stats()
    n = 6000
    got = np.array([boxgen._sample_tl(w, h, t, rng, st)[:2] for _ in range(n)])
    ref = _brute_force_tl(w, h, t, n, seed=1)
    for k in range(2):  # both coordinates, and a diagonal projection
        assert stats.ks_2samp(got[:, k], ref[:, k]).pvalue > 1e-3
    assert stats.ks_2samp(got.sum(1), ref.sum(1)).pvalue > 1e-3
    # 2-D chi-square on a 6 x 6 grid of cells over the region's bounding rectangle
    edges = [np.linspace(w - w / t, w - w * t, 7), np.linspace(h - h / t, h - h * t, 7)]
    hg = np.histogram2d(got[:, 0], got[:, 1], edges)[0].ravel()
    hr = np.histogram2d(ref[:, 0], ref[:, 1], edges)[0].ravel()
    keep = hg + hr > 0
    assert stats.chi2_contingency(np.stack([hg[keep], hr[keep]])).pvalue > 1e-3
    assert st[0] / n < 1 / 0.4  # acceptance rate of step 1 above 40 %


@pytest.mark.parametrize("direction", [-1.0, 1.0])
@pytest.mark.parametrize("frac", [0.0, 0.5, 0.97, 0.999])
def test_bottom_right_step_is_uniform_given_any_top_left_corner(frac, direction):
    """Given a TL corner, from TL(B) to the boundary of its region, BR is uniform on its region.

    The TL lies on the diagonal through TL(B) = (0, 0), outside B (direction -1: the box
    [-s, -s, w, h] contains B) or inside it (+1: [s, s, w, h] lies in B), a fraction `frac` of the
    way to the boundary. Near the boundary the BR region shrinks to the point BR(B).
    """
    w, h, t = 3.0, 2.0, 0.6
    if direction < 0:  # w h / ((w + s)(h + s)) = t
        s_max = (-(w + h) + np.sqrt((w + h) ** 2 - 4 * (w * h - w * h / t))) / 2
    else:  # (w - s)(h - s) / (w h) = t
        s_max = ((w + h) - np.sqrt((w + h) ** 2 - 4 * (w * h - w * h * t))) / 2
    a = b = direction * frac * s_max
    st, rng = _tl_first_stats()
    n = 5000
    got = np.array([boxgen._sample_br(w, h, t, a, b, rng, st)[:2] for _ in range(n)])
    # brute force: uniform on the package's rectangle enlarged 3 times about its centre; a region
    # reaching outside the package's rectangle would put reference points where `got` has none
    c_lo, c_hi, d_lo, d_hi = boxgen._br_rect(w, h, t, a, b)
    cc, dc, cw, dw = (c_lo + c_hi) / 2, (d_lo + d_hi) / 2, 1.5 * (c_hi - c_lo), 1.5 * (d_hi - d_lo)
    gen = np.random.default_rng(2)
    ref = []
    while sum(len(r) for r in ref) < n:
        c = gen.uniform(cc - cw, cc + cw, 100_000)
        d = gen.uniform(dc - dw, dc + dw, 100_000)
        iw, ih = np.minimum(c, w) - max(a, 0), np.minimum(d, h) - max(b, 0)
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        iou = inter / ((c - a) * (d - b) + w * h - inter)
        ref.append(np.stack([c, d], 1)[(iou >= t) & (c > a) & (d > b)])
    ref = np.concatenate(ref)[:n]
    for k in range(2):
        assert stats.ks_2samp(got[:, k], ref[:, k]).pvalue > 1e-3
    assert stats.ks_2samp(got.sum(1), ref.sum(1)).pvalue > 1e-3
    assert stats.ks_2samp(got[:, 0] - got[:, 1], ref[:, 0] - ref[:, 1]).pvalue > 1e-3
    assert st[1] / n < 1 / 0.4  # acceptance of step 2 above 40 %, even near the boundary


def test_no_box_needs_a_restart_and_both_steps_accept_about_half():
    gt = np.array([[10.0, 10.0, 50.0, 30.0]])
    for t in (0.3, 0.5, 0.9, 0.99):
        st = np.zeros(4, dtype=np.int64)
        inf = np.inf
        boxgen._sample(gt, np.array([t]), np.array([inf]), np.array([50_000]),
                       np.array([[-inf, -inf, inf, inf]]), False,
                       torch.Generator().manual_seed(0), stats=st)
        assert st[2] == 0 and st[3] == 0
        assert 0.44 < 50_000 / st[0] < 0.55 and 0.44 < 50_000 / st[1] < 0.55


def test_package_and_loop_versions_draw_the_same_distribution():
    gt = [0.0, 0.0, 4.0, 1.0]
    n = 5000
    fast = boxgen.generate_boxes(torch.tensor(gt, dtype=torch.float64), 0.5, n,
                                 torch.Generator().manual_seed(3)).numpy()
    loop = np.array(boxgen.generate_boxes_loop(gt, 0.5, n, seed=4))
    for k in range(4):
        assert stats.ks_2samp(fast[:, k], loop[:, k]).pvalue > 1e-3
    iou = [_iou(torch.tensor(b), gt).numpy() for b in (fast, loop)]
    assert stats.ks_2samp(*iou).pvalue > 1e-3


# --- the batched generator ---------------------------------------------------------------------


def test_batched_respects_per_gt_counts_and_bounds():
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 40.0, 20.0], [1e3, 2e3, 1e3 + 3, 2e3 + 900]],
                       dtype=torch.float64)
    lo = torch.tensor([0.5, 0.8, 0.3], dtype=torch.float64)
    hi = torch.tensor([0.6, float("inf"), 0.4], dtype=torch.float64)
    counts = torch.tensor([700, 0, 500])
    boxes = boxgen.generate_boxes_batched(gts, lo, counts, torch.Generator().manual_seed(0),
                                          iou_max=hi)
    assert boxes.shape == (1200, 4) and boxes.dtype == torch.float64
    idx = torch.repeat_interleave(torch.arange(3), counts)
    iou = box_iou(boxes, gts).gather(1, idx[:, None])[:, 0]
    assert (iou >= lo[idx]).all() and (iou < hi[idx]).all()
    assert iou[:700].max() > 0.58 and iou[700:].max() > 0.38  # the bands are really used


def test_batched_float32_image_sizes_per_gt_and_agreement_with_generate_boxes():
    gts = torch.tensor([[20.0, 10.0, 60.0, 38.0], [1.0, 1.0, 9.0, 5.0]])
    sizes = torch.tensor([[64.0, 40.0], [10.0, 6.0]])
    boxes = boxgen.generate_boxes_batched(gts, 0.6, [1500, 1500], torch.Generator().manual_seed(1),
                                          image_size=sizes)
    assert boxes.dtype == torch.float32
    idx = torch.repeat_interleave(torch.arange(2), 1500)
    iou = box_iou(boxes.double(), gts.double()).gather(1, idx[:, None])[:, 0]
    assert (iou >= 0.6).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= sizes[idx]).all()
    one = boxgen.generate_boxes(gts[0], 0.6, 50, torch.Generator().manual_seed(9))
    batched = boxgen.generate_boxes_batched(gts[:1], 0.6, 50, torch.Generator().manual_seed(9))
    assert torch.equal(one, batched)


def test_batched_empty_inputs_give_empty_outputs():
    g = torch.Generator().manual_seed(0)
    assert boxgen.generate_boxes_batched(torch.zeros(0, 4), 0.5, 3, g).shape == (0, 4)
    assert boxgen.generate_boxes_batched(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), 0.5, 0, g).shape == (0, 4)
    assert boxgen.generate_boxes(torch.tensor([0.0, 0.0, 1.0, 1.0]), 0.5, 0, g).shape == (0, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gt_boxes=torch.zeros(3, 5)), "shape"),
        (dict(gt_boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 1.0, 3.0]])), "row 1"),
        (dict(gt_boxes=torch.tensor([[0.0, 0.0, float("nan"), 1.0]])), "row 0 is not finite"),
        (dict(iou_min=[0.5, 0.5, 0.5]), "iou_min"),
        (dict(iou_min=[0.5, 1.0]), "iou_min"),
        (dict(iou_max=[0.9, 0.4]), "iou_max"),
        (dict(iou_max=1.5), "iou_max"),
        (dict(counts=[3, -1]), "counts"),
        (dict(counts=[3]), "counts"),
        (dict(counts=[1.5, 2]), "integers"),
        (dict(image_size=(10, 10)), "outside its image"),
        (dict(image_size=torch.ones(3, 2)), "image_size"),
    ],
)
def test_batched_bad_input_raises_clear_errors(kwargs, match):
    args = dict(gt_boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0], [2.0, 2.0, 30.0, 3.0]]),
                iou_min=0.5, counts=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        boxgen.generate_boxes_batched(**args)


def test_impossible_constraints_raise_runtime_error():
    with pytest.raises(RuntimeError, match="too little room"):
        boxgen.generate_boxes(torch.tensor([0.0, 0.0, 10.0, 10.0]), 0.5, 2,
                              torch.Generator().manual_seed(0), iou_max=0.5 + 1e-12)


def test_a_top_left_corner_on_its_boundary_still_gets_a_bottom_right_corner():
    # IoU([-7, -7/18, 5, 1], [0, 0, 5, 1]) is exactly 0.3 in float64: the region of BR is one point
    w, h, t, a, b = 5.0, 1.0, 0.3, -7.000000000000001, -0.38888888888888906
    assert boxgen._iou(a, b, w, h, 0.0, 0.0, w, h) == t
    c_lo, c_hi, d_lo, d_hi = boxgen._br_rect(w, h, t, a, b)
    assert c_lo <= w <= c_hi and d_lo <= h <= d_hi  # the rectangle holds BR(B) despite rounding
    st, rng = _tl_first_stats()
    c, d, ok = boxgen._sample_br(w, h, t, a, b, rng, st)
    assert ok and boxgen._iou(a, b, c, d, 0.0, 0.0, w, h) >= t


@pytest.mark.parametrize("iou_min", [0.01, 0.05, 0.999])
def test_extreme_thresholds_keep_the_guarantee(iou_min):
    gt = torch.tensor([3.0, 4.0, 30.0, 9.0], dtype=torch.float64)
    boxes = boxgen.generate_boxes(gt, iou_min, 3000, torch.Generator().manual_seed(0))
    assert (_iou(boxes, gt) >= iou_min).all()


def test_prois_name_the_ground_truth_outside_the_image_and_stay_inside_it():
    gts = torch.tensor([[10.0, 10.0, 50.0, 30.0], [60.0, 20.0, 100.0, 90.0]])
    with pytest.raises(ValueError, match=r"row 1 .* outside the image"):
        boxgen.generate_prois(gts, torch.tensor([1, 2]), 8, image_size=(95, 95))
    rois, _, idx = boxgen.generate_prois(gts, torch.tensor([1, 2]), 200, image_size=(101, 91),
                                         generator=torch.Generator().manual_seed(0))
    assert (rois[:, :2] >= 0).all() and (rois[:, 2] <= 101).all() and (rois[:, 3] <= 91).all()
    assert (box_iou_aligned(rois, gts[idx].double()) >= 0.5).all()


def test_prois_batch_equals_per_image_calls_for_one_image_and_keeps_every_image_apart():
    gts = [torch.tensor([[10.0, 10.0, 50.0, 30.0], [60.0, 20.0, 100.0, 90.0]]),
           torch.zeros(0, 4),
           torch.tensor([[5.0, 5.0, 25.0, 45.0]])]
    labels = [torch.tensor([1, 2]), torch.zeros(0, dtype=torch.int64), torch.tensor([7])]
    one = boxgen.generate_prois(gts[0], labels[0], 40, generator=torch.Generator().manual_seed(3))
    batch = boxgen.generate_prois_batch(gts[:1], labels[:1], 40,
                                        generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(one, batch[0]))
    out = boxgen.generate_prois_batch(gts, labels, 16, image_sizes=[(110, 95), (10, 10), (30, 50)],
                                      generator=torch.Generator().manual_seed(4))
    assert [len(r) for r, _, _ in out] == [16, 0, 16]  # no ground truth, no positive RoI
    out = boxgen.generate_prois_batch([gts[0], gts[2]], [labels[0], labels[2]], 64,
                                      image_sizes=[(110, 95), (30, 50)],
                                      generator=torch.Generator().manual_seed(4))
    for (rois, lab, idx), boxes, cls, size in zip(out, [gts[0], gts[2]], [labels[0], labels[2]],
                                                  [(110, 95), (30, 50)]):
        assert rois.shape == (64, 4) and torch.equal(lab, cls[idx])
        assert (box_iou_aligned(rois, boxes[idx].double()) >= 0.5).all()
        assert (rois[:, :2] >= 0).all() and (rois[:, 2] <= size[0]).all() and (rois[:, 3] <= size[1]).all()
    with pytest.raises(ValueError, match=r"`gt_boxes\[1\]` row 0 .* outside the image"):
        boxgen.generate_prois_batch([gts[0], gts[2]], [labels[0], labels[2]], 4,
                                    image_sizes=[(110, 95), (20, 20)])
    with pytest.raises(ValueError, match="one entry per image"):
        boxgen.generate_prois_batch(gts, labels[:2], 4)
    with pytest.raises(ValueError, match="image_sizes"):
        boxgen.generate_prois_batch(gts[:1], labels[:1], 4, image_sizes=[(1, 1), (2, 2)])
