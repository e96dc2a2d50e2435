"""Shared fixtures: repository paths and a CLI runner."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from endpointkit.cli import main

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
os.environ.setdefault("ENDPOINTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def cli(capsys):
    """Run the command line in-process: returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err

    return run
