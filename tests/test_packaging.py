"""The wheel ships every package folder, and code is imported only through ``endpointkit``."""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_on_disk_is_in_the_packaged_list():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packaged = set(config["packages"])
    folders = {"endpointkit": "core", "endpointkit.plugins": "plugins"}
    on_disk = set()
    for package, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *relative.parts]))
    assert on_disk == packaged
    assert config["package-dir"] == folders


def test_core_and_plugins_are_never_imported_by_folder_name():
    import endpointkit.cli  # noqa: F401
    import endpointkit.plugins.arr_change  # noqa: F401

    assert "core" not in sys.modules
    assert "plugins" not in sys.modules


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["endpointkit"] == "endpointkit.cli:main"
    assert project["requires-python"] == ">=3.11"
    for dependency in ("pluggy", "pandas", "scipy", "statsmodels", "pyyaml", "tabulate"):
        assert any(d.startswith(dependency + ">=") for d in project["dependencies"]), dependency


def test_the_licence_is_an_spdx_expression_and_building_prints_no_warning(tmp_path):
    """setuptools deprecated the ``license = {text = ...}`` table; the SPDX string builds cleanly."""
    import subprocess
    import zipfile

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, check=True,
    )
    output = built.stdout + built.stderr
    for word in ("BuildBackendWarning", "DeprecationWarning", "deprecated"):
        assert word not in output, output
    (wheel,) = tmp_path.glob("endpointkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: jsonschema" in metadata  # in the test extra
