"""Tests of lrpbook.imbalance: thesis Table 3.1 and Fig. 3.11/3.16 numbers, anchors, losses, taxonomy."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import ops

from lrpbook import imbalance as im

# Thesis Table 3.1: two positives (p_s, IoU) and four negatives (p_s, IoU); p_s is the probability of the
# correct label, so the cross-entropy loss is -ln p_s (0.22, 1.61, 2.30, 1.20, 0.51, 0.00).
POS_P, POS_IOU = torch.tensor([0.8, 0.2]), torch.tensor([0.95, 0.55])
NEG_P, NEG_IOU = torch.tensor([0.1, 0.3, 0.6, 1.0]), torch.tensor([0.35, 0.15, 0.06, 0.00])


def test_table_3_1_losses_focal_and_pisa_columns():
    p = torch.cat([POS_P, NEG_P])
    assert [round(v, 2) for v in (-torch.log(p)).abs().tolist()] == [
        0.22,
        1.61,
        2.30,
        1.20,
        0.51,
        0.00,
    ]
    focal = im.focal_weights(p, gamma=1.0)
    assert [round(v, 2) for v in focal.tolist()] == [0.2, 0.8, 0.9, 0.7, 0.4, 0.0]
    # PISA (gamma 1, beta 0): positives ranked by IoU, negatives by foreground score 1 - p_s, N_max = 4
    values = torch.cat([POS_IOU, 1 - NEG_P])
    groups = torch.tensor([1, 1, 0, 0, 0, 0])
    pisa = im.pisa_weights(values, groups, beta=0.0, gamma=1.0)
    assert pisa.tolist() == [1.0, 0.75, 1.0, 0.75, 0.5, 0.25]


def test_focal_with_gamma_zero_is_cross_entropy_and_downweights_easy_examples():
    p = torch.tensor([0.1, 0.5, 0.99])
    assert im.focal_weights(p, 0.0).tolist() == [1.0, 1.0, 1.0]
    w = im.focal_weights(p, 2.0)
    assert w[2] < 1e-3 < w[0]


# Fig. 3.11: a ground truth and three predictions whose corner errors give (IoU, L1, L2) =
# (0.94, 1, 0.5), (0.65, 6, 6), (0.51, 10, 14) with L2 = sum of 0.5 b^2.
FIG_3_11_GT = torch.tensor([5.0, 5.0, 15.0, 21.0])
FIG_3_11_PRED = torch.tensor(
    [[5.0, 4.0, 15.0, 21.0], [2.0, 6.0, 16.0, 20.0], [1.0, 3.0, 17.0, 19.0]]
)


def test_fig_3_11_table_is_reproduced():
    diff = FIG_3_11_GT - FIG_3_11_PRED
    iou = ops.box_iou(FIG_3_11_PRED, FIG_3_11_GT[None])[:, 0]
    assert [round(v, 2) for v in iou.tolist()] == [0.94, 0.65, 0.51]
    assert im.l1_loss(diff).sum(1).tolist() == [1.0, 6.0, 10.0]
    # the thesis' L2 column (0.50, 6.00, 14.00) is the halved squared error in every row
    assert im.l2_loss(diff).sum(1).tolist() == [0.5, 6.0, 14.0]
    assert (diff**2).sum(1).tolist() == [1.0, 12.0, 28.0]
    tgt = FIG_3_11_GT.expand(3, 4)
    torch.testing.assert_close(im.iou_loss(FIG_3_11_PRED, tgt, form="linear"), 1 - iou)
    torch.testing.assert_close(im.iou_loss(FIG_3_11_PRED, tgt), -torch.log(iou))


def test_iou_loss_default_is_the_thesis_log_form_and_disjoint_boxes_stay_finite():
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], requires_grad=True)
    tgt = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    loss = im.iou_loss(pred, tgt)
    assert loss[0].item() == pytest.approx(math.log(3))  # IoU 1/3 -> -ln(1/3)
    assert loss[1].item() == pytest.approx(-math.log(1e-6))  # clamped at eps, not inf
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1] == 0).all()
    assert im.iou_loss(pred, tgt, form="linear")[0].item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="form"):
        im.iou_loss(pred, tgt, form="square")
    with pytest.raises(ValueError, match="eps"):
        im.iou_loss(pred, tgt, eps=0.0)


def test_fig_3_16_cross_entropy_at_initialisation_is_ln_81():
    logits = torch.zeros(32, 81)  # 80 classes + background, equal scores at initialisation
    ce = torch.nn.functional.cross_entropy(logits, torch.zeros(32, dtype=torch.long))
    assert ce.item() == pytest.approx(math.log(81)) and round(ce.item(), 2) == 4.39


def test_smooth_and_balanced_l1_shapes():
    b = torch.linspace(-3, 3, 61, dtype=torch.float64)
    s = im.smooth_l1_loss(b, beta=1.0)
    torch.testing.assert_close(
        s, torch.nn.functional.smooth_l1_loss(b, torch.zeros_like(b), reduction="none")
    )
    bal = im.balanced_l1_loss(b.clone().requires_grad_(True))
    x = b.clone().requires_grad_(True)
    im.balanced_l1_loss(x).sum().backward()
    inner = x.abs() < 1
    torch.testing.assert_close(
        x.grad[inner].abs(), 0.5 * torch.log(x[inner].abs().detach() * (math.exp(3) - 1) + 1)
    )
    assert torch.allclose(x.grad[~inner].abs(), torch.tensor(1.5, dtype=torch.float64))
    # continuous at |b| = beta = 1
    assert (
        im.balanced_l1_loss(torch.tensor([1 - 1e-9, 1 + 1e-9], dtype=torch.float64)).diff().abs()
        < 1e-6
    )
    assert abs(bal.min().item()) < 1e-12  # zero loss at zero error


def test_iou_based_losses_equal_torchvision_and_order_correctly():
    pred = FIG_3_11_PRED
    tgt = FIG_3_11_GT.expand(3, 4)
    torch.testing.assert_close(im.giou_loss(pred, tgt), ops.generalized_box_iou_loss(pred, tgt))
    torch.testing.assert_close(im.diou_loss(pred, tgt), ops.distance_box_iou_loss(pred, tgt))
    torch.testing.assert_close(im.ciou_loss(pred, tgt), ops.complete_box_iou_loss(pred, tgt))
    assert (im.iou_loss(pred, tgt).diff() > 0).all()  # worse boxes, larger loss
    assert (im.iou_loss(pred, tgt, form="linear").diff() > 0).all()


def test_retinanet_anchor_count_and_labels():
    anchors = im.retinanet_anchors((1333, 800))
    assert anchors.shape == (200_700, 4)  # 9 x (167x100 + 84x50 + 42x25 + 21x13 + 11x7)
    gts = torch.tensor([[100.0, 100.0, 300.0, 260.0], [600.0, 400.0, 700.0, 480.0]])
    labels, max_iou, matched = im.label_anchors(anchors, gts)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    assert 0 < n_pos < 200 and n_neg / n_pos > 1000  # the foreground-background imbalance
    assert (max_iou[labels == 1] >= 0.5).all() and (max_iou[labels == 0] < 0.4).all()
    none = im.label_anchors(anchors[:10], torch.zeros(0, 4))[0]
    assert none.tolist() == [0] * 10
    with pytest.raises(ValueError, match="neg_iou"):
        im.label_anchors(anchors, gts, pos_iou=0.3, neg_iou=0.4)


def test_fpn_level_assignment():
    boxes = torch.tensor(
        [[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 8, 8], [0, 0, 2000, 2000.0]]
    )
    assert im.fpn_level(boxes).tolist() == [4, 3, 5, 2, 5]


def test_hard_sampling_methods():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([1] * 5 + [0] * 100 + [-1] * 10)
    idx = im.random_sampling(labels, 16, 0.25, g)
    assert len(idx) == 16 and (labels[idx] == 1).sum() == 4 and (labels[idx] >= 0).all()
    losses = torch.arange(len(labels), dtype=torch.float32)
    top = im.ohem(losses, labels, 3)
    assert top.tolist() == [104, 103, 102]
    iou = torch.rand(len(labels), generator=g) * 0.5
    neg = im.iou_balanced_sampling(iou, labels, 30, generator=g)
    assert len(neg) == 30 and (labels[neg] == 0).all() and len(set(neg.tolist())) == 30


def test_table_3_1_hard_sampling_rows():
    p = torch.cat([POS_P, NEG_P])
    iou = torch.cat([POS_IOU, NEG_IOU])
    labels = torch.tensor([1, 1, 0, 0, 0, 0])
    ce = -torch.log(p)
    # OHEM keeps three examples, one positive and two negatives, those of largest loss
    assert sorted(im.ohem(ce, labels, 3).tolist()) == [1, 2, 3]
    # SSD mines negatives only: mark the positives ignored
    assert im.ohem(ce, torch.where(labels == 1, -1, labels), 2).tolist() == [2, 3]
    # IoU-balanced sampling with K = 2 bins of [0, 0.5): the only negative of [0.25, 0.5)
    # (IoU 0.35) is always drawn, the other one comes from [0, 0.25)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        idx = im.iou_balanced_sampling(iou, labels, 2, num_bins=2, generator=g)
        assert len(idx) == 2 and 2 in idx.tolist() and (iou[idx] < 0.5).all()
        assert (labels[idx] == 0).all() and len(set(idx.tolist())) == 2


def test_iou_balanced_sampling_refuses_a_budget_smaller_than_the_bins():
    iou = torch.cat([POS_IOU, NEG_IOU])
    labels = torch.tensor([1, 1, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="num_bins"):
        im.iou_balanced_sampling(iou, labels, 2)  # default 3 bins, budget 2
    with pytest.raises(ValueError, match="num_bins"):
        im.iou_balanced_sampling(iou, labels, 4, num_bins=0)
    # a budget that covers all negatives is not sampling at all: every negative is returned
    assert im.iou_balanced_sampling(iou, labels, 10).tolist() == [2, 3, 4, 5]
    assert im.iou_balanced_sampling(iou, labels, 0).tolist() == []


def test_table_3_1_ghm_row_matches_the_thesis_where_the_window_definition_allows():
    p = torch.cat([POS_P, NEG_P])
    w32 = im.ghm_weights(1 - p, epsilon=0.4)
    w64 = im.ghm_weights(1 - p.double(), epsilon=0.4)
    torch.testing.assert_close(w32, w64)  # rounding of 1 - p does not move window edges
    # thesis entries for p_s = 0.1, 0.6, 1.0 (negatives): 0.60, 1.2, 0.60
    assert [round(v, 2) for v in w64[[2, 4, 5]].tolist()] == [0.6, 1.2, 0.6]
    # p_s = 0.8, 0.2, 0.3: three gradients in a full window of length 0.4 -> 6 / (3 / 0.4)
    torch.testing.assert_close(w64[[0, 1, 3]], torch.full((3,), 6 / (3 / 0.4), dtype=w64.dtype))
    with pytest.raises(ValueError, match="epsilon"):
        im.ghm_weights(1 - p, epsilon=0.0)


def test_ghm_downweights_crowded_gradients():
    g = torch.tensor([0.01] * 20 + [0.5, 0.95])
    w = im.ghm_weights(g, epsilon=0.1)
    assert w[:20].max() < w[20] and torch.allclose(w[:20], w[0])


def test_taxonomy_rows_are_well_formed_and_counted():
    rows = im.load_taxonomy()
    assert len(rows) >= 60
    for r in rows:
        assert (
            r.problem in im.PROBLEMS[r.category] and 2010 <= r.year <= 2021 and r.method and r.venue
        )
    counts = im.papers_per_problem_year(rows)
    assert set(counts) == {p for ps in im.PROBLEMS.values() for p in ps}
    assert sum(sum(c.values()) for c in counts.values()) == len(rows)
    assert counts["foreground-background"].total() > counts["object location"].total()
