"""endpointkit: a study spec in YAML, endpoints as plugins, every number traceable.

Write an endpoint plugin in a few lines::

    from dataclasses import dataclass
    from endpointkit import Endpoint, EndpointResult, hookimpl, param
    from endpointkit.stats import proportion_row

    @dataclass(frozen=True)
    class Params:
        min_relapses: int = param(1, "Relapses after index that count as active.")

    class ActiveDisease(Endpoint):
        name = "active_disease"
        title = "Active disease after index"
        requires = ("relapses",)
        Params = Params

        def compute(self, cohort, params, ctx):
            ...
            return EndpointResult(rows=[proportion_row("active", k, n)], per_patient=frame)

    @hookimpl
    def register_endpoints():
        return [ActiveDisease]

List the file under ``plugins:`` in a spec, or ship it in a package with an ``endpointkit``
entry point. See docs/plugins.md (the plugin guide) and docs/python-api.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import run  # noqa: E402
from .endpoint import Context, Endpoint, EndpointResult, Row  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .params import Duration, param  # noqa: E402

__all__ = ["Context", "Duration", "Endpoint", "EndpointResult", "Row", "__version__", "hookimpl", "param", "run"]
