"""A user's own endpoint: the annualized rate of severe relapses before and after the index date.

Listed under ``plugins:`` in specs/ivig_nmosd_custom.yaml; it reuses the built-in ARR windows.
"""

from dataclasses import dataclass

from endpointkit import Endpoint, EndpointResult, hookimpl, param
from endpointkit.plugins.arr_change import ArrParams, compute_arr, exact_rate_difference
from endpointkit.stats import median_row, signed_rank_row


@dataclass(frozen=True)
class SevereParams:
    severity: str = param("severe", "Value of relapses.severity that counts as severe.")
    post_lag_days: int = param(0, "Days after index left out of the post window.")


class SevereRelapseRate(Endpoint):
    name = "severe_relapse_rate"
    title = "Annualized rate of severe relapses"
    description = "Per-patient ARR of severe relapses only, since onset vs after index."
    requires = ("relapses",)
    Params = SevereParams
    headline = ("pre", "post", "paired_test")
    # params that only summarise() reads; none here: both change each patient's rates
    summary_params = ()

    def derive(self, cohort, params, ctx):
        # the map: one row per patient of `cohort` (perhaps one partition), from that patient's records only
        relapses = cohort.table("relapses")
        severe = (relapses["severity"].astype("string").str.casefold() == params.severity.casefold()).fillna(False)
        return compute_arr(cohort.with_table("relapses", relapses[severe]), ArrParams(post_lag_days=params.post_lag_days), ctx.year_days)

    def summarise(self, per_patient, params, ctx):
        # the reduce: the rows from every patient's values, once the partitions are put together
        used = per_patient[per_patient["included"]]
        rows = [
            median_row("pre", used["pre_arr"], ctx.quantile_method, label="Severe ARR before, median [IQR]"),
            median_row("post", used["post_arr"], ctx.quantile_method, label="Severe ARR after, median [IQR]"),
            # rates subtracted exactly, so an unchanged rate is a zero difference (a tie), never +-1e-16
            signed_rank_row("paired_test", exact_rate_difference(used, ctx.year_days), ctx.paired_test, label="Change, p"),
        ]
        note = f"Severe = relapses.severity '{params.severity}'; windows as arr_change (since onset; post lag {params.post_lag_days} days)."
        return EndpointResult(rows=rows, per_patient=per_patient, notes=[note])


@hookimpl
def register_endpoints():
    return [SevereRelapseRate]
