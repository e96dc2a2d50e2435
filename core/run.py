"""Results of a run: the results frame for every variant, per-patient frames, attrition, data
quality, failures and provenance, with the renderers as methods."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import pandas as pd

from .data import CohortData
from .manager import Plugins
from .params import to_plain
from .results import RESULT_COLUMNS, VariantResult
from .spec import Spec


@dataclass
class Results:
    """Everything a run produced. ``frame`` is the results frame (contract columns)."""

    spec: Spec
    frame: pd.DataFrame
    variants: list[VariantResult]
    provenance: dict
    plugins: Plugins = field(repr=False)

    @classmethod
    def from_variants(cls, spec: Spec, plugins: Plugins, data: CohortData, outputs: list[VariantResult]) -> Results:
        frames = [o.frame for o in outputs if not o.frame.empty]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
        return cls(spec=spec, frame=frame[RESULT_COLUMNS], variants=outputs, plugins=plugins,
                   provenance=_provenance(spec, plugins, data, outputs))

    # -- convenient views of the primary (first) variant
    @property
    def primary(self) -> VariantResult:
        return self.variants[0]

    @property
    def per_patient(self) -> dict[str, pd.DataFrame]:
        return self.primary.per_patient

    @property
    def attrition(self) -> pd.DataFrame:
        return self.primary.attrition

    @property
    def data_quality(self) -> pd.DataFrame:
        return self.primary.quality

    @property
    def failures(self) -> list[dict]:
        return [f for v in self.variants for f in v.failures]

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def table(self, format: str | None = None, variant: str | None = None) -> str:  # noqa: A002
        """The results table as text (github, plain, latex or html), with footnotes."""
        from .render import render_table

        chosen = self.variant(variant) if variant else self.primary
        return render_table(chosen, self.plugins, format or chosen.spec.table.format)

    def side_by_side(self, format: str | None = None) -> str:
        from .sensitivity import render_side_by_side

        return render_side_by_side(self, format or self.spec.table.format)

    def what_moves(self) -> pd.DataFrame:
        from .sensitivity import what_moves

        return what_moves(self)


def _provenance(spec: Spec, plugins: Plugins, data: CohortData, outputs: list[VariantResult]) -> dict:
    import numpy
    import pluggy
    import scipy
    import tabulate
    import yaml

    from . import __version__

    return {
        "endpointkit": __version__,
        "python": platform.python_version(),
        "packages": {
            "pandas": pd.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "pluggy": pluggy.__version__, "pyyaml": yaml.__version__, "tabulate": tabulate.__version__,
        },
        "plugins": plugins.versions(),
        "endpoint_plugins": {
            e.plugin: plugins.endpoints.items[e.plugin].provider for e in spec.endpoints
        },
        "spec": {"path": str(spec.path) if spec.path else None, "sha256": spec.sha256},
        "data": {"source": data.source, "path": str(data.path), "sha256": data.checksums},
        "variants": [
            {
                "name": o.name,
                "settings": to_plain(spec.variant_settings.get(o.name, {})),
                "resolved": o.spec.resolved(),
                "attrition": o.attrition.to_dict(orient="records"),
                "failures": [{k: v for k, v in f.items() if k != "detail"} for f in o.failures],
            }
            for o in outputs
        ],
    }
