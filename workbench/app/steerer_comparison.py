"""Steerers compared side by side: faithfulness to the prompt and training losses, one row each.

The table the training panel (:mod:`workbench.app.training_panel`) shows after each training.
:class:`FaithfulnessCache` measures with :func:`workbench.evaluation.faithfulness.faithfulness` at
the strengths of :func:`workbench.app.experiment.faithfulness_strengths` (the held-out triplets'
soft labels; Const-DiM at 1), and only what it has not measured yet; :func:`comparison_table` lays
its rows and the steerers' losses out as one row per method.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from workbench.app.experiment import PreparedData, faithfulness_strengths
from workbench.evaluation.faithfulness import faithfulness
from workbench.steering import Steerer, layers_label

__all__ = ["FaithfulnessCache", "comparison_table", "layers_text"]


def layers_text(layers: Sequence[int]) -> str:
    """``"layer 5"``, ``"layers 0-29"`` or ``"layers 3,7"``."""
    return ("layer " if len(layers) == 1 else "layers ") + layers_label(layers)


class FaithfulnessCache:
    """Faithfulness rows of steerers on prepared data's held-out triplets, each measured once.

    Rows are kept per ``(key, name)``, ``key`` naming the data (the panel uses the attribute); a
    name is measured again only when another steerer object takes it. The paraphrase reference
    is measured once per key, with the first steerers.
    """

    def __init__(self, model) -> None:
        self.model = model
        self._rows: dict[tuple[str, str], tuple[Steerer | None, pd.DataFrame]] = {}

    def measure(self, key: str, data: PreparedData, steerers: Mapping[str, Steerer]) -> pd.DataFrame:
        """Tidy ``method, layer, rel_rmse`` rows of ``steerers`` (then ``"paraphrase"``, when
        ``data`` has paraphrase pairs) at every layer."""
        missing = {n: s for n, s in steerers.items() if self._rows.get((key, n), (None,))[0] is not s}
        para = data.paraphrase_pairs if (key, "paraphrase") not in self._rows else None
        if missing or para:
            fresh = faithfulness(self.model, data.heldout_pairs,
                                 faithfulness_strengths(missing, data.heldout_labels), paraphrase=para)
            for name, rows in fresh.groupby("method", sort=False):
                if name != "no steering":
                    self._rows[(key, name)] = (missing.get(name), rows.reset_index(drop=True))
        keep = [*steerers, *(["paraphrase"] if (key, "paraphrase") in self._rows else [])]
        return pd.concat([self._rows[(key, n)][1] for n in keep], ignore_index=True)


def comparison_table(faith: pd.DataFrame, steerers: Mapping[str, Steerer], layers: Sequence[int],
                     histories: Mapping[str, Sequence[Mapping]] | None = None) -> pd.DataFrame:
    """One row per steerer, then the paraphrase when ``faith`` has it.

    Columns: ``method``, ``steers`` (its layers), ``training``, ``relRMSE L<layer>`` for each of
    ``layers`` (from ``faith``, tidy ``method, layer, rel_rmse``), ``final train loss`` (the last
    entry of ``histories[name]``, a ``[{step, train_loss, val_loss}]`` list; NaN without one) and
    ``best val loss`` (from the steerer's own training record; NaN without one).
    """
    histories = histories or {}
    rel = faith.pivot(index="method", columns="layer", values="rel_rmse")
    rows = []
    for name in [*steerers, *(["paraphrase"] if "paraphrase" in rel.index else [])]:
        steerer = steerers.get(name)
        history = histories.get(name) or []
        best = None if steerer is None else steerer.info.history.get("best_val_loss")
        rows.append({
            "method": name,
            "steers": "—" if steerer is None else layers_text(steerer.layers),
            "training": "—" if steerer is None else steerer.info.training,
            **{f"relRMSE L{l}": float(rel.at[name, l]) for l in layers},
            "final train loss": history[-1]["train_loss"] if history else float("nan"),
            "best val loss": float("nan") if best is None else float(best),
        })
    return pd.DataFrame(rows)
