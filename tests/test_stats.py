"""Statistics helpers against scipy/numpy called directly, and display formatting."""

import numpy as np
import pytest
from scipy import stats

from endpointkit.endpoint import Row
from endpointkit.results import format_display, format_p
from endpointkit.spec import TableSection
from endpointkit.stats import (
    PairedTestSettings,
    paired_test_row,
    proportion_row,
    quartiles,
    resolve_wilcoxon_method,
)

TIMES = [9, 14, 22, 33, 41, 52]


@pytest.mark.parametrize(
    ("method", "q1", "q3"),
    [("linear", 16, 39), ("weibull", 12.75, 43.75), ("averaged_inverted_cdf", 14, 41)],
)
def test_quartiles_match_the_software_conventions(method, q1, q3):
    # endpoint-conventions.md section 7: R type 7 / SPSS type 6 / SAS-Stata type 2 on six times
    assert quartiles(TIMES, method) == pytest.approx((q1, 27.5, q3))


def test_proportion_uses_the_exact_clopper_pearson_interval():
    r = proportion_row("x", 7, 20)
    ci = stats.binomtest(7, 20).proportion_ci(method="exact")
    assert (r.estimate, r.low, r.high) == pytest.approx((0.35, ci.low, ci.high))


@pytest.mark.parametrize(
    "diff",
    [
        [-1.0, -2.0, -3.0, 4.0, -5.0, -6.0],  # no ties, no zeros -> exact
        [-1.0, -1.0, -3.0, 4.0, -5.0, 0.0],  # ties and a zero, n <= 13 -> permutation
        list(np.r_[np.arange(1, 15) * -1.0, [1.0, 1.0]]),  # ties, n = 16 -> asymptotic
    ],
)
@pytest.mark.parametrize("zero_method", ["wilcox", "pratt", "zsplit"])
def test_the_recorded_method_reproduces_scipys_auto_p_value(diff, zero_method):
    settings = PairedTestSettings(zero_method=zero_method)
    pre = np.zeros(len(diff))
    r = paired_test_row("t", pre, np.array(diff), settings)
    auto = stats.wilcoxon(diff, zero_method=zero_method, correction=False, method="auto")
    assert r.p_value == pytest.approx(auto.pvalue)
    assert f"-> {resolve_wilcoxon_method(np.array(diff), settings)}" in r.test


def test_correction_and_asymptotic_settings_are_passed_to_scipy():
    diff = [-1.5, -2.0, -3.0, 4.0, -5.0, -6.0, -7.0]
    r = paired_test_row("t", np.zeros(7), np.array(diff), PairedTestSettings(method="asymptotic", correction=True))
    assert r.p_value == pytest.approx(stats.wilcoxon(diff, method="asymptotic", correction=True).pvalue)
    assert "correction=true" in r.test and "-> asymptotic" in r.test


def test_a_test_on_all_zero_differences_is_reported_not_computed():
    r = paired_test_row("t", [1.0, 2.0], [1.0, 2.0], PairedTestSettings())
    assert r.p_value is None and "not computable" in r.test and r.n == 2


@pytest.mark.parametrize(
    ("p", "nejm", "ama"),
    [(0.0004, "<0.001", "P<.001"), (0.0058, "0.006", "P=.006"), (0.0432, "0.04", "P=.04"), (0.5, "0.50", "P=.50"), (0.00099, "<0.001", "P<.001")],
)
def test_p_value_styles_never_print_zero(p, nejm, ama):
    assert format_p(p, "nejm") == nejm
    assert format_p(p, "ama") == ama


def test_display_strings_follow_the_table_settings():
    median = Row(measure="m", stat="median", estimate=1.1, low=0.55, high=1.4, interval="IQR", n=20)
    assert format_display(median, TableSection()) == "1.1 [0.6\u20131.4]"
    assert format_display(median, TableSection(brackets="()", decimals=2)) == "1.10 (0.55\u20131.40)"
    prop = Row(measure="p", stat="proportion", estimate=19 / 20, count=19, n=20, low=0.75, high=0.999, interval="95% CI")
    assert format_display(prop, TableSection()) == "19 (95%)"
    assert format_display(prop, TableSection(show_ci=True)) == "19 (95%) [95% CI 75\u2013100%]"
    big = Row(measure="p", stat="proportion", estimate=0.3456, count=3456, n=10000)
    assert format_display(big, TableSection()) == "3456 (34.6%)"
