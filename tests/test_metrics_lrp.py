"""LRP on hard predictions, oLRP over thresholds, weighted LRP and PQ (thesis Ch. 5, App. E/G)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lrpbook.metrics.lrp import (
    greedy_match,
    lrp_curve,
    lrp_error,
    molrp,
    optimal_lrp,
    pq_components,
    weighted_lrp,
)


def test_lrp_hand_computed():
    # 2 TPs with IoU 0.8 and 1.0, 1 FP, 2 FNs: (0.2/0.5 + 1 + 2) / 5
    r = lrp_error([0.8, 1.0], num_dets=3, num_gts=4)
    assert r.lrp == pytest.approx(0.68, abs=1e-15)
    assert r.loc == pytest.approx(0.1) and r.fp == pytest.approx(1 / 3) and r.fn == 0.5
    assert (r.n_tp, r.n_fp, r.n_fn) == (2, 1, 2)


def test_lrp_equals_weighted_component_form():
    """Eq. (5.3): LRP = (w_loc Loc + w_fp FP + w_fn FN) / Z with w = N_TP/(1-tau), |D|, |G|."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        n_tp = int(rng.integers(1, 10))
        ious = rng.uniform(0.5, 1, n_tp)
        nd, ng = n_tp + int(rng.integers(0, 5)), n_tp + int(rng.integers(0, 5))
        r = lrp_error(ious, nd, ng)
        z = r.n_tp + r.n_fp + r.n_fn
        assert r.lrp == pytest.approx((n_tp / 0.5 * r.loc + nd * r.fp + ng * r.fn) / z)
        assert 0 <= r.lrp <= 1


def test_undefined_components_and_extremes():
    r = lrp_error([], num_dets=0, num_gts=3)
    assert r.lrp == 1.0 and math.isnan(r.loc) and math.isnan(r.fp) and r.fn == 1.0
    r = lrp_error([], num_dets=2, num_gts=0)
    assert r.lrp == 1.0 and r.fp == 1.0 and math.isnan(r.fn)
    assert math.isnan(lrp_error([], 0, 0).lrp)
    assert lrp_error([1.0, 1.0], 2, 2).lrp == 0.0
    with pytest.raises(ValueError, match="tau"):
        lrp_error([0.4], 1, 1)
    with pytest.raises(ValueError, match="at least"):
        lrp_error([0.9, 0.9], 1, 3)


def test_lrp_is_a_metric_on_appendix_c_example():
    """App. C: for masks X, Y, Z, 1-PQ breaks the triangle inequality while LRP keeps it."""
    # (X, Y): IoU 0.5, not a TP under PQ's strict rule -> 1 FP + 1 FN; (X, Z), (Z, Y): IoU 0.71 TP
    pq_xy = pq_components([], 1, 1)[0]
    pq_xz = pq_components([0.71], 1, 1)[0]
    assert 1 - pq_xy > (1 - pq_xz) + (1 - pq_xz)  # 1 > 0.58
    lrp_xy = lrp_error([], 1, 1).lrp
    lrp_xz = lrp_error([0.71], 1, 1).lrp
    assert lrp_xy <= lrp_xz + lrp_xz  # 1 <= 1.16
    assert lrp_xz == pytest.approx(0.58)


def test_pq_error_relation_app_g():
    """Eq. (G.11): 1 - PQ = (sum (1-IoU)/0.5 + FP + FN) / (2 N_TP + FP + FN)."""
    ious = [0.9, 0.7, 0.6]
    pq, sq, rq = pq_components(ious, num_dets=5, num_gts=4)
    lhs = 1 - pq
    rhs = (sum((1 - i) / 0.5 for i in ious) + 2 + 1) / (2 * 3 + 2 + 1)
    assert lhs == pytest.approx(rhs) and pq == pytest.approx(sq * rq)


def test_weighted_lrp_reduces_and_reweights():
    ious, nd, ng = [0.8, 0.6], 5, 3
    assert weighted_lrp(ious, nd, ng) == pytest.approx(lrp_error(ious, nd, ng).lrp)
    # FP-heavy detector: weighting FPs more raises the error; FN weight 0 ignores misses
    assert weighted_lrp(ious, nd, ng, alpha_fp=3) > weighted_lrp(ious, nd, ng)
    assert weighted_lrp(ious, nd, ng, alpha_fn=0) == pytest.approx((0.6 / 0.5 + 3) / 5)
    with pytest.raises(ValueError):
        weighted_lrp(ious, nd, ng, alpha_fp=-1)


def test_greedy_match_score_order_and_threshold():
    ious = [[0.9, 0.6], [0.7, 0.4], [0.45, 0.3]]
    m = greedy_match(ious, [0.5, 0.8, 0.9])
    assert m.tolist() == [1, 0, -1]  # det 1 (0.8) takes gt 0 first; det 2 below tau
    assert greedy_match(np.zeros((2, 0))).tolist() == [-1, -1]


def test_optimal_lrp_matches_refcase_bbox_tiny_alpha(refcases):
    """Class alpha of bbox_tiny (README section 6): the optimum lies inside the 0.30 tie."""
    path = refcases / "lrp" / "expected" / "bbox_tiny.json"
    if not path.is_file():
        pytest.skip("bbox_tiny not in this reference set")
    exp = json.loads(path.read_text())
    row = exp["official"]["per_class_area_all_maxdet_last"][0]
    nan = float("nan")
    scores = [0.92, 0.85, 0.80, 0.70, 0.70, 0.55, 0.40, 0.30, 0.30]
    ious = [0.8, 1.0, nan, 0.6, nan, 0.5, nan, 4560 / 5040, nan]
    o = optimal_lrp(scores, ious, num_gts=5)
    assert o.index == 7 and o.threshold == row["lrp_opt_thr"]
    assert o.olrp == pytest.approx(row["oLRP"], rel=1e-12)
    assert o.loc == pytest.approx(row["oLRP_Loc"], rel=1e-12)
    assert o.fp == row["oLRP_FP"] and o.fn == row["oLRP_FN"]
    curve = lrp_curve(scores, ious, 5)
    assert curve["lrp"][1] == pytest.approx(0.68) and curve["lrp"][-1] == pytest.approx(
        0.710053, abs=1e-6
    )


def test_optimal_lrp_no_tp_and_first_minimum():
    o = optimal_lrp([0.9, 0.1], [float("nan"), float("nan")], num_gts=2)
    assert o.olrp == 1.0 and math.isnan(o.threshold) and o.index == -1
    # two perfect TPs, then an FP: minimum 0 first reached at index 1, not later
    o = optimal_lrp([0.9, 0.8, 0.7], [1.0, 1.0, float("nan")], num_gts=2)
    assert o.olrp == 0.0 and o.index == 1 and o.threshold == 0.8


def test_molrp_drops_nan_and_minus_one():
    assert molrp([0.5, float("nan"), -1, 0.7]) == pytest.approx(0.6)
    assert molrp([-1, float("nan")]) == -1
