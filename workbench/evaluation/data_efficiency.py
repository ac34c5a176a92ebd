"""Data efficiency: TA@C of each method trained on 8, 16, 32 and all kept triplets.

Every method is trained on nested subsets of the same kept triplets (the first ``n`` of one
seeded permutation: the 8 are among the 16; :func:`workbench.app.experiment.subset_data`), with the
same seeds and settings, and compared at equal coherence on the same validation and test
questions (:func:`workbench.evaluation.comparison.compare_methods`). :func:`efficiency_table`
gathers the per-size TA@C tables into one tidy table with the bootstrap intervals and ``n`` of the
test answers; the prompt needs no triplets, so its row is the same at every size (its reference
line), and ``no steering`` is the floor.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.evaluation.statistics import NOT_MEASURED, NOT_SEPARABLE

EFFICIENCY_COLUMNS = ["method", "n_train", "all", "target", "alpha", "reached", "attribute", "attribute_lo",
                      "attribute_hi", "coherence", "n", "n_missing"]


def subset_sizes(n_kept: int, sizes: Sequence[int | None] = (8, 16, 32, None)) -> list[int]:
    """The training-set sizes to run: each requested size below ``n_kept`` and ``n_kept`` itself
    (``None`` = all), sorted and distinct. A size above ``n_kept`` is left out (it would be "all").

    Example:
        >>> subset_sizes(26)
        [8, 16, 26]
    """
    if isinstance(n_kept, bool) or not isinstance(n_kept, int) or n_kept < 1:
        raise ValueError(f"no kept triplets to train on (n_kept={n_kept!r})")
    out = set()
    for size in sizes:
        if size is None:
            out.add(n_kept)
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"a training-set size is an integer >= 1 or None (all), got {size!r}")
        if size <= n_kept:
            out.add(size)
    if not out:
        raise ValueError(f"none of the sizes {list(sizes)} fits the {n_kept} kept triplets")
    return sorted(out)


def efficiency_table(results: Mapping[int, pd.DataFrame], n_kept: int, target: str = "C80") -> pd.DataFrame:
    """One row per method and training-set size: TA at ``target`` with its interval.

    Args:
        results: ``{n_train: Comparison.results}`` (the TA@C table of a run trained on ``n_train``
            kept triplets).
        n_kept: how many triplets "all" is (the row of that size gets ``all = True``).
        target: the coherence target's label (``"C80"``).
    Returns:
        Columns :data:`EFFICIENCY_COLUMNS`, sorted by method then size.
    """
    if not results:
        raise ValueError("no results to gather: give {n_train: Comparison.results}")
    frames = []
    for size, table in sorted(results.items()):
        missing = [c for c in ("method", "target", "attribute", "attribute_lo", "attribute_hi") if c not in table]
        if missing:
            raise ValueError(f"the results of size {size} lack columns {missing}; pass Comparison.results")
        rows = table[table["target"] == target]
        if rows.empty:
            raise ValueError(f"the results of size {size} have no target {target!r}; they have "
                             f"{sorted(set(table['target']))}")
        frames.append(rows.assign(n_train=int(size), all=int(size) == int(n_kept)))
    out = pd.concat(frames, ignore_index=True)
    for column in EFFICIENCY_COLUMNS:
        if column not in out:
            out[column] = np.nan
    return out[EFFICIENCY_COLUMNS].sort_values(["method", "n_train"], kind="stable").reset_index(drop=True)


def efficiency_pivot(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """``method x n_train`` cells reading ``"TA [lo, hi]"`` (for printing)."""
    cells = table.assign(cell=[f"{a:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if pd.notna(a) else "n/a"
                               for a, lo, hi in zip(table["attribute"], table["attribute_lo"], table["attribute_hi"])])
    return cells.pivot(index="method", columns="n_train", values="cell")


def differences_pivot(differences: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """``contrast x n_train`` cells reading ``"d [lo, hi]"`` from paired differences (the columns of
    :meth:`workbench.evaluation.comparison.Comparison.differences` plus ``n_train``), with ``" *"``
    where the interval excludes 0 (a difference that is called)."""
    if differences.empty:
        return pd.DataFrame()
    called = ~differences["verdict"].isin([NOT_SEPARABLE, NOT_MEASURED])
    cells = differences.assign(
        contrast=differences["a"] + " - " + differences["b"],
        cell=[f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{' *' if c else ''}" if pd.notna(d) else "n/a"
              for d, lo, hi, c in zip(differences["difference"], differences["lo"], differences["hi"], called)])
    order = list(dict.fromkeys(cells["contrast"]))
    return cells.pivot(index="contrast", columns="n_train", values="cell").loc[order]
