"""LVIS evaluation (``lrpbook.metrics.lvis``): the official reference case, hand-checked federated
rules, a cross-check against the ``lvis`` package when it is installed, bad input and the CLI."""

from __future__ import annotations

import copy
import gzip
import json
import math
import sys
import types

import numpy as np
import pytest

from lrpbook.metrics.cli import main
from lrpbook.metrics.lvis import LVIS_OFFICIAL_KEYS, LVIS_STATS_KEYS, LVISResult, evaluate_lvis


def same(mine: float, ref: float | None, rtol: float = 1e-12) -> bool:
    """Equal within ``rtol`` (relative, floored at 1); NaN (``None``) and -1 must match exactly."""
    if ref is None:
        return mine is None or (isinstance(mine, float) and math.isnan(mine))
    if ref == -1:
        return mine == -1
    return mine is not None and not math.isnan(mine) and abs(mine - ref) <= rtol * max(1, abs(ref))


@pytest.fixture(scope="module")
def lvis_case(request):
    refcases = request.getfixturevalue("refcases")
    folder = refcases / "lrp" / "cases" / "lvis_bbox_small"
    if not folder.is_dir():
        pytest.skip("reference case lrp/lvis_bbox_small not in this set")
    exp = json.loads((refcases / "lrp" / "expected" / "lvis_bbox_small.json").read_text())
    return folder / "gt.json", folder / "dt.json.gz", exp["official"]


# ------------------------------------------------------------------------------------------
# the official reference case


def test_reference_case_stats_equal_official(lvis_case):
    gt, dt, off = lvis_case
    res = evaluate_lvis(gt, dt)
    assert isinstance(res, LVISResult)
    official = off["results_keys_in_order"][:-1]
    assert list(res.stats) == [LVIS_OFFICIAL_KEYS.get(k, k) for k in official]
    assert list(res.stats) == list(LVIS_STATS_KEYS)
    for k in official:  # the official spellings are read through the aliases
        assert same(res.stats[k], off["results"][k]), (k, res.stats[k], off["results"][k])


def test_reference_case_arrays_equal_official(lvis_case):
    gt, dt, off = lvis_case
    res = evaluate_lvis(gt, dt)
    assert res.params["cat_ids"] == off["params"]["cat_ids"]
    assert res.params["area_labels"] == off["params"]["area_rng_lbl"]
    assert res.params["freq_groups"] == off["params"]["freq_groups_cat_index"]
    for name, ref in off["eval_arrays_KxA"].items():
        mine = res.arrays[name]
        assert mine.shape == (len(ref), 4)
        for k, row in enumerate(ref):
            for a, v in enumerate(row):
                assert same(float(mine[k, a]), v), (name, k, a, mine[k, a], v)
    # thresholds are detection scores: equal, not merely close
    thr = np.array(
        [[np.nan if v is None else v for v in row] for row in off["eval_arrays_KxA"]["lrp_opt_thr"]]
    )
    np.testing.assert_array_equal(res.arrays["lrp_opt_thr"], thr)
    assert res.arrays["precision"].shape == (10, 101, 11, 4)
    assert res.arrays["recall"].shape == (10, 11, 4)


def test_reference_case_floored_thresholds_and_per_class(lvis_case):
    gt, dt, off = lvis_case
    res = evaluate_lvis(gt, dt)
    floored = res.floored_thresholds()
    for mine, ref in zip(floored, off["results"]["LRP Opt Thr"], strict=True):
        assert same(mine, ref, rtol=0.0)
    # the unfloored thresholds, per class rows and arrays tell the same story
    for k, row in enumerate(res.per_class):
        cid = row["category_id"]
        assert cid == off["params"]["cat_ids"][k]
        assert same(res.thresholds[cid], off["eval_arrays_KxA"]["lrp_opt_thr"][k][0], rtol=0.0)
        assert same(row["threshold"], off["eval_arrays_KxA"]["lrp_opt_thr"][k][0], rtol=0.0)
        assert same(row["oLRP"], off["eval_arrays_KxA"]["olrp"][k][0])
        assert same(row["oLRP_Loc"], off["eval_arrays_KxA"]["olrp_loc"][k][0])
        assert same(row["oLRP_FP"], off["eval_arrays_KxA"]["olrp_fp"][k][0])
        assert same(row["oLRP_FN"], off["eval_arrays_KxA"]["olrp_fn"][k][0])
        group = next(i for i, g in enumerate(off["params"]["freq_groups_cat_index"]) if k in g)
        assert row["frequency"] == "rcf"[group]
        assert set(row) >= {"category_id", "name", "frequency", "oLRP", "oLRP_Loc", "oLRP_FP",
                            "oLRP_FN", "threshold"}  # fmt: skip


def test_dict_and_list_inputs_give_the_same_result_and_are_not_mutated(lvis_case):
    gt, dt, off = lvis_case
    gt_doc = json.loads(gt.read_text())
    with gzip.open(dt, "rt") as fh:
        dt_doc = json.load(fh)
    before = (copy.deepcopy(gt_doc), copy.deepcopy(dt_doc))
    res = evaluate_lvis(gt_doc, dt_doc)
    assert (gt_doc, dt_doc) == before
    assert res.stats == evaluate_lvis(gt, dt).stats


# ------------------------------------------------------------------------------------------
# hand-checked semantics on a toy case


def _img(i, neg=(), nel=()):
    return {"id": i, "width": 100, "height": 100, "neg_category_ids": list(neg),
            "not_exhaustive_category_ids": list(nel)}  # fmt: skip


def _ann(i, img, cat, box, **kw):
    return {"id": i, "image_id": img, "category_id": cat, "bbox": list(box),
            "area": kw.pop("area", box[2] * box[3]), **kw}  # fmt: skip


def _det(img, cat, box, score):
    return {"image_id": img, "category_id": cat, "bbox": list(box), "score": score}


CATS = [{"id": 1, "name": "a", "frequency": "r"}, {"id": 2, "name": "b", "frequency": "c"},
        {"id": 3, "name": "c", "frequency": "f"}]  # fmt: skip


def test_federated_rules_by_hand():
    """Class 1 (G = 2): image 1 holds one GT; image 2 lists class 1 as negative; image 3 says
    nothing about class 1; image 4 holds one GT and lists class 1 as not exhaustive."""
    gt = {
        "images": [_img(1), _img(2, neg=[1]), _img(3), _img(4, nel=[1])],
        "annotations": [_ann(1, 1, 1, (0, 0, 10, 10)), _ann(2, 4, 1, (0, 0, 10, 10)),
                        _ann(3, 3, 2, (0, 0, 10, 10))],
        "categories": CATS,
    }  # fmt: skip
    dets = [
        _det(1, 1, (0, 0, 10, 8), 0.9),  # TP, IoU 0.8
        _det(3, 1, (50, 50, 10, 10), 0.85),  # class 1 unknown on image 3: dropped
        _det(2, 1, (50, 50, 10, 10), 0.8),  # negative image: FP
        _det(4, 1, (50, 50, 10, 10), 0.7),  # unmatched, not exhaustive: ignored
        _det(4, 1, (0, 0, 10, 10), 0.6),  # TP, IoU 1
    ]
    res = evaluate_lvis(gt, dets)
    # positions: TP(0.8) | FP | ignored | TP(1.0)
    # LRP_1 = (0.2/0.5 + 0 + 1)/2 = 0.7; LRP_2 = (0.4 + 1 + 1)/3 = 0.8; LRP_3 = 0.8;
    # LRP_4 = (0.4 + 1 + 0)/3 = 0.4666...
    k = 0
    assert res.arrays["olrp"][k, 0] == pytest.approx(1.4 / 3, abs=1e-15)
    assert res.arrays["olrp_loc"][k, 0] == pytest.approx(0.1, abs=1e-15)
    assert res.arrays["olrp_fp"][k, 0] == pytest.approx(1 / 3, abs=1e-15)
    assert res.arrays["olrp_fn"][k, 0] == 0.0
    assert res.thresholds[1] == 0.6
    # AP@0.5: precision 1, 1/2, 2/3 at recalls 1/2, 1/2, 1 -> interpolated 1 up to r = 0.5,
    # then 2/3
    p50 = res.arrays["precision"][0, :, k, 0]
    assert np.allclose(p50[:51], 1.0) and np.allclose(p50[51:], 2 / 3)
    # class 2: one GT on image 3, no detection -> oLRP 1, FN 1, Loc/FP/threshold NaN
    assert res.arrays["olrp"][1, 0] == 1.0 and res.arrays["olrp_fn"][1, 0] == 1.0
    assert math.isnan(res.arrays["olrp_loc"][1, 0]) and math.isnan(res.thresholds[2])
    # class 3: no GT anywhere -> -1 everywhere
    assert np.all(res.arrays["olrp"][2] == -1) and res.thresholds[3] == -1
    # group means: r = class 1, c = class 2, f = nothing
    assert res.stats["oLRPr"] == pytest.approx(1.4 / 3, abs=1e-15)
    assert res.stats["oLRPc"] == 1.0 and res.stats["oLRPf"] == -1 and res.stats["APf"] == -1
    assert res.stats["oLRP"] == pytest.approx((1.4 / 3 + 1) / 2, abs=1e-15)
    assert res.stats["oLRP LOC"] == pytest.approx(0.1, abs=1e-15)  # class 2 (NaN) dropped


def test_cap_is_per_image_over_all_classes_and_keeps_ties_in_input_order():
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    # three detections, cap 2: the two highest scores survive; of the tied 0.5s the first
    # in the input wins. The class-2 detection (not annotated, not negative) still takes a slot.
    dets = [
        _det(1, 2, (0, 0, 10, 10), 0.9),
        _det(1, 1, (50, 50, 10, 10), 0.5),  # FP, kept
        _det(1, 1, (0, 0, 10, 10), 0.5),  # the TP, dropped by the cap
    ]
    res = evaluate_lvis(gt, dets, max_dets=2)
    assert res.arrays["olrp"][0, 0] == 1.0 and math.isnan(res.thresholds[1])
    res_all = evaluate_lvis(gt, dets, max_dets=-1)  # no cap: FP then TP (tie in input order)
    assert res_all.arrays["olrp"][0, 0] == pytest.approx(0.5)  # (0 + 1 + 0)/2
    assert res_all.arrays["olrp_fp"][0, 0] == 0.5


def test_ignore_flag_and_area_ranges():
    gt = {
        "images": [_img(1)],
        "annotations": [_ann(1, 1, 1, (0, 0, 10, 10)), _ann(2, 1, 1, (50, 50, 40, 40), ignore=1),
                        _ann(3, 1, 1, (0, 50, 20, 20), area=40 * 40)],
        "categories": CATS,
    }  # fmt: skip
    dets = [_det(1, 1, (50, 50, 40, 40), 0.9), _det(1, 1, (0, 0, 10, 10), 0.8),
            _det(1, 1, (0, 50, 20, 20), 0.7)]  # fmt: skip
    res = evaluate_lvis(gt, dets)
    # area all: the ignored GT absorbs the first detection (neither TP nor FP); G = 2
    assert res.arrays["olrp"][0, 0] == 0.0 and res.arrays["olrp_fp"][0, 0] == 0.0
    assert res.thresholds[1] == 0.7  # (area all) the optimum is at the last detection
    # small (area <= 32^2): G = 1 (GT 1). The third detection matches GT 3, whose area field
    # (1600) is medium, so it is ignored; the optimum is at the second detection
    assert res.arrays["olrp"][0, 1] == 0.0 and res.arrays["lrp_opt_thr"][0, 1] == 0.8
    # medium: only GT 3 counts; detection 2 is matched to GT 1, ignored in this range, so the
    # optimum is at detection 3
    assert res.arrays["olrp"][0, 2] == 0.0 and res.arrays["lrp_opt_thr"][0, 2] == 0.7
    assert res.arrays["olrp"][0, 3] == -1  # no GT in large


def test_zero_area_gt_is_not_evaluated_with_a_warning():
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10), area=0)],
          "categories": CATS}  # fmt: skip
    with pytest.warns(UserWarning, match="area <= 0"):
        res = evaluate_lvis(gt, [_det(1, 1, (0, 0, 10, 10), 0.9)])
    assert np.all(res.arrays["olrp"] == -1) and res.stats["AP"] == -1


def test_no_detections_gives_olrp_one_and_ap_zero():
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    res = evaluate_lvis(gt, [])
    assert res.stats["AP"] == 0.0 and res.stats["oLRP"] == 1.0 and res.stats["oLRP FN"] == 1.0
    assert res.stats["oLRP LOC"] == -1 and res.stats["oLRP FP"] == -1


# ------------------------------------------------------------------------------------------
# cross-check against the lvis package (AP/AR only: it has no LRP), when installed


def synthetic_lvis(seed: int, n_img: int = 120, n_cat: int = 24, heavy: int = 320):
    """A random LVIS-like case: non-contiguous ids, ignore flags, GT area fields that are not
    w*h, negative / not-exhaustive lists, noisy and random detections with tied scores, and one
    image with ``heavy`` detections (more than the 300 cap)."""
    rng = np.random.default_rng(seed)
    cat_ids = (np.arange(n_cat) * 3 + 2).tolist()
    cats = [{"id": c, "name": f"c{c}", "frequency": "rcf"[i % 3]} for i, c in enumerate(cat_ids)]
    img_ids = rng.permutation(np.arange(1, n_img + 1) * 7).tolist()
    images, anns, dets = [], [], []
    for im in img_ids:
        present = rng.choice(cat_ids, size=rng.integers(0, 4), replace=False).tolist()
        others = [c for c in cat_ids if c not in present]
        neg = rng.choice(others, size=min(len(others), rng.integers(0, 4)), replace=False).tolist()
        nel = [c for c in present if rng.random() < 0.2]
        images.append({"id": im, "width": 640, "height": 480, "neg_category_ids": neg,
                       "not_exhaustive_category_ids": nel})  # fmt: skip
        for c in present:
            for _ in range(rng.integers(1, 4)):
                w, h = rng.uniform(4, 200, size=2).round(2)
                x, y = rng.uniform(0, 400, size=2).round(2)
                area = float(w * h) if rng.random() < 0.7 else float(rng.uniform(10, 20000))
                anns.append({"id": len(anns) + 1, "image_id": im, "category_id": c,
                             "bbox": [x, y, w, h], "area": area})  # fmt: skip
                if rng.random() < 0.05:
                    anns[-1]["ignore"] = 1
                for _ in range(rng.integers(0, 3)):
                    jit = rng.normal(0, 0.15, size=4) * [w, h, w, h]
                    box = [x + jit[0], y + jit[1], max(w + jit[2], 1.0), max(h + jit[3], 1.0)]
                    dets.append({"image_id": im, "category_id": c,
                                 "bbox": [round(float(v), 2) for v in box],
                                 "score": round(float(rng.uniform(0.05, 1)), 1)})  # fmt: skip
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(4, 200, size=2).round(2)
            x, y = rng.uniform(0, 400, size=2).round(2)
            dets.append({"image_id": im, "category_id": int(rng.choice(cat_ids)),
                         "bbox": [x, y, w, h], "score": round(float(rng.uniform(0, 1)), 2)})  # fmt: skip
    heavy_img = img_ids[0]
    for _ in range(heavy):
        w, h = rng.uniform(4, 100, size=2).round(1)
        x, y = rng.uniform(0, 400, size=2).round(1)
        dets.append({"image_id": heavy_img, "category_id": int(rng.choice(cat_ids)),
                     "bbox": [x, y, w, h], "score": round(float(rng.uniform(0, 1)), 2)})  # fmt: skip
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.fixture
def lvis_package(monkeypatch):
    # the lvis 0.5.3 wheel imports cv2 (for drawing only) and uses np.float (gone in numpy 2)
    if "cv2" not in sys.modules:
        try:
            import cv2  # noqa: F401
        except ImportError:
            monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    if not hasattr(np, "float"):
        monkeypatch.setattr(np, "float", float, raising=False)
    return pytest.importorskip("lvis")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", [3, 11])
def test_ap_ar_and_precision_equal_the_lvis_package(lvis_package, tmp_path, seed):
    gt, dets = synthetic_lvis(seed)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    lvis_gt = lvis_package.LVIS(str(path))
    lvis_dt = lvis_package.LVISResults(lvis_gt, copy.deepcopy(dets), max_dets=300)
    ev = lvis_package.LVISEval(lvis_gt, lvis_dt, iou_type="bbox")
    ev.run()
    res = evaluate_lvis(gt, dets)
    ref = ev.get_results()
    for k in list(LVIS_STATS_KEYS)[:13]:
        assert same(res.stats[k], float(ref[k])), (k, res.stats[k], ref[k])
    np.testing.assert_array_equal(res.arrays["precision"], ev.eval["precision"])
    np.testing.assert_array_equal(res.arrays["recall"], ev.eval["recall"])


# ------------------------------------------------------------------------------------------
# bad input


def test_detection_on_unknown_image_is_an_error():
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    with pytest.raises(ValueError, match=r"index 1 is on image_id 99.*not in the ground truth"):
        evaluate_lvis(gt, [_det(1, 1, (0, 0, 5, 5), 0.5), _det(99, 1, (0, 0, 5, 5), 0.5)])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_score_is_an_error(bad):
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    with pytest.raises(ValueError, match=r"detection at index 0 has a non-finite 'score'"):
        evaluate_lvis(gt, [_det(1, 1, (0, 0, 5, 5), bad)])


def test_non_positive_box_and_missing_keys_are_errors():
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    with pytest.raises(ValueError, match="negative width or height"):
        evaluate_lvis(gt, [_det(1, 1, (0, 0, -1, 5), 0.5)])
    with pytest.raises(ValueError, match="detection at index 0 has no 'score' key"):
        evaluate_lvis(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="has no 'categories' key"):
        evaluate_lvis({"images": [], "annotations": []}, [])


def test_unknown_category_detections_are_ignored_with_a_warning():
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    dets = [_det(1, 1, (0, 0, 10, 10), 0.9)]
    with pytest.warns(UserWarning, match=r"category id\(s\) \[77\]"):
        res = evaluate_lvis(gt, dets + [_det(1, 77, (0, 0, 10, 10), 0.95)])
    assert res.stats == evaluate_lvis(gt, dets).stats


def test_bad_ground_truth_is_an_error():
    base = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    bad_freq = copy.deepcopy(base)
    bad_freq["categories"][0]["frequency"] = "x"
    with pytest.raises(ValueError, match=r"category 1: 'frequency' must be one of"):
        evaluate_lvis(bad_freq, [])
    dup = copy.deepcopy(base)
    dup["annotations"].append(_ann(1, 1, 2, (0, 0, 5, 5)))
    with pytest.raises(ValueError, match="annotation id 1 appears more than once"):
        evaluate_lvis(dup, [])
    with pytest.raises(ValueError, match="must be a JSON object"):
        evaluate_lvis([], [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_dets"):
        evaluate_lvis(base, [], max_dets=3.5)  # type: ignore[arg-type]


def test_malformed_and_missing_files_are_errors(tmp_path):
    bad = tmp_path / "gt.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"gt.json: malformed JSON"):
        evaluate_lvis(bad, [])
    with pytest.raises(ValueError, match=r"nope.json: no such file"):
        evaluate_lvis(tmp_path / "nope.json", [])


# ------------------------------------------------------------------------------------------
# the command line


def test_cli_lvis_writes_the_official_numbers(lvis_case, tmp_path, capsys):
    gt, dt, off = lvis_case
    out = tmp_path / "res.json"
    assert main(["lvis", str(gt), str(dt), "--out", str(out), "--no-progress"]) == 0
    assert "oLRPr" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    official = off["results_keys_in_order"][:-1]
    assert list(doc["stats"]) == [LVIS_OFFICIAL_KEYS.get(k, k) for k in official]
    for k in official:
        assert same(doc["stats"][LVIS_OFFICIAL_KEYS.get(k, k)], off["results"][k]), k
    for k, row in enumerate(doc["per_class"]):
        assert row["category_id"] == off["params"]["cat_ids"][k]
        assert same(row["oLRP"], off["eval_arrays_KxA"]["olrp"][k][0])
        assert same(row["threshold"], off["eval_arrays_KxA"]["lrp_opt_thr"][k][0], rtol=0.0)


def test_cli_lvis_bad_input_exits_2_with_one_line(tmp_path, capsys):
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    gp, dp = tmp_path / "gt.json", tmp_path / "dt.json"
    gp.write_text(json.dumps(gt))
    dp.write_text(json.dumps([_det(5, 1, (0, 0, 5, 5), 0.5)]))
    assert main(["lvis", str(gp), str(dp), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dt.json" in err[0] and "image_id 5" in err[0]
    dp.write_text("[{")
    assert main(["lvis", str(gp), str(dp), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "malformed JSON" in err[0]


def test_cli_lvis_thresholds_out_round_trips(lvis_case, tmp_path):
    from lrpbook.metrics.thresholds import load_thresholds

    gt, dt, off = lvis_case
    thr = tmp_path / "thr.json"
    assert main(["lvis", str(gt), str(dt), "--thresholds-out", str(thr), "--no-progress"]) == 0
    loaded = load_thresholds(thr)
    assert list(loaded) == off["params"]["cat_ids"]
    for k, cid in enumerate(off["params"]["cat_ids"]):
        assert same(loaded[cid], off["eval_arrays_KxA"]["lrp_opt_thr"][k][0], rtol=0.0)


def test_progress_bar_does_not_change_the_numbers(lvis_case, capsys):
    gt, dt, _ = lvis_case
    assert evaluate_lvis(gt, dt, progress=True).stats == evaluate_lvis(gt, dt).stats


def test_stats_keys_do_not_depend_on_the_cap():
    gt = {"images": [_img(1)], "annotations": [_ann(1, 1, 1, (0, 0, 10, 10))], "categories": CATS}
    dets = [_det(1, 1, (50, 50, 10, 10), 0.9), _det(1, 1, (0, 0, 10, 10), 0.8)]
    one = evaluate_lvis(gt, dets, max_dets=1)
    assert list(one.stats) == list(LVIS_STATS_KEYS)
    assert one.stats["AR@300"] == 0.0 and one.stats["oLRP"] == 1.0  # the TP was cut by the cap
    full = evaluate_lvis(gt, dets)
    assert full.stats["AR@300"] == 1.0 and full.stats["oLRP"] == pytest.approx(0.5)
