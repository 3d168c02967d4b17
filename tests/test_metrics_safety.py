"""``lrpbook-eval`` never loses a user's file: outputs that are inputs are refused (exit 2) and
outputs are written atomically (an interrupted write leaves the previous file intact)."""

from __future__ import annotations

import json
import os

import pytest

from lrpbook.metrics._io import check_outputs, write_atomic
from lrpbook.metrics.cli import main


def small_case(tmp_path):
    gt = {
        "images": [{"id": 1, "height": 100, "width": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20],
                         "area": 400, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a", "frequency": "f"}],
    }  # fmt: skip
    dt = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 21], "score": 0.9}]
    gp, dp = tmp_path / "gt.json", tmp_path / "dt.json"
    gp.write_text(json.dumps(gt))
    dp.write_text(json.dumps(dt))
    return gp, dp


@pytest.mark.parametrize("command", ["coco", "lvis"])
@pytest.mark.parametrize("which", ["gt", "dt"])
@pytest.mark.parametrize("option", ["--out", "--thresholds-out"])
def test_output_that_is_an_input_is_refused_and_input_kept(tmp_path, capsys, command, which,
                                                           option):  # fmt: skip
    gp, dp = small_case(tmp_path)
    target = gp if which == "gt" else dp
    before = target.read_bytes()
    assert main([command, str(gp), str(dp), option, str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to overwrite an input" in err
    assert option in err and str(target) in err
    assert target.read_bytes() == before


def test_output_resolving_to_an_input_is_refused(tmp_path, capsys):
    gp, dp = small_case(tmp_path)
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(gp)
    before = gp.read_bytes()
    for alias in (tmp_path / "sub" / ".." / "gt.json", link):
        assert main(["coco", str(gp), str(dp), "--out", str(alias)]) == 2
        assert "refusing to overwrite" in capsys.readouterr().err
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert main(["coco", "gt.json", str(dp), "--out", str(gp)]) == 2
    finally:
        os.chdir(cwd)
    assert gp.read_bytes() == before


def test_two_outputs_on_one_path_are_refused(tmp_path, capsys):
    gp, dp = small_case(tmp_path)
    out = tmp_path / "r.json"
    assert main(["coco", str(gp), str(dp), "--out", str(out), "--thresholds-out", str(out)]) == 2
    assert "give two paths" in capsys.readouterr().err
    assert not out.exists()


def test_outputs_written_when_paths_differ(tmp_path, capsys):
    gp, dp = small_case(tmp_path)
    out, thr = tmp_path / "r.json", tmp_path / "t.json"
    assert main(["coco", str(gp), str(dp), "--out", str(out), "--thresholds-out", str(thr)]) == 0
    assert json.loads(out.read_text())["stats"]["AP"] >= 0
    assert "thresholds" in json.loads(thr.read_text())
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    out.write_text("previous")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, "new content")
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_write_atomic_replaces_and_keeps_mode(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("old")
    os.chmod(out, 0o640)
    write_atomic(out, "new")
    assert out.read_text() == "new" and (out.stat().st_mode & 0o777) == 0o640


def test_check_outputs_ignores_in_memory_inputs(tmp_path):
    check_outputs({"gt": {"images": []}, "dt": None}, {"--out": tmp_path / "x.json"})
    with pytest.raises(ValueError, match="is a directory"):
        check_outputs({}, {"--out": tmp_path})


def test_cli_applies_saved_thresholds_to_a_results_file(tmp_path, capsys):
    gp, dp = small_case(tmp_path)
    dets = json.loads(dp.read_text()) + [
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 9, 9], "score": 0.1}
    ]
    dp.write_text(json.dumps(dets))
    thr, kept = tmp_path / "thr.json", tmp_path / "kept.json"
    assert main(["coco", str(gp), str(dp), "--thresholds-out", str(thr)]) == 0
    assert main(["apply-thresholds", str(dp), str(thr), "--out", str(kept)]) == 0
    assert "kept 1 of 2 detections" in capsys.readouterr().out
    assert json.loads(kept.read_text()) == dets[:1]
    before = dp.read_bytes()
    assert main(["apply-thresholds", str(dp), str(thr), "--out", str(dp)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and dp.read_bytes() == before
