"""Disclosure control: no count below min_count appears, and none can be recovered from the rest.

The attacker in ``recoverable`` knows the rules (a ``<M`` cell holds 1..M-1, a ``suppressed`` one
0..n), every shown number, and every linear relation between the rows of one output: a proportion
and its complement add up to n, categorical levels add up to n, an endpoint's declared partitions
(progressed + stable + improved = n, no_progression = stable + improved) and the attrition chain
(remaining before - excluded = remaining after). For every hidden cell it asks scipy's linear
programme for the smallest and largest value consistent with all of that: a cell is recovered when
only one whole number fits.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC
from scipy.optimize import linprog

from endpointkit.disclosure import Policy, disclose_attrition, redact_text
from endpointkit.manager import get_plugin_manager


def _spec(tmp_path: Path, disclosure: dict, data: Path = DEMO_DATA, **extra) -> Path:
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = str(data)
    raw["disclosure"] = disclosure
    raw.update(extra)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class Problem:
    """Unknown cells as LP variables with bounds, and equality relations between cells."""

    def __init__(self):
        self.bounds: list[tuple[float, float]] = []
        self.names: list[str] = []
        self.truth: list[float] = []
        self.equalities: list[tuple[dict, float]] = []  # ({var: coef}, constant): sum coef*var + constant = 0

    def term(self, shown, n_max: float, name: str, m: int, truth: float | None = None):
        """A cell: a known number, or a variable bounded by what its marker says."""
        if isinstance(shown, int | float) and not (isinstance(shown, float) and math.isnan(shown)):
            return float(shown)
        low, high = (1, m - 1) if shown == f"<{m}" else (0, n_max)
        self.bounds.append((low, high))
        self.names.append(name)
        self.truth.append(truth)
        return len(self.bounds) - 1

    def relate(self, total, parts) -> None:
        """total = sum(parts), each a number or a variable index."""
        coefs: dict[int, float] = {}
        constant = 0.0
        for value, sign in [(total, -1.0)] + [(p, 1.0) for p in parts]:
            if isinstance(value, float):
                constant += sign * value
            else:
                coefs[value] = coefs.get(value, 0.0) + sign
        if coefs:
            self.equalities.append((coefs, constant))
        else:
            assert abs(constant) < 1e-9, "the shown numbers must be consistent"

    def ranges(self) -> dict[str, tuple[float, float]]:
        k = len(self.bounds)
        a_eq = np.zeros((len(self.equalities), k))
        b_eq = np.zeros(len(self.equalities))
        for row, (coefs, constant) in enumerate(self.equalities):
            for var, coef in coefs.items():
                a_eq[row, var] = coef
            b_eq[row] = -constant
        out = {}
        for var in range(k):
            c = np.zeros(k)
            c[var] = 1
            lows = [linprog(sign * c, A_eq=a_eq if len(b_eq) else None, b_eq=b_eq if len(b_eq) else None,
                            bounds=self.bounds, method="highs") for sign in (1, -1)]
            assert all(r.status == 0 for r in lows), f"the attacker's problem must be feasible ({self.names[var]})"
            out[self.names[var]] = (lows[0].fun, -lows[1].fun)
        return out


def recoverable(out: Path, m: int) -> list[str]:
    """Hidden cells of results.csv and attrition.csv whose value the rest of the output pins down."""
    frame = pd.read_csv(out / "results.csv", dtype={"display": str})
    plugins = get_plugin_manager(entrypoints=False)
    spec = json.loads((out / "results.json").read_text())["provenance"]["variants"][0]["resolved"]
    plugin_of = {e["id"]: e["plugin"] for e in spec["endpoints"]}
    problem = Problem()
    for (variant, endpoint, group), block in frame.groupby(["variant", "endpoint", "group"], sort=False):
        cells, n_of = {}, {}
        for row in block.to_dict(orient="records"):
            if row["display"].startswith("n <"):
                continue
            n = float(row["n"])
            n_of[row["measure"]] = n
            shown = row["estimate"] if row["stat"] == "count" else row["count"]
            if row["stat"] not in ("proportion", "count", "rate", "km_median"):
                continue
            cells[row["measure"]] = problem.term(shown, n, f"{variant}/{endpoint}/{group}/{row['measure']}", m)
        cls = plugins.endpoints.items[plugin_of[endpoint]]
        relations = list(cls.partitions)
        prefixes: dict[str, list[str]] = {}
        for measure in cells:
            if ":" in measure:
                prefixes.setdefault(measure.split(":", 1)[0], []).append(measure)
        if cls.kind == "descriptive":  # Table 1 levels (and their missing row) add up to n exactly
            relations += [("n", tuple(parts)) for parts in prefixes.values()]
        for total, parts in relations:
            if all(p in cells for p in parts) and (total == "n" or total in cells):
                n = max(n_of[p] for p in parts)
                problem.relate(float(n) if total == "n" else cells[total], [cells[p] for p in parts])
    attrition = pd.read_csv(out / "attrition.csv", dtype=str)
    analysed = float(frame[(frame["endpoint"] == "patients") & (frame["measure"] == "patients")]["estimate"].iloc[0])
    big = 10**6
    remaining = [problem.term(float(r) if r.isdigit() else r, big, f"attrition/{s}/remaining", m)
                 for s, r in zip(attrition["step"], attrition["remaining"], strict=True)]
    problem.relate(analysed, [remaining[-1]])
    for i in range(1, len(remaining)):
        excluded = attrition["excluded"].iloc[i]
        e = problem.term(float(excluded) if excluded.isdigit() else excluded, big, f"attrition/{attrition['step'].iloc[i]}/excluded", m)
        problem.relate(remaining[i - 1], [remaining[i], e])
    found = []
    for name, (low, high) in problem.ranges().items():
        if math.floor(high + 1e-9) - math.ceil(low - 1e-9) < 1:
            found.append(f"{name} = {low:g}")
    return found


def shown_counts(out: Path) -> list[int]:
    """Every count released in results.csv, attrition.csv and data_quality.csv."""
    frame = pd.read_csv(out / "results.csv")
    counts = list(frame["count"].dropna()) + list(frame["n"].dropna())
    counts += list(frame.loc[frame["stat"] == "count", "estimate"].dropna())
    for name, columns in (("attrition.csv", ["remaining", "excluded"]), ("data_quality.csv", ["records", "patients"])):
        table = pd.read_csv(out / name, dtype=str)
        counts += [int(v) for c in columns for v in table[c] if v.isdigit()]
    return [int(c) for c in counts]


@pytest.mark.parametrize("m", [5, 8, 12])
def test_no_count_below_min_count_is_shown_or_recoverable(cli, tmp_path, m):
    status, out, _ = cli("run", _spec(tmp_path, {"min_count": m}), "-o", tmp_path / "out")
    assert status == 0
    assert not [c for c in shown_counts(tmp_path / "out") if 1 <= c < m]
    assert recoverable(tmp_path / "out", m) == []
    assert f"<{m}" in out


def test_without_disclosure_the_attacker_finds_the_small_counts(cli, tmp_path):
    """The audit itself works: on the raw output the small EDSS cell is in plain sight."""
    status, _, _ = cli("run", DEMO_SPEC, "-o", tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert status == 0
    assert 4 in list(frame.loc[frame["measure"] == "progressed", "count"])


def test_a_naive_suppression_is_recovered_by_the_audit(tmp_path):
    """Hiding only the small EDSS cell (4 of 20) is undone by the partition 4 = 20 - 5 - 11."""
    out = tmp_path / "naive"
    out.mkdir()
    rows = [("patients", "count", None, 20, 20.0, "20"), ("progressed", "proportion", None, 20, None, "<5"),
            ("no_progression", "proportion", None, 20, None, "suppressed"), ("improved", "proportion", 5, 20, 0.25, "5 (25%)"),
            ("stable", "proportion", 11, 20, 0.55, "11 (55%)")]
    frame = pd.DataFrame([{"variant": "primary", "endpoint": "patients" if m == "patients" else "edss", "measure": m, "group": "all",
                           "stat": s, "count": c, "n": n, "estimate": e, "display": d} for m, s, c, n, e, d in rows])
    frame.to_csv(out / "results.csv", index=False)
    pd.DataFrame({"step": ["patients in data"], "remaining": ["20"], "excluded": ["0"]}).to_csv(out / "attrition.csv", index=False)
    resolved = {"endpoints": [{"id": "patients", "plugin": "characteristics"}, {"id": "edss", "plugin": "edss_progression"}]}
    (out / "results.json").write_text(json.dumps({"provenance": {"variants": [{"resolved": resolved}]}}))
    assert recoverable(out, 5) == ["primary/edss/all/progressed = 4", "primary/edss/all/no_progression = 16"]


def test_edss_partition_gets_secondary_suppression(cli, tmp_path):
    cli("run", _spec(tmp_path, {"min_count": 5}), "-o", tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "results.csv").set_index(["endpoint", "measure"])
    display = frame["display"]
    assert display[("edss", "progressed")] == "<5"  # 4 of 20
    assert display[("edss", "no_progression")] == "suppressed"  # 16 = 20 - 4
    assert display[("edss", "improved")] == "suppressed"  # 5 = 20 - 4 - 11: the smallest partner
    assert display[("edss", "stable")] == "11 (55%)"
    assert display[("patients", "female")] == "suppressed"  # 19 of 20: its complement is 1
    assert pd.isna(frame.loc[("patients", "female"), "estimate"])  # the percentage would give it back
    assert pd.isna(frame.loc[("safety", "severe_ae"), "low"])  # so would the exact CI


def test_categorical_levels_never_leave_one_suppressed_level(cli, tmp_path):
    sim = tmp_path / "sim"
    assert cli("simulate", "--patients", "60", "--seed", "7", "-o", sim)[0] == 0
    patients = pd.read_csv(sim / "patients.csv")
    levels = ["A"] * 30 + ["B"] * 17 + ["C"] * 3
    patients["group"] = (levels * 2)[: len(patients)]
    patients.to_csv(sim / "patients.csv", index=False)
    spec = _spec(tmp_path, {"min_count": 5}, data=sim)
    raw = yaml.safe_load(spec.read_text())
    raw["endpoints"][0]["params"] = {"variables": ["group"]}
    raw["cohort"]["criteria"] = []
    spec.write_text(yaml.safe_dump(raw))
    status, _, err = cli("run", spec, "-o", tmp_path / "out")
    assert status == 0, err
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    groups = frame[frame["measure"].str.startswith("group:")].set_index("measure")["display"]
    assert (groups == "<5").sum() >= 1 and (groups == "suppressed").sum() >= 1
    assert recoverable(tmp_path / "out", 5) == []


def test_rounding_to_5_rounds_every_count_and_recomputes_percentages(cli, tmp_path):
    status, _, _ = cli("run", _spec(tmp_path, {"round_to": 5}), "-o", tmp_path / "out")
    assert status == 0
    assert all(c % 5 == 0 for c in shown_counts(tmp_path / "out"))
    frame = pd.read_csv(tmp_path / "out" / "results.csv").set_index(["endpoint", "measure"])
    row = frame.loc[("relapse_free", "relapse_free")]  # 7 of 20 -> 5 of 20
    assert (row["count"], row["n"], row["estimate"]) == (5, 20, 0.25)
    from scipy.stats import binomtest

    ci = binomtest(5, 20).proportion_ci()
    assert row["low"] == pytest.approx(ci.low) and row["high"] == pytest.approx(ci.high)
    assert row["display"] == "5 (25%)"


def test_per_patient_files_are_not_written_and_no_patient_id_leaves(cli, tmp_path):
    status, out, _ = cli("run", _spec(tmp_path, {"min_count": 5}), "-o", tmp_path / "out")
    assert status == 0
    assert not (tmp_path / "out" / "per_patient").exists()
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".md", ".html"):
            text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", path.read_text(encoding="utf-8-sig", errors="ignore"))
            assert not re.search(r"\bP\d\d\b", text), path.name  # the demo's ids are P01..P23
    quality = pd.read_csv(tmp_path / "out" / "data_quality.csv", dtype=str)
    assert list(quality.columns) == ["table", "reason", "action", "records", "patients"]
    assert not quality["reason"].str.contains(r"\d{4}-\d\d-\d\d(?<!2019-12-31)|line \d").any()
    provenance = json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]
    assert provenance["disclosure"] == {"min_count": 5, "round_to": None, "per_patient_files": "not written"}


def test_small_attrition_steps_are_merged_until_none_is_small():
    policy = Policy(min_count=5)
    flow = pd.DataFrame({"step": ["data", "a", "b", "c", "d"], "remaining": [100, 98, 90, 90, 87]})
    # a (2) merges forward with b (8) -> 10; c (0) stands alone; d (3) is small and last, so it merges
    # back into c (0 + 3, still small) and then into a + b: 13
    out = disclose_attrition(flow, policy)
    assert out.to_dict(orient="list") == {
        "step": ["data", "a + b + c + d"], "remaining": ["100", "87"], "excluded": ["0", "13"],
    }
    flow = pd.DataFrame({"step": ["data", "a", "b"], "remaining": [100, 90, 90]})
    assert disclose_attrition(flow, policy)["excluded"].tolist() == ["0", "10", "0"]  # zero is shown


def test_when_all_exclusions_together_are_small_the_start_is_suppressed():
    flow = pd.DataFrame({"step": ["data", "a", "b"], "remaining": [23, 22, 20]})
    out = disclose_attrition(flow, Policy(min_count=5))
    assert out.to_dict(orient="list") == {"step": ["data", "a + b"], "remaining": ["suppressed", "20"], "excluded": ["0", "<5"]}


def test_counts_in_notes_and_labels():
    policy = Policy(min_count=5, round_to=5)
    assert redact_text("3 patient(s) excluded; 12 pairs, 2 zero differences (n = 13)", policy) == \
        "<5 patient(s) excluded; 10 pairs, <5 zero differences (n = 15)"
    assert redact_text("grade >= 3 or serious; log2(5); index + 0 days", policy) == "grade >= 3 or serious; log2(5); index + 0 days"


@pytest.mark.parametrize("raw, path, message", [
    ({"min_count": 1}, "disclosure.min_count", "expected a value >= 2"),
    ({"min_cout": 5}, "disclosure.min_cout", "did you mean 'min_count'"),
    ({"round_to": 0}, "disclosure.round_to", "expected a value >= 1"),
    ({"round_to": "five"}, "disclosure.round_to", "expected"),
])
def test_bad_disclosure_settings_name_the_key(cli, tmp_path, raw, path, message):
    status, _, err = cli("run", _spec(tmp_path, raw), "-o", tmp_path / "out")
    assert status == 2
    assert path in err and message in err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_disclosure_is_off_by_default(cli, tmp_path):
    shutil.copy(DEMO_SPEC, tmp_path / "x.yaml")
    status, out, _ = cli("run", _spec(tmp_path, {}), "-o", tmp_path / "out")
    assert status == 0 and "<5" not in out
    assert (tmp_path / "out" / "per_patient" / "arr.csv").is_file()


def test_disclosure_reaches_word_excel_the_report_and_the_figures(cli, tmp_path):
    import docx
    import openpyxl

    spec = _spec(tmp_path, {"min_count": 5})
    for fmt in ("xlsx", "docx"):
        status, _, err = cli("run", spec, "-o", tmp_path / fmt, "--format", fmt, "--quiet", "--figures", tmp_path / "figs")
        assert status == 0, err
    book = openpyxl.load_workbook(tmp_path / "xlsx" / "table.xlsx")
    results = book["Results"]
    header = [c.value for c in results[1]]
    counts = [row[header.index(c)].value for row in results.iter_rows(min_row=2) for c in ("count", "n")]
    assert not [c for c in counts if c is not None and 1 <= c < 5]
    shown = [c.value for row in book["Table"].iter_rows() for c in row]
    assert "<5" in shown and "suppressed" in shown and "4 (20%)" not in shown
    quality = [[c.value for c in row] for row in book["Data quality"].iter_rows()]
    assert quality[0] == ["table", "reason", "action", "records", "patients"]
    cells = {c.text for row in docx.Document(tmp_path / "docx" / "table.docx").tables[0].rows for c in row.cells}
    assert "<5" in cells and "4 (20%)" not in cells
    page = re.sub(r"base64,[A-Za-z0-9+/=]+", "", (tmp_path / "docx" / "report.html").read_text())  # text only
    assert "&lt;5" in page and "4 (20%)" not in page and "P01" not in page
    attrition = pd.read_csv(tmp_path / "docx" / "attrition.csv", dtype=str)
    assert attrition["remaining"].tolist() == ["suppressed", "20"]  # 3 excluded in all: the start is hidden
