"""Experiment jobs E1, E2, E3, E10 (overdeq.experiments_random) on tiny grids, and their
summaries on hand-made rows whose answers are known."""

from __future__ import annotations

import csv
import math

import pytest

from overdeq import experiments_random as E
from overdeq.theory import loglog_slope


def test_regimes():
    assert [E.regime(s) for s in (0.1, 0.49, 0.5, 1.4, math.sqrt(2), 1.5)] == [
        "contraction",
        "contraction",
        "mean-field",
        "mean-field",
        "divergent",
        "divergent",
    ]


def test_unknown_parameters_are_listed():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['width'\].*valid"):
        E.E1Params.from_mapping({"width": 3})
    with pytest.raises(ValueError, match=r"e10: parameter 'dtype' must be one of"):
        E.E10Params(dtype="half")


def test_parameters_are_frozen_with_lists_as_tuples():
    p = E.E1Params.from_mapping({"widths": [10, 20], "seeds": [4, 7]})
    assert (
        p.widths == (10, 20) and p.seed_list == [4, 7] and E.E1Params(seeds=2).seed_list == [0, 1]
    )
    assert p.to_dict()["widths"] == [10, 20]
    with pytest.raises(AttributeError):
        p.n = 3  # type: ignore[misc]
    # the tolerance: the one the dtype can reach unless given
    assert p.solver().tol == 1e-10 and E.E1Params(dtype="float32").solver().tol == 1e-5
    assert E.E3Params().solver().tol == 1e-8 and E.E2Params(tol=1e-7).solver().tol == 1e-7


def test_e1_rows_and_slope(tmp_path):
    rows = E.run_e1(
        E.E1Params(
            data="gaussian",
            n=8,
            d=4,
            widths=[200, 800, 3200],
            seeds=2,
            untied_widths=[400],
            max_depth=3,
        )
    )
    deq = [r for r in rows if r["network"] == "deq"]
    untied = [r for r in rows if r["network"] == "untied"]
    assert len(deq) == 6 and len(untied) == 2 * 3 * 2
    assert all(r["converged"] and r["err_max"] >= r["err_rms"] > 0 for r in deq)
    (rms,) = [s for s in E.summarize_e1(rows) if s["metric"] == "err_rms"]
    assert -0.8 < rms["slope"] < -0.25
    path = tmp_path / "e1.csv"
    E.write_rows(rows, path)
    with open(path) as fh:
        next(fh)  # the completeness marker (overdeq.io)
        back = list(csv.DictReader(fh))
    assert len(back) == len(rows) and float(back[0]["err_max"]) == rows[0]["err_max"]


def test_loglog_slope_recovers_a_power_law():
    xs = [10, 20, 40, 80]
    slope, intercept = loglog_slope(xs, [3 * x**-0.5 for x in xs])
    assert slope == pytest.approx(-0.5, abs=1e-12)
    assert intercept == pytest.approx(math.log(3), abs=1e-12)
    assert math.isnan(loglog_slope([1], [1])[0])
    assert math.isnan(loglog_slope([2, 2], [1, 3])[0])  # one x: no slope
    # non-positive or non-finite pairs are left out
    assert loglog_slope([0, *xs, 7], [1, *(3 * x**-0.5 for x in xs), math.nan])[0] == slope


def test_e2_rows_follow_rank_and_summaries():
    rows = E.run_e2(E.E2Params(data="identity", ns=[6], ratios=[0.5, 40], seeds=3))
    assert len(rows) == 6
    short = [r for r in rows if r["ratio"] == 0.5]
    assert all(abs(r["lambda_0"]) < 1e-12 and not r["holds"] for r in short)  # rank m < n
    wide = [r for r in rows if r["ratio"] == 40]
    assert all(r["holds"] and r["lambda_ratio"] > 0.5 for r in wide)
    cells = E.summarize_e2(rows)
    assert [c["probability"] for c in cells] == [0.0, 1.0]


def test_e2_threshold_fit_on_known_cells():
    # m*(n) = 2 n^1.5 exactly on a grid of m/n values; one n never reaches the target
    cells = []
    for n in (4, 16, 64):
        star = 2 * math.sqrt(n)
        for ratio in (1, 2, 4, 8, 16, 32):
            cells.append(
                {
                    "data": "x",
                    "n": n,
                    "ratio": ratio,
                    "width": ratio * n,
                    "probability": 0.95 if ratio >= star else 0.5,
                }
            )
    cells.append({"data": "x", "n": 256, "ratio": 1, "width": 256, "probability": 0.2})
    fit = E.fit_e2_threshold(cells, probability=0.9)
    by_n = {r["n"]: r for r in fit}
    # the crossing of 0.9 is interpolated in log(m/n) between the grid ratios around it
    frac = (0.9 - 0.5) / (0.95 - 0.5)
    expected = [grid * n * 2 ** (frac - 1) for grid, n in ((4, 4), (8, 16), (16, 64))]
    assert [by_n[n]["m_star"] for n in (4, 16, 64)] == pytest.approx(expected, rel=1e-12)
    assert math.isnan(by_n[256]["m_star"]) and by_n[4]["fit_points"] == 3
    assert by_n[4]["exponent"] == pytest.approx(1.5, abs=1e-12)


def test_e3_labels_regimes_and_reports_divergence():
    rows = E.run_e3(
        E.E3Params(n=6, width=300, seeds=2, sigma_ws=[0.3, 1.6], max_iter=300, w_norm="power")
    )
    summary = {s["sigma_w"]: s for s in E.summarize_e3(rows)}
    assert summary[0.3]["regime"] == "contraction" and summary[0.3]["converged_fraction"] == 1
    assert summary[1.6]["regime"] == "divergent" and summary[1.6]["converged_fraction"] == 0
    assert summary[0.3]["w_norm_mean"] == pytest.approx(0.6, rel=0.1)
    assert all(r["feature_norm"] > 1e3 for r in rows if r["sigma_w"] == 1.6)


def test_e10_table():
    rows = E.run_e10(E.E10Params(data=["identity", "gaussian"], n=12, d=6, sigma_ws=[0.2, 1.2]))
    assert len(rows) == 4
    for r in rows:
        assert 0 < r["lambda_K"] <= r["lambda_Theta"] and r["lambda_Theta"] < r["lambda_max_Theta"]
        assert r["K_diag_max"] == pytest.approx(1 / (2 - r["sigma_w"] ** 2), rel=1e-12)
