"""Fitting the location-aware normaliser from calibration points (METHOD §4): per-bin statistics,
lines against log p (Huber, OLS, or every raw point), a Std floor, and diagnostics."""

from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import HuberRegressor

from .normalizer import Normaliser, bin_stats


def fit_line(x: np.ndarray, y: np.ndarray, method: str, epsilon: float = 1.35) -> tuple[float, float]:
    """(slope, intercept) of y ~ x: sklearn HuberRegressor (robust to outlier bins) or least squares."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0, float(np.mean(y))  # one location only: a constant
    if method == "huber":
        model = HuberRegressor(epsilon=epsilon).fit(x.reshape(-1, 1), y)
        return float(model.coef_[0]), float(model.intercept_)
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def r_squared(y: np.ndarray, fitted: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - fitted) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


def below_floor(w: float, b: float, floor: float) -> str | None:
    """Where in p in (0, 1] the fitted Std(p) = w log p + b falls below the floor, in words (None: nowhere).

    w log p + b < floor  <=>  log p < t (w > 0)  or  log p > t (w < 0),  t = (floor - b) / w.
    """
    if w == 0:
        return "for every p" if b < floor else None
    t = (floor - b) / w
    if w > 0:
        return "for every p" if t >= 0 else f"for p < {math.exp(t):.4g}"
    return None if t >= 0 else f"for p > {math.exp(t):.4g}"


def fit_normaliser(p, r, last_r, kind: str, method: str = "huber", epsilon: float = 1.35,
                   floor_ratio: float = 0.1, decimals: int = 3) -> tuple[Normaliser, dict, dict]:
    """(normaliser, bin table, diagnostics) from calibration points p, r and each response's last r."""
    p, r, last_r = (np.asarray(a, dtype=np.float64) for a in (p, r, last_r))
    g_mean, g_std = float(r.mean()), float(r.std())
    bins = bin_stats(p, r, decimals)
    diag = {"points": int(len(r)), "responses": int(len(last_r)), "bins": int(len(bins["p"])),
            "points_per_bin_min": int(bins["count"].min()), "points_per_bin_median": float(np.median(bins["count"])),
            "points_per_bin_max": int(bins["count"].max()), "global_mean": g_mean, "global_std": g_std}
    if kind == "none":
        return Normaliser("none"), bins, diag
    if kind == "global":
        return Normaliser("global", mean=g_mean, std=g_std), bins, diag
    if kind == "last":
        return Normaliser("last", mean=float(last_r.mean()), std=float(last_r.std())), bins, diag
    x = np.log(bins["p"])
    if method == "raw":
        w_mu, b_mu = fit_line(np.log(p), r, "ols")
        spread = np.abs(r - (w_mu * np.log(p) + b_mu)) * math.sqrt(math.pi / 2)  # E|X - mu| = sigma sqrt(2/pi)
        w_s, b_s = fit_line(np.log(p), spread, "ols")
    else:
        w_mu, b_mu = fit_line(x, bins["mean"], method, epsilon)
        w_s, b_s = fit_line(x, bins["std"], method, epsilon)
    floor = floor_ratio * g_std
    bins["fit_mean"] = w_mu * x + b_mu
    bins["fit_std"] = np.maximum(w_s * x + b_s, floor)
    diag.update(r2_mean=r_squared(bins["mean"], w_mu * x + b_mu), r2_std=r_squared(bins["std"], w_s * x + b_s),
                resid_mean_abs_max=float(np.max(np.abs(bins["mean"] - bins["fit_mean"]))),
                std_below_floor=below_floor(w_s, b_s, floor))
    return Normaliser("location", w_mu=w_mu, b_mu=b_mu, w_sigma=w_s, b_sigma=b_s, floor=floor), bins, diag
