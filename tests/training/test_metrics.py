from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from service.training import metrics


def _expit(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_auc_matches_sklearn_including_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.normal(size=500) + y, 1)  # rounding makes many ties
    assert abs(metrics.auc(y, score) - roc_auc_score(y, score)) < 1e-12


def test_bootstrap_ci_brackets_the_auc_and_is_seeded():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    score = rng.normal(size=400) + y
    lo, hi = metrics.bootstrap_auc_ci(y, score, np.random.default_rng(0), 300)
    assert lo < metrics.auc(y, score) < hi
    assert (lo, hi) == metrics.bootstrap_auc_ci(y, score, np.random.default_rng(0), 300)


def test_calibration_of_true_probabilities_is_ideal_and_overconfidence_shows_in_the_slope():
    rng = np.random.default_rng(3)
    lp = rng.normal(0, 1.5, 40_000)
    y = (rng.random(lp.size) < _expit(lp)).astype(np.int64)
    ideal = metrics.calibration(y, _expit(lp))
    assert abs(ideal["intercept"]) < 0.05 and abs(ideal["slope"] - 1) < 0.05
    overconfident = metrics.calibration(y, _expit(2 * lp))
    assert abs(overconfident["slope"] - 0.5) < 0.03
    shifted = metrics.calibration(y, _expit(lp - 0.5))
    assert abs(shifted["intercept"] - 0.5) < 0.05


def test_brier_score():
    assert metrics.brier(np.array([1, 0]), np.array([0.75, 0.25])) == 0.0625


def test_calibration_and_its_wald_cis_match_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    lp = rng.normal(-1.5, 1.2, 3000)
    y = (rng.random(lp.size) < _expit(0.3 + 0.8 * lp)).astype(np.int64)
    p = _expit(lp)
    got = metrics.calibration(y, p)
    citl = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp).fit()
    assert abs(got["intercept"] - citl.params[0]) < 1e-8
    assert np.allclose(got["intercept_ci95"], citl.conf_int()[0], atol=1e-6)
    slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    assert abs(got["slope"] - slope.params[1]) < 1e-8
    assert np.allclose(got["slope_ci95"], slope.conf_int()[1], atol=1e-6)


def test_net_benefit_matches_the_definition():
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.5, 0.2, 0.1, 0.05, 0.3, 0.7, 0.02, 0.01])
    nb = metrics.net_benefit(y, p, np.array([0.25]))
    # at t = 0.25: positives p >= 0.25 -> tp 2 (0.9, 0.6), fp 3 (0.5, 0.3, 0.7)
    assert nb["model"][0] == pytest.approx(2 / 10 - 3 / 10 * (0.25 / 0.75))
    assert nb["treat_all"][0] == pytest.approx(0.3 - 0.7 * (0.25 / 0.75))
