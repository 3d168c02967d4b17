"""Bad or degenerate input to lrpbook.metrics.evaluate: a clear error or the documented behaviour."""

from __future__ import annotations

import json
import math

import pytest

from lrpbook.metrics import evaluate


def tiny_gt() -> dict:
    return {
        "images": [{"id": 1, "height": 100, "width": 100}, {"id": 2, "height": 100, "width": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [50, 50, 30, 30], "area": 900,
             "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "c"}],
    }  # fmt: skip


def det(img=1, cat=3, box=(10, 10, 20, 20), score=0.9) -> dict:
    return {"image_id": img, "category_id": cat, "bbox": list(box), "score": score}


def test_malformed_json_names_file(tmp_path):
    p = tmp_path / "dt.json"
    p.write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match="malformed JSON") as ei:
        evaluate(tiny_gt(), p)
    assert str(p) in str(ei.value)


def test_detection_on_unknown_image_names_the_id():
    with pytest.raises(ValueError, match="image_id 77"):
        evaluate(tiny_gt(), [det(), det(img=77)])


def test_unknown_category_is_ignored_with_warning():
    with pytest.warns(UserWarning, match="999"):
        res = evaluate(tiny_gt(), [det(), det(cat=999, score=1.0)])
    clean = evaluate(tiny_gt(), [det()])
    assert res.stats == clean.stats


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"score": float("nan")}, "index 1 has a non-finite 'score'"),
        ({"score": float("inf")}, "index 1 has a non-finite 'score'"),
        ({"bbox": [0, float("nan"), 3, 3]}, "index 1 has a non-finite 'bbox'"),
        ({"bbox": [0, 0, -1, 3]}, "index 1 has a negative width or height"),
        ({"bbox": [0, 0, 3, -1]}, "index 1 has a negative width or height"),
        ({"bbox": [0, 0, 3]}, "index 1: 'bbox' must be a list of 4 numbers"),
        ({"score": "high"}, "index 1: 'score' must be a number"),
    ],
)
def test_bad_detection_values_name_the_index(bad, match):
    d = det()
    d.update(bad)
    with pytest.raises(ValueError, match=match):
        evaluate(tiny_gt(), [det(), d])


@pytest.mark.parametrize("key", ["image_id", "category_id", "score", "bbox"])
def test_missing_detection_key(key):
    d = det()
    del d[key]
    with pytest.raises(ValueError, match=f"index 1 has no '{key}' key"):
        evaluate(tiny_gt(), [det(), d])


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_gt_key(key):
    gt = tiny_gt()
    del gt[key]
    with pytest.raises(ValueError, match=f"no '{key}' key"):
        evaluate(gt, [det()])


def test_missing_annotation_area():
    gt = tiny_gt()
    del gt["annotations"][1]["area"]
    with pytest.raises(ValueError, match="annotation at index 1 has no 'area' key"):
        evaluate(gt, [det()])


def test_wrong_top_level_types():
    with pytest.raises(ValueError, match="must be a JSON array"):
        evaluate(tiny_gt(), {"image_id": 1})
    with pytest.raises(ValueError, match="must be a JSON object"):
        evaluate([1, 2], [det()])
    with pytest.raises(ValueError, match="iou_type"):
        evaluate(tiny_gt(), [det()], "boxes")


def test_no_detections_is_official_behaviour():
    """oLRP 1 and FN 1 per class; Loc, FP and threshold NaN, so their means are -1; AP 0."""
    res = evaluate(tiny_gt(), [])
    assert res.stats["AP"] == 0.0 and res.stats["oLRP"] == 1.0 and res.stats["oLRP_FN"] == 1.0
    assert res.stats["oLRP_Loc"] == -1 and res.stats["oLRP_FP"] == -1
    row = res.per_class[0]
    assert math.isnan(row["oLRP_Loc"]) and math.isnan(row["threshold"])


def test_no_ground_truth_gives_minus_one_everywhere():
    gt = tiny_gt()
    gt["annotations"] = []
    res = evaluate(gt, [det()])
    assert all(v == -1 for v in res.stats.values())
    assert res.per_class[0]["oLRP"] == -1 and res.per_class[0]["threshold"] == -1


def test_crowd_absorbs_many_detections_without_fp():
    gt = tiny_gt()
    gt["annotations"].append({"id": 3, "image_id": 1, "category_id": 3, "bbox": [60, 60, 40, 40],
                              "area": 1600, "iscrowd": 1})  # fmt: skip
    dets = [det(), det(box=(62, 62, 10, 10), score=0.95), det(box=(70, 70, 10, 10), score=0.8)]
    res = evaluate(gt, dets)
    assert res.per_class[0]["oLRP_FP"] == 0.0  # both detections in the crowd are ignored
    json.dumps(res.to_dict())


def test_ids_integral_floats_accepted_other_types_rejected():
    assert evaluate(tiny_gt(), [det(img=1.0)]).stats == evaluate(tiny_gt(), [det()]).stats
    with pytest.raises(ValueError, match="'image_id' must be an integer; got '1'"):
        evaluate(tiny_gt(), [det(), det(img="1")])
    with pytest.raises(ValueError, match="'category_id' must be an integer; got 3.5"):
        evaluate(tiny_gt(), [det(), det(cat=3.5)])
    with pytest.raises(ValueError, match="index 1: 'image_id' must be an integer; got nan"):
        evaluate(tiny_gt(), [det(), det(img=float("nan"))])
