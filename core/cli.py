"""The ``endpointkit`` command line: run, validate, plugins, simulate.

Exit status: 0 success; 2 bad spec, data or arguments (a message, no traceback); 3 an endpoint
plugin or variant failed (the rest completed and the failure is recorded); 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from .errors import EndpointkitError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit 2, with a hint
        self.print_usage(sys.stderr)
        sys.stderr.write(f"endpointkit: error: {message}\n")
        raise SystemExit(2)


class _SimulateParser(_Parser):
    """``simulate --help`` lists every ``--set`` parameter with its default (built only when asked)."""

    def format_help(self) -> str:
        import dataclasses
        import textwrap

        from .simulate import TrueParameters

        lines = ["true parameters (--set NAME=VALUE; default in brackets):"]
        for f in dataclasses.fields(TrueParameters):
            default = "none" if f.default is None else f.default
            lines.append(f"  {f.name} [{default}]")
            lines += textwrap.wrap(f.metadata.get("help", ""), 92, initial_indent=" " * 6, subsequent_indent=" " * 6)
        self.epilog = "\n".join(lines)
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="endpointkit", description="Spec-driven endpoint analysis of treatment studies.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"endpointkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a study spec and print its results table")
    run.add_argument("spec", type=Path)
    run.add_argument("--data", type=Path, help="data folder replacing the spec's data.path")
    run.add_argument("-o", "--output", type=Path, help="folder for results.csv, results.json, table, per_patient/ ...")
    run.add_argument("--format", help="table format: github, plain, latex, html, docx, xlsx (default: table.format)")
    run.add_argument("--only", action="append", default=[], metavar="ID", help="run only this endpoint id (repeatable)")
    run.add_argument("--variant", help="run only this sensitivity variant ('primary' for the main analysis)")
    run.add_argument("--jobs", type=int, default=1, help="worker processes (processes executor, or a local Dask cluster)")
    run.add_argument("--executor", choices=("serial", "processes", "dask"),
                     help="where the partitions and variants run (default: the spec's executor, else serial; processes with --jobs above 1)")
    run.add_argument("--partitions", type=int, metavar="N", help="split the patients into N partitions (default: the spec's, else 1); results are identical for any N")
    run.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (tcp://host:8786) for --executor dask; default: a local cluster")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--plot", type=Path, help="forest plot of a headline estimate across variants (.png, .svg or .pdf)")
    run.add_argument("--plot-measure", default=None, metavar="ID.MEASURE", help="estimate to plot (default: the first outcome's first headline estimate)")
    run.add_argument("--figures", type=Path, metavar="DIR", help="write the Kaplan-Meier curves, the attrition diagram and the forest plot here")
    run.add_argument("--figure-format", default="png", metavar="png,svg,pdf", help="file formats of --figures, comma-separated (default: png)")
    run.add_argument("--csv-excel", action="store_true", help="write CSV files as UTF-8 with a byte-order mark, so Excel shows accents and dashes")

    validate = commands.add_parser("validate", help="check a spec (and its data) without computing")
    validate.add_argument("spec", type=Path)
    validate.add_argument("--data", type=Path)
    validate.add_argument("--spec-only", action="store_true", help="check the spec only, not the data")

    plugins = commands.add_parser("plugins", help="list registered endpoints, sources, criteria and renderers")
    plugins_format = plugins.add_mutually_exclusive_group()
    plugins_format.add_argument("--json", action="store_true", help="as JSON")
    plugins_format.add_argument("--markdown", action="store_true", help="parameter tables in Markdown, as in docs/endpoints/")
    plugins.add_argument("--spec", type=Path, help="also load the plugin files this spec lists")

    schema = commands.add_parser("schema", help="print the JSON Schema of a study spec (for editors and CI)")
    schema.add_argument("--spec", type=Path, help="also load the plugin files this spec lists")
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead of printing")

    simulate = commands.add_parser(
        "simulate", help="write a synthetic registry in the canonical tables",
        description="Write a seeded synthetic registry (patients.csv, ..., truth.json) in the canonical tables. A "
                    "registry too large to generate at once (millions of patients) is generated with --chunk-patients.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.__class__ = _SimulateParser  # add_parser takes no parser class of its own
    simulate.add_argument("--patients", type=int, required=True, help="number of patients")
    simulate.add_argument("--seed", type=int, default=1, help="random seed (default: 1); the same seed gives identical files")
    simulate.add_argument("-o", "--output", type=Path, required=True, help="folder for the CSV files and truth.json")
    simulate.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                          help="a true parameter of the simulation (repeatable), e.g. post_rate=0.3; listed below")
    simulate.add_argument("--format", choices=("csv", "parquet"), default="csv",
                          help="csv (default): one CSV file per table; parquet: a partitioned dataset as endpointkit partition writes it")
    simulate.add_argument("--partitions", type=int, metavar="N", help="with --format parquet: the number of partitions (default 1)")
    simulate.add_argument("--chunk-patients", type=int, metavar="C",
                          help="generate and write the registry C patients at a time (e.g. 250000), each chunk from a random "
                               "stream of its own derived from (seed, chunk number): memory holds one chunk, whatever "
                               "--patients. Patient ids are as without it; the registry is the same for the same seed and "
                               "C, but differs from the one the seed gives without --chunk-patients")
    partition = commands.add_parser(
        "partition", help="write the spec's data as a hash-partitioned Parquet dataset",
        description="Read every table of the spec's data through its source and write it as a Parquet dataset, one file "
                    "per table and partition of the patients, with a manifest (endpointkit-partitions.json). A run "
                    "with --data DIR --partitions N then reads one partition per task (see docs/partitioned-data.md).")
    partition.add_argument("spec", type=Path)
    partition.add_argument("--data", type=Path, help="data folder replacing the spec's data.path")
    partition.add_argument("-o", "--output", type=Path, required=True, help="new (or empty) folder for the dataset")
    partition.add_argument("--partitions", type=int, required=True, metavar="N", help="number of partitions (1 to 4096)")
    return parser


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, done: int, total: int, name: str) -> None:
        if not self.enabled or total <= 1:
            return
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name[:40]:<40}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


EXECUTION_OPTIONS = ("--jobs", "--executor", "--partitions", "--scheduler")


def _result_arguments(argv: list[str]) -> list[str]:
    """The command line without the options that decide only where and how fast the run executes
    (they never change a result), so that results.json is the same file whichever executor ran."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in EXECUTION_OPTIONS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def cmd_run(args) -> int:
    from .engine import executor_settings, run_spec
    from .outdir import OutputFolder
    from .output import check_writable, render_files
    from .spec import load_spec

    if args.jobs < 1:
        raise EndpointkitError("--jobs: expected a number of worker processes >= 1")
    if args.partitions is not None and not 1 <= args.partitions <= 4096:
        raise EndpointkitError(f"--partitions: expected a number of partitions from 1 to 4096, got {args.partitions}")
    spec = load_spec(args.spec, data=args.data)
    executor = executor_settings(spec, args.jobs, args.executor, args.partitions, args.scheduler)
    fmt = args.format or spec.table.format
    binary = getattr(spec.plugins.renderers.get(fmt, "--format"), "binary", False)
    if binary and not args.output:
        raise UsageError(f"--format {fmt} writes a file: give the output folder with -o DIR")
    shown = "github" if binary else fmt  # a Word or Excel table is written to a file, the terminal gets text
    if args.plot:  # checked before the computation, not after it
        from .plot import check_plot_path

        check_plot_path(args.plot)
        check_writable(args.plot.parent, "--plot")
    if args.figures:
        from .figures import check_formats

        figure_formats = check_formats(args.figure_format)
        check_writable(args.figures, "--figures")
    # files first, the printed table last: a closed or full stdout never costs the output files
    folder = args.output_folder = OutputFolder(args.output).open() if args.output else None
    try:
        progress = Progress(enabled=not args.quiet and sys.stderr.isatty())
        results = run_spec(spec, spec.plugins, only=tuple(args.only), variant=args.variant, progress=progress, executor=executor)
        results.provenance["run"]["command"] = ["endpointkit", *_result_arguments(args.argv)]
        figures = None
        if folder is not None:  # with worker processes, the report's figures are drawn in one meanwhile
            from .executors import in_background
            from .report import report_figures

            figures = in_background(lambda: report_figures(results), executor)
        printed = results.table(shown)
        if len(results.variants) > 1:
            printed += "\n" + results.side_by_side(shown)
        files = render_files(results, fmt, excel_csv=args.csv_excel, figures=figures) if folder else {}
        outside = {}
        if args.figures:
            from .figures import figure_files

            for name, image in figure_files(results, figure_formats).items():
                target = (args.figures / name).absolute()
                if folder is not None and target.is_relative_to(folder.path.absolute()):
                    files[target.relative_to(folder.path.absolute()).as_posix()] = image
                else:
                    outside[target] = image
        if args.plot:
            image = _plot_bytes(results, args.plot, args.plot_measure)
            target = args.plot.absolute()
            inside = folder is not None and target.is_relative_to(folder.path.absolute())
            if inside:
                files[target.relative_to(folder.path.absolute()).as_posix()] = image
            else:
                outside[target] = image
        if folder is not None:
            folder.commit(files, outside)
        elif outside:
            from .output import write_files

            for target, image in outside.items():
                option = "--plot" if args.plot and target == args.plot.absolute() else "--figures"
                write_files(target.parent, {target.name: image}, option=option)
    finally:
        if folder is not None:
            folder.close()
    _print(printed, folder)
    if folder is not None and not args.quiet:
        print(f"\nwrote {len(files)} files to {args.output}", file=sys.stderr)
    for failure in results.failures:
        print(f"endpointkit: endpoint '{failure['endpoint']}' ({failure['plugin']}, variant {failure['variant']}) failed: {failure['reason']}", file=sys.stderr)
    return 3 if results.failures else 0


def _plot_bytes(results, path: Path, measure: str | None) -> bytes:
    """The forest plot as bytes, drawn in a private folder: it joins the run's output files."""
    import tempfile

    from .plot import forest_plot

    try:
        with tempfile.TemporaryDirectory(prefix="endpointkit-plot-") as scratch:
            drawn = Path(scratch) / f"plot{path.suffix.lower()}"
            forest_plot(results, drawn, measure)
            return drawn.read_bytes()
    except OSError as exc:
        raise UsageError(f"--plot: cannot draw the plot {path}: {exc.strerror or exc}") from None


def _print(text: str, folder) -> None:
    """Print the table; a reader that went away (``| head``) is not an error, a full device is."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:
        _silence_stdout()
        written = f"; the output files were written to {folder.path}" if folder is not None else ""
        raise UsageError(f"cannot print the results table to standard output: {exc.strerror or exc}{written}") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def cmd_validate(args) -> int:
    from .engine import check_cohorts, load_spec_data
    from .spec import load_spec

    spec = load_spec(args.spec, data=args.data)
    print(f"spec OK: {len(spec.endpoints)} endpoints, {len(spec.variants)} sensitivity variants")
    if not args.spec_only:
        data = load_spec_data(spec, spec.plugins)
        counts = ", ".join(f"{name} {len(frame)}" for name, frame in data.tables.items())
        check_cohorts(spec, data, spec.plugins)  # every where column, the index treatment, each criterion
        print(f"data OK: {counts}")
    return 0


def _plugins_for(spec: Path | None):
    """Built-in and installed plugins, plus the plugin files a spec lists."""
    from .manager import get_plugin_manager
    from .spec import _plugin_files, read_spec_file

    files: tuple[Path, ...] = ()
    if spec:
        raw, _ = read_spec_file(spec)
        files = _plugin_files(raw, spec.parent.resolve())
    return get_plugin_manager(files=files)


def cmd_schema(args) -> int:
    from .docgen import spec_schema

    text = json.dumps(spec_schema(_plugins_for(args.spec)), indent=2) + "\n"
    if args.output:
        from .output import check_writable

        check_writable(args.output.parent, "-o")
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-o: cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        print(text, end="")
    return 0


def cmd_plugins(args) -> int:
    from .params import describe_params

    plugins = _plugins_for(args.spec)
    if args.markdown:
        from .docgen import plugins_markdown

        print(plugins_markdown(plugins), end="")
        return 0
    listing = {
        "endpoints": [
            {"name": e.name, "title": e.title, "provider": e.provider, "requires": list(e.requires),
             "description": e.description, "params": describe_params(e.Params)}
            for e in plugins.endpoints
        ],
        "sources": [{"name": s.name, "provider": s.provider, "description": getattr(s, "description", "")} for s in plugins.sources],
        "criteria": [{"name": c.name, "provider": c.provider, "description": getattr(c, "description", "")} for c in plugins.criteria],
        "renderers": [{"name": r.name, "provider": r.provider, "description": getattr(r, "description", "")} for r in plugins.renderers],
        "plugins": plugins.versions(),
    }
    if args.json:
        print(json.dumps(listing, indent=2, default=str))
        return 0
    for endpoint in listing["endpoints"]:
        print(f"endpoint {endpoint['name']}: {endpoint['title']}  [{endpoint['provider']}]")
        if endpoint["description"]:
            print(f"    {endpoint['description']}")
        print(f"    requires: {', '.join(['patients', 'treatments', *endpoint['requires']])}")
        for p in endpoint["params"]:
            print(f"    {p['name']} = {json.dumps(p['default'], default=str)}  ({p['type']})")
            print(f"        {p['help']}")
    for kind in ("sources", "criteria", "renderers"):
        for item in listing[kind]:
            print(f"{kind[:-1] if kind != 'criteria' else 'criterion'} {item['name']}: {item['description']}  [{item['provider']}]")
    return 0


def cmd_partition(args) -> int:
    from .partitioned_dataset import partition_command

    return partition_command(args)


def cmd_simulate(args) -> int:
    from .simulate import simulate_command

    return simulate_command(args)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (exit 143 instead of 130)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _env_flag(name: str) -> bool:
    """An environment switch: set to anything but empty, 0, false, no or off."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    handlers = {"run": cmd_run, "validate": cmd_validate, "plugins": cmd_plugins, "schema": cmd_schema, "simulate": cmd_simulate,
                "partition": cmd_partition}
    with contextlib.suppress(AttributeError, ValueError, OSError):  # never fail to print a name
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        previous = None
    try:
        return handlers[args.command](args)
    except EndpointkitError as exc:
        print(f"endpointkit: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt as exc:
        folder = getattr(args, "output_folder", None)
        if folder is not None and folder.committed:
            print(f"endpointkit: interrupted after the output files were written to {folder.path}", file=sys.stderr)
        else:
            print("endpointkit: interrupted; no output was written", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except Exception as exc:  # a bug: say so plainly; the traceback only on request
        if _env_flag("ENDPOINTKIT_DEBUG"):
            raise
        print(f"endpointkit: internal error: {type(exc).__name__}: {exc}\n"
              "(set ENDPOINTKIT_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
