"""The where-expression grammar: columns, literals, comparisons, and/or/not, in, missing checks."""

import pandas as pd
import pytest

from endpointkit.errors import SpecError
from endpointkit.expr import Expression

FRAME = pd.DataFrame({
    "status": ["positive", "negative", None, "positive"],
    "age": [30.0, 70.0, 50.0, None],
    "onset_date": pd.to_datetime(["2010-01-01", "2015-06-01", None, "2012-01-01"]),
    "group name": ["a", "b", "a", "b"],
})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status == 'positive'", [True, False, False, True]),
        ("status != 'positive'", [False, True, False, False]),  # missing never satisfies a comparison
        ("age >= 50", [False, True, True, False]),
        ("age >= 50 and status == 'negative'", [False, True, False, False]),
        ("age < 40 or age is missing", [True, False, False, True]),
        ("not (status == 'positive')", [False, True, True, False]),
        ("status in ['negative', 'positive']", [True, True, False, True]),
        ("status not in ('negative')", [True, False, True, True]),
        ("status is not missing", [True, True, False, True]),
        ("onset_date < '2013-01-01'", [True, False, False, True]),
        ("`group name` == 'a'", [True, False, True, False]),
        ("30 < age", [False, True, True, False]),
    ],
)
def test_expressions_select_the_expected_patients(text, expected):
    assert Expression(text, "w").evaluate(FRAME).tolist() == expected


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('echo hacked')", "status.__class__", "age + 1 > 2", "status ==", "status = 'a'", "", "status == 'a' and"],
)
def test_anything_but_the_grammar_is_a_spec_error_and_never_evaluated(text):
    with pytest.raises(SpecError) as info:
        Expression(text, "cohort.criteria[0].where").evaluate(FRAME)
    assert info.value.path == "cohort.criteria[0].where"


def test_an_unknown_column_is_named_with_a_suggestion():
    with pytest.raises(SpecError, match="did you mean 'status'"):
        Expression("statuss == 'positive'", "w").evaluate(FRAME)
