"""Tests of lrpbook.models: assigners, losses wiring, training on a fixed batch, empty images."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou

from lrpbook.losses import rank_sort_loss
from lrpbook.models import MODELS, atss_assign, build, dice_loss, max_iou_assign
from lrpbook.models.dense import box_iou_aligned
from lrpbook.models.rcnn import _unit_decode

TINY = dict(backbone="resnet18", fpn_channels=32, min_size=64, max_size=64)


def _batch(masks: bool = False, empty_second: bool = True):
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, 64, 64, generator=g) for _ in range(2)]
    m = torch.zeros(2, 64, 64, dtype=torch.uint8)
    m[0, 8:40, 8:40] = 1
    m[1, 30:60, 20:50] = 1
    t0 = {
        "boxes": torch.tensor([[8.0, 8, 40, 40], [20, 30, 50, 60]]),
        "labels": torch.tensor([2, 1]),
    }
    if empty_second:
        t1 = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    else:
        t1 = {"boxes": torch.tensor([[4.0, 4, 30, 24]]), "labels": torch.tensor([3])}
    if masks:
        t0["masks"] = m
        t1["masks"] = torch.zeros(len(t1["labels"]), 64, 64, dtype=torch.uint8)
        if len(t1["labels"]):
            t1["masks"][0, 4:24, 4:30] = 1
    return imgs, [t0, t1]


def test_atss_hand_case_and_properties():
    a = torch.tensor(
        [
            [0.0, 0, 10, 10],
            [0, 0, 30, 30],
            [-10, -10, 20, 20],
            [-20, -20, 30, 30],
            [100, 100, 110, 110],
        ]
    )
    matched, iou = atss_assign(a, [5], torch.tensor([[0.0, 0, 10, 10]]), topk=4)
    # candidates IoU (1, 1/9, 1/9, 1/25): mean + std = 0.77 -> only the exact anchor is positive
    assert matched.tolist() == [0, -1, -1, -1, -1]
    assert iou[0] == pytest.approx(1.0)
    # random property check: positives have centres inside their box and IoU >= mean+std of candidates
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(300, 2, generator=g) * 100
    wh = torch.rand(300, 2, generator=g) * 40 + 4
    anchors = torch.cat([xy, xy + wh], 1)
    gxy = torch.rand(4, 2, generator=g) * 60
    gt = torch.cat([gxy, gxy + 30], 1)
    matched, iou = atss_assign(anchors, [150, 150], gt, topk=9)
    pos = matched >= 0
    assert pos.any()
    c = (anchors[pos, :2] + anchors[pos, 2:]) / 2
    b = gt[matched[pos]]
    assert ((c > b[:, :2]) & (c < b[:, 2:])).all()
    assert torch.allclose(
        iou[pos], box_iou(anchors[pos], gt).gather(1, matched[pos, None]).squeeze(1)
    )
    # no boxes -> all negative
    m0, _ = atss_assign(anchors, [150, 150], torch.zeros(0, 4))
    assert (m0 == -1).all()


def test_max_iou_hand_case():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12], [20, 20, 30, 30], [0, 0, 10, 20]])
    m, _ = max_iou_assign(a, torch.tensor([[0.0, 0, 10, 10]]), pos_iou=0.9, neg_iou=0.45)
    # IoUs 1, 0.833 (ignored), 0 (negative), 0.5 (ignored)
    assert m.tolist() == [0, -2, -1, -2]


def test_unit_decode_preserves_iou():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    g = torch.Generator().manual_seed(2)
    anchors = torch.tensor([[10.0, 20, 50, 40], [0, 0, 8, 30], [5, 5, 105, 55]])
    gt = torch.tensor([[12.0, 18, 45, 44], [1, 2, 9, 25], [0, 10, 90, 60]])
    pred = torch.randn(3, 4, generator=g) * 0.5
    target = coder.encode_single(gt, anchors)
    iou_real = box_iou_aligned(
        coder.decode_single(pred, anchors), coder.decode_single(target, anchors)
    )
    iou_unit = box_iou_aligned(_unit_decode(coder, pred), _unit_decode(coder, target))
    assert torch.allclose(iou_real, iou_unit, atol=1e-5)


def test_dice_loss_hand_values():
    t = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    logits = torch.tensor([[[50.0, -50.0], [-50.0, -50.0]]])  # p = (1, 0, 0, 0)
    assert dice_loss(logits, t).item() == pytest.approx(1 - 2 * 1 / (1 + 2), abs=1e-6)
    z = torch.zeros(0, 2, 2, requires_grad=True)
    assert dice_loss(z, z.detach()).item() == 0.0


def test_rs_atss_targets_and_value_balance():
    torch.manual_seed(0)
    model = build("rs_atss", 3, **TINY)
    seen = {}
    orig = model.rs_loss.forward

    def spy(logits, targets, *others):
        seen["targets"] = targets.clone()
        return orig(logits, targets, *others)

    model.rs_loss.forward = spy
    imgs, tgts = _batch()
    losses = model(imgs, tgts)
    t = seen["targets"]
    pos = t > 0
    # positives are IoUs in (0, 1]; only labels 2 and 1 of image 0 appear; image 1 (empty) is all 0
    assert pos.any() and (t[pos] <= 1).all()
    assert set(pos.nonzero()[:, 2].tolist()) <= {0, 1}
    assert not pos[1].any()
    # value-based balancing: the box loss carries the value of ranking + sorting
    assert losses["box"].item() == pytest.approx(
        (losses["ranking"] + losses["sorting"]).item(), rel=1e-5
    )
    r, s = rank_sort_loss(torch.zeros(4), torch.tensor([0.5, 0.0, 0.0, 0.0]))
    assert 0 <= r.item() <= 1 and 0 <= s.item() <= 1


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_finite_and_decreases_on_a_fixed_batch(name):
    torch.manual_seed(0)
    masks = name == "rs_mask_rcnn"
    opts = dict(TINY)
    if name in ("rs_faster_rcnn", "rs_mask_rcnn"):
        opts.update(proposals_per_image=64, anchor_sizes=(8, 16, 32, 64, 128))
    else:
        opts.update(num_convs=1, anchor_scale=1.5 if name != "focal_atss" else 2.0)
    model = build(name, 3, **opts)
    imgs, tgts = _batch(masks=masks, empty_second=False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01 if name != "alrp_retinanet" else 0.004, momentum=0.9)
    track = "cls" if name == "alrp_retinanet" else None  # aLRP's loc part grows as ranks improve
    values = []
    for _ in range(12):
        losses = model(imgs, tgts)
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        values.append((losses[track] if track else total).item())
    assert sum(values[-3:]) / 3 < values[0]
    model.eval()
    with torch.no_grad():
        out = model(imgs)
    assert len(out) == 2 and {"boxes", "scores", "labels"} <= set(out[0])
    if masks:
        assert "masks" in out[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batch_of_images_without_objects(name):
    torch.manual_seed(0)
    opts = dict(TINY)
    if name in ("rs_faster_rcnn", "rs_mask_rcnn"):
        opts.update(proposals_per_image=32)
    model = build(name, 2, **opts)
    imgs = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    if name == "rs_mask_rcnn":
        empty["masks"] = torch.zeros(0, 64, 64, dtype=torch.uint8)
    losses = model(imgs, [dict(empty), dict(empty)])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


def test_build_rejects_unknown_names():
    with pytest.raises(ValueError, match="name"):
        build("yolo", 3)
    with pytest.raises(ValueError, match="name"):
        build("rs_atss", 3, backbone="vgg16")
