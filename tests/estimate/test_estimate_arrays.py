"""Samplers, estimators and planning over arrays: exact answers, unbiasedness, coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

import dlabel_lab as dl
from dlabel_lab.estimate import (
    clopper_pearson,
    draw_probabilities,
    failure_seeking_sample,
    hansen_hurwitz_estimate,
    labels_needed,
    mc_agreement,
    neyman_allocation,
    plot_estimates,
    ppi_estimate,
    ppi_lambda,
    prediction_agreement,
    score_strata,
    srs_estimate,
    srs_sample,
    stratified_estimate,
    stratified_sample,
    unit_variances,
)
from dlabel_lab.estimate.oracles import calibrated_confidence


def _population(n=400, seed=0):
    """A synthetic population: a calibrated pseudo-oracle and 0/1 correctness drawn from it."""
    rng = np.random.default_rng(seed)
    f = rng.beta(6, 1.5, n)
    return f, (rng.random(n) < f).astype(float)


@pytest.mark.parametrize(("k", "n"), [(0, 5), (3, 5), (5, 5), (17, 20), (48, 60)])
def test_srs_interval_is_scipys_clopper_pearson(k, n):
    est = srs_estimate([1] * k + [0] * (n - k), confidence=0.9)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
    assert est.point == k / n and est.labels_used == n and est.method == "srs"
    assert est.low == pytest.approx(ci.low, abs=1e-12) and est.high == pytest.approx(ci.high, abs=1e-12)
    assert clopper_pearson(k, n, confidence=0.9) == (est.low, est.high)


def test_stratified_with_one_stratum_is_srs_and_the_correction_narrows():
    y = [1, 1, 0, 1, 1, 1, 0, 1, 1, 1]
    one = stratified_estimate(y, [0] * 10, [1000], finite_population=False)
    srs = srs_estimate(y)
    assert (one.point, one.low, one.high) == pytest.approx((srs.point, srs.low, srs.high), abs=1e-12)
    corrected = stratified_estimate(y, [0] * 10, [20])
    assert corrected.point == srs.point and corrected.width < srs.width
    two = stratified_estimate([1, 1, 0, 1], [0, 0, 1, 1], [300, 100], finite_population=False)
    assert two.point == pytest.approx(0.75 * 1.0 + 0.25 * 0.5)
    with pytest.raises(dl.ConfigError, match="no labelled clip"):
        stratified_estimate([1, 1], [0, 0], [10, 10])


def test_neyman_allocation_proportions_and_caps():
    assert neyman_allocation([100, 100, 200], [0.1, 0.3, 0.2], 40, minimum=0).tolist() == [5, 15, 20]
    assert neyman_allocation([3, 100], [1.0, 0.1], 20, minimum=2).tolist() == [3, 17]  # capped at N_h
    assert neyman_allocation([10, 30], [0.0, 0.0], 8, minimum=0).tolist() == [2, 6]  # proportional
    assert neyman_allocation([7, 11, 13], [0.3, 0.1, 0.4], 17).sum() == 17
    with pytest.raises(dl.ConfigError, match="below 2 labels"):
        neyman_allocation([10, 10, 10], [1, 1, 1], 5)


def test_samplers_record_their_design_and_nest_as_the_budget_grows():
    s = srs_sample(50, 10, seed=3)
    assert len(set(s.indices.tolist())) == 10 and np.all(s.inclusion_probabilities == 0.2)
    assert srs_sample(50, 20, seed=3).indices[:10].tolist() == s.indices.tolist()
    f, _ = _population(60)
    strata = score_strata(f, 3)
    assert np.bincount(strata).tolist() == [20, 20, 20] and f[strata == 0].max() <= f[strata == 1].min()
    st = stratified_sample(strata, 12, stratum_sds=[0.4, 0.3, 0.1], seed=1)
    alloc = neyman_allocation([20, 20, 20], [0.4, 0.3, 0.1], 12)
    assert np.bincount(st.strata).tolist() == alloc.tolist()
    assert np.all(strata[st.indices] == st.strata)
    assert np.allclose(st.inclusion_probabilities, alloc[st.strata] / 20)
    fs = failure_seeking_sample(1 - f, 30, seed=2)
    p = draw_probabilities(1 - f)
    assert np.allclose(fs.draw_probabilities, p[fs.indices]) and p.sum() == pytest.approx(1.0)
    assert np.allclose(fs.inclusion_probabilities, 1 - (1 - p[fs.indices]) ** 30)
    assert failure_seeking_sample(1 - f, 40, seed=2).indices[:30].tolist() == fs.indices.tolist()
    assert p.max() / p.min() <= (1 - 0.2) * 60 / 0.2 + 1  # the uniform share bounds every weight


def test_hansen_hurwitz_is_exactly_unbiased_for_any_control():
    f, y = _population(200)
    p = draw_probabilities(1 - f)
    n = len(y)
    for control, mean in ((0.0, 0.0), (1.0, 1.0), (f, f.mean())):
        c = np.broadcast_to(control, y.shape)
        z = mean + (y - c) / (n * p)  # one draw of each clip; E[z] = sum_i p_i z_i
        assert float(p @ z) == pytest.approx(y.mean(), abs=1e-12)
        one = hansen_hurwitz_estimate(y[[5, 9]], p[[5, 9]], population_size=n, control=c[[5, 9]],
                                      control_mean=mean)
        assert one.point == pytest.approx(z[[5, 9]].mean(), abs=1e-12)


def test_hansen_hurwitz_interval_stays_finite_when_every_draw_agrees():
    # draws of clips whose weighted values agree up to round-off: the variance is ~1e-33, not 0
    y = np.ones(40)
    p = np.full(40, 1 / 40) * (1 + 1e-15 * np.arange(40))
    est = hansen_hurwitz_estimate(y, p / p.sum(), population_size=40, control=np.full(40, 0.5), control_mean=0.4)
    assert 0 < est.details["variance"] < 1e-20 and est.point == pytest.approx(0.9)
    assert np.isfinite([est.low, est.high]).all() and est.low <= est.point <= est.high


def test_failure_seeking_estimate_averages_to_the_truth_and_finds_failures():
    f, y = _population(300, seed=1)
    points, hits, errors_found = [], 0, []
    for seed in range(1500):
        s = failure_seeking_sample(1 - f, 20, seed=seed)
        est = hansen_hurwitz_estimate(y[s.indices], s.draw_probabilities, population_size=300,
                                      control=f[s.indices], control_mean=f.mean())
        points.append(est.point)
        hits += est.low <= y.mean() <= est.high
        errors_found.append((1 - y[s.indices]).mean())
    se = np.std(points) / np.sqrt(len(points))
    assert abs(np.mean(points) - y.mean()) < max(3.5 * se, 1e-3) and abs(np.mean(points) - y.mean()) < 0.005
    assert hits / 1500 >= 0.92
    assert np.mean(errors_found) > 1.3 * (1 - y.mean())  # it labels mispredictions more often than SRS would


def test_stratified_estimate_averages_to_the_truth():
    f, y = _population(300, seed=2)
    strata = score_strata(f, 4)
    points = []
    for seed in range(800):
        s = stratified_sample(strata, 24, seed=seed)
        points.append(stratified_estimate(y[s.indices], s.strata, s.stratum_sizes).point)
    assert abs(np.mean(points) - y.mean()) < max(3.5 * np.std(points) / np.sqrt(800), 1e-3)


def test_ppi_with_a_perfect_oracle_is_narrow_and_right():
    f, y = _population(2000, seed=3)
    s = srs_sample(2000, 40, seed=0)
    perfect = ppi_estimate(y[s.indices], y[s.indices], y, oracle="perfect")
    classical = srs_estimate(y[s.indices])
    assert perfect.low <= y.mean() <= perfect.high and perfect.point == pytest.approx(y.mean(), abs=0.01)
    assert perfect.width < 0.3 * classical.width and perfect.oracle == "perfect" and perfect.details["lam"] > 0.9
    plain = ppi_estimate(y[s.indices], f[s.indices], f, lam=0.0)
    assert plain.point == pytest.approx(y[s.indices].mean(), abs=1e-12)  # lam = 0: the classical estimate


def test_ppi_lambda_is_ppi_pys_own_tuning():
    from ppi_py.ppi import _calc_lam_glm

    f, y = _population(500, seed=4)
    lab = np.arange(30)
    ours = ppi_lambda(y[lab], f[lab], f)
    pe = f.mean() + (y[lab] - f[lab]).mean()
    theirs = _calc_lam_glm((y[lab] - pe)[:, None], (f[lab] - pe)[:, None], (f - pe)[:, None], np.eye(1), clip=True)
    assert ours == pytest.approx(float(theirs), abs=1e-12)


def test_plan_needs_fewer_labels_for_wider_intervals_and_a_good_oracle_helps():
    f, y = _population(1000, seed=5)
    pilot = srs_sample(1000, 60, seed=0).indices
    table = unit_variances(y[pilot], pilot, f)
    for v, e in zip(table["unit_variance"], table["extra_variance"], strict=True):
        needs = [labels_needed(v, w, extra_variance=e) for w in (0.03, 0.05, 0.1, 0.2)]
        assert all(a >= b for a, b in zip(needs, needs[1:], strict=False)), needs
    perfect = unit_variances(y[pilot], pilot, y)
    assert perfect.set_index("method").loc["ppi", "unit_variance"] < table.set_index("method").loc["srs",
                                                                                                    "unit_variance"]
    assert labels_needed(0.25, 0.05, extra_variance=1.0) is None


def test_pure_pseudo_oracles():
    assert calibrated_confidence([[0.9, 0.1]], 2.0).round(3).tolist() == [0.75]
    got = prediction_agreement(["a", "b", "c"], [["a", "a", None], ["a", "b", None]])
    assert got[:2].tolist() == [1.0, 0.5] and np.isnan(got[2])
    mc = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.4, 0.6], [0.3, 0.7]]])
    assert mc_agreement(mc, [0, 1]).tolist() == [0.5, 1.0]


def test_plot_estimates_draws_one_series_per_method():
    table = pd.DataFrame({"method": ["srs", "ppi", "srs"], "labels_used": [10, 10, 20], "point": [0.8, 0.82, 0.85],
                          "low": [0.5, 0.7, 0.65], "high": [0.95, 0.9, 0.95]})
    ax = plot_estimates(table, truth=0.84)
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["ppi", "srs", "truth 0.840"]
    assert ax.get_xlabel() == "labels spent"
    with pytest.raises(dl.ConfigError, match="missing"):
        plot_estimates(table.drop(columns="low"))
