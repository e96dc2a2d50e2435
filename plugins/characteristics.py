"""``characteristics``: who was studied (Table 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from endpointkit import Endpoint, EndpointResult, hookimpl, param
from endpointkit.errors import SpecError
from endpointkit.stats import count_row, median_row, proportion_row

FEMALE = {"f", "female"}


@dataclass(frozen=True)
class CharacteristicsParams:
    variables: list[str] = param([], "Extra patient columns to summarise (numbers: median [IQR] or mean (SD); text: n (%) per level).")
    summary: Literal["median_iqr", "mean_sd"] = param("median_iqr", "Summary of continuous variables.")
    categorical: list[str] = param([], "Variables to treat as categorical even when they hold numbers.")


class Characteristics(Endpoint):
    name = "characteristics"
    title = "Patients"
    description = "Table 1: patients, female sex, age and disease duration at index, extra variables."
    Params = CharacteristicsParams
    headline = ("patients", "female", "age_at_index")
    kind = "descriptive"

    def compute(self, cohort, params: CharacteristicsParams, ctx) -> EndpointResult:
        patients = cohort.patients
        n = len(patients)
        method = ctx.quantile_method
        sex = patients["sex"].astype("string").str.strip().str.casefold()
        female = sex.isin(FEMALE).fillna(False).astype(bool)
        rows = [
            count_row("patients", n, n, label="Patients, n"),
            proportion_row("female", int(female.sum()), n, label="Female, n (%)"),
        ]
        if sex.isna().any():
            rows.append(count_row("sex:missing", int(sex.isna().sum()), n, label="Sex missing, n"))
        age = patients["age_at_index"] * 365.25 / ctx.year_days
        duration = patients["disease_duration_at_index"] * 365.25 / ctx.year_days
        label = "median [IQR]" if params.summary == "median_iqr" else "mean (SD)"
        rows.append(median_row("age_at_index", age, method, summary=params.summary, label=f"Age at index, years, {label}", unit="years"))
        rows.append(median_row("disease_duration_at_index", duration, method, summary=params.summary,
                               label=f"Disease duration at index, years, {label}", unit="years"))
        per_patient = pd.DataFrame({
            "patient_id": patients["patient_id"], "sex": patients["sex"], "female": female,
            "index_date": patients["index_date"], "age_at_index": age, "disease_duration_at_index": duration,
        })
        for variable in params.variables:
            if variable not in patients.columns:
                visible = [c for c in patients.columns if not c.startswith("_")]
                raise SpecError("params.variables", f"unknown patient column '{variable}'; columns: {', '.join(visible)}")
            values = patients[variable]
            per_patient[variable] = values
            if pd.api.types.is_numeric_dtype(values) and variable not in params.categorical:
                rows.append(median_row(variable, values, method, summary=params.summary, label=f"{variable}, {label}"))
                if values.isna().any():
                    rows.append(count_row(f"{variable}:missing", int(values.isna().sum()), n, label=f"{variable} missing, n"))
            else:
                text = values.astype("string").str.strip()
                for level in sorted(text.dropna().unique()):
                    rows.append(proportion_row(f"{variable}:{level}", int((text == level).sum()), n, label=f"{variable}: {level}, n (%)"))
                if text.isna().any() and not any(r.measure == f"{variable}:missing" for r in rows):  # sex: counted above
                    rows.append(count_row(f"{variable}:missing", int(text.isna().sum()), n, label=f"{variable} missing, n"))
        notes = ["age = (index - birth date) / year; disease duration = (index - onset date) / year; "
                 "female = sex F/female over all patients; categorical levels are n (%) of all patients."]
        return EndpointResult(rows=rows, per_patient=per_patient, notes=notes)


@hookimpl
def register_endpoints():
    return [Characteristics]
