"""Between-group comparisons against independent computations: hand-worked cases, likelihoods
maximised here with scipy.optimize, and SciPy called directly."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from endpointkit.comparisons import (
    hazard_ratio_rows,
    km_difference_rows,
    logrank_rows,
    mann_whitney_rows,
    proportion_difference_rows,
    rate_ratio_rows,
    ratio_of_rate_ratios_rows,
    smd_rows,
)

Z = stats.norm.ppf(0.975)


def _counts_cohort(seed=3, n=240, ratios=(1.0, 0.5, 1.6), shape=2.0):
    """Over-dispersed counts (gamma frailty) in three groups with unequal person-time."""
    rng = np.random.default_rng(seed)
    group = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    years = rng.uniform(0.5, 4.0, n)
    rate = 0.8 * np.select([group == "A", group == "B"], ratios[:2], ratios[2])
    counts = rng.poisson(rate * years * rng.gamma(shape, 1 / shape, n))
    return counts, years, group


def _design(group, levels):
    return np.column_stack([np.ones(len(group))] + [(group == level).astype(float) for level in levels[1:]])


# --------------------------------------------------------------------------- SMD


def test_continuous_smd_is_the_hand_worked_tableone_formula():
    # A: mean 2.5, SD² 5/3; B: mean 5, SD² 20/3 -> 2.5 / sqrt((5/3 + 20/3) / 2) = sqrt(3/2)
    data = pd.DataFrame({"x": [1, 2, 3, 4, 2, 4, 6, 8]})
    group = ["A"] * 4 + ["B"] * 4
    (row,) = smd_rows(data, group, ["A", "B"], continuous=["x"])
    assert row.estimate == pytest.approx(math.sqrt(1.5))
    assert row.group == "B vs A" and row.stat == "smd" and row.n == 8
    assert row.p_value == pytest.approx(stats.mannwhitneyu([2, 4, 6, 8], [1, 2, 3, 4]).pvalue)
    assert "Mann-Whitney" in row.test
    (reverse,) = smd_rows(data, group, ["B", "A"], continuous=["x"])
    assert reverse.estimate == pytest.approx(-math.sqrt(1.5)) and reverse.group == "A vs B"


def test_binary_smd_is_the_difference_over_the_mean_bernoulli_variance():
    # M: 2/4 in A, 1/4 in B -> 0.25 / sqrt((0.25 + 0.1875) / 2) = sqrt(2/7)
    data = pd.DataFrame({"sex": ["M", "M", "F", "F", "M", "F", "F", "F"]})
    (row,) = smd_rows(data, ["A"] * 4 + ["B"] * 4, ["A", "B"], categorical=["sex"])
    assert row.estimate == pytest.approx(math.sqrt(2 / 7))
    assert row.p_value == pytest.approx(stats.fisher_exact([[1, 2], [3, 2]]).pvalue)
    assert "Fisher" in row.test


def test_multicategory_smd_is_yang_and_daltons_formula_and_tableones_value():
    eth = ["x", "x", "y", "z", "z", "z", "x", "y", "y", "y", "z"]
    group = np.array(["A"] * 6 + ["B"] * 5)
    age = [31, 45, 52, 38, 60, 41, 29, 35, 50, 47, 33]
    data = pd.DataFrame({"eth": eth, "age": age})
    rows = smd_rows(data, group, ["A", "B"], continuous=["age"], categorical=["eth"])
    by_measure = {r.measure: r for r in rows}
    # the published formula by hand: proportions without the first category, S = mean covariance
    e = np.array(eth)
    p1 = np.array([np.mean(e[group == "B"] == c) for c in ("y", "z")])
    p0 = np.array([np.mean(e[group == "A"] == c) for c in ("y", "z")])
    s = (np.diag(p1) - np.outer(p1, p1) + np.diag(p0) - np.outer(p0, p0)) / 2
    hand = math.sqrt((p1 - p0) @ np.linalg.inv(s) @ (p1 - p0))
    assert by_measure["eth"].estimate == pytest.approx(hand)
    # tableone 0.9.6 on the same data: SMD (A,B) age -0.5834274912, eth 1.0106643830
    assert by_measure["eth"].estimate == pytest.approx(1.010664383030641)
    assert by_measure["age"].estimate == pytest.approx(-0.5834274912159592)
    table = pd.crosstab(e, group).to_numpy()
    assert by_measure["eth"].p_value == pytest.approx(stats.chi2_contingency(table).pvalue)


def test_more_than_two_groups_use_kruskal_wallis_and_one_row_per_pair():
    rng = np.random.default_rng(5)
    group = np.repeat(["A", "B", "C"], 20)
    data = pd.DataFrame({"x": rng.normal(0, 1, 60)})
    rows = smd_rows(data, group, ["A", "B", "C"], continuous=["x"])
    assert [r.group for r in rows] == ["B vs A", "C vs A"]
    p = stats.kruskal(data.x[:20], data.x[20:40], data.x[40:]).pvalue
    assert all(r.p_value == pytest.approx(p) and "Kruskal-Wallis" in r.test for r in rows)


def test_smd_degenerate_inputs_give_blank_rows():
    data = pd.DataFrame({"x": [5.0] * 6, "c": ["a"] * 3 + ["b"] * 3})
    rows = smd_rows(data, ["A"] * 3 + ["B"] * 3, ["A", "B", "C"], continuous=["x"], categorical=["c"])
    x_b, x_c, c_b, c_c = rows
    assert x_b.estimate is None and "zero SD" in x_b.test and "all values identical" in x_b.test
    assert x_c.estimate is None and "no values in group C" in x_c.test
    assert c_b.estimate is None and "no within-group variation" in c_b.test
    assert c_c.estimate is None


# --------------------------------------------------------------------------- rate ratios


def test_negative_binomial_rate_ratio_is_the_hand_maximised_likelihood():
    counts, years, group = _counts_cohort()
    levels = ["A", "B", "C"]
    x = _design(group, levels)

    def nll(theta):
        beta, alpha = theta[:-1], math.exp(theta[-1])
        mu = years * np.exp(x @ beta)
        r = 1 / alpha
        return -np.sum(special.gammaln(counts + r) - special.gammaln(r) - special.gammaln(counts + 1)
                       + r * np.log(r / (r + mu)) + counts * np.log(mu / (r + mu)))

    fit = optimize.minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-9})
    beta, alpha = fit.x[:-1], math.exp(fit.x[-1])
    # Wald SE from the expected information of beta given alpha: X'WX, W = mu / (1 + alpha mu)
    mu = years * np.exp(x @ beta)
    cov = np.linalg.inv(x.T @ (x * (mu / (1 + alpha * mu))[:, None]))
    rows = rate_ratio_rows(counts, years, group, levels)
    for i, row in enumerate(rows, start=1):
        se = math.sqrt(cov[i, i])
        assert row.estimate == pytest.approx(math.exp(beta[i]), rel=1e-4)
        assert (row.low, row.high) == pytest.approx((math.exp(beta[i] - Z * se), math.exp(beta[i] + Z * se)), rel=1e-3)
        assert row.p_value == pytest.approx(2 * stats.norm.sf(abs(beta[i]) / se), rel=1e-2)
        assert row.group == f"{levels[i]} vs A" and row.stat == "rate_ratio"
        assert f"alpha = {alpha:.4g}"[:12] in row.test and "negative binomial GLM" in row.test
    mask = np.isin(group, ["A", "B"])
    assert rows[0].n == mask.sum() and rows[0].count == counts[mask].sum()


def test_without_over_dispersion_the_negative_binomial_model_is_the_poisson_model():
    # Poisson counts: the NB2 likelihood is largest at alpha -> 0, the Poisson model; its rate ratio is
    # the crude one, with SE sqrt(1/events_B + 1/events_A)
    rng = np.random.default_rng(0)
    group = np.where(rng.random(200) < 0.5, "A", "B")
    years = rng.uniform(0.3, 4, 200)
    counts = rng.poisson(np.where(group == "B", 0.3, 0.6) * years)
    (row,) = rate_ratio_rows(counts, years, group, ["A", "B"])
    a, b = counts[group == "A"].sum(), counts[group == "B"].sum()
    crude = (b / years[group == "B"].sum()) / (a / years[group == "A"].sum())
    se = math.sqrt(1 / a + 1 / b)
    assert "lower bound 0" in row.test
    assert row.estimate == pytest.approx(crude, rel=1e-6)
    assert (row.low, row.high) == pytest.approx((crude * math.exp(-Z * se), crude * math.exp(Z * se)), rel=1e-6)


def test_poisson_robust_rate_ratio_is_the_crude_ratio_with_a_hand_sandwich():
    counts, years, group = _counts_cohort(seed=8)
    rows = rate_ratio_rows(counts, years, group, ["A", "B", "C"], model="poisson_robust")
    x = _design(group, ["A", "B", "C"])

    def nll(beta):
        mu = years * np.exp(x @ beta)
        return np.sum(mu - counts * np.log(mu))

    beta = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    mu = years * np.exp(x @ beta)
    bread = np.linalg.inv(x.T @ (x * mu[:, None]))
    meat = (x * ((counts - mu) ** 2)[:, None]).T @ x
    cov = bread @ meat @ bread  # HC0: no small-sample factor
    for i, (row, level) in enumerate(zip(rows, ["B", "C"], strict=True), start=1):
        crude = (counts[group == level].sum() / years[group == level].sum()) / (counts[group == "A"].sum() / years[group == "A"].sum())
        assert row.estimate == pytest.approx(crude) and row.estimate == pytest.approx(math.exp(beta[i]), rel=1e-5)
        se = math.sqrt(cov[i, i])
        assert row.low == pytest.approx(crude * math.exp(-Z * se), rel=1e-4)
        assert row.high == pytest.approx(crude * math.exp(Z * se), rel=1e-4)
        assert "HC0" in row.test


def test_rate_ratio_degenerate_inputs_give_blank_rows():
    counts = np.array([1, 0, 2, 0, 0, 0, 3, 1])
    years = np.array([1.0, 2, 1, 1, 2, 1, 0, 1])  # a patient without person-time is left out
    group = ["A", "A", "A", "B", "B", "B", "C", "C"]
    rows = rate_ratio_rows(counts, years, group, ["A", "B", "C", "D"])
    assert [r.group for r in rows] == ["B vs A", "C vs A", "D vs A"]
    assert rows[0].estimate is None and "no events in group B" in rows[0].test
    assert rows[1].estimate is not None and rows[1].n == 4  # the C patient with 0 years left out
    assert rows[2].estimate is None and "no patients in group D" in rows[2].test
    none = rate_ratio_rows([0, 0, 0, 0], [1, 1, 1, 1], ["A", "A", "B", "B"], ["A", "B"], model="poisson_robust")
    assert none[0].estimate is None and "no events in group A and B" in none[0].test


def test_ratio_of_rate_ratios_is_the_crude_ratio_with_a_delta_method_se_when_balanced():
    # equal person-time for everyone (2 years pre, 1.5 years post): the saturated model's estimate is
    # the crude ratio of the groups' post/pre ratios, and its robust variance the sum over patients
    # of squared influences, whatever the working correlation
    rng = np.random.default_rng(11)
    n = 160
    group = np.where(rng.random(n) < 0.5, "A", "B")
    frailty = rng.gamma(2, 0.5, n)
    pre = rng.poisson(1.0 * 2.0 * frailty)
    post = rng.poisson(np.where(group == "B", 0.3, 0.6) * 1.5 * frailty)
    rows = ratio_of_rate_ratios_rows(pre, np.full(n, 2.0), post, np.full(n, 1.5), group, ["A", "B"])
    (row,) = rows
    log_rr, var = {}, 0.0
    for g in ("A", "B"):
        y0, y1 = pre[group == g], post[group == g]
        m = y0.size
        log_rr[g] = math.log(y1.mean() / 1.5) - math.log(y0.mean() / 2.0)
        influence = (y1 - y1.mean()) / (m * y1.mean()) - (y0 - y0.mean()) / (m * y0.mean())
        var += np.sum(influence ** 2)
    log_ror = log_rr["B"] - log_rr["A"]
    assert row.estimate == pytest.approx(math.exp(log_ror), rel=1e-6)
    assert (row.low, row.high) == pytest.approx((math.exp(log_ror - Z * math.sqrt(var)), math.exp(log_ror + Z * math.sqrt(var))), rel=1e-5)
    assert row.n == n and row.count == pre.sum() + post.sum() and "exchangeable" in row.test
    (nb,) = ratio_of_rate_ratios_rows(pre, np.full(n, 2.0), post, np.full(n, 1.5), group, ["A", "B"],
                                      model="negative_binomial_cluster")
    assert nb.estimate == pytest.approx(math.exp(log_ror), rel=1e-5)
    assert "clustered by patient" in nb.test


def test_ratio_of_rate_ratios_degenerate_inputs():
    rows = ratio_of_rate_ratios_rows([1, 2, 1, 1], [1, 1, 1, 1], [0, 1, 0, 0], [1, 1, 1, 1],
                                     ["A", "A", "B", "B"], ["A", "B", "C"])
    assert rows[0].estimate is None and "no post events in group B" in rows[0].test
    assert rows[1].estimate is None and "no patients in group C" in rows[1].test


# --------------------------------------------------------------------------- time to event

TIME = np.array([2, 3, 3, 5, 6, 6, 7, 9, 10, 12, 1, 2, 4, 4, 5, 8, 8, 11, 13, 14], dtype=float)
EVENT = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0])
GROUP = np.array(["A"] * 10 + ["B"] * 10)


def _hand_logrank(time, event, in_b):
    o_minus_e, var = 0.0, 0.0
    for t in np.unique(time[event == 1]):
        at_risk = time >= t
        n, n1 = at_risk.sum(), (at_risk & in_b).sum()
        d = ((time == t) & (event == 1)).sum()
        d1 = ((time == t) & (event == 1) & in_b).sum()
        o_minus_e += d1 - d * n1 / n
        var += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1) if n > 1 else 0.0
    return o_minus_e ** 2 / var


def test_logrank_matches_a_hand_computation_and_scipy():
    (row,) = logrank_rows(TIME, EVENT, GROUP, ["A", "B"])
    assert row.estimate == pytest.approx(_hand_logrank(TIME, EVENT, GROUP == "B"))
    data = [stats.CensoredData(uncensored=TIME[(g == GROUP) & (EVENT == 1)], right=TIME[(g == GROUP) & (EVENT == 0)]) for g in "AB"]
    scipy_result = stats.logrank(data[1], data[0])
    assert row.estimate == pytest.approx(scipy_result.statistic ** 2)
    assert row.p_value == pytest.approx(scipy_result.pvalue)
    assert row.n == 20 and row.count == EVENT.sum()


def test_hazard_ratio_is_the_hand_maximised_efron_partial_likelihood():
    x = (GROUP == "B").astype(float)

    def efron_ll(b):
        ll = 0.0
        for t in np.unique(TIME[EVENT == 1]):
            dead = (t == TIME) & (EVENT == 1)
            risk = np.exp(b * x[t <= TIME]).sum()
            tied = np.exp(b * x[dead]).sum()
            d = dead.sum()
            ll += b * x[dead].sum() - sum(math.log(risk - k / d * tied) for k in range(d))
        return ll

    b = optimize.minimize_scalar(lambda v: -efron_ll(v), bounds=(-5, 5), method="bounded", options={"xatol": 1e-10}).x
    h = 1e-4
    information = -(efron_ll(b + h) - 2 * efron_ll(b) + efron_ll(b - h)) / h ** 2
    se = 1 / math.sqrt(information)
    (row,) = hazard_ratio_rows(TIME, EVENT, GROUP, ["A", "B"])
    assert row.estimate == pytest.approx(math.exp(b), rel=1e-5)
    assert (row.low, row.high) == pytest.approx((math.exp(b - Z * se), math.exp(b + Z * se)), rel=1e-4)
    assert row.p_value == pytest.approx(2 * stats.norm.sf(abs(b) / se), rel=1e-3)
    assert "Efron" in row.test and row.group == "B vs A"


def _hand_km(time, event, t0):
    s, greenwood = 1.0, 0.0
    for t in np.unique(time[(event == 1) & (time <= t0)]):
        n = (time >= t).sum()
        d = ((time == t) & (event == 1)).sum()
        s *= 1 - d / n
        greenwood += d / (n * (n - d))
    return s, s * math.sqrt(greenwood)


@pytest.mark.parametrize("landmark", [4.0, 6.0, 8.5])
def test_km_difference_uses_hand_greenwood_variances(landmark):
    (row,) = km_difference_rows(TIME, EVENT, GROUP, ["A", "B"], landmark)
    s1, se1 = _hand_km(TIME[GROUP == "B"], EVENT[GROUP == "B"], landmark)
    s0, se0 = _hand_km(TIME[GROUP == "A"], EVENT[GROUP == "A"], landmark)
    se = math.sqrt(se1 ** 2 + se0 ** 2)
    assert row.estimate == pytest.approx(s1 - s0)
    assert (row.low, row.high) == pytest.approx((s1 - s0 - Z * se, s1 - s0 + Z * se))
    assert row.p_value == pytest.approx(2 * stats.norm.sf(abs(s1 - s0) / se))
    assert row.count == int(EVENT[landmark >= TIME].sum())


def test_survival_degenerate_inputs_give_blank_rows():
    time, event, group = [1.0, 2, 3, 4, 5, 6], [0, 0, 0, 1, 0, 1], ["A", "A", "A", "B", "B", "B"]
    levels = ["A", "B", "C"]
    hr_b, hr_c = hazard_ratio_rows(time, event, group, levels)
    assert hr_b.estimate is None and "no events in group A" in hr_b.test
    assert hr_c.estimate is None and "no patients in group C" in hr_c.test
    lr_b, _ = logrank_rows(time, event, group, levels)
    assert lr_b.estimate is None and "no event time with patients of both groups at risk" in lr_b.test
    (none,) = logrank_rows(time, [0] * 6, group, ["A", "B"])
    assert none.estimate is None and "no events" in none.test
    km_b, _ = km_difference_rows(time, event, group, levels, 3.5)
    assert km_b.estimate is None and "follow-up ends before the landmark in group A" in km_b.test
    (flat,) = km_difference_rows(time, event, group, ["A", "B"], 2.5)
    assert flat.estimate == 0.0 and flat.low is None and "no CI" in flat.test


# --------------------------------------------------------------------------- proportions


def _wilson(x, n):
    p = x / n
    centre = (p + Z ** 2 / (2 * n)) / (1 + Z ** 2 / n)
    half = Z / (1 + Z ** 2 / n) * math.sqrt(p * (1 - p) / n + Z ** 2 / (4 * n ** 2))
    return centre - half, centre + half


def test_newcombe_interval_is_the_hand_worked_hybrid_score():
    # Newcombe (1998), example (a): 56/70 vs 48/80 -> 0.2000, method 10: 0.0524 to 0.3339
    success = [True] * 56 + [False] * 14 + [True] * 48 + [False] * 32
    group = ["T"] * 70 + ["C"] * 80
    (row,) = proportion_difference_rows(success, group, ["C", "T"])
    (l1, u1), (l0, u0) = _wilson(56, 70), _wilson(48, 80)
    p1, p0 = 56 / 70, 48 / 80
    low = p1 - p0 - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = p1 - p0 + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    assert row.estimate == pytest.approx(0.2)
    assert (row.low, row.high) == pytest.approx((low, high))
    assert (round(row.low, 4), round(row.high, 4)) == (0.0524, 0.3339)
    assert row.p_value == pytest.approx(stats.chi2_contingency([[56, 48], [14, 32]]).pvalue)
    assert row.group == "T vs C" and row.n == 150 and row.count == 104


def test_proportion_difference_small_counts_use_fisher_and_empty_groups_are_blank():
    success = [1, 0, 0, 1, 1, 1, None]
    group = ["A", "A", "A", "B", "B", "B", "B"]
    row_b, row_c = proportion_difference_rows(success, group, ["A", "B", "C"])
    assert row_b.estimate == pytest.approx(1 - 1 / 3) and row_b.n == 6
    assert row_b.p_value == pytest.approx(stats.fisher_exact([[3, 1], [0, 2]]).pvalue) and "Fisher" in row_b.test
    assert row_c.estimate is None and "no patients in group C" in row_c.test


# --------------------------------------------------------------------------- Mann-Whitney


def test_mann_whitney_p_and_estimates_match_scipy_and_numpy():
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(0, 1, 15), 1)
    y = np.round(rng.normal(0.8, 1, 12), 1)
    values = np.r_[x, y]
    group = ["A"] * 15 + ["B"] * 12
    (row,) = mann_whitney_rows(values, group, ["A", "B"])
    direct = stats.mannwhitneyu(y, x, alternative="two-sided")
    assert row.p_value == pytest.approx(direct.pvalue)
    assert row.estimate == pytest.approx(np.median(y) - np.median(x))
    (hl,) = mann_whitney_rows(values, group, ["A", "B"], estimate="hodges_lehmann")
    assert hl.estimate == pytest.approx(np.median([b - a for b in y for a in x]))
    assert hl.p_value == row.p_value and hl.stat == "hodges_lehmann"


def test_mann_whitney_degenerate_inputs():
    rows = mann_whitney_rows([1.0, 1.0, 1.0, 1.0], ["A", "A", "B", "B"], ["A", "B", "C"])
    assert rows[0].estimate is None and "identical" in rows[0].test
    assert rows[1].estimate is None and "no values in group C" in rows[1].test


def test_programming_mistakes_raise():
    with pytest.raises(ValueError, match="levels"):
        mann_whitney_rows([1.0], ["A"], ["A"])
    with pytest.raises(ValueError, match="model"):
        rate_ratio_rows([1], [1.0], ["A"], ["A", "B"], model="zip")
    with pytest.raises(ValueError, match="group"):
        logrank_rows([1.0, 2.0], [1, 1], ["A"], ["A", "B"])


# --------------------------------------------------------------------------- never raise on data

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    small = st.lists(
        st.tuples(st.sampled_from(["A", "B", "C", None]), st.integers(0, 3), st.sampled_from([0.0, 0.5, 1.0, 2.0]),
                  st.integers(0, 2), st.sampled_from([0.0, 1.0, 3.0]), st.booleans()),
        min_size=0, max_size=8,
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(small)
    def test_tiny_or_degenerate_inputs_never_raise(records):
        group = [r[0] for r in records]
        count = [r[1] for r in records]
        years = [r[2] for r in records]
        post = [r[3] for r in records]
        time = [r[4] for r in records]
        event = [r[5] for r in records]
        levels = ["A", "B", "C"]
        frame = pd.DataFrame({"x": pd.Series(time, dtype=float), "c": pd.Series([str(c) for c in count], dtype=object)})
        outputs = [
            smd_rows(frame, group, levels, continuous=["x"], categorical=["c"]),
            rate_ratio_rows(count, years, group, levels),
            rate_ratio_rows(count, years, group, levels, model="poisson_robust"),
            ratio_of_rate_ratios_rows(count, years, post, years, group, levels),
            logrank_rows(time, event, group, levels),
            hazard_ratio_rows(time, event, group, levels),
            km_difference_rows(time, event, group, levels, 1.0),
            proportion_difference_rows(event, group, levels),
            mann_whitney_rows(time, group, levels, estimate="hodges_lehmann"),
        ]
        for rows in outputs:
            assert [r.group for r in rows][-2:] == ["B vs A", "C vs A"]
            for r in rows:
                assert r.estimate is None or math.isfinite(r.estimate), r
                assert r.estimate is not None or r.test.startswith("not computed: "), r


def test_patients_outside_the_levels_or_without_a_group_are_left_out():
    values = [1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 100.0, 200.0]
    group = ["A", "A", "A", "B", "B", "B", None, "Z"]
    (row,) = mann_whitney_rows(values, group, ["A", "B"])
    assert row.n == 6 and row.estimate == pytest.approx(9.0)
    assert row.p_value == pytest.approx(stats.mannwhitneyu([10, 11, 12], [1, 2, 3]).pvalue)
    series = pd.Series(values, index=range(10, 18))  # any index: values are taken in order
    (same,) = mann_whitney_rows(series, pd.Series(group, index=range(50, 58)), ["A", "B"])
    assert same.estimate == row.estimate


def test_negative_binomial_fit_where_statsmodels_default_start_fails():
    # a simulated two-arm cohort on which NegativeBinomial's own start (alpha from moments) is
    # infinite with the person-time offset: the fit starts from the Poisson GLM instead
    from endpointkit.simulate import simulate_registry

    params = {"arms": True, "arm_b_rate_ratio": 0.6, "arm_b_stop_hazard_ratio": 1.5}
    hidden = simulate_registry(300, 535, params).patients
    counts, years, arm = hidden["post_relapses"].to_numpy(), hidden["post_days"].to_numpy() / 365.25, hidden["arm"].to_numpy()
    (row,) = rate_ratio_rows(counts, years, arm, ["A", "B"])
    x = _design(arm, ["A", "B"])

    def nll(theta):
        mu, r = years * np.exp(x @ theta[:2]), math.exp(-theta[2])
        return -np.sum(special.gammaln(counts + r) - special.gammaln(r) + r * np.log(r / (r + mu)) + counts * np.log(mu / (r + mu)))

    fit = optimize.minimize(nll, np.array([0.0, 0.0, 0.0]), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000})
    assert row.estimate == pytest.approx(math.exp(fit.x[1]), rel=1e-4)
