"""``endpointkit simulate``: a seeded synthetic registry whose truth is known.

The tables must pass endpointkit's own validation, the same seed must give the same bytes, and
the relapse rates recomputed here from the tables (independently of the generator) must agree
with the true parameters written to truth.json.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from endpointkit.cli import main
from endpointkit.data import EDSS_GRID, TABLES, prepare_table, prepare_tables
from endpointkit.errors import UsageError
from endpointkit.simulate import (
    PARAMETER_NAMES,
    TrueParameters,
    make_parameters,
    parse_settings,
    simulate,
    simulate_registry,
    write_registry,
)

N = 2000
SIMULATED = [name for name in TABLES if name != "measurements"]  # no T25FW/9HPT/SDMT simulated
FILES = [f"{name}.csv" for name in SIMULATED] + ["truth.json"]
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@pytest.fixture(scope="module")
def sim():
    return simulate_registry(N, seed=11)


@pytest.fixture(scope="module")
def windows(sim):
    """Per patient from the tables alone: onset, index (IVIG start), treatment end (end_date, else
    last follow-up). Patients with a blank last_followup_date are left out (their end is unknown)."""
    patients = sim.tables["patients"]
    ivig = sim.tables["treatments"].query("treatment == 'IVIG'").set_index("patient_id")
    frame = pd.DataFrame({
        "patient_id": patients["patient_id"],
        "onset": pd.to_datetime(patients["onset_date"]),
        "last_followup": pd.to_datetime(patients["last_followup_date"]),
    })
    frame["index"] = pd.to_datetime(frame["patient_id"].map(ivig["start_date"]))
    frame["end"] = pd.to_datetime(frame["patient_id"].map(ivig["end_date"])).fillna(frame["last_followup"])
    return frame.dropna(subset=["last_followup"]).reset_index(drop=True)


def true_relapse_counts(sim, windows):
    """Relapses per patient and window, from relapses.csv without the extra rows (near-duplicates,
    pseudo) and without the onset attack (not part of the pre-window process)."""
    relapses = sim.tables["relapses"].assign(kind=sim.relapse_kind)
    relapses = relapses[~relapses["kind"].isin(["duplicate", "pseudo", "onset"])]
    merged = relapses.merge(windows, on="patient_id")
    day = pd.to_datetime(merged["onset_date"])
    in_pre = (day > merged["onset"]) & (day <= merged["index"])
    in_post = (day > merged["index"]) & (day <= merged["end"])
    pre = merged[in_pre].groupby("patient_id").size()
    post = merged[in_post].groupby("patient_id").size()
    return (windows["patient_id"].map(pre).fillna(0).to_numpy(), windows["patient_id"].map(post).fillna(0).to_numpy())


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_tables_and_files(tmp_path):
    first, second = simulate(300, seed=5), simulate(300, seed=5)
    for name in SIMULATED:
        pd.testing.assert_frame_equal(first[name], second[name])
    for folder in ("a", "b"):
        assert main(["simulate", "--patients", "300", "--seed", "5", "-o", str(tmp_path / folder)]) == 0
    for file in FILES:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_different_seed_gives_different_tables():
    first, second = simulate(300, seed=5), simulate(300, seed=6)
    assert not first["relapses"].equals(second["relapses"])
    assert not first["patients"]["onset_date"].equals(second["patients"]["onset_date"])


# --------------------------------------------------------------------------- validity


def test_every_table_passes_endpointkit_validation(sim):
    assert list(sim.tables) == SIMULATED
    prepared = prepare_tables(sim.tables.items())  # every patient_id listed in patients, or an error
    for name, frame in sim.tables.items():
        assert list(frame.columns) == list(TABLES[name].all_columns), name
        for column in TABLES[name].dates:
            dates = frame[column].dropna()
            assert dates.str.match(ISO).all(), (name, column)
    assert prepared["patients"]["patient_id"].is_unique


def test_values_follow_the_canonical_rules(sim):
    edss = sim.tables["edss"]["score"]
    assert np.isin(edss, EDSS_GRID).all() and not (edss == 0.5).any()
    assert edss.min() >= 0 and edss.max() <= 10
    titers = sim.tables["titers"]["titer"]
    assert titers.str.match(r"^1:\d+$").any()            # 1:480
    assert titers.str.match(r"^\d+$").any()              # 480
    assert titers.isin(["negative", "neg"]).any()        # negative
    assert (titers == "<1:10").any()                     # below the first dilution
    assert sim.tables["adverse_events"]["grade"].isin([1, 2, 3, 4, 5]).all()
    treatments = prepare_table("treatments", sim.tables["treatments"])
    ended = treatments["end_date"].notna()
    assert (treatments.loc[ended, "end_date"] >= treatments.loc[ended, "start_date"]).all()
    status = sim.tables["patients"]["antibody_status"].value_counts(normalize=True)
    assert status["positive"] > 0.85


def test_background_treatment_starts_before_the_index_treatment(sim):
    treatments = sim.tables["treatments"]
    start = treatments.pivot(index="patient_id", columns="treatment", values="start_date")
    assert (start["azathioprine"] < start["IVIG"]).all()
    assert treatments.loc[treatments["treatment"] == "azathioprine", "end_date"].isna().all()


def test_courses_stop_for_a_reason_or_continue_with_regular_administrations(sim, windows):
    ivig = sim.tables["treatments"].query("treatment == 'IVIG'")
    stopped = ivig["end_date"].notna()
    assert set(ivig.loc[stopped, "stop_reason"]) == {"relapse", "adverse event", "patient choice", "other"}
    assert ivig.loc[~stopped, "stop_reason"].isna().all()
    assert 0.1 < stopped.mean() < 0.6
    admins = sim.tables["administrations"].assign(date=lambda f: pd.to_datetime(f["date"]))
    gaps = admins.groupby("patient_id")["date"].diff().dt.days.dropna()
    assert gaps.between(28, 56).all()                      # every 4-8 weeks
    # ongoing courses: administrations run until last follow-up (the last within 8 weeks of it)
    last = admins.groupby("patient_id")["date"].max()
    ongoing = windows[windows["patient_id"].isin(ivig.loc[~stopped, "patient_id"])]
    behind = (ongoing["last_followup"] - ongoing["patient_id"].map(last)).dt.days
    assert behind.between(0, 56).all()
    # stopped courses: none after end_date; a stop for an adverse event has its AE, 'discontinued'
    ends = ivig.loc[stopped].set_index("patient_id")["end_date"].pipe(pd.to_datetime)
    on_stopped = admins[admins["patient_id"].isin(ends.index)]
    assert (on_stopped["date"] <= on_stopped["patient_id"].map(ends)).all()
    ae_stop = set(ivig.loc[ivig["stop_reason"] == "adverse event", "patient_id"])
    discontinued = sim.tables["adverse_events"].query("action == 'discontinued'")
    assert set(discontinued["patient_id"]) == ae_stop


# --------------------------------------------------------------------------- the truth


def test_crude_relapse_rates_recover_the_true_rates(sim, windows):
    pre_events, post_events = true_relapse_counts(sim, windows)
    pre_years = (windows["index"] - windows["onset"]).dt.days.to_numpy() / 365.25
    post_years = (windows["end"] - windows["index"]).dt.days.to_numpy() / 365.25
    truth = TrueParameters()
    k = truth.frailty_shape
    for events, years, rate in ((pre_events, pre_years, truth.pre_rate), (post_events, post_years, truth.post_rate)):
        # gamma-Poisson: Var(N_i) = mu_i + mu_i^2 / k with mu_i = rate * years_i
        mu = rate * years
        sd = math.sqrt(np.sum(mu + mu**2 / k))
        assert abs(events.sum() - mu.sum()) < 4 * sd
        assert events.sum() / years.sum() == pytest.approx(rate, rel=0.1)
    ratio = (post_events.sum() / post_years.sum()) / (pre_events.sum() / pre_years.sum())
    assert ratio == pytest.approx(truth.post_rate / truth.pre_rate, rel=0.15)


def inverse_shape(sim, windows) -> float:
    """Method of moments on the pre-window counts: sum((N - mu)^2 - mu) / sum(mu^2) estimates 1/k
    (gamma-Poisson: Var N = mu + mu^2 / k; 0 for a pure Poisson process)."""
    pre_events, _ = true_relapse_counts(sim, windows)
    mu = sim.truth["parameters"]["pre_rate"] * (windows["index"] - windows["onset"]).dt.days.to_numpy() / 365.25
    return np.sum((pre_events - mu) ** 2 - mu) / np.sum(mu**2)


def test_between_patient_variation_matches_the_frailty_shape(sim, windows):
    # default k = 2: 1/k = 0.5 (over seeds 1-10 the estimate ranged 0.43-0.69 with 2,000 patients)
    assert inverse_shape(sim, windows) == pytest.approx(0.5, rel=0.45)


def test_infinite_frailty_shape_means_no_between_patient_variation():
    sim = simulate_registry(N, seed=11, params={"frailty_shape": "inf"})
    patients = sim.tables["patients"]
    assert (sim.patients["frailty"] == 1).all()
    windows = pd.DataFrame({
        "patient_id": patients["patient_id"],
        "onset": pd.to_datetime(patients["onset_date"]),
        "index": pd.to_datetime(sim.tables["treatments"].query("treatment == 'IVIG'")["start_date"]).to_numpy(),
        "end": pd.to_datetime(sim.patients["treatment_end"]),
    })
    assert abs(inverse_shape(sim, windows)) < 0.1


def test_truth_records_parameters_seed_and_derived_values(sim, windows):
    truth = sim.truth
    assert truth["seed"] == 11 and truth["n_patients"] == N
    assert set(truth["parameters"]) == set(PARAMETER_NAMES)
    assert truth["true_values"]["rate_ratio"] == pytest.approx(0.3 / 1.0)
    # relapse-free at 12 months under gamma frailty: (1 + 0.3 * 1 / 2) ** -2 = 0.7561
    assert truth["true_values"]["relapse_free_at_12m"] == pytest.approx(1.15**-2)
    assert truth["true_values"]["persistence_at_12m"] == pytest.approx(math.exp(-0.15))
    realized = truth["realized"]
    years = realized["person_years"]
    assert truth["expected"]["pre_relapses"] == pytest.approx(1.0 * years["pre"])
    assert truth["expected"]["post_relapses"] == pytest.approx(0.3 * years["post"])
    # the counts it reports are the rows of relapses.csv of each kind
    kinds = pd.Series(sim.relapse_kind).value_counts()
    assert realized["relapses"] == {"pre": kinds["pre"], "post": kinds["post"], "off": kinds["off"], "onset": N}
    assert realized["duplicate_rows"] == kinds["duplicate"] and realized["pseudo_rows"] == kinds["pseudo"]
    assert realized["rows"] == {name: len(frame) for name, frame in sim.tables.items()}


def test_realistic_mess_is_present_and_labelled(sim):
    relapses = sim.tables["relapses"].assign(kind=sim.relapse_kind, day=lambda f: pd.to_datetime(f["onset_date"]))
    true_rows = relapses["kind"].isin(["onset", "pre", "post", "off"]).sum()
    duplicates = relapses[relapses["kind"] == "duplicate"]
    pseudo = relapses[relapses["kind"] == "pseudo"]
    assert 0.015 < len(duplicates) / true_rows < 0.045
    assert 0.015 < len(pseudo) / true_rows < 0.045
    assert (relapses["pseudo"] == "true").sum() == len(pseudo) and (pseudo["pseudo"] == "true").all()
    # every near-duplicate lies 0-29 days after (or on) an earlier true relapse of the same patient
    true = relapses[relapses["kind"].isin(["onset", "pre", "post", "off"])]
    pairs = duplicates.reset_index().merge(true, on="patient_id", suffixes=("", "_true"))
    lag = (pairs["day"] - pairs["day_true"]).dt.days
    assert pairs[lag.between(0, 29)]["index"].nunique() == len(duplicates)
    # the onset attack is a relapse row on onset_date
    onset = relapses[relapses["kind"] == "onset"].set_index("patient_id")["onset_date"]
    assert onset.equals(sim.tables["patients"].set_index("patient_id")["onset_date"])
    assert 0 < sim.tables["patients"]["last_followup_date"].isna().sum() < 0.03 * N


def test_cleaned_counts_in_truth_are_what_arr_change_counts(tmp_path):
    sim = simulate_registry(400, seed=2)
    data = tmp_path / "data"
    write_registry(sim.tables, sim.truth, data)
    spec = tmp_path / "study.yaml"
    spec.write_text(
        "study: {id: sim}\n"
        f"data: {{source: csv, path: {data}}}\n"
        "cohort: {index: {treatment: IVIG}}\n"
        "endpoints:\n"
        "  - {id: arr, plugin: arr_change, params: {pre_window: since_onset_excl_first}}\n"
    )
    import endpointkit

    per_patient = endpointkit.run(spec).per_patient["arr"]
    cleaned = sim.truth["realized"]["after_cohort_cleaning"]["relapses"]
    assert per_patient["pre_relapses"].sum() == cleaned["pre"]
    assert per_patient["post_relapses"].sum() == cleaned["post"]


# --------------------------------------------------------------------------- --set


def test_set_overrides_true_parameters_and_truth(tmp_path):
    params = parse_settings(["post_rate=0.6", "frailty_shape=inf", "off_rate=none", "onset_relapse=no", "index_treatment=IVIG"])
    assert params.post_rate == 0.6 and math.isinf(params.frailty_shape) and params.off_rate is None
    assert main(["simulate", "--patients", "300", "-o", str(tmp_path), "--set", "post_rate=0.6", "--set", "onset_relapse=false"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["parameters"]["post_rate"] == 0.6
    assert truth["true_values"]["rate_ratio"] == pytest.approx(0.6)
    assert truth["realized"]["relapses"]["onset"] == 0


# --------------------------------------------------------------------------- two-arm design


def test_arms_without_effects_change_only_the_group_column():
    plain = simulate(400, seed=4)
    arms = simulate_registry(400, seed=4, params={"arms": True})
    for name in SIMULATED:
        frame = arms.tables[name]
        if name == "patients":
            assert set(frame["group"]) == {"A", "B"}
            frame = frame.assign(group=plain["patients"]["group"])
        pd.testing.assert_frame_equal(frame, plain[name])
    assert (arms.patients["arm"].to_numpy() == arms.tables["patients"]["group"].to_numpy()).all()


def test_arm_b_ratios_are_recovered_from_the_tables():
    settings = {"arms": True, "arm_b_rate_ratio": 0.5, "arm_b_stop_hazard_ratio": 2.0, "frailty_shape": "inf"}
    sim = simulate_registry(N * 2, seed=12, params=settings)
    patients = sim.tables["patients"]
    ivig = sim.tables["treatments"].query("treatment == 'IVIG'").set_index("patient_id")
    frame = pd.DataFrame({"patient_id": patients["patient_id"], "arm": patients["group"],
                          "last_followup": pd.to_datetime(patients["last_followup_date"])})
    frame["onset"] = pd.to_datetime(patients["onset_date"])
    frame["index"] = pd.to_datetime(frame["patient_id"].map(ivig["start_date"]))
    frame["stopped"] = frame["patient_id"].map(ivig["end_date"]).notna().to_numpy()
    frame["end"] = pd.to_datetime(frame["patient_id"].map(ivig["end_date"])).fillna(frame["last_followup"])
    frame = frame.dropna(subset=["last_followup"]).reset_index(drop=True)
    _, post = true_relapse_counts(sim, frame)
    years = (frame["end"] - frame["index"]).dt.days.to_numpy() / 365.25
    b = (frame["arm"] == "B").to_numpy()
    rate = {arm: post[mask].sum() / years[mask].sum() for arm, mask in (("A", ~b), ("B", b))}
    stops = {arm: frame["stopped"][mask].sum() / years[mask].sum() for arm, mask in (("A", ~b), ("B", b))}
    assert rate["B"] / rate["A"] == pytest.approx(0.5, rel=0.12)
    assert stops["B"] / stops["A"] == pytest.approx(2.0, rel=0.15)  # exponential hazards: events / time
    arms = sim.truth["arms"]
    assert arms["true_values"]["relapse_rate_ratio_b_vs_a"] == 0.5 and arms["true_values"]["stop_hazard_ratio_b_vs_a"] == 2.0
    assert arms["realized"]["B"]["patients"] == int((patients["group"] == "B").sum())
    assert "arms" not in simulate_registry(10, seed=1).truth


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["post_rat=0.3"], "--set post_rat=0.3: unknown parameter 'post_rat' (did you mean 'post_rate'?); valid names: pre_rate, post_rate"),
        (["post_rate=-1"], "--set post_rate=-1: expected a number >= 0"),
        (["post_rate=fast"], "--set post_rate=fast: expected a number >= 0"),
        (["female=1.5"], "--set female=1.5: expected a number between 0 and 1"),
        (["frailty_shape=0"], "--set frailty_shape=0: expected a number > 0"),
        (["extract_date=2019-02-30"], "--set extract_date=2019-02-30: expected a date YYYY-MM-DD"),
        (["onset_relapse=maybe"], "--set onset_relapse=maybe: expected true or false"),
        (["post_rate"], "--set post_rate: expected NAME=VALUE"),
        (["stop_relapse=0.9"], "the stop-reason probabilities add up to more than 1"),
        (["admin_weeks_max=20"], "admin_weeks_max <= 12"),
        (["arm_b_rate_ratio=0.5"], "--set arms: arm_b_rate_ratio and arm_b_stop_hazard_ratio need arms=true"),
        (["arms=true", "arm_b_stop_hazard_ratio=0"], "--set arm_b_stop_hazard_ratio=0: expected a number > 0"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_option(items, message):
    with pytest.raises(UsageError) as error:
        parse_settings(items)
    assert message in str(error.value)


def test_unknown_name_lists_every_valid_name():
    with pytest.raises(UsageError) as error:
        make_parameters({"speed": 1})
    assert "valid names: " + ", ".join(PARAMETER_NAMES) in str(error.value)


def test_cli_reports_bad_arguments_with_exit_2(tmp_path, capsys):
    assert main(["simulate", "--patients", "10", "-o", str(tmp_path), "--set", "nope=1"]) == 2
    assert "--set nope=1: unknown parameter 'nope'" in capsys.readouterr().err
    assert main(["simulate", "--patients", "0", "-o", str(tmp_path)]) == 2
    assert "--patients: expected a number of patients >= 1" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["simulate", "--patients", "10", "-o", str(tmp_path / "file")]) == 2
    assert "it is a file, expected a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


# --------------------------------------------------------------------------- the command


def test_cli_writes_every_file_and_a_summary(tmp_path, capsys):
    out = tmp_path / "new" / "registry"
    assert main(["simulate", "--patients", "250", "--seed", "4", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)   # no temporary files left
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("endpointkit: simulated 250 patients (seed 4)")
    patients = pd.read_csv(out / "patients.csv", dtype=str)
    assert len(patients) == 250
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 4 and truth["parameters"] == json.loads(json.dumps(truth["parameters"]))


def test_cli_validate_accepts_the_simulated_data(tmp_path, capsys):
    assert main(["simulate", "--patients", "250", "-o", str(tmp_path / "data")]) == 0
    spec = tmp_path / "study.yaml"
    spec.write_text(
        "study: {id: sim}\n"
        "data: {source: csv, path: data}\n"
        "cohort: {index: {treatment: IVIG}}\n"
        "endpoints:\n"
        "  - {id: arr, plugin: arr_change}\n"
    )
    capsys.readouterr()
    assert main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "data OK: patients 250" in out and "relapses" in out
    assert "titers" not in out  # the spec's endpoints decide what is read, not the files in the folder
