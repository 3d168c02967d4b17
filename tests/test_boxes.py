import pytest
import torch
from torchvision import ops

from lrpbook import boxes as B


def test_box_convert_round_trips_through_every_format():
    xyxy = torch.tensor([[1.0, 2.0, 11.0, 22.0], [0.5, 0.5, 0.75, 3.0]], dtype=torch.float64)
    for fmt in B.BOX_FORMATS:
        back = B.box_convert(B.box_convert(xyxy, "xyxy", fmt), fmt, "xyxy")
        torch.testing.assert_close(back, xyxy)


def test_coco_xywh_to_xyxy_by_hand():
    out = B.box_convert(torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "xywh", "xyxy")
    assert out.tolist() == [[10.0, 20.0, 40.0, 60.0]]


def test_box_convert_does_not_mutate_and_copies_same_format():
    x = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    y = B.box_convert(x, "xyxy", "xyxy")
    y += 1
    assert x.tolist() == [[0.0, 0.0, 2.0, 2.0]]


def test_iou_of_half_overlapping_squares_is_one_third():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
    assert B.box_iou(a, b).item() == pytest.approx(50 / 150)


def test_giou_is_negative_for_disjoint_boxes_and_matches_formula():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
    # IoU 0, enclosing box area 3, union 2 -> GIoU = 0 - (3 - 2) / 3
    assert B.generalized_box_iou(a, b).item() == pytest.approx(-1 / 3)


def test_pairwise_shapes_and_agreement_with_torchvision():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(7, 2, generator=g) * 50
    wh = torch.rand(7, 2, generator=g) * 20 + 1
    a = torch.cat([xy, xy + wh], 1)
    b = a.flip(0) + 3
    assert B.box_iou(a, b).shape == (7, 7)
    torch.testing.assert_close(B.box_iou(a, b), ops.box_iou(a, b))
    torch.testing.assert_close(B.box_area(a), wh.prod(1))


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(3), r"shape \(N, 4\)"),
        (torch.zeros(2, 5), r"shape \(N, 4\)"),
        (torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), "non-finite"),
        (torch.tensor([[5.0, 0.0, 1.0, 1.0]]), "row 0 is not a valid"),
    ],
)
def test_malformed_boxes_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        B.box_iou(bad, torch.zeros(1, 4))


def test_integer_boxes_and_unknown_formats_are_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        B.box_area(torch.zeros(1, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="in_fmt"):
        B.box_convert(torch.zeros(1, 4), "yxyx", "xyxy")
    with pytest.raises(ValueError, match="negative width"):
        B.box_convert(torch.tensor([[0.0, 0.0, -1.0, 1.0]]), "xywh", "xyxy")
