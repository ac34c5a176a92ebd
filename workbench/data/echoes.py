"""The verdict on each sample of a triplet run: kept, or why not (empty, attribute, coherence, echo).

A sample is kept when it is not empty, both judges score it at least the run's threshold, and it
does not echo its instruction (:class:`workbench.judges.echo.EchoFilter`). The verdicts are worked
out from what the table stores (scores, instruction, response), so a stored run, one written before
the echo filter included, is judged again by the filter of the call that reads it.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"instruction": ["You are a pirate. Say arr and matey."] * 3,
    ...                       "response": ["Arr, matey! Paris.", "You are a pirate. Say arr and matey.", ""],
    ...                       "attr_score": [100.0, 100.0, None], "coh_score": [90.0, 90.0, 0.0]})
    >>> mark_verdicts(table, EchoFilter(), 50.0)[["kept", "echo", "rejected"]].values.tolist()
    [[True, False, ''], [False, True, 'echo'], [False, False, 'empty']]
"""

from __future__ import annotations

import pandas as pd

from workbench.judges.base import success
from workbench.judges.echo import EchoFilter

__all__ = ["REJECTIONS", "VERDICTS", "mark_verdicts", "rejection"]

#: Why a sample is not kept, in the order they are tested (the first that applies is recorded).
REJECTIONS = ("empty", "attribute", "coherence", "echo")
#: The table columns the verdict sets.
VERDICTS = ("kept", "echo", "rejected")


def rejection(attr: float | None, coh: float | None, text: str, echo: bool, threshold: float) -> str:
    """Why a sample is not kept (``""`` when it is): the first of :data:`REJECTIONS` that applies."""
    if not text:
        return "empty"
    if attr is None or attr != attr or attr < threshold:
        return "attribute"
    if not success(attr, coh, threshold):
        return "coherence"
    return "echo" if echo else ""


def mark_verdicts(table: pd.DataFrame, echoes: EchoFilter | None, threshold: float) -> pd.DataFrame:
    """A copy of ``table`` with ``echo``, ``rejected`` and ``kept`` worked out from each row's scores
    and texts (``echoes=None``: no echo filter)."""
    table = table.copy()
    echo = [echoes is not None and bool(r) and echoes.is_echo(i, r) for i, r in zip(table["instruction"], table["response"])]
    table["echo"] = pd.Series(echo, index=table.index, dtype=bool)
    table["rejected"] = [rejection(a, c, r, e, threshold)
                         for a, c, r, e in zip(table["attr_score"], table["coh_score"], table["response"], echo)]
    table["kept"] = table["rejected"] == ""
    return table
