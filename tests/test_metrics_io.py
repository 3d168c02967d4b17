"""Tests for lrpbook.metrics._io: loading JSON inputs and writing NaN as null."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from lrpbook.metrics._io import load_json, nan_to_none


def test_load_json_reads_plain_and_gzip_files(tmp_path):
    doc = {"images": [{"id": 1}], "annotations": []}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with gzip.open(tmp_path / "a.json.gz", "wt") as fh:
        json.dump(doc, fh)
    assert load_json(tmp_path / "a.json", what="gt") == doc
    assert load_json(str(tmp_path / "a.json.gz"), what="gt") == doc


def test_load_json_passes_dicts_and_lists_through():
    d, lst = {"a": 1}, [1, 2]
    assert load_json(d, what="x") is d
    assert load_json(lst, what="x") is lst


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "malformed JSON"), ("3", "top level"), ('"s"', "top level")],
)
def test_load_json_bad_content_names_file_and_problem(tmp_path, content, problem):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=problem) as ei:
        load_json(p, what="detections")
    assert str(p) in str(ei.value) and "detections" in str(ei.value)


def test_load_json_missing_file_and_bad_gzip(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_json(tmp_path / "nope.json", what="gt")
    p = tmp_path / "x.json.gz"
    p.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="gzip"):
        load_json(p, what="gt")
    with pytest.raises(TypeError):
        load_json(3, what="gt")


def test_nan_to_none_recurses_and_converts_numpy():
    out = nan_to_none(
        {"a": float("nan"), "b": [np.float64(0.5), np.inf], "c": np.array([1.0, np.nan])}
    )
    assert out == {"a": None, "b": [0.5, None], "c": [1.0, None]}
    assert json.loads(json.dumps(out))["a"] is None
    assert not math.isnan(nan_to_none(-1.0))
