"""nbval settings for the notebooks (``make test`` runs them with ``--nbval``).

Figures, widgets and HTML are excluded from the comparison: their JSON carries random ids and
plotly's own serialisation, and what they show is tested through the library's functions
(tests/viz/, tests/app/test_widgets.py). Printed text (rounded numbers, tables, generated
answers) is compared; ``sanitize.cfg`` masks what may differ between runs (timings, addresses,
paths, device strings). stderr (progress bars, library warnings) is not compared.

Numbers are compared within one unit of their last printed digit
(:func:`workbench.viz.printed_numbers.printed_numbers_match`): a CPU whose kernels sum floats in
another order may print ``82.2`` where the stored run printed ``82.1``. Every word, label and
integer must still match exactly. Before nbval's own comparison, each rerun text that matches its
stored text in that sense (after sanitizing both) is replaced by the stored text, so nbval's diff
shows only real differences.
"""

from __future__ import annotations

import copy

from nbval.plugin import IPyNbCell

from workbench.viz.printed_numbers import printed_numbers_match

SKIP_COMPARE = (
    "text/html",
    "application/vnd.plotly.v1+json",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
    "application/javascript",
    "image/png",
    "image/svg+xml",
    "stderr",
)


def pytest_collectstart(collector):
    if getattr(collector, "skip_compare", None) is not None:
        collector.skip_compare = tuple(collector.skip_compare) + SKIP_COMPARE


def _aligned(test: list, reference: list, sanitize) -> list:
    """``test`` with every text that matches its stored counterpart up to printed precision
    replaced by the stored text (outputs paired by position, as nbval pairs them)."""
    if len(test) != len(reference):
        return test
    out = []
    for new, old in zip(test, reference):
        if new.get("output_type") != old.get("output_type") or new.get("name") != old.get("name"):
            out.append(new)
            continue
        new = copy.deepcopy(new)
        if isinstance(new.get("text"), str) and isinstance(old.get("text"), str):
            if printed_numbers_match(sanitize(old["text"]), sanitize(new["text"])):
                new["text"] = old["text"]
        for mime, value in (new.get("data") or {}).items():
            stored = (old.get("data") or {}).get(mime)
            if isinstance(value, str) and isinstance(stored, str) and printed_numbers_match(sanitize(stored), sanitize(value)):
                new["data"][mime] = stored
        out.append(new)
    return out


def _compare_within_printed_precision(cell: IPyNbCell):
    def compare_outputs(test, ref, skip_compare=None):
        return IPyNbCell.compare_outputs(cell, _aligned(test, ref, cell.sanitize), ref, skip_compare)
    return compare_outputs


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, IPyNbCell):
            item.compare_outputs = _compare_within_printed_precision(item)
