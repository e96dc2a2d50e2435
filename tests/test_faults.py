"""Faults, hostile input and hostile environments: what a run does when things go wrong around it.

* text from a spec or from data can never inject markup, commands or formulas into an output;
* the -o folder is one unit: a second run is locked out, a rerun removes its own stale files (and no
  other file), an interrupted run leaves either the old or the new complete set, never a mix;
* a closed, full or non-UTF-8 stdout never costs the output files;
* SIGTERM ends the run and its workers (exit 143); a worker that dies is retried alone, and a variant
  whose worker dies twice fails by name (exit 3); a plugin's sys.exit() is that endpoint's failure;
* reads are bounded before reading (devices, FIFOs, non-spec files are refused without echoing them);
* a broken installed plugin is named with the way to skip it; switches set to 0 count as off.

The signal and worker cases run real processes and send real signals.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_inputs import Study, result_files

HOSTILE_TITLE = "Study\n\\input{/etc/passwd} 100% & <script>alert(1)</script> | `x` $x$"
HOSTILE_TERM = "=HYPERLINK(\"http://x\")|a\nb\\input{/etc/passwd}<b>"


@pytest.fixture
def study(tmp_path) -> Study:
    return Study(tmp_path)


def run_process(study: Study, *argv, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "endpointkit.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=240, env={**os.environ, **(env or {})}, cwd=study.root, **kwargs)


# --------------------------------------------------------------------------- hostile text


def hostile(study: Study) -> Study:
    """A spec and data whose free text tries to break out of every output format."""
    def change(raw):
        raw["study"]["title"] = HOSTILE_TITLE
        raw["cohort"]["criteria"][0]["name"] = "crit\n\\input{x} | <i>"
        raw.setdefault("table", {})["notes"] = ["note\n\\write18{rm -rf /} | <img src=x>"]
        safety = next(e for e in raw["endpoints"] if e["plugin"] == "safety")
        safety.setdefault("params", {})["by_term"] = True
    study.edit(change)
    lines = study.lines("adverse_events")
    header = next(csv.reader([lines[0]]))
    first = next(csv.reader([lines[1]]))
    first[header.index("term")] = HOSTILE_TERM
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(first)
    out = [lines[0], buffer.getvalue().rstrip("\n"), *lines[2:]]
    study.write_lines("adverse_events", out)
    return study


@pytest.mark.parametrize("fmt", ["latex", "github", "html", "plain"])
def test_hostile_spec_and_data_text_is_escaped_in_every_table_format(cli, study, fmt):
    hostile(study)
    status, stdout, err = cli("run", study.spec, "-o", study.out, "--format", fmt, "--quiet")
    assert status == 0, err
    suffix = {"latex": "tex", "github": "md", "html": "html", "plain": "txt"}[fmt]
    text = (study.out / f"table.{suffix}").read_text()
    assert text == stdout
    assert "HYPERLINK" in text and "passwd" in text  # the text is there, only defused
    if fmt == "latex":
        assert not re.search(r"(?<!\\textbackslash\{\})\\(input|write18)", text), text
        assert text.startswith("% Study ")  # the title stays inside its comment line
        assert all(not line.startswith(("\\input", "\\write")) for line in text.splitlines())
    if fmt == "html":
        assert "<script>" not in text and "<img" not in text and "<b>" not in text and "<i>" not in text
    if fmt == "github":
        table = [line for line in text.splitlines() if line.startswith("|")]
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
        assert widths == {5}, table  # every row has its 4 cells: no | or line break splits one
        assert not re.search(r"(?<!\\)<[A-Za-z/!?]", text) and "\\<script>" in text  # no raw HTML can start
    if fmt == "plain":
        assert "\x1b" not in text
    assert "Study\n" not in text and "crit\n" not in text and "a\nb" not in text


def test_formula_cells_from_data_are_neutralised_in_every_csv(cli, study):
    hostile(study)
    lines = study.lines("patients")
    study.write_lines("patients", [lines[0], *lines[1:], lines[1].replace("P01", "+cmd|' /C calc'!A0", 1)])
    for table in ("treatments", "relapses", "edss", "titers", "administrations"):
        rows = study.lines(table)
        study.write_lines(table, rows + [r.replace("P01", "+cmd|' /C calc'!A0", 1) for r in rows[1:] if r.startswith("P01,")])
    treatments = study.lines("treatments")
    study.write_lines("treatments", [t.replace(",relapse", ',"=HYPERLINK(""http://x"",""y"")"', 1) if t.startswith("P02,IVIG") else t
                                     for t in treatments])
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 0, err
    cells = []
    for path in study.out.rglob("*.csv"):
        with open(path, newline="") as stream:
            cells += [(path.name, cell) for row in csv.reader(stream) for cell in row]
    dangerous = [(name, cell) for name, cell in cells if cell[:1] in ("=", "+", "@", "\t", "\r")
                 or (cell.startswith("-") and not re.fullmatch(r"-[\d.]+(e-?\d+)?%?( .*)?", cell))]
    assert dangerous == []
    neutralised = {cell for _, cell in cells if cell.startswith("'")}
    assert "'+cmd|' /C calc'!A0" in neutralised
    assert any(cell.startswith("'=HYPERLINK") for cell in neutralised)
    assert any(cell == "-1" or cell.startswith("-0.") for _, cell in cells)  # negative numbers untouched


# --------------------------------------------------------------------------- the -o folder as one unit


def listed(out: Path) -> dict[str, str]:
    return {entry["path"]: entry["sha256"] for entry in json.loads((out / "results.json").read_text())["files"]}


def assert_complete_set(out: Path) -> None:
    """Every file that results.json lists is there with its hash, and no other file of ours is."""
    files = listed(out)
    for name, digest in files.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    ours = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"results.json", "user-notes.txt", ".endpointkit.lock"}
    assert ours == set(files)


def test_results_json_lists_every_file_with_its_hash_and_paths_relative_to_the_spec(cli, study):
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 0, err
    assert_complete_set(study.out)
    provenance = json.loads((study.out / "results.json").read_text())["provenance"]
    assert provenance["spec"]["path"] == "study.yaml"
    assert provenance["data"]["path"] == "data"
    provenance["run"]["command"] = None  # the command line as typed; every other path is relative
    assert str(study.root) not in json.dumps(provenance)


def test_a_rerun_removes_its_own_stale_files_and_no_other_file(cli, study):
    variants = [{"name": "last 12 months", "set": {"arr.pre_window": "last_12m"}}]
    study.edit(lambda raw: raw.update(sensitivity=variants))
    assert cli("run", study.spec, "-o", study.out, "--quiet")[0] == 0
    assert (study.out / "side_by_side.md").is_file() and (study.out / "what_moves.csv").is_file()
    (study.out / "user-notes.txt").write_text("mine")
    (study.out / ".endpointkit-leftover.tmp").write_text("from a killed run")
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet", "--variant", "primary", "--only", "arr")
    assert status == 0, err
    assert not (study.out / "side_by_side.md").exists() and not (study.out / "what_moves.csv").exists()
    assert sorted(p.name for p in (study.out / "per_patient").iterdir()) == ["arr.csv"]
    assert (study.out / "user-notes.txt").read_text() == "mine"
    assert not (study.out / ".endpointkit-leftover.tmp").exists()
    assert_complete_set(study.out)


def test_a_second_run_into_a_locked_folder_is_refused_with_exit_2(cli, study):
    study.out.mkdir()
    with open(study.out / ".endpointkit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("12345\n")
        lock.flush()
        status, stdout, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 2
    assert "another endpointkit run is writing to" in err and "12345" in err
    assert result_files(study.out) == [study.out / ".endpointkit.lock"]
    assert stdout == ""


def test_a_failed_data_load_leaves_no_empty_output_folder(cli, study):
    study.csv("relapses").write_text("patient_id,onset_date\nP01,not a date\n")
    status, _, err = cli("run", study.spec, "-o", study.out / "deep" / "er", "--quiet")
    assert status == 2, err
    assert not study.out.exists()


def test_a_journal_left_by_a_run_killed_while_renaming_is_rolled_forward(cli, study):
    from endpointkit.outdir import OutputFolder

    assert cli("run", study.spec, "-o", study.out, "--quiet")[0] == 0
    # what a run killed (SIGKILL) after its journal, before its last renames, leaves behind
    staging = study.out / ".endpointkit-staging"
    staging.mkdir()
    (staging / "extra.csv").write_text("a\n1\n")
    manifest = json.loads((study.out / "results.json").read_text())
    manifest["files"] = [entry for entry in manifest["files"] if entry["path"] != "table.md"]
    manifest["files"].append({"path": "extra.csv", "bytes": 4, "sha256": hashlib.sha256(b"a\n1\n").hexdigest()})
    (staging / "results.json").write_text(json.dumps(manifest))
    plan = {"renames": [[str(staging / name), str(study.out / name)] for name in ("extra.csv", "results.json")],
            "remove": [str(study.out / "table.md")]}
    (staging / ".journal.json").write_text(json.dumps(plan))
    with OutputFolder(study.out):  # the next run into the folder finishes that commit first
        assert not staging.exists()
        assert (study.out / "extra.csv").read_text() == "a\n1\n" and not (study.out / "table.md").exists()
        assert_complete_set(study.out)
    assert cli("run", study.spec, "-o", study.out, "--quiet")[0] == 0
    assert not (study.out / "extra.csv").exists()  # listed by the killed run, not written by this one
    assert_complete_set(study.out)


def test_sigterm_at_any_moment_leaves_the_old_or_the_new_complete_set(study):
    study.edit(lambda raw: raw.update(sensitivity=[{"name": f"lag {d}", "set": {"arr.post_lag_days": d}} for d in (30, 60, 90)]))
    first = run_process(study, "run", study.spec, "-o", study.out, "--quiet")
    assert first.returncode == 0, first.stderr
    before = listed(study.out)
    run_process(study, "run", study.spec, "-o", study.root / "reference", "--quiet", "--only", "arr")
    after = listed(study.root / "reference")
    for delay in (0.8, 1.4, 2.0, 2.6, 3.2):
        proc = subprocess.Popen([sys.executable, "-m", "endpointkit.cli", "run", str(study.spec), "-o", str(study.out),
                                 "--quiet", "--only", "arr"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 143, -signal.SIGTERM), err  # -15: still importing (a shell shows 143)
        assert "Traceback" not in err
        assert_complete_set(study.out)
        now = listed(study.out)
        assert now in (before, after), sorted(now)
        if proc.returncode == 143:
            assert "interrupted" in err
        assert not list(study.out.rglob(".endpointkit-*")) and not (study.out / ".endpointkit.lock").exists()


# --------------------------------------------------------------------------- stdout


def test_a_closed_stdout_keeps_every_output_file(study):
    proc = subprocess.Popen([sys.executable, "-m", "endpointkit.cli", "run", str(study.spec), "-o", str(study.out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=study.root)
    proc.stdout.close()  # `| head -0`: the reader is gone before the table is printed
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert_complete_set(study.out)


def test_a_full_stdout_keeps_the_files_and_says_so(study):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "endpointkit.cli", "run", str(study.spec), "-o", str(study.out)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot print the results table to standard output" in proc.stderr
    assert "the output files were written to" in proc.stderr and "Traceback" not in proc.stderr
    assert_complete_set(study.out)


def test_a_stdout_that_cannot_encode_the_table_still_prints_it(study):
    proc = run_process(study, "run", study.spec, "-o", study.out, env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert "\\u2013" in proc.stdout  # the en dash of an IQR, escaped
    assert "\u2013" in (study.out / "table.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- plugins that misbehave

SLOW_PLUGIN = """\
    import os
    import signal
    import sys
    import time
    from dataclasses import dataclass

    from endpointkit import Endpoint, EndpointResult, Row, hookimpl, param


    @dataclass(frozen=True)
    class SlowParams:
        seconds: float = param(0.0, "Seconds to sleep.")
        die: str = param("never", "never, once or always: SIGKILL the worker process running this.")
        exit_code: int = param(-1, "Call sys.exit(exit_code) when >= 0.")


    class Slow(Endpoint):
        name = "slow"
        title = "Slow"
        requires = ()
        Params = SlowParams

        def compute(self, cohort, params, ctx):
            if params.exit_code >= 0:
                sys.exit(params.exit_code)
            if params.die != "never":  # only the variant "dies" sets it; it runs in a worker
                marker = os.environ["TEST_MARKER"]
                if params.die == "always" or not os.path.exists(marker):
                    open(marker, "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(params.seconds)
            n = len(cohort.patients)
            return EndpointResult(rows=[Row(measure="patients", stat="count", n=n, count=n, estimate=float(n))],
                                  per_patient=cohort.patients[["patient_id"]])


    @hookimpl
    def register_endpoints():
        return [Slow]
"""


def with_slow_endpoint(study: Study, params: dict, variants: list[dict] | None = None) -> Study:
    study.plugin_file("slow.py", SLOW_PLUGIN)
    study.edit(lambda raw: raw["endpoints"].append({"id": "slow", "plugin": "slow", "params": params}))
    if variants is not None:
        study.edit(lambda raw: raw.update(sensitivity=variants))
    return study


def test_a_plugin_calling_sys_exit_is_that_endpoints_failure_exit_3(cli, study):
    with_slow_endpoint(study, {"exit_code": 0})
    status, stdout, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 3
    assert "endpoint 'slow' (slow, variant primary) failed: the plugin called sys.exit(0)" in err
    failures = json.loads((study.out / "results.json").read_text())["failures"]
    assert [f["endpoint"] for f in failures] == ["slow"]
    assert "Annualized relapse rate" in stdout  # the other endpoints completed


def cohort_variants(die: str) -> list[dict]:
    """Variants with other cohort settings than the primary: each runs in a worker with --jobs 2."""
    return [
        {"name": "to last visit", "set": {"cohort.follow_up_end": "last_followup"}},
        {"name": "dies", "set": {"cohort.grace_days": 30, "slow.die": die}},
    ]


def test_a_worker_that_dies_once_is_retried_and_the_run_completes(study):
    with_slow_endpoint(study, {}, cohort_variants("once"))
    proc = run_process(study, "run", study.spec, "-o", study.out, "--quiet", "--jobs", "2",
                       env={"TEST_MARKER": str(study.root / "died")})
    assert (study.root / "died").exists(), "the worker was never killed"
    assert proc.returncode == 0, proc.stderr
    frame = json.loads((study.out / "results.json").read_text())["results"]
    assert {r["variant"] for r in frame if r["endpoint"] == "slow"} == {"primary", "to last visit", "dies"}


def test_a_variant_whose_worker_dies_twice_fails_by_name_and_the_others_stand(study):
    with_slow_endpoint(study, {}, cohort_variants("always"))
    proc = run_process(study, "run", study.spec, "-o", study.out, "--quiet", "--jobs", "2",
                       env={"TEST_MARKER": str(study.root / "died")})
    assert proc.returncode == 3, proc.stderr
    assert "variant dies) failed: the worker process running this partition died" in proc.stderr
    results = json.loads((study.out / "results.json").read_text())
    assert {f["variant"] for f in results["failures"]} == {"dies"}
    assert {r["variant"] for r in results["results"] if r["endpoint"] == "slow"} == {"primary", "to last visit"}


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in task.read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker pids from /proc (Linux)")
def test_sigterm_ends_the_run_and_its_workers_with_exit_143(study):
    with_slow_endpoint(study, {"seconds": 0}, [
        {"name": "slow A", "set": {"cohort.follow_up_end": "last_followup", "slow.seconds": 60}},
        {"name": "slow B", "set": {"cohort.grace_days": 30, "slow.seconds": 60}},
    ])
    proc = subprocess.Popen([sys.executable, "-m", "endpointkit.cli", "run", str(study.spec), "-o", str(study.out),
                             "--quiet", "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TEST_MARKER": "-"})
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = children(proc.pid)
    assert len(workers) >= 2, "the workers never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "interrupted; no output was written" in err and "Traceback" not in err
    time.sleep(0.5)
    assert [w for w in workers if alive(w)] == []
    assert result_files(study.out) == []
    assert stdout == ""


# --------------------------------------------------------------------------- bounded reads


@pytest.mark.parametrize("make", ["device", "symlink-to-device", "fifo"])
def test_a_spec_that_is_a_device_or_fifo_is_refused_without_reading(study, make):
    target = study.root / "special.yaml"
    if make == "device":
        target = Path("/dev/zero")
    elif make == "symlink-to-device":
        target.symlink_to("/dev/zero")
    else:
        os.mkfifo(target)
    started = time.monotonic()
    proc = run_process(study, "validate", target)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 30
    assert "expected a YAML spec file" in proc.stderr or "not a regular file" in proc.stderr


def test_extends_of_a_file_that_is_not_a_spec_never_echoes_its_content(cli, study, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("admin:$6$HASHSECRET:20228:0:99999:7:::\n")
    study.edit(lambda raw: raw.update(extends=str(secret)))
    status, _, err = cli("validate", study.spec)
    assert status == 2
    assert "extends:" in err and "HASHSECRET" not in err and "admin" not in err


def test_extends_of_a_device_is_refused(cli, study):
    (study.root / "zero.yaml").symlink_to("/dev/zero")
    study.edit(lambda raw: raw.update(extends="zero.yaml"))
    status, _, err = cli("validate", study.spec)
    assert status == 2
    assert "extends:" in err


def test_a_5000_digit_number_in_where_is_a_clear_error(cli, study):
    study.edit(lambda raw: raw["cohort"]["criteria"][0].update(where="age > " + "9" * 5000))
    status, _, err = cli("validate", study.spec)
    assert status == 2
    assert "cohort.criteria[0].where" in err and "numbers in expressions have at most 30 digits" in err
    assert len(err) < 600


# --------------------------------------------------------------------------- plot


def test_the_plot_joins_the_output_set(cli, study):
    pytest.importorskip("matplotlib")
    study.edit(lambda raw: raw.update(sensitivity=[{"name": "lag 90", "set": {"arr.post_lag_days": 90}}]))
    status, _, err = cli("run", study.spec, "-o", study.out, "--plot", study.out / "forest.png", "--quiet")
    assert status == 0, err
    assert "forest.png" in listed(study.out)
    assert_complete_set(study.out)


def test_a_plot_is_not_left_behind_when_the_output_folder_is_refused(cli, study):
    study.out.mkdir()
    with open(study.out / ".endpointkit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status, _, err = cli("run", study.spec, "-o", study.out, "--plot", study.root / "forest.png", "--quiet")
    assert status == 2, err
    assert not (study.root / "forest.png").exists()


# --------------------------------------------------------------------------- installed plugins and switches


@pytest.fixture
def broken_installed_plugin(tmp_path) -> dict:
    """An installed distribution whose endpointkit entry point cannot be imported."""
    site = tmp_path / "site"
    info = site / "brokenplug-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[endpointkit]\nbroken = brokenplug_module_that_is_not_there\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "ENDPOINTKIT_DISABLE_PLUGIN_AUTOLOAD": ""}


def test_a_broken_installed_plugin_is_named_with_the_way_to_skip_it(study, broken_installed_plugin):
    proc = run_process(study, "plugins", env=broken_installed_plugin)
    assert proc.returncode == 2, proc.stderr
    assert "the installed plugin 'broken'" in proc.stderr and "brokenplug" in proc.stderr
    assert "ENDPOINTKIT_BLOCK_PLUGINS=broken" in proc.stderr and "Traceback" not in proc.stderr
    skipped = run_process(study, "plugins", env={**broken_installed_plugin, "ENDPOINTKIT_BLOCK_PLUGINS": "broken"})
    assert skipped.returncode == 0, skipped.stderr


@pytest.mark.parametrize(("value", "autoload"), [("0", True), ("", True), ("false", True), ("1", False), ("yes", False)])
def test_the_autoload_switch_set_to_0_counts_as_off(study, broken_installed_plugin, value, autoload):
    proc = run_process(study, "plugins", env={**broken_installed_plugin, "ENDPOINTKIT_DISABLE_PLUGIN_AUTOLOAD": value})
    assert proc.returncode == (2 if autoload else 0), proc.stderr


RAISING_RENDERER = """\
    from endpointkit import hookimpl

    class Broken:
        name, suffix, description = "broken", "txt", "a renderer with a bug"

        def render(self, table):
            raise RuntimeError("renderer bug")

    @hookimpl
    def register_renderers():
        return [Broken()]
"""


@pytest.mark.parametrize(("value", "traceback"), [("0", False), ("", False), ("1", True)])
def test_the_debug_switch_set_to_0_counts_as_off(study, value, traceback):
    study.plugin_file("broken_renderer.py", RAISING_RENDERER)
    proc = run_process(study, "run", study.spec, "--format", "broken", env={"ENDPOINTKIT_DEBUG": value})
    assert proc.returncode == 1
    assert ("Traceback" in proc.stderr) is traceback
    assert "RuntimeError: renderer bug" in proc.stderr


def test_provenance_records_the_run_the_spec_chain_and_every_dependency(cli, study, monkeypatch):
    import importlib.metadata

    base = study.spec.with_name("base.yaml")
    study.spec.rename(base)
    study.spec.write_text("extends: base.yaml\nstudy: {title: child}\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert cli("run", study.spec, "-o", study.out, "--quiet")[0] == 0
    provenance = json.loads((study.out / "results.json").read_text())["provenance"]
    assert provenance["run"] == {"time": "2023-11-14T22:13:20Z",
                                 "command": ["endpointkit", "run", str(study.spec), "-o", str(study.out), "--quiet"]}
    assert provenance["spec"]["files"] == [
        {"path": "study.yaml", "sha256": hashlib.sha256(study.spec.read_bytes()).hexdigest()},
        {"path": "base.yaml", "sha256": hashlib.sha256(base.read_bytes()).hexdigest()},
    ]
    for name in ("pandas", "scipy", "pluggy", "pyarrow", "tabulate", "numpy", "pyyaml"):
        assert provenance["packages"][name] == importlib.metadata.version(name)
