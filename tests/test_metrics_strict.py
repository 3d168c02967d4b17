"""Strict input: every malformed case of issue 13 exits 2 with one line naming the file, the
record and the problem; zero-size detection boxes are scored as pycocotools scores them."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings

import numpy as np
import pytest

from lrpbook.metrics import evaluate, evaluate_lvis
from lrpbook.metrics.cli import main


def gt_doc() -> dict:
    return {
        "images": [{"id": 1, "height": 40, "width": 50}, {"id": 2, "height": 40, "width": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
             "iscrowd": 0, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100,
             "iscrowd": 0, "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]},
        ],
        "categories": [{"id": 1, "name": "a", "frequency": "f"}],
    }  # fmt: skip


def dets() -> list[dict]:
    return [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 21], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [6, 5, 10, 10], "score": 0.8},
    ]


def segm_dets() -> list[dict]:
    from pycocotools import mask as mask_utils

    out = []
    for d in dets():
        m = np.zeros((40, 50), dtype=np.uint8, order="F")
        x, y, w, h = (int(v) for v in d["bbox"])
        m[y : y + h, x : x + w] = 1
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode()
        out.append({**d, "segmentation": rle})
    return out


def run_cli(tmp_path, capsys, gt, dt, iou_type="bbox", command="coco"):
    gp, dp = tmp_path / "gt.json", tmp_path / "dt.json"
    gp.write_text(json.dumps(gt))
    dp.write_text(json.dumps(dt))
    args = [command, str(gp), str(dp)] + (["--iou-type", iou_type] if command == "coco" else [])
    rc = main(args)
    err = capsys.readouterr().err.strip()
    return rc, err, gp, dp


def dup_image(g, d):
    g["images"].append({"id": 2, "height": 40, "width": 50})


def dup_ann(g, d):
    g["annotations"][1]["id"] = 1


def ann_unknown_image(g, d):
    g["annotations"][1]["image_id"] = 7


def string_bbox(g, d):
    d[1]["bbox"] = ["12", "9", "27", "28"]


CASES = [
    ("duplicate image id", dup_image, "gt", r"image id 2 appears more than once"),
    ("duplicate annotation id", dup_ann, "gt", r"annotation id 1 appears more than once"),
    ("GT on unknown image", ann_unknown_image, "gt", r"annotation at index 1 is on image_id 7"),
    ("string bbox", string_bbox, "dt", r"detection at index 1: 'bbox' must be a list of 4 numbers"),
]


@pytest.mark.parametrize("command", ["coco", "lvis"])
@pytest.mark.parametrize(("label", "edit", "file", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_malformed_case_exits_2_naming_file_record_problem(tmp_path, capsys, command, label, edit,
                                                          file, pattern):  # fmt: skip
    g, d = gt_doc(), dets()
    edit(g, d)
    rc, err, gp, dp = run_cli(tmp_path, capsys, g, d, command=command)
    assert rc == 2, label
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(gp if file == "gt" else dp) in err
    assert __import__("re").search(pattern, err), err


def test_segm_detections_without_segmentation_exit_2(tmp_path, capsys):
    rc, err, _, dp = run_cli(tmp_path, capsys, gt_doc(), dets(), iou_type="segm")
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(dp) in err and "detection at index 0 has no 'segmentation'" in err


@pytest.mark.parametrize("which", ["gt", "dt"])
def test_rle_size_differing_from_image_exits_2(tmp_path, capsys, which):
    g, d = gt_doc(), segm_dets()
    if which == "dt":
        d[1]["segmentation"]["size"] = [41, 50]
    else:
        g["annotations"][0]["segmentation"] = copy.deepcopy(d[0]["segmentation"])
        g["annotations"][0]["segmentation"]["size"] = [40, 51]
    rc, err, gp, dp = run_cli(tmp_path, capsys, g, d, iou_type="segm")
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(dp if which == "dt" else gp) in err
    assert "RLE 'size'" in err and "differs from its image" in err
    assert ("detection at index 1" if which == "dt" else "annotation at index 0") in err


def test_well_formed_segm_case_still_evaluates(tmp_path, capsys):
    rc, err, _, _ = run_cli(tmp_path, capsys, gt_doc(), segm_dets(), iou_type="segm")
    assert rc == 0, err


@pytest.mark.parametrize("command", ["coco", "lvis"])
def test_swapped_gt_and_dt_are_named(tmp_path, capsys, command):
    rc, err, _, _ = run_cli(tmp_path, capsys, dets(), gt_doc(), command=command)
    assert rc == 2 and "swapped" in err and len(err.splitlines()) == 1


def test_negative_width_stays_an_error():
    d = dets()
    d[0]["bbox"] = [10, 10, -2, 5]
    with pytest.raises(ValueError, match="index 0 has a negative width or height"):
        evaluate(gt_doc(), d)
    with pytest.raises(ValueError, match="index 0 has a negative width or height"):
        evaluate_lvis(gt_doc(), d)


def _pycoco_stats(gt, dt):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
        r = c.loadRes(copy.deepcopy(dt))
        e = COCOeval(c, r, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def test_zero_size_boxes_are_false_positives_as_in_pycocotools():
    rng = np.random.default_rng(5)
    g = gt_doc()
    d = dets()
    for k in range(6):  # zero-width and zero-height boxes, some above the true positives
        w, h = (0.0, 7.0) if k % 2 else (9.0, 0.0)
        d.append({"image_id": 1 + k % 2, "category_id": 1, "score": float(rng.uniform(0.5, 1.0)),
                  "bbox": [float(rng.uniform(0, 30)), float(rng.uniform(0, 20)), w, h]})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate(g, d)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "6 detection(s) have zero width or height" in msgs[0]
    ref = _pycoco_stats(g, d)
    ours = [res.stats[k] for k in list(res.stats)[:12]]
    np.testing.assert_array_equal(ours, ref)
    assert res.stats["AP"] < evaluate(g, dets()).stats["AP"]  # they did count, as FPs


def test_zero_size_boxes_warn_once_in_the_cli(tmp_path, capsys):
    d = dets() + [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 4], "score": 0.99}]
    rc, err, _, _ = run_cli(tmp_path, capsys, gt_doc(), d)
    assert rc == 0
    assert err.count("zero width or height") == 1 and "1 detection(s)" in err


def test_lvis_drops_zero_area_detections_with_one_warning():
    d = dets() + [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 4], "score": 0.99}]
    with pytest.warns(UserWarning, match="1 detection"):
        res = evaluate_lvis(gt_doc(), d)
    assert res.stats == evaluate_lvis(gt_doc(), dets()).stats


def test_print_result_shows_stats_and_shapes_not_arrays():
    res = evaluate(gt_doc(), dets())
    text = repr(res)
    assert len(text) < 1500 and "'AP': " in text and "precision=array[10, 101, 1, 4, 3]" in text
    lv = evaluate_lvis(gt_doc(), dets())
    assert len(repr(lv)) < 1500 and "'oLRP_Loc'" in repr(lv)


def test_coco_and_lvis_share_the_key_spelling_and_old_lvis_keys_still_read():
    from lrpbook.metrics import LVIS_STATS_KEYS, STATS_KEYS

    res, lv = evaluate(gt_doc(), dets()), evaluate_lvis(gt_doc(), dets())
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "oLRP", "oLRP_Loc", "oLRP_FP",
                "oLRP_FN"):  # fmt: skip
        assert key in STATS_KEYS["bbox"] and key in LVIS_STATS_KEYS
        assert key in res.stats and key in lv.stats
    assert lv.stats["oLRP LOC"] == lv.stats["oLRP_Loc"] and "oLRP FP" in lv.stats
    assert "oLRP LOC" in lv.summary() and "oLRP LOC" not in lv.to_dict()["stats"]
    for r in (res, lv):
        assert set(r.thresholds) == {1} and "stats" in r.to_dict()
