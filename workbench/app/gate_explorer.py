"""The gate explorer, a notebook widget (ipywidgets glue only): a threshold slider over a gate's
scores that updates precision, recall and F1 and the score plot as it moves.

Drive it from code as a browser would: ``explorer.threshold.value = 0.1`` (the readout and the
figure follow at once); ``explorer.metrics`` holds the numbers, ``explorer.gate`` the gate at the
chosen threshold; display the object itself (or its ``.widget``).
"""

from __future__ import annotations

import math
from typing import Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd

from workbench.app.widget_base import Displayable, show_figure, status_html
from workbench.steering.gates import ActivationGate, precision_recall_f1
from workbench.viz.gates import gate_scores

__all__ = ["GateExplorer"]


class GateExplorer(Displayable):
    """A threshold slider over the scores of prompts the gate must flag and prompts it must not.

    Args:
        gate: the activation gate (its threshold and comparator are the starting point).
        positive, negative: the gate's scores of the two prompt kinds (e.g. from ``gate.score_texts``).
        kinds: names of the two kinds, for the figure.
        questions: optional ``(positive questions, negative questions)`` for the figure's hover.

    Attributes: the widgets ``threshold`` (FloatSlider), ``comparator`` (ToggleButtons), ``readout``
    (HTML), ``plot`` (Output); ``metrics`` (``{"precision", "recall", "f1", "flagged", "n"}``),
    ``figure`` (the current plotly figure), ``gate`` (the gate at the current threshold), ``widget``.
    """

    def __init__(self, gate: ActivationGate, positive: Sequence[float], negative: Sequence[float], *,
                 kinds: tuple[str, str] = ("flag", "leave alone"),
                 questions: tuple[Sequence[str], Sequence[str]] | None = None) -> None:
        if not isinstance(gate, ActivationGate):
            raise ValueError(f"gate must be an ActivationGate, got {type(gate).__name__}")
        pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
        if pos.ndim != 1 or neg.ndim != 1 or not pos.size or not neg.size:
            raise ValueError("positive and negative must each hold at least one score")
        if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
            raise ValueError("scores must be finite numbers")
        self._gate = gate
        self.scores = pd.DataFrame({"score": np.r_[pos, neg], "kind": [kinds[0]] * pos.size + [kinds[1]] * neg.size})
        if questions is not None:
            self.scores["question"] = list(questions[0]) + list(questions[1])
        self.truth = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
        lo, hi = float(min(pos.min(), neg.min(), gate.threshold)), float(max(pos.max(), neg.max(), gate.threshold))
        step = 10 ** math.floor(math.log10(max(hi - lo, 1e-6) / 200))
        self.threshold = widgets.FloatSlider(value=gate.threshold, min=lo - step, max=hi + step, step=step,
                                             readout_format=".4f", description="threshold",
                                             continuous_update=True, layout=widgets.Layout(width="520px"))
        self.comparator = widgets.ToggleButtons(options=[">", "<"], value=gate.comparator, description="flag when")
        self.readout = widgets.HTML()
        self.plot = widgets.Output()
        self.metrics: dict = {}
        self.figure = None
        self.threshold.observe(lambda change: self.update(), names="value")
        self.comparator.observe(lambda change: self.update(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.threshold, self.comparator]), self.readout, self.plot])
        self.update()

    @property
    def gate(self) -> ActivationGate:
        """The gate at the slider's threshold and comparator."""
        return self._gate.with_threshold(self.threshold.value, self.comparator.value)

    def update(self) -> dict:
        """Recompute the metrics and the figure for the current threshold; returns the metrics."""
        t, comparator = float(self.threshold.value), self.comparator.value
        values = self.scores["score"].to_numpy()
        flags = values > t if comparator == ">" else values < t
        precision, recall, f1 = precision_recall_f1(flags, self.truth)
        self.metrics = {"precision": precision, "recall": recall, "f1": f1, "flagged": int(flags.sum()),
                        "n": int(flags.size), "threshold": t, "comparator": comparator}
        kind = "ok" if f1 >= 0.9 else "warning" if f1 >= 0.6 else "error"
        self.readout.value = status_html(
            f"score {comparator} {t:.4f}: precision {precision:.2f}, recall {recall:.2f}, F1 {f1:.2f} "
            f"({flags.sum()} of {flags.size} prompts flagged)", kind)
        self.figure = gate_scores(self.scores, t, comparator)
        show_figure(self.plot, self.figure)
        return self.metrics
