"""``characteristics``: who was studied (Table 1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from endpointkit import Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.errors import SpecError
from endpointkit.stats import count_row, median_row, proportion_row

FEMALE = {"f", "female"}
BUILT_IN = ("sex", "female", "age_at_index", "disease_duration_at_index")  # columns the rows are computed from
KEPT = "__characteristics:"  # a built-in column kept aside when a variable of the same name replaces it


def _kept(column: str) -> str:
    return KEPT + column


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

    summary_params = ("summary", "categorical")

    def derive(self, cohort, params: CharacteristicsParams, ctx) -> pd.DataFrame:
        """Each patient's sex, female flag, age and disease duration at index (in years of
        ``year_days``) and the extra variables."""
        patients = cohort.patients
        sex = patients["sex"].astype("string").str.strip().str.casefold()
        frame = pd.DataFrame({
            "patient_id": patients["patient_id"], "sex": patients["sex"], "female": sex.isin(FEMALE).fillna(False).astype(bool),
            "index_date": patients["index_date"], "age_at_index": patients["age_at_index"] * 365.25 / ctx.year_days,
            "disease_duration_at_index": patients["disease_duration_at_index"] * 365.25 / ctx.year_days,
        })
        for variable in params.variables:
            if variable not in patients.columns:
                visible = [c for c in patients.columns if not c.startswith("_")]
                raise SpecError("params.variables", f"unknown patient column '{variable}'; columns: {', '.join(visible)}")
            if variable in BUILT_IN and _kept(variable) not in frame:  # the patient column replaces it in the output
                frame[_kept(variable)] = frame[variable]
            frame[variable] = patients[variable]
        return frame

    def summarise(self, frame: pd.DataFrame, params: CharacteristicsParams, ctx) -> EndpointResult:
        """Table 1 rows over every patient of the frame."""
        n = len(frame)
        method = ctx.quantile_method

        def built_in(column: str) -> pd.Series:  # the endpoint's own value, also when a variable shares its name
            return frame[_kept(column)] if _kept(column) in frame else frame[column]

        sex = built_in("sex").astype("string").str.strip().str.casefold()
        rows = [
            count_row("patients", n, n, label="Patients, n"),
            proportion_row("female", int(built_in("female").sum()), n, label="Female, n (%)"),
        ]
        if sex.isna().any():
            rows.append(count_row("sex:missing", int(sex.isna().sum()), n, label="Sex missing, n"))
        label = "median [IQR]" if params.summary == "median_iqr" else "mean (SD)"
        rows.append(median_row("age_at_index", built_in("age_at_index"), method, summary=params.summary,
                               label=f"Age at index, years, {label}", unit="years"))
        rows.append(median_row("disease_duration_at_index", built_in("disease_duration_at_index"), method, summary=params.summary,
                               label=f"Disease duration at index, years, {label}", unit="years"))
        for variable in params.variables:
            values = frame[variable]
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
        per_patient = frame.drop(columns=[c for c in frame.columns if c.startswith(KEPT)])
        return EndpointResult(rows=rows, per_patient=per_patient, notes=notes)

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: CharacteristicsParams,
                ctx) -> list[Row]:
        """Balance between groups: SMD per reported variable (as tableone), with Mann-Whitney or
        chi-square/Fisher p; female and text variables categorical, ages and numbers continuous."""
        from endpointkit.comparisons import smd_rows

        continuous = ["age_at_index", "disease_duration_at_index"]
        categorical = ["female"]
        data = per_patient[["female", *continuous]].copy()
        for variable in params.variables:  # a variable of a built-in name replaces it, as in the rows
            values = per_patient[variable]
            for kind in (continuous, categorical):
                if variable in kind:
                    kind.remove(variable)
            if pd.api.types.is_numeric_dtype(values) and variable not in params.categorical:
                data[variable] = values
                continuous.append(variable)
            else:
                data[variable] = values.astype("string").str.strip().astype(object).where(values.notna(), None)
                categorical.append(variable)
        rows = smd_rows(data, groups, levels, continuous=continuous, categorical=categorical)
        names = {"female": "Female", "age_at_index": "Age at index", "disease_duration_at_index": "Disease duration at index"}
        return [dataclasses.replace(row, measure=f"smd:{row.measure}",
                                    label=f"{names.get(row.measure, row.measure)}, SMD") for row in rows]


@hookimpl
def register_endpoints():
    return [Characteristics]
