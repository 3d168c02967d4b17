"""Tests of lrpbook.models: assigners, losses wiring, training on a fixed batch, empty images."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou

from lrpbook.boxes import box_iou_aligned
from lrpbook.losses import rank_sort_loss
from lrpbook.models import MODELS, atss_assign, build, dice_loss, max_iou_assign
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
    opt = torch.optim.SGD(params, lr=0.004 if name.startswith("alrp") else 0.01, momentum=0.9)
    track = "cls" if name.startswith("alrp") else None  # aLRP's loc part grows as ranks improve
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


# ------------------------------------------------------------------ presets of the thesis
def test_rs_atss_has_three_anchors_per_location_as_the_thesis():
    model = build("rs_atss", 3, **TINY)
    # App L.2: one aspect ratio, three scales per octave -> 3 anchors per location
    assert model.anchors_per_location == 3
    sizes = model.anchor_generator.sizes[0]
    assert len(sizes) == 3 and sizes[0] == 4.0 * 8  # octave base scale 4 at stride 8
    assert model.anchor_generator.aspect_ratios[0] == (1.0,)
    assert build("focal_atss", 3, **TINY).anchors_per_location == 1
    assert build("alrp_retinanet", 3, **TINY).anchors_per_location == 6  # 3 ratios x 2 scales


def test_atss_takes_topk_candidates_per_level_whatever_the_anchors_per_location():
    # 3 anchors share each of 10 centres on one level; the thesis' ATSS takes 4 candidates, not 12
    centres = torch.arange(10.0)[:, None].repeat(1, 2) * 10 + 5
    anchors = torch.cat(
        [torch.cat([centres - s, centres + s], 1) for s in (4.0, 5.0, 6.0)], 1
    ).reshape(-1, 4)
    gt = torch.tensor([[0.0, 0.0, 60.0, 60.0]])
    seen = {}
    orig = torch.Tensor.topk

    def spy(self, k, *args, **kwargs):
        seen.setdefault("k", k)
        return orig(self, k, *args, **kwargs)

    torch.Tensor.topk = spy
    try:
        atss_assign(anchors, [30], gt, topk=4)
    finally:
        torch.Tensor.topk = orig
    assert seen["k"] == 4


def test_rpn_losses_are_weighted_by_0_20():
    torch.manual_seed(0)
    model = build("rs_faster_rcnn", 3, **TINY, proposals_per_image=32)
    assert model.rpn.head_weight == pytest.approx(0.20)
    # sampling-free: the samplers' sizes exceed any number of examples
    assert model.rpn.fg_bg_sampler.batch_size_per_image >= 10**9
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image >= 10**9
    assert model.roi_heads.score_thresh == pytest.approx(0.40)
    g = torch.Generator().manual_seed(0)
    obj, deltas = torch.randn(50, 1, generator=g), torch.randn(50, 4, generator=g) * 0.1
    labels = [torch.tensor([1.0] * 5 + [0.0] * 40 + [-1.0] * 5)]
    regs = [torch.randn(50, 4, generator=g) * 0.1]
    weighted = model.rpn.compute_loss(obj, deltas, labels, regs)
    model.rpn.head_weight = 1.0
    plain = model.rpn.compute_loss(obj, deltas, labels, regs)
    for w, p in zip(weighted, plain):
        assert w.item() == pytest.approx(0.2 * p.item(), rel=1e-6) and p.item() > 0


def test_dice_loss_score_weighted_by_hand():
    t = torch.ones(2, 1, 2)
    logits = torch.tensor([[[50.0, 50.0]], [[50.0, -50.0]]])  # dice 1 and 2/3
    w = torch.tensor([0.2, 0.6])
    expected = (0.2 * 0.0 + 0.6 * (1 - 2 / 3)) / 0.8
    assert dice_loss(logits, t, weights=w).item() == pytest.approx(expected, abs=1e-6)
    assert dice_loss(logits, t).item() == pytest.approx((1 - 2 / 3) / 2, abs=1e-6)


def test_rs_mask_rcnn_mask_loss_uses_the_scores(monkeypatch):
    import lrpbook.models.rcnn as rcnn

    seen = {}
    orig = rcnn.dice_loss

    def spy(logits, targets, eps=1e-6, weights=None):
        seen["weights"] = weights
        return orig(logits, targets, eps, weights)

    monkeypatch.setattr(rcnn, "dice_loss", spy)
    torch.manual_seed(0)
    model = build("rs_mask_rcnn", 3, **TINY, proposals_per_image=32, mask_head_channels=8)
    imgs, tgts = _batch(masks=True, empty_second=False)
    model(imgs, tgts)
    w = seen["weights"]
    assert w is not None and w.numel() > 0 and ((w > 0) & (w < 1)).all()
    assert not w.requires_grad


# ---------------------------------------------------------------------------- corners
def _degenerate_head(model):
    """Make every prediction a confident box of zero width and height."""
    with torch.no_grad():
        model.head.box_deltas.weight.zero_()
        model.head.box_deltas.bias.copy_(
            torch.tensor([0.0, 0.0, -60.0, -60.0]).repeat(model.anchors_per_location)
        )
        model.head.cls_logits.weight.zero_()
        model.head.cls_logits.bias.fill_(3.0)


def test_predict_never_returns_degenerate_boxes():
    torch.manual_seed(0)
    model = build("rs_atss", 2, **TINY).eval()
    _degenerate_head(model)
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])[0]
    assert out["boxes"].shape[0] == 0
    model.min_box_size = 0.0  # the old behaviour: clamped, zero-area boxes came out
    with torch.no_grad():
        raw = model([torch.rand(3, 64, 64)])[0]["boxes"]
    assert raw.shape[0] > 0 and ((raw[:, 2:] - raw[:, :2]) < 1e-2).all()


def test_degenerate_ground_truth_is_reported_by_index():
    model = build("rs_atss", 2, **TINY)
    imgs, tgts = _batch(empty_second=False)
    bad = [dict(tgts[0]), dict(tgts[1])]
    bad[1]["boxes"] = torch.tensor([[4.0, 4, 4, 24]])
    with pytest.raises(ValueError, match=r"box 0\) for target at index 1"):
        model(imgs, bad)
    bad[1]["boxes"] = torch.tensor([[4.0, 4, 30, 24]])
    bad[1]["labels"] = torch.tensor([7])
    with pytest.raises(ValueError, match=r"target 1: labels must be in 1\.\.2"):
        model(imgs, bad)
    with pytest.raises(ValueError, match="2 images but 1 targets"):
        model(imgs, tgts[:1])


def test_weights_backbone_from_a_local_file(tmp_path):
    from torchvision.models import resnet18

    from lrpbook.models import build_backbone

    net = resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    bb = build_backbone("resnet18", weights_backbone=str(path), fpn_channels=8)
    assert torch.equal(bb.body.conv1.weight, net.conv1.weight)
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth.*does not exist"):
        build_backbone("resnet18", weights_backbone=str(missing))


def test_weights_backbone_uses_the_hub_cache_and_explains_a_miss(tmp_path, monkeypatch):
    import urllib.error

    from torchvision.models import ResNet18_Weights, resnet18
    from torchvision.models._api import WeightsEnum

    from lrpbook.models import build_backbone

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(FileNotFoundError, match="not in the torch hub cache at .*checkpoints"):
        build_backbone("resnet18", weights_backbone="IMAGENET1K_V1")
    net = resnet18(weights=None)
    cache = tmp_path / "checkpoints"
    cache.mkdir()
    torch.save(net.state_dict(), cache / ResNet18_Weights.IMAGENET1K_V1.url.split("/")[-1])
    bb = build_backbone("resnet18", weights_backbone="IMAGENET1K_V1", fpn_channels=8)
    assert torch.equal(bb.body.layer1[0].conv1.weight, net.layer1[0].conv1.weight)
    with pytest.raises(ValueError, match="unknown `weights_backbone`"):
        build_backbone("resnet18", weights_backbone="IMAGENET9K")
