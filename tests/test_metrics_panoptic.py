"""Panoptic PQ + LRP (``lrpbook.metrics.panoptic``): the official reference case, a hand-checked
toy case (VOID, crowd, fp-only and empty classes), the division-by-zero behaviour, bad input and
the CLI."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from lrpbook.metrics.cli import main
from lrpbook.metrics.panoptic import PanopticResult, evaluate_panoptic

KEYS = ("pq", "sq", "rq", "lrp", "lrp_loc", "lrp_fp", "lrp_fn")


def same(mine, ref, rtol: float = 1e-12) -> bool:
    if ref is None:
        return mine is None or (isinstance(mine, float) and math.isnan(mine))
    return mine is not None and not math.isnan(mine) and abs(mine - ref) <= rtol * max(1, abs(ref))


@pytest.fixture(scope="module")
def pan_case(request):
    refcases = request.getfixturevalue("refcases")
    folder = refcases / "lrp" / "cases" / "panoptic_small"
    if not folder.is_dir():
        pytest.skip("reference case lrp/panoptic_small not in this set")
    exp = json.loads((refcases / "lrp" / "expected" / "panoptic_small.json").read_text())
    return folder, exp["official"]


def run_case(folder, **kw) -> PanopticResult:
    return evaluate_panoptic(folder / "gt.json", folder / "pred.json", folder / "gt",
                             folder / "pred", **kw)  # fmt: skip


# ------------------------------------------------------------------------------------------
# the official reference case


def test_reference_case_splits_equal_official(pan_case):
    folder, off = pan_case
    res = run_case(folder)
    assert list(res.results) == ["All", "Things", "Stuff"]
    for split in ("All", "Things", "Stuff"):
        mine, ref = res.results[split], off["results"][split]
        assert list(mine) == [*KEYS, "n"]
        assert mine["n"] == ref["pq"]["n"] == ref["lrp"]["n"]
        for k in ("pq", "sq", "rq"):
            assert same(mine[k], ref["pq"][k]), (split, k)
        for k in ("lrp", "lrp_loc", "lrp_fp", "lrp_fn"):
            assert same(mine[k], ref["lrp"][k]), (split, k)


def test_reference_case_per_class_equals_official(pan_case):
    folder, off = pan_case
    res = run_case(folder)
    assert set(res.per_class) == {int(c) for c in off["results"]["per_class_lrp"]}
    for cid, ref_lrp in off["results"]["per_class_lrp"].items():
        row = res.per_class[int(cid)]
        for k, v in ref_lrp.items():
            assert same(row[k], v), (cid, k, row[k], v)  # nulls included
        raw = off["per_class_raw_counts"][cid]
        assert (row["tp"], row["fp"], row["fn"]) == (raw["tp"], raw["fp"], raw["fn"])
        assert same(row["iou_sum"], raw["iou_sum"])
        if raw["tp"] + raw["fp"] + raw["fn"] == 0:
            # documented choice: NaN where the official code shows a 0.0 placeholder
            assert all(math.isnan(row[k]) for k in ("pq", "sq", "rq"))
            continue
        for k, v in off["results"]["per_class_pq"][cid].items():
            assert same(row[k], v), (cid, k)


# ------------------------------------------------------------------------------------------
# a hand-checked toy case

CATS = [
    {"id": 1, "name": "a", "isthing": 1},
    {"id": 2, "name": "b", "isthing": 1},
    {"id": 10, "name": "s", "isthing": 0},
    {"id": 11, "name": "t", "isthing": 0},  # never present
]


def _png(path, ids: np.ndarray) -> None:
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(path)


def toy_case(root, *, cats=CATS):
    """One 10 x 10 image.

    GT: thing 5 (class 1, rows 0-3 x cols 0-4, 20 px), crowd 6 (class 1, rows 6-9 x cols 0-4),
    stuff 7 (class 10, cols 5-9, 50 px), VOID rows 4-5 x cols 0-4.
    Predictions: 100 (class 1): rows 0-3 x cols 0-3 plus 4 VOID pixels -> IoU 16/20 = 0.8, TP;
    101 (class 1) covers the crowd region -> ignored; 102 (class 2) lies in VOID -> ignored;
    103 (class 2) takes 4 pixels of the stuff -> FP; 104 (class 10): the rest of the stuff,
    IoU 46/50 = 0.92, TP.
    """
    (root / "gt").mkdir(parents=True)
    (root / "pred").mkdir()
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[0:4, 0:5] = 5
    gt[6:10, 0:5] = 6
    gt[:, 5:10] = 7
    pred = np.zeros((10, 10), dtype=np.int64)
    pred[0:4, 0:4] = 100
    pred[4, 0:4] = 100
    pred[6:10, 0:5] = 101
    pred[5, 0:5] = 102
    pred[4, 4] = 102
    pred[:, 5:10] = 104
    pred[0:2, 5:7] = 103
    _png(root / "gt" / "1.png", gt)
    _png(root / "pred" / "1.png", pred)
    gt_json = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 10, "height": 10}],
        "annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [
            {"id": 5, "category_id": 1, "iscrowd": 0, "area": 20},
            {"id": 6, "category_id": 1, "iscrowd": 1, "area": 20},
            {"id": 7, "category_id": 10, "iscrowd": 0, "area": 50},
        ]}],
        "categories": cats,
    }  # fmt: skip
    pred_json = {"annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [
        {"id": i, "category_id": c} for i, c in [(100, 1), (101, 1), (102, 2), (103, 2), (104, 10)]
    ]}]}  # fmt: skip
    (root / "gt.json").write_text(json.dumps(gt_json))
    (root / "pred.json").write_text(json.dumps(pred_json))
    return root


def test_toy_case_by_hand(tmp_path):
    res = run_case(toy_case(tmp_path))
    a, b, s, t = (res.per_class[c] for c in (1, 2, 10, 11))
    assert (a["tp"], a["fp"], a["fn"]) == (1, 0, 0)  # the crowd-covering prediction is ignored
    assert a["pq"] == pytest.approx(0.8) and a["sq"] == pytest.approx(0.8) and a["rq"] == 1.0
    assert a["lrp"] == pytest.approx(0.2 / 0.5) and a["lrp_loc"] == pytest.approx(0.2)
    assert (a["lrp_fp"], a["lrp_fn"]) == (0.0, 0.0)
    # class 2: one FP (the VOID prediction is ignored): LRP 1, FP 1, Loc and FN undefined
    assert (b["tp"], b["fp"], b["fn"]) == (0, 1, 0)
    assert (b["pq"], b["sq"], b["rq"], b["lrp"], b["lrp_fp"]) == (0.0, 0.0, 0.0, 1.0, 1.0)
    assert math.isnan(b["lrp_loc"]) and math.isnan(b["lrp_fn"])
    assert s["pq"] == pytest.approx(0.92) and s["lrp"] == pytest.approx(0.08 / 0.5)
    # class 11: nothing to evaluate: NaN everywhere, not counted
    assert all(math.isnan(t[k]) for k in KEYS) and (t["tp"], t["fp"], t["fn"]) == (0, 0, 0)
    al = res.results["All"]
    assert al["n"] == 3
    assert al["pq"] == pytest.approx((0.8 + 0 + 0.92) / 3)
    assert al["lrp"] == pytest.approx((0.4 + 1 + 0.16) / 3)
    assert al["lrp_loc"] == pytest.approx((0.2 + 0.08) / 2)  # class 2 has no Loc
    assert al["lrp_fp"] == pytest.approx(1 / 3)
    assert al["lrp_fn"] == 0.0  # class 2 has no FN component
    assert res.results["Things"]["n"] == 2 and res.results["Things"]["lrp"] == pytest.approx(0.7)
    assert res.results["Stuff"]["n"] == 1 and res.results["Stuff"]["pq"] == pytest.approx(0.92)


def test_lrp_equals_one_minus_pq_rewritten(tmp_path):
    """Thesis Eq. (5.8): 1 - PQ has LRP's total error over 2 TP + FP + FN instead of TP + FP + FN."""
    res = run_case(toy_case(tmp_path))
    for row in res.per_class.values():
        if row["tp"] + row["fp"] + row["fn"] == 0:
            continue
        total = (row["tp"] - row["iou_sum"]) / 0.5 + row["fp"] + row["fn"]
        assert 1 - row["pq"] == pytest.approx(total / (2 * row["tp"] + row["fp"] + row["fn"]))
        assert row["lrp"] == pytest.approx(total / (row["tp"] + row["fp"] + row["fn"]))


def test_split_without_classes_is_nan_with_n_zero(tmp_path):
    """The official code raises ZeroDivisionError here; lrpbook documents NaN and n = 0."""
    cats = [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 1},
            {"id": 10, "name": "s", "isthing": 1}, {"id": 11, "name": "t", "isthing": 0}]  # fmt: skip
    res = run_case(toy_case(tmp_path, cats=cats))
    stuff = res.results["Stuff"]
    assert stuff["n"] == 0 and all(math.isnan(stuff[k]) for k in KEYS)
    assert res.results["Things"]["n"] == 3
    # the flat stats share COCO's and LVIS' convention: -1 is "nothing to evaluate"
    assert res.stats["PQ_st"] == -1 and res.stats["LRP_st"] == -1
    assert res.stats["PQ_th"] == res.results["Things"]["pq"] and res.thresholds == {}
    assert "stats=" in repr(res) and len(repr(res)) < 1500


def test_categories_argument_overrides_the_json(tmp_path):
    root = toy_case(tmp_path)
    cats = {c["id"]: {"name": c["name"], "isthing": 1} for c in CATS}
    res = run_case(root, categories=cats)
    assert res.results["Things"]["n"] == 3 and res.results["Stuff"]["n"] == 0
    assert res.results["All"]["pq"] == run_case(root).results["All"]["pq"]


# ------------------------------------------------------------------------------------------
# bad input


def _edit_json(path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_missing_png_is_an_error_naming_it(tmp_path):
    root = toy_case(tmp_path)
    (root / "pred" / "1.png").unlink()
    with pytest.raises(ValueError, match=r"prediction PNG .*pred/1\.png: no such file"):
        run_case(root)


def test_png_segment_missing_from_json_is_an_error(tmp_path):
    root = toy_case(tmp_path)
    _edit_json(root / "pred.json", lambda d: d["annotations"][0]["segments_info"].pop(3))
    with pytest.raises(ValueError, match="segment id 103 is in the PNG but not in 'segments_info'"):
        run_case(root)


def test_json_segment_missing_from_png_is_an_error(tmp_path):
    root = toy_case(tmp_path)
    _edit_json(root / "pred.json", lambda d: d["annotations"][0]["segments_info"].append(
        {"id": 999, "category_id": 1}))  # fmt: skip
    with pytest.raises(ValueError, match=r"\[999\] are in 'segments_info' but not in the PNG"):
        run_case(root)


def test_unknown_category_ids(tmp_path):
    root = toy_case(tmp_path)
    _edit_json(root / "pred.json",
               lambda d: d["annotations"][0]["segments_info"][3].update(category_id=77))  # fmt: skip
    with pytest.raises(ValueError, match="segment id 103 has unknown category_id 77"):
        run_case(root)
    # an unknown GT category is not evaluated (as officially), with a warning
    root2 = toy_case(tmp_path / "b")
    _edit_json(root2 / "gt.json",
               lambda d: d["annotations"][0]["segments_info"][0].update(category_id=55))  # fmt: skip
    with pytest.warns(UserWarning, match="not evaluated"):
        res = run_case(root2)
    # GT 5 is gone: prediction 100 becomes an FP of class 1
    assert (res.per_class[1]["tp"], res.per_class[1]["fp"]) == (0, 1) and 55 not in res.per_class


def test_malformed_json_missing_image_and_size_mismatch(tmp_path):
    root = toy_case(tmp_path)
    (root / "pred.json").write_text('{"annotations": [')
    with pytest.raises(ValueError, match=r"pred\.json: malformed JSON"):
        run_case(root)
    (root / "pred.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match="no prediction for the image with id 1"):
        run_case(root)
    root2 = toy_case(tmp_path / "b")
    _png(root2 / "pred" / "1.png", np.zeros((10, 12), dtype=np.int64))
    with pytest.raises(ValueError, match=r"size 12x10 differs"):
        run_case(root2)
    with pytest.raises(ValueError, match="`pred_dir` .*: no such folder"):
        evaluate_panoptic(root2 / "gt.json", root2 / "pred.json", root2 / "gt", tmp_path / "x")


# ------------------------------------------------------------------------------------------
# the command line


def test_cli_panoptic_writes_the_official_numbers(pan_case, tmp_path, capsys):
    folder, off = pan_case
    out = tmp_path / "res.json"
    argv = ["panoptic", str(folder / "gt.json"), str(folder / "pred.json"), "--gt-dir",
            str(folder / "gt"), "--pred-dir", str(folder / "pred"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "Things" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    for split in ("All", "Things", "Stuff"):
        for k in ("pq", "sq", "rq", "n"):
            assert same(doc["stats"][split][k], off["results"][split]["pq"][k])
        for k in ("lrp", "lrp_loc", "lrp_fp", "lrp_fn"):
            assert same(doc["stats"][split][k], off["results"][split]["lrp"][k])
    rows = {r["category_id"]: r for r in doc["per_class"]}
    for cid, ref in off["results"]["per_class_lrp"].items():
        for k, v in ref.items():
            assert same(rows[int(cid)][k], v)  # NaN written as null


def test_cli_panoptic_bad_input_exits_2_with_one_line(tmp_path, capsys):
    root = toy_case(tmp_path)
    shutil.rmtree(root / "gt")
    (root / "gt").mkdir()
    argv = ["panoptic", str(root / "gt.json"), str(root / "pred.json"), "--gt-dir",
            str(root / "gt"), "--pred-dir", str(root / "pred")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gt/1.png: no such file" in err[0]


def test_non_rgb_png_missing_area_and_duplicate_ids_are_errors(tmp_path):
    root = toy_case(tmp_path)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8), mode="L").save(root / "gt" / "1.png")
    with pytest.raises(ValueError, match=r"gt/1\.png: expected an RGB image; got mode 'L'"):
        run_case(root)
    root2 = toy_case(tmp_path / "b")
    _edit_json(root2 / "gt.json", lambda d: d["annotations"][0]["segments_info"][0].pop("area"))
    with pytest.raises(ValueError, match="segment at index 0 has no 'area' key"):
        run_case(root2)
    root3 = toy_case(tmp_path / "c")
    _edit_json(root3 / "pred.json", lambda d: d["annotations"][0]["segments_info"].append(
        {"id": 100, "category_id": 2}))  # fmt: skip
    with pytest.raises(ValueError, match="segment id 100 appears more than once"):
        run_case(root3)


def test_rgba_png_is_read_like_rgb(tmp_path):
    root = toy_case(tmp_path)
    ref = run_case(root).results
    for sub in ("gt", "pred"):
        rgb = np.asarray(Image.open(root / sub / "1.png"))
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        Image.fromarray(rgba, mode="RGBA").save(root / sub / "1.png")
    assert run_case(root).results == ref
