"""Checks the figure functions share: a table has the columns it needs, and numbers where numbers go.

Each raises ``ValueError`` naming the figure (``what``), the column and what it found, so a wrong
table fails before plotly sees it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["numeric_column", "require_columns"]


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise ValueError unless ``df`` is a non-empty DataFrame with every one of ``columns``."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(map(repr, missing))}; "
                         f"got columns {list(map(str, df.columns))}")
    if df.empty:
        raise ValueError(f"{what}: the table is empty")


def numeric_column(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """``df[column]`` as floats (missing values become NaN); raise ValueError on a non-number."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & df[column].notna().to_numpy()
    if bad.any():
        raise ValueError(f"{what}: column {column!r} holds non-numeric value {df[column][bad].iloc[0]!r}")
    return values

