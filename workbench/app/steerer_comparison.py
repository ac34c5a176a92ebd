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

__all__ = ["FaithfulnessCache", "comparison_table", "layers_text", "loss_kind", "loss_per_layer_divisor"]

#: Column names of the loss columns of :func:`comparison_table` (losses per layer; see there).
FINAL_TRAIN_LOSS = "final train loss (per layer)"
BEST_VAL_LOSS = "best val loss (per layer)"


def loss_kind(steerer_or_method) -> str:
    """What a steerer's training loss measures: ``"NLL per token"`` (PSR-LL, trained on the
    likelihood of the prompt-steered answers) or ``"relative MSE"`` (every other method; 1 = no
    better than not steering). Takes a :class:`Steerer` or a trainer method id (``"psr-ll"``)."""
    method = steerer_or_method.info.method if isinstance(steerer_or_method, Steerer) else str(steerer_or_method)
    return "NLL per token" if method == "psr-ll" else "relative MSE"


def loss_per_layer_divisor(info) -> int:
    """What to divide a trainer's loss by to read it per layer: a layerwise fit of several layers
    sums its layers' losses (its number of layers); a joint fit averages them already (1).
    ``info`` is a ``SteererInfo`` (or None: 1)."""
    if info is None or getattr(info, "training", "layerwise") != "layerwise":
        return 1
    return max(1, len(getattr(info, "layers", ()) or ()))


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
    ``layers`` (from ``faith``, tidy ``method, layer, rel_rmse``), ``loss`` (its kind,
    :func:`loss_kind`), ``final train loss (per layer)`` (the last entry of ``histories[name]``, a
    ``[{step, train_loss, val_loss}]`` list already per layer; NaN without one) and ``best val
    loss (per layer)`` (the steerer's own training record divided by
    :func:`loss_per_layer_divisor`, so a 30-layer layerwise fit reads like a one-layer one; NaN
    without one).
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
            "loss": "—" if steerer is None or (best is None and not history) else loss_kind(steerer),
            FINAL_TRAIN_LOSS: history[-1]["train_loss"] if history else float("nan"),
            BEST_VAL_LOSS: float("nan") if best is None else float(best) / loss_per_layer_divisor(steerer.info),
        })
    return pd.DataFrame(rows)
