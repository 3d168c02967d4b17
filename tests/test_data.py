"""Tests of lrpbook.data: synthetic COCO-format datasets, the loader and the fake detector."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
import torch
import torchvision
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lrpbook import data


def _coco(dataset):
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = dataset
        c.createIndex()
    return c


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return data.make_synthetic_coco(
        tmp_path_factory.mktemp("d") / "shapes",
        num_images=12,
        num_classes=4,
        seed=3,
        crowd_fraction=0.5,
        keypoints=True,
        segmentation="mixed",
        empty_fraction=0.2,
    )


def test_generated_json_loads_in_pycocotools_and_cocoeval_runs(synth):
    on_disk = json.loads(synth.ann_file.read_text())
    assert on_disk == synth.dataset
    coco = _coco(on_disk)
    assert len(coco.imgs) == 12 and len(coco.cats) == 4
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in on_disk["annotations"]
        if not a["iscrowd"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(coco, coco.loadRes(perfect), "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    assert E.stats[0] == pytest.approx(1.0)
    for img in on_disk["images"]:
        assert (synth.image_dir / img["file_name"]).is_file()


def test_polygons_rle_crowd_and_keypoints_are_all_present(synth):
    anns = synth.dataset["annotations"]
    kinds = {
        (
            "poly"
            if isinstance(a["segmentation"], list)
            else type(a["segmentation"]["counts"]).__name__
        )
        for a in anns
    }
    assert kinds == {"poly", "str", "list"}  # polygons, compressed RLE, uncompressed crowd RLE
    assert any(a["iscrowd"] for a in anns)
    assert all(len(a["keypoints"]) == 12 for a in anns)
    assert synth.dataset["categories"][0]["keypoints"] == ["top", "right", "bottom", "left"]


def test_boxes_agree_with_masks(synth):
    coco = _coco(synth.dataset)
    for a in synth.dataset["annotations"]:
        rle = coco.annToRLE(a)
        mx, my, mw, mh = mask_utils.toBbox(rle)
        x, y, w, h = a["bbox"]
        # pointed shapes lose their tips when rasterised: corners agree within 2 pixels
        assert max(abs(mx - x), abs(my - y), abs(mx + mw - x - w), abs(my + mh - y - h)) <= 2.0
        assert a["area"] == pytest.approx(float(mask_utils.area(rle)))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(num_images=4, seed=11, crowd_fraction=0.5, segmentation="mixed")
    a = data.make_synthetic_coco(tmp_path / "a", **kw)
    b = data.make_synthetic_coco(tmp_path / "b", **kw)
    c = data.make_synthetic_coco(tmp_path / "c", **{**kw, "seed": 12})
    assert _digest(a.root) == _digest(b.root)
    assert _digest(a.root) != _digest(c.root)


def test_longtail_and_explicit_frequencies_shape_the_class_histogram(tmp_path):
    ds = data.make_synthetic_coco(
        tmp_path / "lt",
        num_images=60,
        num_classes=5,
        class_frequencies="longtail",
        seed=0,
        objects_per_image=(3, 6),
        overlap=1.0,
    )
    counts = np.bincount([a["category_id"] for a in ds.dataset["annotations"]], minlength=6)[1:]
    assert counts[0] > 2 * counts[-1]
    only_two = data.make_synthetic_coco(
        tmp_path / "two", num_images=10, num_classes=3, class_frequencies=[0, 1, 0], seed=0
    )
    assert {a["category_id"] for a in only_two.dataset["annotations"]} == {2}


def test_spatial_bias_moves_centres_to_the_top_left(tmp_path):
    def mean_centre(bias, name):
        ds = data.make_synthetic_coco(
            tmp_path / name,
            num_images=30,
            seed=1,
            spatial_bias=bias,
            overlap=1.0,
            scale=(0.1, 0.15),
        )
        b = np.array([a["bbox"] for a in ds.dataset["annotations"]])
        return (b[:, :2] + b[:, 2:] / 2).mean(0)

    assert (mean_centre(0.9, "biased") < mean_centre(0.0, "uniform") - 15).all()


def test_scale_and_overlap_knobs(tmp_path):
    ds = data.make_synthetic_coco(
        tmp_path / "s",
        num_images=20,
        seed=2,
        scale=(0.1, 0.12),
        overlap=0.0,
        objects_per_image=(4, 4),
    )
    b = np.array([a["bbox"] for a in ds.dataset["annotations"]])
    side = np.sqrt(b[:, 2] * b[:, 3])
    assert side.min() >= 0.1 * 128 * 0.99 and side.max() <= 0.12 * 128 * 1.01
    by_img = {}
    for a in ds.dataset["annotations"]:
        x, y, w, h = a["bbox"]
        by_img.setdefault(a["image_id"], []).append(torch.tensor([x, y, x + w, y + h]))
    for boxes in by_img.values():
        iou = torchvision.ops.box_iou(torch.stack(boxes), torch.stack(boxes))
        assert (iou - torch.eye(len(boxes))).max() <= 1e-6


@pytest.mark.parametrize(
    "knob, value, match",
    [
        ("num_images", 0, "num_images"),
        ("image_size", (8, 8), "image_size"),
        ("objects_per_image", (3, 1), "objects_per_image"),
        ("scale", (0.0, 2.0), "scale"),
        ("spatial_bias", 1.0, "spatial_bias"),
        ("overlap", -0.1, "overlap"),
        ("class_frequencies", "zipf", "class_frequencies"),
        ("class_frequencies", [1, 2], "class_frequencies"),
        ("segmentation", "bitmap", "segmentation"),
    ],
)
def test_bad_knobs_raise_errors_that_name_them(tmp_path, knob, value, match):
    with pytest.raises(ValueError, match=match):
        data.make_synthetic_coco(tmp_path / "bad", **{"num_images": 2, knob: value})


def test_existing_folder_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        data.make_synthetic_coco(out, num_images=1)
    assert (out / "precious.txt").read_text() == "user data"
    data.make_synthetic_coco(out, num_images=1, overwrite=True)
    assert (out / "precious.txt").read_text() == "user data"


def test_loader_yields_torchvision_targets(synth):
    ds = data.CocoDetection(synth.image_dir, synth.ann_file, with_masks=True)
    assert len(ds) == 12
    assert ds.cat_ids == [1, 2, 3, 4] and ds.label_to_cat_id[1] == 1
    seen_empty = seen_crowd = False
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.dtype == torch.float32 and image.shape == (3, 128, 128)
        assert 0.0 <= image.min() and image.max() <= 1.0
        n = len(target["boxes"])
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].dtype == torch.int64 and target["iscrowd"].shape == (n,)
        assert target["masks"].shape == (n, 128, 128) and target["masks"].dtype == torch.uint8
        assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()
        seen_empty |= n == 0
        seen_crowd |= bool(target["iscrowd"].any())
    assert seen_empty and seen_crowd
    images, targets = data.collate_fn([ds[0], ds[1]])
    assert len(images) == len(targets) == 2


def test_loader_drops_degenerate_boxes_and_maps_sparse_category_ids(tmp_path, synth):
    d = json.loads(synth.ann_file.read_text())
    d["categories"] = [{"id": 10 * c["id"], "name": c["name"]} for c in d["categories"]]
    for a in d["annotations"]:
        a["category_id"] *= 10
    first = next(a for a in d["annotations"] if a["image_id"] == d["images"][0]["id"])
    n_before = sum(
        a["image_id"] == first["image_id"] and a["bbox"][2] > 0 for a in d["annotations"]
    )
    first["bbox"][2] = 0.0
    path = tmp_path / "sparse.json"
    path.write_text(json.dumps(d))
    ds = data.CocoDetection(synth.image_dir, path)
    _, target = ds[0]
    assert len(target["boxes"]) == n_before - 1
    assert set(target["labels"].tolist()) <= {1, 2, 3, 4}
    assert ds.label_to_cat_id == {1: 10, 2: 20, 3: 30, 4: 40}


def test_loader_errors_name_the_problem(tmp_path, synth):
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        data.CocoDetection(synth.image_dir, tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        data.CocoDetection(tmp_path / "nope", synth.ann_file)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        data.CocoDetection(synth.image_dir, bad)
    d = json.loads(synth.ann_file.read_text())
    d["annotations"][0]["image_id"] = 999
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="image_id 999"):
        data.load_coco_json(bad)
    del d["categories"]
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="'categories'"):
        data.load_coco_json(bad)
    empty_dir = tmp_path / "noimages"
    empty_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="file not found"):
        data.CocoDetection(empty_dir, synth.ann_file)[0]


def _ap(gt, dets):
    coco = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(coco, coco.loadRes(dets), "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E.stats[0]


def test_simulated_detector_is_perfect_without_flaws_and_worse_with_each(tmp_path):
    ds = data.make_synthetic_coco(tmp_path / "sim", num_images=15, seed=4)
    n_objects = len(ds.dataset["annotations"])
    perfect = data.simulate_detections(ds.dataset, loc_noise=0, fp_per_image=0, miss_rate=0)
    assert len(perfect) == n_objects
    assert _ap(ds.dataset, perfect) == pytest.approx(1.0)
    assert data.simulate_detections(ds.dataset, seed=5) == data.simulate_detections(
        ds.ann_file, seed=5
    )
    for knobs in (dict(loc_noise=0.2), dict(fp_per_image=4.0), dict(miss_rate=0.5)):
        base = dict(loc_noise=0.0, fp_per_image=0.0, miss_rate=0.0)
        assert _ap(ds.dataset, data.simulate_detections(ds.dataset, **{**base, **knobs})) < 0.9
    missed = data.simulate_detections(ds.dataset, loc_noise=0, fp_per_image=0, miss_rate=1.0)
    assert missed == []


@pytest.mark.parametrize(
    "knob, value", [("loc_noise", -1.0), ("miss_rate", 1.5), ("fp_per_image", float("nan"))]
)
def test_simulator_rejects_bad_knobs(knob, value, synth):
    with pytest.raises(ValueError, match=knob):
        data.simulate_detections(synth.dataset, **{knob: value})


def test_an_int_image_size_gives_square_images(tmp_path):
    ds = data.make_synthetic_coco(tmp_path / "sq", num_images=1, image_size=40)
    assert (ds.dataset["images"][0]["width"], ds.dataset["images"][0]["height"]) == (40, 40)


def test_annotation_files_are_read_by_the_package_json_loader(tmp_path, synth, monkeypatch):
    """One JSON loader for the package: gzip works, and the metrics loader is what reads."""
    import gzip

    from lrpbook.metrics import _io

    doc = json.loads(synth.ann_file.read_text())
    gz = tmp_path / "instances.json.gz"
    gz.write_bytes(gzip.compress(synth.ann_file.read_bytes()))
    assert data.load_coco_json(gz) == doc
    calls = []
    real = _io.parse_json
    monkeypatch.setattr(_io, "parse_json", lambda raw: calls.append(1) or real(raw))
    data.load_coco_json(synth.ann_file)
    assert len(calls) == 1
    data.simulate_detections(synth.ann_file)
    assert len(calls) == 2
