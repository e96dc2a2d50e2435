"""Cohort criteria: ``where`` expressions and ``min_treatment_months``."""

from __future__ import annotations

import pandas as pd

from endpointkit import hookimpl
from endpointkit.errors import SpecError
from endpointkit.expr import Expression
from endpointkit.params import MAX_MONTHS


class Where:
    """Keep patients for whom an expression over patient columns is true."""

    name = "where"
    description = "Keep patients matching an expression over patient columns, e.g. \"antibody_status == 'positive'\"."
    json_schema = {"type": "string", "minLength": 1}

    def validate(self, value, path: str) -> Expression:
        if not isinstance(value, str):
            raise SpecError(path, f"expected an expression string, got {value!r}")
        return Expression(value, path)

    def keep(self, patients: pd.DataFrame, value: Expression) -> pd.Series:
        return value.evaluate(patients)


class MinTreatmentMonths:
    """Keep patients treated at least M months (follow-up end under the treatment_end rule)."""

    name = "min_treatment_months"
    description = "Keep patients with (treatment end - index) >= M months (treatment_end rule)."
    json_schema = {"type": "number", "minimum": 0, "maximum": MAX_MONTHS}

    def validate(self, value, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_MONTHS:
            raise SpecError(path, f"expected a number of months >= 0 (and at most {MAX_MONTHS}), got {value!r}")
        return float(value)

    def keep(self, patients: pd.DataFrame, value: float) -> pd.Series:
        return patients["treatment_months"] >= value


@hookimpl
def register_criteria():
    return [Where(), MinTreatmentMonths()]
