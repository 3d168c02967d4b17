"""The drop-in ``COCOeval``: ``.stats`` exactly pycocotools' on the reference and random cases,
with and without ``Params`` selections; COCO objects, ``loadRes`` results and N x 7 arrays are
accepted wherever a path is."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval as PyCOCOeval

from lrpbook.metrics import evaluate
from lrpbook.metrics._io import load_json
from lrpbook.metrics.cocoeval import COCOeval, Params


def random_case(seed: int, n_img: int = 12, n_cat: int = 4):
    rng = np.random.default_rng(seed)
    images = [{"id": int(10 + 3 * i), "height": 200, "width": 240} for i in range(n_img)]
    cats = [{"id": int(c * 2 + 1), "name": f"c{c}"} for c in range(n_cat)]
    anns, dets = [], []
    for im in images:
        for _ in range(int(rng.integers(0, 7))):
            w, h = rng.uniform(4, 120, 2)
            x, y = rng.uniform(0, 240 - w), rng.uniform(0, 200 - h)
            c = int(rng.choice([c["id"] for c in cats]))
            box = [float(x), float(y), float(w), float(h)]
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c,
                         "bbox": box, "area": float(w * h),
                         "iscrowd": int(rng.random() < 0.08)})  # fmt: skip
            for _ in range(int(rng.integers(0, 3))):
                b = np.asarray(box) + rng.normal(0, 6, 4)
                b[2:] = np.maximum(b[2:], 1)
                cc = c if rng.random() < 0.8 else int(rng.choice([c["id"] for c in cats]))
                dets.append({"image_id": im["id"], "category_id": cc, "bbox": b.tolist(),
                             "score": float(np.round(rng.random(), 2))})  # fmt: skip
        for _ in range(int(rng.integers(0, 40))):  # clutter, sometimes > 100 per image
            w, h = rng.uniform(2, 100, 2)
            dets.append({"image_id": im["id"], "category_id": int(rng.choice([1, 3, 5, 7])),
                         "bbox": [float(rng.uniform(0, 200)), float(rng.uniform(0, 160)),
                                  float(w), float(h)],
                         "score": float(np.round(rng.random() * 0.6, 2))})  # fmt: skip
    return {"images": images, "annotations": anns, "categories": cats}, dets


def coco_of(gt: dict) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
    return c


SELECTIONS = {
    "defaults": {},
    "imgIds": {"imgIds": [10, 16, 22, 28, 40]},
    "catIds": {"catIds": [3, 7]},
    "catIds_unknown": {"catIds": [1, 99]},
    "useCats0": {"useCats": 0},
    "useCats0_catIds": {"useCats": 0, "catIds": [1, 5]},
    "maxDets": {"maxDets": [2, 5, 20]},
    "maxDets_100": {"maxDets": [1, 100, 10]},
    "areaRng": {"areaRng": [[0, 1e10], [0, 400], [400, 3000], [3000, 1e10]]},
    "iouThrs": {"iouThrs": np.array([0.3, 0.5, 0.7])},
    "everything": {"imgIds": [13, 19, 25, 31], "catIds": [1, 3, 5], "maxDets": [1, 3, 8],
                   "iouThrs": np.array([0.5, 0.75, 0.9])},
}  # fmt: skip


def run_both(gt: dict, dets: list, iou_type: str, sel: dict):
    cg = coco_of(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        cd = cg.loadRes(copy.deepcopy(dets))
        ref = PyCOCOeval(cg, cd, iou_type)
        for k, v in sel.items():
            setattr(ref.params, k, copy.deepcopy(v))
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    ours = COCOeval(cg, cd, iou_type)
    for k, v in sel.items():
        setattr(ours.params, k, copy.deepcopy(v))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        ours.evaluate()
        ours.accumulate()
        ours.summarize()
    return ref, ours, out.getvalue()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(SELECTIONS))
def test_stats_equal_pycocotools_on_random_cases(seed, name):
    gt, dets = random_case(seed)
    ref, ours, _ = run_both(gt, dets, "bbox", SELECTIONS[name])
    np.testing.assert_array_equal(ours.stats, ref.stats)
    np.testing.assert_array_equal(ours.eval["precision"], ref.eval["precision"])
    np.testing.assert_array_equal(ours.eval["recall"], ref.eval["recall"])
    assert ours.eval["counts"] == ref.eval["counts"]


def test_summarize_prints_pycocotools_lines_and_olrp():
    gt, dets = random_case(3)
    ref, ours, text = run_both(gt, dets, "bbox", {})
    assert text.count("Average Precision") == 6 and text.count("Average Recall") == 6
    assert "Optimal LRP" in text and 0 <= ours.lrp["oLRP"] <= 1
    assert ours.lrp["oLRP"] == evaluate(gt, dets).stats["oLRP"]


@pytest.mark.filterwarnings("ignore:.*not in the ground truth's categories:UserWarning")
def test_reference_cases_equal_pycocotools(refcases):
    names = []
    for exp_path in sorted((refcases / "lrp" / "expected").glob("*.json")):
        kind = json.loads(exp_path.read_text()).get("kind")
        if kind not in ("bbox", "segm", "keypoints"):
            continue
        folder = refcases / "lrp" / "cases" / exp_path.stem
        gt = load_json(next(folder.glob("gt.json*")), what="gt")
        dets = load_json(next(folder.glob("dt.json*")), what="dt")
        ref, ours, _ = run_both(gt, dets, kind, {})
        np.testing.assert_array_equal(ours.stats, ref.stats, err_msg=exp_path.stem)
        names.append(exp_path.stem)
    assert names


def test_coco_objects_loadres_and_arrays_are_accepted_like_paths(tmp_path):
    gt, dets = random_case(4)
    base = evaluate(gt, dets).stats
    cg = coco_of(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        cd = cg.loadRes(copy.deepcopy(dets))
    assert evaluate(cg, cd).stats == base
    arr = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dets])
    assert evaluate(cg, arr).stats == base
    with contextlib.redirect_stdout(io.StringIO()):
        cd2 = cg.loadRes(arr)
    assert evaluate(gt, cd2).stats == base
    with pytest.raises(ValueError, match="N x 7"):
        evaluate(gt, arr[:, :6])


def test_selection_keywords_of_evaluate_match_the_class():
    gt, dets = random_case(5)
    res = evaluate(gt, dets, img_ids=[10, 13, 16], cat_ids=[1, 3], max_dets=[1, 10, 100])
    assert res.params["img_ids"] == [10, 13, 16] and res.params["cat_ids"] == [1, 3]
    _, ours, _ = run_both(gt, dets, "bbox", {"imgIds": [10, 13, 16], "catIds": [1, 3]})
    assert ours.stats[0] == res.stats["AP"]
    agnostic = evaluate(gt, dets, use_cats=False)
    assert [r["category_id"] for r in agnostic.per_class] == [-1]


def test_bad_params_are_clear_errors():
    gt, dets = random_case(6)
    with pytest.raises(ValueError, match="max_dets"):
        evaluate(gt, dets, max_dets=[1, 10])
    with pytest.raises(ValueError, match="area_ranges"):
        evaluate(gt, dets, area_ranges=[[0, 1]])
    e = COCOeval(gt, dets, "bbox")
    e.params.recThrs = np.linspace(0, 1, 11)
    with pytest.raises(ValueError, match="recThrs"):
        e.evaluate()
    with pytest.raises(RuntimeError, match="accumulate"):
        COCOeval(gt, dets, "bbox").summarize()
    assert Params("keypoints").maxDets == [20]
