"""Repository paths used by the tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
DEMO_SPEC = SPECS / "ivig_nmosd.yaml"
DEMO_DATA = SPECS / "data" / "ivig_nmosd"
