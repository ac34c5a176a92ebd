"""nbval settings for the notebooks (``make test`` runs them with ``--nbval``).

Figures, widgets and HTML are excluded from the comparison: their JSON carries random ids and
plotly's own serialisation, and what they show is tested through the library's functions
(tests/viz/, tests/app/test_widgets.py). Printed text (rounded numbers, tables, generated
answers) is compared; ``sanitize.cfg`` masks what may differ between runs (timings, addresses,
paths, device strings). stderr (progress bars, library warnings) is not compared.
"""

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
