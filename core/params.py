"""Typed, validated endpoint parameters.

An endpoint declares ``Params`` as a frozen dataclass; each field has a type, a default and
``help`` metadata. :func:`build_params` turns a YAML mapping into an instance, rejecting unknown
keys and coercing values, with errors that carry the spec path (the idea of llm's ``Options``
without pydantic).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import types
import typing
from typing import Any, Literal

from .errors import SpecError, one_of, suggest

MONTH_DAYS = 365.25 / 12
MAX_DAYS = 36_525  # 100 years: the default ceiling of day counts and durations (pandas dates end in 2262)
MAX_MONTHS = 1_200
# Dates are analysed as datetime64[ns], which spans 1677-09-21 .. 2262-04-11: every date of a spec or
# a table must lie in this round range inside it (0001-01-01 or 9999-12-31 placeholders do not).
FIRST_DATE, LAST_DATE = dt.date(1678, 1, 1), dt.date(2261, 12, 31)
DATE_RANGE = f"between {FIRST_DATE} and {LAST_DATE}"


class OutOfRange(SpecError):
    """A value of the right type outside its bounds (reported as is, even inside a union)."""


def param(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - 'help' reads best here
    """A Params field with a default and help text (``field(metadata={'help': ...})``)."""
    meta = {"help": help, **extra}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Duration:
    """A length of time written as ``18 months``, ``2 years``, ``90 days`` or ``6 weeks``."""

    amount: float
    unit: str

    _PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(day|days|week|weeks|month|months|year|years)\s*$")

    @classmethod
    def parse(cls, text: str) -> Duration | None:
        match = cls._PATTERN.match(str(text))
        if not match:
            return None
        unit = match.group(2).rstrip("s") + "s"
        return cls(float(match.group(1)), unit)

    @property
    def days(self) -> int:
        """Whole days: N months = round(N x 365.25/12) days (docs/endpoints/README.md)."""
        factor = {"days": 1, "weeks": 7, "months": MONTH_DAYS, "years": 365.25}[self.unit]
        return int(round(self.amount * factor))

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount == int(self.amount) else self.amount
        return f"{amount} {self.unit}"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return one_of(typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    if tp is Duration:
        return "a duration such as '18 months'"
    if tp is dt.date:
        return "a date YYYY-MM-DD"
    if tp is type(None):
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any, path: str, field: dataclasses.Field | None = None) -> Any:
    """Convert a YAML value to ``tp`` or raise a :class:`SpecError` naming ``path``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if value == choice and type(value) is type(choice):
                return choice
        raise SpecError(path, f"expected {one_of(choices)}, got {value!r}{suggest(value, map(str, choices))}")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, path, field)
            except SpecError as err:
                errors.append(err)
        for err in errors:
            if isinstance(err, OutOfRange):  # the right kind of value, only too small or too large
                raise err
        raise SpecError(path, f"expected {_type_name(tp)}, got {value!r}{_suggest_union(value, tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise SpecError(path, f"expected null, got {value!r}")
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise SpecError(path, f"expected a mapping, got {value!r}")
        return {coerce(k, key_tp, path): coerce(v, value_tp, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise SpecError(path, f"expected a list, got {value!r}")
        return [coerce(v, inner, f"{path}[{i}]", field) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            _check_bounds(value, path, field)
            return value
        raise SpecError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            _check_bounds(value, path, field)
            return float(value)
        raise SpecError(path, f"expected a finite number, got {value!r}")
    if tp is str:
        if isinstance(value, str) and value.strip():
            return value
        raise SpecError(path, f"expected a non-empty string, got {value!r}")
    if tp is Duration:
        parsed = Duration.parse(value) if isinstance(value, str) else None
        if parsed is None or parsed.days <= 0:
            raise SpecError(path, f"expected a positive duration such as '18 months', got {value!r}")
        if parsed.days > MAX_DAYS:
            raise OutOfRange(path, f"expected a duration of at most 100 years, got {value!r}")
        return parsed
    if tp is dt.date:
        if isinstance(value, dt.datetime):
            value = value.date()
        if not isinstance(value, dt.date):
            try:
                value = dt.date.fromisoformat(str(value))
            except ValueError:
                raise SpecError(path, f"expected a date YYYY-MM-DD, got {value!r}") from None
        if not FIRST_DATE <= value <= LAST_DATE:
            raise OutOfRange(path, f"expected a date {DATE_RANGE}, got {value.isoformat()}")
        return value
    if tp in (dict, list):
        if isinstance(value, tp):
            return value
        raise SpecError(path, f"expected a {'mapping' if tp is dict else 'list'}, got {value!r}")
    if tp is Any:
        return value
    raise TypeError(f"unsupported parameter type {tp!r} at {path}")


def _suggest_union(value: Any, tp: Any) -> str:
    literals = [str(c) for a in typing.get_args(tp) if typing.get_origin(a) is Literal for c in typing.get_args(a)]
    return suggest(value, literals) if isinstance(value, str) else ""


def _default_max(name: str) -> int | None:
    """Counts of days or months are capped at 100 years unless the field says otherwise."""
    if name.endswith("_days"):
        return MAX_DAYS
    if name.endswith("_months"):
        return MAX_MONTHS
    return None


def _check_bounds(value: float, path: str, field: dataclasses.Field | None) -> None:
    """Numbers are >= 0 unless the field's metadata sets ``min`` (None = unbounded) or ``max``."""
    if field is None:
        return
    low = field.metadata.get("min", 0)
    high = field.metadata.get("max", _default_max(field.name))
    if low is not None and value < low:
        raise OutOfRange(path, f"expected a value >= {low}, got {value!r}")
    if high is not None and value > high:
        years = " (100 years)" if high in (MAX_DAYS, MAX_MONTHS) else ""
        raise OutOfRange(path, f"expected a value <= {high}{years}, got {value!r}")


def build_params(params_cls: type, raw: Any, path: str) -> Any:
    """Build a ``Params`` instance from a YAML mapping, validating every key and value."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(path, f"expected a mapping of parameters, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    hints = typing.get_type_hints(params_cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise SpecError(
                f"{path}.{key}",
                f"unknown parameter{suggest(key, fields)}; valid parameters: {', '.join(fields) or 'none'}",
            )
        values[key] = coerce(value, hints[key], f"{path}.{key}", fields[key])
    instance = params_cls(**values)
    check = getattr(instance, "check", None)
    if callable(check):
        check(path)
    return instance


def describe_params(params_cls: type) -> list[dict[str, Any]]:
    """Name, type, default and help of every parameter (for ``endpointkit plugins``)."""
    hints = typing.get_type_hints(params_cls)
    rows = []
    for f in dataclasses.fields(params_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append(
            {"name": f.name, "type": _type_name(hints[f.name]), "default": to_plain(default), "help": f.metadata.get("help", "")}
        )
    return rows


def to_plain(value: Any) -> Any:
    """JSON/YAML-friendly form of a parameter value (durations as their text)."""
    if isinstance(value, Duration | dt.date):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def params_dict(params: Any) -> dict[str, Any]:
    return {f.name: to_plain(getattr(params, f.name)) for f in dataclasses.fields(params)}
