"""characteristics: Table 1 rows worked by hand."""

import numpy as np
import pytest
from scipy import stats

from endpointkit.errors import SpecError
from endpointkit.plugins.characteristics import Characteristics
from endpointkit.testing import make_cohort, make_context, params_for, row

# index 2020-01-01 for everyone; ages: a 2020-01-01 - 1970-01-01 = 18262 days / 365.25 = 49.9986;
# b 1980-01-01 -> 14610 / 365.25 = 40.0; c 1960-01-01 -> 21915 / 365.25 = 60.0; d birth date missing
PATIENTS = [
    {"patient_id": "a", "sex": "F", "birth_date": "1970-01-01", "onset_date": "2018-01-01", "site": "north", "bmi": "22.5"},
    {"patient_id": "b", "sex": "female", "birth_date": "1980-01-01", "onset_date": "2019-01-01", "site": "south", "bmi": "30"},
    {"patient_id": "c", "sex": "M", "birth_date": "1960-01-01", "onset_date": "2010-01-01", "site": None, "bmi": "25"},
    {"patient_id": "d", "sex": None, "birth_date": None, "onset_date": None, "site": "north", "bmi": None},
]
TREATMENTS = [{"patient_id": p, "treatment": "IVIG", "start_date": "2020-01-01", "end_date": "2021-01-01"} for p in "abcd"]


def compute(ctx=None, **params):
    cohort = make_cohort(patients=PATIENTS, treatments=TREATMENTS)
    return Characteristics().compute(cohort, params_for(Characteristics, **params), ctx or make_context())


def test_patients_female_and_missing_sex():
    result = compute()
    assert row(result, "patients").estimate == 4
    female = row(result, "female")
    ci = stats.binomtest(2, 4).proportion_ci(method="exact")
    assert (female.count, female.n, female.estimate, female.low, female.high) == (2, 4, 0.5, pytest.approx(ci.low), pytest.approx(ci.high))
    assert row(result, "sex:missing").estimate == 1


def test_age_and_disease_duration_at_index_in_years():
    result = compute()
    ages = np.array([18262, 14610, 21915]) / 365.25
    age = row(result, "age_at_index")
    assert age.n == 3
    assert (age.low, age.estimate, age.high) == pytest.approx(tuple(np.quantile(ages, [0.25, 0.5, 0.75])))
    # durations: a 730 days, b 365 days, c 3652 days
    duration = row(result, "disease_duration_at_index")
    assert duration.estimate == pytest.approx(730 / 365.25)


def test_extra_variables_continuous_and_categorical_with_missing_rows():
    result = compute(variables=["bmi", "site"])
    bmi = row(result, "bmi")
    assert (bmi.n, bmi.estimate) == (3, pytest.approx(25.0))
    assert row(result, "bmi:missing").estimate == 1
    north = row(result, "site:north")
    assert (north.count, north.n) == (2, 4)
    assert row(result, "site:missing").estimate == 1
    mean = row(compute(variables=["bmi"], summary="mean_sd"), "bmi")
    assert (mean.stat, mean.estimate, mean.low) == ("mean", pytest.approx(np.mean([22.5, 30, 25])), pytest.approx(np.std([22.5, 30, 25], ddof=1)))
    forced = compute(variables=["bmi"], categorical=["bmi"])
    assert row(forced, "bmi:22.5").count == 1


def test_an_unknown_variable_is_a_spec_error():
    with pytest.raises(SpecError, match="unknown patient column 'weight'"):
        compute(variables=["weight"])
