"""Fitting the normaliser: known coefficients from synthetic data, outliers, floor, ablations."""

import math

import numpy as np
import pytest

from segtool.core.calibration import below_floor, fit_line, fit_normaliser


def synthetic(a=0.5, b=1.0, c=-0.3, d=0.6, outlier_bins=(), seed=0):
    """Responses of K = 1..40 segments, r ~ N(a log p + b, (c log p + d)^2) with p = (k+1)/K."""
    rng = np.random.default_rng(seed)
    p, r, last = [], [], []
    for K in range(1, 41):
        for _ in range(60):
            pk = (np.arange(K) + 1) / K
            rk = rng.normal(a * np.log(pk) + b, np.maximum(c * np.log(pk) + d, 0.01))
            p += pk.tolist()
            r += rk.tolist()
            last.append(rk[-1])
    p, r = np.array(p), np.array(r)
    for q in outlier_bins:  # whole bins shifted far off the line
        r[np.round(p, 3) == q] += 25.0
    return p, r, np.array(last)


def test_huber_recovers_known_coefficients():
    p, r, last = synthetic()
    norm, bins, diag = fit_normaliser(p, r, last, "location", "huber")
    assert abs(norm.w_mu - 0.5) < 0.05 and abs(norm.b_mu - 1.0) < 0.05
    assert abs(norm.w_sigma - (-0.3)) < 0.05 and abs(norm.b_sigma - 0.6) < 0.05
    assert diag["r2_mean"] > 0.9 and diag["bins"] == len(bins["p"])


def test_huber_beats_ols_with_outlier_bins():
    p, r, last = synthetic(outlier_bins=(0.5, 0.25, 0.75, 0.2))
    huber, _, _ = fit_normaliser(p, r, last, "location", "huber")
    ols, _, _ = fit_normaliser(p, r, last, "location", "ols")
    assert abs(huber.w_mu - 0.5) < 0.1 and abs(huber.b_mu - 1.0) < 0.1
    assert abs(ols.b_mu - 1.0) > 3 * abs(huber.b_mu - 1.0)


def test_raw_point_fit_recovers_the_mean_line():
    p, r, last = synthetic(seed=1)
    norm, _, _ = fit_normaliser(p, r, last, "location", "raw")
    assert abs(norm.w_mu - 0.5) < 0.05 and abs(norm.b_mu - 1.0) < 0.05
    assert abs(norm.b_sigma - 0.6) < 0.1


def test_ablations_give_the_expected_constants():
    p = np.array([0.5, 1.0, 1.0])
    r = np.array([1.0, 3.0, 5.0])
    last = np.array([3.0, 5.0])
    g, _, _ = fit_normaliser(p, r, last, "global")
    assert (g.kind, g.mean, g.std) == ("global", 3.0, math.sqrt(8 / 3))
    lst, _, _ = fit_normaliser(p, r, last, "last")
    assert (lst.kind, lst.mean, lst.std) == ("last", 4.0, 1.0)
    assert fit_normaliser(p, r, last, "none")[0].kind == "none"


def test_floor_is_a_share_of_the_global_std_and_crossings_are_reported():
    p, r, last = synthetic(c=0.4, d=0.6)  # Std(p) = 0.4 log p + 0.6 reaches 0 at p = 0.22, clipped below
    norm, bins, diag = fit_normaliser(p, r, last, "location", "ols", floor_ratio=0.1)
    assert abs(norm.floor - 0.1 * r.std()) < 1e-12
    assert diag["std_below_floor"].startswith("for p < ")
    assert (bins["fit_std"] >= norm.floor).all()


def test_below_floor_cases():
    # 0.4 log p + 0.2 < 0.1 <=> log p < -0.25 <=> p < e^-0.25 = 0.7788
    assert below_floor(0.4, 0.2, 0.1) == "for p < 0.7788"
    assert below_floor(-0.2, 0.5, 0.1) is None  # decreasing in p from +inf to 0.5: never below
    assert below_floor(-0.5, 0.05, 0.1) == "for p > 0.9048"  # -0.5 log p + 0.05 < 0.1 <=> p > e^-0.1
    assert below_floor(0.0, 0.05, 0.1) == "for every p"


def test_fit_line_degenerate_single_location():
    assert fit_line(np.array([0.0, 0.0]), np.array([1.0, 3.0]), "huber") == (0.0, 2.0)


@pytest.mark.parametrize("method", ["huber", "ols"])
def test_fit_line_exact_on_a_line(method):
    x = np.linspace(-3, 0, 20)
    w, b = fit_line(x, 2 * x - 1, method)
    assert abs(w - 2) < 1e-3 and abs(b + 1) < 1e-3
