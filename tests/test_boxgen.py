"""Tests of lrpbook.boxgen with an independent IoU check (torchvision, float64)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from lrpbook import boxgen

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


def test_loop_version_satisfies_the_same_guarantee():
    gt = [10.0, 10.0, 50.0, 30.0]
    boxes = torch.tensor(boxgen.generate_boxes_loop(gt, 0.7, 500, seed=3), dtype=torch.float64)
    assert (_iou(boxes, gt) >= 0.7).all()
    torch.testing.assert_close(
        boxgen.box_iou_pairwise(boxes, torch.tensor(gt, dtype=torch.float64)), _iou(boxes, gt)
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
    iou = boxgen.box_iou_pairwise(rois, gts[idx].double())
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
