"""Fast from the shell: no torch for the CLI, orjson with the standard library's numbers, a
writable numba cache, ``--version``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from lrpbook.metrics import _io, _match
from lrpbook.metrics.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fresh(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env, cwd=REPO)  # fmt: skip
    return proc.stdout.strip()


def test_import_metrics_and_cli_imports_no_torch():
    out = _fresh(
        "import sys, lrpbook.metrics, lrpbook.metrics.cli\n"
        "print('torch' in sys.modules, 'torchmetrics' in sys.modules)"
    )
    assert out == "False False"


def test_cli_run_imports_no_torch(tmp_path):
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9],
                           "area": 81}]}  # fmt: skip
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 8], "score": 0.5}]
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps(dt))
    out = _fresh(
        "import sys\nfrom lrpbook.metrics.cli import main\n"
        f"rc = main(['coco', {str(tmp_path / 'g.json')!r}, {str(tmp_path / 'd.json')!r}])\n"
        "print(rc, 'torch' in sys.modules)"
    )
    assert out.splitlines()[-1] == "0 False"


def test_lrpmetric_is_still_importable_from_metrics():
    out = _fresh("from lrpbook.metrics import LRPMetric\nprint(LRPMetric.__module__)")
    assert out == "lrpbook.metrics.streaming"


NUMBERS = (
    '[0.1, 1e-7, 1E-7, 2.5e+300, -0.0, 0.30000000000000004, 5e-324, 1.7976931348623157e308, '
    "123456789012345678, 18446744073709551615, 18446744073709551616, "
    "123456789012345678901234567890, -9223372036854775808, 1.0, 3, 0.1e1, 9007199254740993.0, "
    "NaN, Infinity, -Infinity, 1e400]"
)


def test_parse_json_numbers_identical_to_the_standard_library():
    ours = _io.parse_json(NUMBERS.encode())
    ref = json.loads(NUMBERS)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert type(a) is type(b)
        if isinstance(a, float) and math.isnan(a):
            assert math.isnan(b)
        else:
            assert a == b and repr(a) == repr(b)


def test_parse_json_is_orjson_on_ordinary_input(monkeypatch):
    assert _io._orjson is not None
    calls = []
    monkeypatch.setattr(_io.json, "loads", lambda raw: calls.append(raw))
    doc = _io.parse_json(b'{"a": [0.1, 1e-7, 42]}')
    assert doc == {"a": [0.1, 1e-7, 42]} and calls == []


def test_malformed_json_message_is_the_standard_librarys(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"a": [1, 2,]}')
    with pytest.raises(ValueError, match=r"malformed JSON \(.* at line 1 column \d+\)"):
        _io.load_json(p, what="gt")


def test_kernels_are_cached_on_disk():
    for fn in (_match.box_iou_groups, _match.greedy_match_groups, _match.accumulate_classes):
        assert fn._cache.__class__.__name__ == "FunctionCache"


def test_unwritable_install_falls_back_to_a_temp_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(_match.nb.config, "CACHE_DIR", "")
    monkeypatch.setattr(_match.os, "access", lambda path, mode: False)
    monkeypatch.setattr(_match.tempfile, "gettempdir", lambda: str(tmp_path))
    _match._ensure_writable_cache()
    assert _match.nb.config.CACHE_DIR.startswith(str(tmp_path))
    assert os.path.isdir(_match.nb.config.CACHE_DIR)


def test_version_flag(capsys):
    import lrpbook

    assert main(["--version"]) == 0
    assert lrpbook.__version__ in capsys.readouterr().out


def test_console_process_skips_scipy_blas_and_gives_the_same_numbers(tmp_path):
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9],
                           "area": 81}]}  # fmt: skip
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 8], "score": 0.5}]
    g, d, o = tmp_path / "g.json", tmp_path / "d.json", tmp_path / "o.json"
    g.write_text(json.dumps(gt))
    d.write_text(json.dumps(dt))
    out = _fresh(
        "import sys\nfrom lrpbook.metrics.cli import console_main\n"
        f"sys.argv = ['lrpbook-eval', 'coco', {str(g)!r}, {str(d)!r}, '--out', {str(o)!r}]\n"
        "try:\n    console_main()\nfinally:\n"
        "    print('blas', sys.modules.get('scipy.linalg.cython_blas') is not None)\n"
        "    print('skipped', [m for m in ('scipy', 'cffi', 'yaml') if sys.modules.get(m)])"
    )
    assert out.splitlines()[-2:] == ["blas False", "skipped []"]
    from lrpbook.metrics import evaluate

    assert json.loads(o.read_text())["stats"]["oLRP"] == evaluate(gt, dt).stats["oLRP"]
    import sys as _sys

    assert "scipy.linalg.cython_blas" not in _sys.modules or _sys.modules[
        "scipy.linalg.cython_blas"] is not None  # fmt: skip


@pytest.mark.parametrize("big", [False, True])
def test_order_by_key_score_is_lexsorts_permutation(big):
    import numpy as np

    from lrpbook.metrics._common import _order_by_key_score

    rng = np.random.default_rng(3)
    n = 5000
    scores = rng.choice([0.1, 0.5, 0.5, 0.9, -0.0, 0.0], n) if not big else rng.random(n)
    img = rng.integers(0, 70000 if big else 50, n)
    cat = rng.integers(0, 7, n)
    want = np.lexsort((-scores, cat * (img.max() + 1) + img))
    assert np.array_equal(_order_by_key_score(scores, img, cat), want)


@pytest.mark.parametrize("presorted", [True, False])
def test_order_by_class_score_is_lexsorts_permutation(presorted):
    import numpy as np

    from lrpbook.metrics._common import _order_by_class_score

    rng = np.random.default_rng(4)
    cat = rng.integers(0, 9, 3000)
    cat = np.sort(cat) if presorted else cat
    scores = rng.choice([0.2, 0.3, 0.3, 0.7], 3000)
    got = _order_by_class_score(cat, scores)
    assert got.dtype == np.int64
    assert np.array_equal(got, np.lexsort((-scores, cat)))


@pytest.mark.parametrize("ids", [[3, 5, 9, 2000], [-4, 0, 7], [10**9, 10**9 + 5], []])
def test_locate_sorted_is_searchsorted_and_isin(ids):
    import numpy as np

    from lrpbook.metrics._common import _isin_sorted, _locate_sorted

    u = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(5)
    pool = np.r_[u, [-7, 0, 1, 4, 6, 2001, 10**9 + 1, 10**12]].astype(np.int64)
    values = rng.choice(pool, 2000)
    pos, found = _locate_sorted(values, u)
    assert pos.dtype == np.searchsorted(u, values).dtype
    assert np.array_equal(pos, np.searchsorted(u, values))
    assert np.array_equal(found, _isin_sorted(values, u))


def _one_box_files(tmp_path):
    """A ground truth with one box and one detection of it, as JSON files."""
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9],
                           "area": 81}]}  # fmt: skip
    g, d = tmp_path / "g.json", tmp_path / "d.json"
    g.write_text(json.dumps(gt))
    d.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 8],
                              "score": 0.5}]))  # fmt: skip
    return g, d


def test_cli_process_imports_neither_asyncio_nor_coverage_nor_multiprocessing(tmp_path):
    g, d = _one_box_files(tmp_path)
    out = _fresh(
        "import sys\nfrom lrpbook.metrics.cli import console_main\n"
        "pre = {m for m in ('asyncio', 'coverage', 'multiprocessing') if m in sys.modules}\n"
        f"sys.argv = ['lrpbook-eval', 'coco', {str(g)!r}, {str(d)!r}, '--no-progress']\n"
        "rc = console_main()\n"
        "print(rc, [m for m in ('asyncio', 'coverage', 'multiprocessing', 'tqdm.auto')\n"
        "           if sys.modules.get(m) and m not in pre])"
    )
    assert out.splitlines()[-1] == "0 []"


@pytest.mark.parametrize("run", [3, 2000])
def test_order_by_key_score_short_and_long_runs(run):
    import numpy as np

    from lrpbook.metrics._common import _order_by_key_score

    rng = np.random.default_rng(6)
    n = 4000
    img = rng.integers(0, n // run + 1, n)
    cat = rng.integers(0, 2, n)
    scores = rng.choice([0.25, 0.5, 0.75, -0.0, 0.0, 1e-300], n)
    want = np.lexsort((-scores, cat * (img.max() + 1) + img))
    assert np.array_equal(_order_by_key_score(scores, img, cat), want)


@pytest.mark.parametrize("preset", [None, "2"])
def test_cli_process_starts_openblas_single_threaded_unless_told(tmp_path, preset):
    g, d = _one_box_files(tmp_path)
    setup = "" if preset is None else f"import os; os.environ['OPENBLAS_NUM_THREADS'] = {preset!r}\n"
    out = _fresh(
        setup + "import os, sys\nfrom lrpbook.metrics.cli import console_main\n"
        "pre = 'numpy' in sys.modules\n"
        f"sys.argv = ['lrpbook-eval', 'coco', {str(g)!r}, {str(d)!r}]\n"
        "rc = console_main()\n"
        "print(rc, pre, os.environ.get('OPENBLAS_NUM_THREADS'))"
    )
    assert out.splitlines()[-1] == f"0 False {preset or '1'}"
