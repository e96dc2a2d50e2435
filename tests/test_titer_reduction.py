"""titer_reduction: antibody titers before vs after the index date (endpoints.md, pinned detail 7).

Every cohort below has the index date 2020-01-01 (first IVIG start) and follow-up end 2021-01-01
(the course's end_date), so the default pre window is [2019-01-01, 2020-01-01] (365 days) and the
post window is (2020-01-01, 2021-01-01].
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from endpointkit.errors import SpecError
from endpointkit.plugins.titer_reduction import TiterReduction, titer_text
from endpointkit.testing import make_cohort, make_context, params_for, row

INDEX, END = "2020-01-01", "2021-01-01"


def cohort(titers: list[tuple[str, str, str]], patients: int = 4):
    ids = [f"p{i}" for i in range(1, patients + 1)]
    return make_cohort(
        patients=[{"patient_id": p, "sex": "F", "onset_date": "2010-01-01", "last_followup_date": "2022-01-01"} for p in ids],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": INDEX, "end_date": END} for p in ids],
        # one administration on the index day: it changes neither index nor follow-up end (both come
        # from the course row) and keeps the administrations table non-empty
        administrations=[{"patient_id": "p1", "treatment": "IVIG", "date": INDEX}],
        titers=[{"patient_id": p, "date": d, "titer": t} for p, d, t in titers],
    )


def compute(c, quantile_method: str = "linear", **params):
    return TiterReduction().compute(c, params_for(TiterReduction, **params), make_context(quantile_method))


def pd_isna(value) -> bool:
    return bool(pd.isna(value))


def patient(result, pid: str):
    frame = result.per_patient
    return frame[frame["patient_id"] == pid].iloc[0]


# --------------------------------------------------------------------------- parameters


def test_parameters_names_order_defaults_and_values():
    fields = dataclasses.fields(TiterReduction.Params)
    assert [f.name for f in fields] == [
        "pre_timepoint", "pre_window_days", "post_timepoint", "negative_value", "lod", "population", "median_scale",
    ]
    defaults = {f.name: f.default for f in fields}
    assert defaults == {
        "pre_timepoint": "last", "pre_window_days": 365, "post_timepoint": "last", "negative_value": "zero_rank",
        "lod": 10, "population": "all_available", "median_scale": "reciprocal",
    }
    hints = typing.get_type_hints(TiterReduction.Params)
    assert typing.get_args(hints["post_timepoint"]) == ("last", "nadir")
    assert typing.get_args(hints["negative_value"]) == ("zero_rank", "lod_half", "lod")
    assert typing.get_args(hints["population"]) == ("all_available", "paired_complete")
    assert typing.get_args(hints["median_scale"]) == ("reciprocal", "log2")
    assert TiterReduction.headline == ("pre", "post", "paired_test", "became_negative")
    assert TiterReduction.requires == ("titers",)


def test_lod_must_be_positive():
    with pytest.raises(SpecError, match="lod"):
        params_for(TiterReduction, lod=0)


# --------------------------------------------------------------------------- windows


def test_pre_window_is_closed_and_includes_the_index_day_post_is_strictly_after_index():
    c = cohort([
        ("p1", "2018-12-31", "1:1280"),  # index - 366 days: outside the pre window
        ("p1", "2019-01-01", "1:640"),   # index - 365 days: first day of the window -> p1's pre
        ("p2", "2019-06-01", "1:320"),
        ("p2", INDEX, "1:160"),          # index + 0: pre (the last in the window), never post
        ("p3", "2020-01-02", "1:80"),    # index + 1: post
        ("p4", END, "1:40"),             # the follow-up end day: post
        ("p4", "2021-01-02", "1:20"),    # after follow-up end: ignored
    ])
    result = compute(c)
    p1, p2, p3, p4 = (patient(result, p) for p in ("p1", "p2", "p3", "p4"))
    assert (p1["pre_titer"], p1["pre_reciprocal"]) == ("1:640", 640)
    assert (p2["pre_titer"], str(p2["pre_date"].date())) == ("1:160", INDEX)
    assert pd_isna(p2["post_titer"])
    assert pd_isna(p3["pre_titer"]) and p3["post_titer"] == "1:80"
    assert p4["post_titer"] == "1:40" and str(p4["post_date"].date()) == END


def test_pre_window_days_shortens_the_window():
    c = cohort([("p1", "2019-12-01", "1:640"), ("p2", "2019-12-02", "1:320")])
    # 30 days: window [2019-12-02, 2020-01-01]; p1's titer (31 days before) falls out
    result = compute(c, pre_window_days=30)
    assert pd_isna(patient(result, "p1")["pre_titer"])
    assert patient(result, "p2")["pre_titer"] == "1:320"
    assert "index - 30 days" in result.notes[0]


def test_post_last_versus_nadir_and_the_earlier_nadir_on_a_tie():
    c = cohort([
        ("p1", "2019-06-01", "1:640"),
        ("p1", "2020-02-01", "1:320"),
        ("p1", "2020-03-01", "1:40"),   # lowest ...
        ("p1", "2020-04-01", "1:40"),   # ... tied: the earlier (March) is the nadir
        ("p1", "2020-05-01", "1:160"),  # last
    ])
    last = patient(compute(c, post_timepoint="last"), "p1")
    assert (last["post_titer"], str(last["post_date"].date())) == ("1:160", "2020-05-01")
    nadir = patient(compute(c, post_timepoint="nadir"), "p1")
    assert (nadir["post_titer"], str(nadir["post_date"].date())) == ("1:40", "2020-03-01")


def test_nadir_ranks_a_negative_below_every_positive_even_when_lod_equals_it():
    # under negative_value=lod a negative and a 1:10 are both worth 10; the negative is still lower
    c = cohort([("p1", "2020-02-01", "1:10"), ("p1", "2020-03-01", "<1:10"), ("p1", "2020-04-01", "1:80")])
    nadir = patient(compute(c, post_timepoint="nadir", negative_value="lod"), "p1")
    assert nadir["post_titer"] == "<1:10" and bool(nadir["post_negative"]) and nadir["post_value"] == 10


def test_same_day_duplicates_use_the_last_by_csv_line_and_are_reported():
    # CSV lines follow the list order: 1:320 is line 2, 1:80 line 3 (same day) -> 1:80 is used
    c = cohort([("p1", "2019-06-01", "1:320"), ("p1", "2019-06-01", "1:80"), ("p2", "2019-06-01", "1:40")])
    result = compute(c)
    p1 = patient(result, "p1")
    assert (p1["pre_titer"], p1["pre_line"], p1["same_day_duplicates_ignored"]) == ("1:80", 3, 1)
    assert patient(result, "p2")["same_day_duplicates_ignored"] == 0
    assert any("1 same-day duplicate" in note and "last by CSV line" in note for note in result.notes)


# --------------------------------------------------------------------------- medians and display


def test_display_rounds_half_up_and_shows_negative_for_zero():
    assert titer_text(480.0) == "1:480"
    assert titer_text(452.548) == "1:453"
    assert titer_text(2.5) == "1:3"  # half up, not to even
    assert titer_text(0.0) == "negative"
    assert titer_text(None) == "NA" and titer_text(float("nan")) == "NA"


PAIR_320_640 = [("p1", "2019-06-01", "1:320"), ("p2", "2019-06-01", "1:640")]


def test_median_reciprocal_scale():
    # values 320, 640 (linear): median 480, Q1 = 320 + 0.25 * 320 = 400, Q3 = 320 + 0.75 * 320 = 560
    pre = row(compute(cohort(PAIR_320_640)), "pre")
    assert (pre.stat, pre.n, pre.interval) == ("median", 2, "IQR")
    assert (pre.estimate, pre.low, pre.high) == (480, 400, 560)
    assert pre.display == "1:480 [1:400\u20131:560]"
    assert "n = 2" in pre.label


def test_median_log2_scale_is_back_transformed():
    # log2: 8.3219, 9.3219 -> median 8.8219 -> 2^8.8219 = sqrt(320 * 640) = 452.55 -> 1:453
    # Q1 = 2^(log2 320 + 0.25) = 320 * 2^0.25 = 380.55; Q3 = 320 * 2^0.75 = 538.17
    pre = row(compute(cohort(PAIR_320_640), median_scale="log2"), "pre")
    assert pre.estimate == pytest.approx(math.sqrt(320 * 640))
    assert pre.low == pytest.approx(320 * 2**0.25) and pre.high == pytest.approx(320 * 2**0.75)
    assert pre.display == "1:453 [1:381\u20131:538]"


def test_quantile_method_is_the_studys():
    c = cohort([("p1", "2019-06-01", "1:40"), ("p2", "2019-06-01", "1:80"), ("p3", "2019-06-01", "1:160"),
                ("p4", "2019-06-01", "1:320")])
    values = [40, 80, 160, 320]
    for method in ("linear", "weibull"):
        pre = row(compute(c, quantile_method=method), "pre")
        assert [pre.low, pre.estimate, pre.high] == pytest.approx(np.quantile(values, [0.25, 0.5, 0.75], method=method))
    # by hand: weibull Q1 at (n+1)p = 1.25 -> 40 + 0.25 * 40 = 50; linear Q1 at 1 + 0.75 -> 70
    assert row(compute(c, quantile_method="weibull"), "pre").low == 50
    assert row(compute(c, quantile_method="linear"), "pre").low == 70


POST_NEG_NEG_40 = [("p1", "2020-06-01", "neg"), ("p2", "2020-06-01", "negative"), ("p3", "2020-06-01", "1:40")]


def test_zero_rank_negatives_are_zero_and_a_zero_median_displays_negative():
    # post values 0, 0, 40: median 0; Q3 = 0 + 0.5 * 40 = 20
    post = row(compute(cohort(POST_NEG_NEG_40)), "post")
    assert (post.estimate, post.low, post.high, post.n) == (0, 0, 20, 3)
    assert post.display == "negative [negative\u20131:20]"


def test_log2_scale_a_quartile_touching_minus_infinity_is_negative():
    # log2 values -inf, -inf, 5.32: the median and Q3 (between -inf and 5.32) touch -inf
    post = row(compute(cohort(POST_NEG_NEG_40), median_scale="log2"), "post")
    assert (post.estimate, post.low, post.high) == (0, 0, 0)
    assert post.display == "negative [negative\u2013negative]"
    # log2 values -inf, log2 40, log2 80: median = log2 40 exactly (does not touch -inf) -> 1:40,
    # Q1 halfway between -inf and log2 40 -> negative, Q3 = 2^((log2 40 + log2 80) / 2) = sqrt(3200) = 56.6
    c = cohort([("p1", "2020-06-01", "neg"), ("p2", "2020-06-01", "1:40"), ("p3", "2020-06-01", "1:80")])
    post = row(compute(c, median_scale="log2"), "post")
    assert post.estimate == pytest.approx(40) and post.low == 0 and post.high == pytest.approx(math.sqrt(3200))
    assert post.display == "1:40 [negative\u20131:57]"


def test_lod_half_and_lod_give_negatives_lod_over_two_and_lod():
    # lod_half, lod 10: values 5, 5, 40 -> median 5, Q3 = 5 + 0.5 * 35 = 22.5 -> 1:23 (half up)
    post = row(compute(cohort(POST_NEG_NEG_40), negative_value="lod_half"), "post")
    assert (post.estimate, post.high, post.display) == (5, 22.5, "1:5 [1:5\u20131:23]")
    # lod: values 10, 10, 40 -> median 10, Q3 = 25
    post = row(compute(cohort(POST_NEG_NEG_40), negative_value="lod"), "post")
    assert (post.estimate, post.high, post.display) == (10, 25, "1:10 [1:10\u20131:25]")
    # lod 20 under lod_half: negatives are 10
    post = row(compute(cohort(POST_NEG_NEG_40), negative_value="lod_half", lod=20), "post")
    assert post.estimate == 10
    # log2 scale with lod_half: log2 5, log2 5, log2 40 -> median 5; Q3 = 2^((log2 5 + log2 40) / 2) = sqrt(200)
    post = row(compute(cohort(POST_NEG_NEG_40), negative_value="lod_half", median_scale="log2"), "post")
    assert post.estimate == pytest.approx(5) and post.high == pytest.approx(math.sqrt(200))


# --------------------------------------------------------------------------- geometric means


def test_geometric_means_only_with_lod_values():
    measures = [r.measure for r in compute(cohort(POST_NEG_NEG_40)).rows]
    assert measures == ["pre", "post", "paired_test", "became_negative"]
    for choice in ("lod_half", "lod"):
        measures = [r.measure for r in compute(cohort(POST_NEG_NEG_40), negative_value=choice).rows]
        assert measures[-2:] == ["geometric_mean_pre", "geometric_mean_post"]


def test_geometric_mean_with_t_interval_on_log2():
    # lod_half: post values 5, 5, 40 -> log2 2.3219, 2.3219, 5.3219; mean 3.3219 -> 2^3.3219 = 10
    # (the cube root of 5 * 5 * 40 = 1000); SD = sqrt(((-1)^2 + (-1)^2 + 2^2) / 2) = sqrt(3)
    # 95% CI: 2^(3.3219 -/+ t(0.975, 2) * sqrt(3) / sqrt(3)) = 10 * 2^(-/+4.3027)
    gm = row(compute(cohort(POST_NEG_NEG_40), negative_value="lod_half"), "geometric_mean_post")
    half = stats.t.ppf(0.975, 2)
    assert (gm.stat, gm.n, gm.interval) == ("geometric_mean", 3, "95% CI")
    assert gm.estimate == pytest.approx(10)
    assert gm.low == pytest.approx(10 * 2**-half) and gm.high == pytest.approx(10 * 2**half)
    assert gm.display == f"1:10 [95% CI 1:{math.floor(10 * 2**-half + 0.5)}\u20131:{math.floor(10 * 2**half + 0.5)}]"
    # lod: values 10, 10, 40 -> cube root of 4000
    gm = row(compute(cohort(POST_NEG_NEG_40), negative_value="lod"), "geometric_mean_post")
    assert gm.estimate == pytest.approx(4000 ** (1 / 3))


# --------------------------------------------------------------------------- populations


MIXED = [
    ("p1", "2019-06-01", "1:640"), ("p1", "2020-06-01", "1:160"),  # complete pair
    ("p2", "2019-06-01", "1:320"), ("p2", "2020-06-01", "1:80"),   # complete pair
    ("p3", "2019-06-01", "1:1280"),                                 # pre only
    ("p4", "2020-06-01", "1:20"),                                   # post only
]


def test_all_available_uses_every_patient_with_that_titer():
    result = compute(cohort(MIXED, patients=5))
    pre, post, test = row(result, "pre"), row(result, "post"), row(result, "paired_test")
    # pre 320, 640, 1280 -> 640; post 20, 80, 160 -> 80; the test on the 2 pairs
    assert (pre.n, pre.estimate, post.n, post.estimate, test.n) == (3, 640, 3, 80, 2)
    assert "n = 3" in pre.label and "n = 3" in post.label and "n = 2" in test.label
    assert result.excluded == {
        "no titer in the pre window (not paired; still in the post median)": ["p4"],
        "no titer in the post window (not paired; still in the pre median)": ["p3"],
        "no titer in the pre or the post window": ["p5"],
    }


def test_paired_complete_uses_complete_pairs_for_everything():
    result = compute(cohort(MIXED, patients=5), population="paired_complete", negative_value="lod")
    pre, post = row(result, "pre"), row(result, "post")
    # pre 320, 640 -> 480; post 80, 160 -> 120
    assert (pre.n, pre.estimate, post.n, post.estimate) == (2, 480, 2, 120)
    assert "complete pairs, n = 2" in pre.label
    gm = row(result, "geometric_mean_pre")
    assert gm.n == 2 and gm.estimate == pytest.approx(math.sqrt(320 * 640))
    assert result.excluded["no titer in the pre window"] == ["p4"]


# --------------------------------------------------------------------------- paired test


PAIRS = [  # pre -> post; log2(post / pre) by hand
    ("p1", "1:640", "1:160"),   # -2
    ("p2", "1:320", "1:40"),    # -3
    ("p3", "1:160", "neg"),     # log2(5/160) = -5 (zero_rank, lod_half); log2(10/160) = -4 (lod)
    ("p4", "1:80", "1:160"),    # +1
    ("p5", "1:2560", "1:20"),   # -7
    ("p6", "1:100", "1:300"),   # +log2 3 = +1.585
]


@pytest.mark.parametrize(("negative_value", "negative_log2"), [
    ("zero_rank", math.log2(5)), ("lod_half", math.log2(5)), ("lod", math.log2(10)),
])
def test_wilcoxon_on_log2_values_matches_scipy(negative_value, negative_log2):
    titers = [(p, "2019-06-01", pre) for p, pre, _ in PAIRS] + [(p, "2020-06-01", post) for p, _, post in PAIRS]
    result = compute(cohort(titers, patients=6), negative_value=negative_value)
    pre = np.array([640, 320, 160, 80, 2560, 100])
    post = np.array([160, 40, 2 ** negative_log2, 160, 20, 300])
    expected = stats.wilcoxon(np.log2(post / pre), zero_method="wilcox", correction=False, method="exact")
    test = row(result, "paired_test")
    assert (test.stat, test.n) == ("test", 6)
    assert test.estimate == pytest.approx(expected.statistic)
    assert test.p_value == pytest.approx(expected.pvalue)
    assert "-> exact" in test.test and "6 pairs, 0 zero differences" in test.test
    assert patient(result, "p3")["post_log2"] == pytest.approx(negative_log2)
    assert any(f"negatives at {2 ** negative_log2:g}." in note for note in result.notes)


def test_paired_test_uses_the_studys_settings():
    titers = [(p, "2019-06-01", pre) for p, pre, _ in PAIRS] + [(p, "2020-06-01", post) for p, _, post in PAIRS]
    result = TiterReduction().compute(
        cohort(titers, patients=6), params_for(TiterReduction), make_context(method="asymptotic", correction=True)
    )
    diff = np.array([-2, -3, -5, 1, -7, math.log2(3)])
    expected = stats.wilcoxon(diff, correction=True, method="asymptotic")
    assert row(result, "paired_test").p_value == pytest.approx(expected.pvalue)


# --------------------------------------------------------------------------- became negative


def test_became_negative_is_a_proportion_over_patients_positive_before_with_a_post_titer():
    c = cohort([
        ("p1", "2019-06-01", "1:320"), ("p1", "2020-06-01", "neg"),    # became negative
        ("p2", "2019-06-01", "1:320"), ("p2", "2020-06-01", "1:40"),   # still positive
        ("p3", "2019-06-01", "<1:10"), ("p3", "2020-06-01", "neg"),    # negative before: not counted
        ("p4", "2019-06-01", "1:160"),                                  # no post titer: not counted
    ])
    result = compute(c)
    became = row(result, "became_negative")
    ci = stats.binomtest(1, 2).proportion_ci(method="exact")
    assert (became.stat, became.count, became.n, became.estimate) == ("proportion", 1, 2, 0.5)
    assert (became.low, became.high) == pytest.approx((ci.low, ci.high))
    flags = result.per_patient.set_index("patient_id")["became_negative"]
    assert bool(flags["p1"])
    assert not bool(flags["p2"]) and pd_isna(flags["p3"]) and pd_isna(flags["p4"])


# --------------------------------------------------------------------------- per-patient frame


def test_per_patient_frame_traces_every_value():
    result = compute(cohort(MIXED, patients=5), negative_value="lod_half")
    frame = result.per_patient
    assert list(frame["patient_id"]) == ["p1", "p2", "p3", "p4", "p5"]
    assert frame.columns[0] == "patient_id"
    for column in ("pre_date", "pre_titer", "pre_value", "post_date", "post_titer", "post_value",
                   "pre_log2", "post_log2", "pair", "became_negative"):
        assert column in frame.columns
    p1 = patient(result, "p1")
    assert (p1["pre_value"], p1["post_value"], bool(p1["pair"])) == (640, 160, True)
    assert p1["pre_log2"] == pytest.approx(math.log2(640))
    assert not bool(patient(result, "p3")["pair"])


def test_no_titers_at_all():
    result = compute(cohort([], patients=2))
    pre = row(result, "pre")
    assert (pre.n, pre.estimate, pre.display) == (0, None, "NA")
    assert row(result, "paired_test").n == 0
    assert row(result, "became_negative").n == 0
    assert result.excluded == {"no titer in the pre or the post window": ["p1", "p2"]}


def test_equal_fold_changes_tie_exactly_in_the_paired_test():
    # 480 -> 120 and 40 -> 10 are both a quarter: log2(post / pre) = -2 for both, while
    # log2(120) - log2(480) and log2(10) - log2(40) differ in the last bit.
    assert math.log2(120) - math.log2(480) != math.log2(10) - math.log2(40)  # the floating-point trap
    titers = [("p1", "2019-06-01", "1:480"), ("p1", "2020-06-01", "1:120"),
              ("p2", "2019-06-01", "1:40"), ("p2", "2020-06-01", "1:10"),
              ("p3", "2019-06-01", "1:80"), ("p3", "2020-06-01", "1:160")]
    result = compute(cohort(titers, patients=3), negative_value="lod_half")
    assert patient(result, "p1")["log2_fold_change"] == patient(result, "p2")["log2_fold_change"] == -2.0
    # by hand: |d| = 2, 2, 1 -> ranks 2.5, 2.5, 1; positive-rank sum W = 1 (p3); ties -> permutation.
    # The 8 sign flips give W = 0, 1, 2.5, 2.5, 3.5, 3.5, 5, 6: two-sided p = 2 x P(W <= 1) = 2 x 2/8 = 0.5
    test = row(result, "paired_test")
    assert (test.estimate, test.p_value) == (1.0, 0.5)
    assert "-> permutation" in test.test
    expected = stats.wilcoxon([-2.0, -2.0, 1.0], zero_method="wilcox", correction=False, method=stats.PermutationMethod())
    assert test.p_value == pytest.approx(expected.pvalue)
