"""Antibody titer parsing: ``1:480``, ``480``, ``negative``, ``neg``, ``<1:10`` (no dilution grid assumed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

_POSITIVE = r"^(?:1\s*:\s*)?(\d+(?:\.\d+)?)$"
_NEGATIVE = r"^(?:negative|neg|<\s*(?:1\s*:\s*)?\d+(?:\.\d+)?)$"


def parse_titers(text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(reciprocal value, is_negative, is_valid) for each titer string.

    Positives keep their reciprocal exactly (``1:480`` -> 480.0); negatives get value 0.
    """
    clean = text.astype("string").str.strip().str.lower()
    number = pd.to_numeric(clean.str.extract(_POSITIVE, expand=False), errors="coerce")
    negative = clean.str.match(_NEGATIVE).fillna(False).astype(bool)
    positive = number.notna() & (number > 0)
    value = pd.Series(np.where(negative, 0.0, number.astype(float)), index=text.index)
    valid = positive | negative
    return value.where(valid), negative, valid
