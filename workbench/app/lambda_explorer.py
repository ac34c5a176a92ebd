"""The lambda explorer ("Lambda over generated text"), a notebook widget (ipywidgets glue only).

For one question it shows (a) the answer generated under a steerer with its per-token ``lambda``
and (b) the prompt-steered answer with its per-token ``||Delta_PS||``, as token heat maps
(:func:`workbench.viz.token_maps.token_heatmap`) at the chosen layers. Drive it from code as a
browser would: ``explorer.alpha.value = 2.0``, ``explorer.refresh()``; display the object itself
(or its ``.widget``).

The lambda colour scale is fixed once, at the first generation (0 to the largest lambda then,
rounded up; or ``lambda_range=``), and kept for every later alpha and question, so colours compare
across alpha; a lambda above it takes the top colour (the colour bar says so).
"""

from __future__ import annotations

import html
import math
from typing import Any, Callable, Sequence

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from workbench.activations.deltas import pair_magnitudes
from workbench.app.widget_base import Displayable, show_figure, status_html
from workbench.core.chat import AlignedPair, align
from workbench.core.generation import Generation, SamplingConfig, generate_answers
from workbench.steering import Steerer, check_alpha
from workbench.steering.lambda_tables import generation_lambda_table
from workbench.viz.figures import shown_layers
from workbench.viz.token_maps import token_heatmap

__all__ = ["LambdaExplorer"]


class LambdaExplorer(Displayable):
    """Per-token lambda of a steered answer beside per-token Delta_PS of the prompted answer.

    Args:
        model: the model the steerer was trained on (checked).
        steerer: a trained :class:`~workbench.steering.Steerer`.
        questions: the questions to choose from (non-empty strings).
        instruction: the steering instruction of the prompt-steered side (``x'``).
        alpha: the steering strength (slider 0..4 in steps of 0.25).
        max_new_tokens: length of both (greedy) answers.
        layers: layers to draw (default: the steerer's, or 4 spread ones for an all-layer one).
        auto: re-generate as soon as the question or alpha changes (else on the Generate button).
        delta_kind: ``"acc"`` (accumulated Delta_PS, default) or ``"loc"`` (what each layer adds).
        placement: where the instruction goes (``"system"`` or ``"user"``).
        lambda_range: ``(low, high)`` of the lambda colour scale, the same for every alpha
            (default: fixed at the first generation, see the module docstring).

    Attributes: the widgets ``question``, ``alpha``, ``layers``, ``component`` (rank > 1),
    ``auto``, ``generate_button``, ``status``, ``steered_text`` / ``steered_plot`` (answer (a)),
    ``prompted_text`` / ``prompted_plot`` (answer (b)); after :meth:`refresh`: ``steered`` and
    ``prompted`` (:class:`~workbench.core.generation.Generation`), ``pair`` (the prompted answer aligned),
    ``lambda_table`` (every steerer layer and component), ``delta_table`` (every steerer layer),
    ``figures`` (``{"lambda": Figure, "delta": Figure}``), ``lambda_range`` (the fixed colour
    scale), ``layers_shown`` (HTML naming the selected layers, which a long list may scroll out
    of view), ``widget``.
    """

    def __init__(self, model, steerer: Steerer, questions: Sequence[str], instruction: str, alpha: float = 1.0,
                 max_new_tokens: int = 40, layers: Sequence[int] | None = None, *, auto: bool = False,
                 delta_kind: str = "acc", placement: str = "system",
                 lambda_range: tuple[float, float] | None = None) -> None:
        if not isinstance(steerer, Steerer):
            raise ValueError(f"steerer must be a workbench.steering.Steerer, got {type(steerer).__name__}")
        steerer.check_model(model)
        if isinstance(questions, str):
            raise ValueError(f"questions must be a list of strings, got the single string {questions!r}")
        questions = list(questions)
        if not questions:
            raise ValueError("questions is empty: give at least one question")
        bad = [q for q in questions if not isinstance(q, str) or not q.strip()]
        if bad:
            raise ValueError(f"question {bad[0]!r} is not a non-empty string")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        alpha = check_alpha(alpha)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if delta_kind not in ("acc", "loc"):
            raise ValueError(f"delta_kind must be 'acc' or 'loc', got {delta_kind!r}")
        default = shown_layers(steerer.layers, 4)
        layers = default if layers is None else [int(l) for l in layers]
        for layer in layers:
            if layer not in steerer.layers:
                raise ValueError(f"layer {layer} is not steered by {steerer.name}, which steers layers "
                                 f"{list(steerer.layers)}")
        if not layers:
            raise ValueError("layers is empty: choose at least one of the steerer's layers")
        if lambda_range is not None:
            lo, hi = (float(x) for x in lambda_range)
            if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
                raise ValueError(f"lambda_range must be (low, high) with low < high, got {lambda_range!r}")
            lambda_range = (lo, hi)
        self.lambda_range: tuple[float, float] | None = lambda_range
        self.model, self.steerer, self.instruction = model, steerer, instruction
        self.max_new_tokens, self.delta_kind, self.placement = max_new_tokens, delta_kind, placement
        self.config = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0)

        self.steered: Generation | None = None
        self.prompted: Generation | None = None
        self.pair: AlignedPair | None = None
        self.lambda_table: pd.DataFrame | None = None
        self.delta_table: pd.DataFrame | None = None
        self.figures: dict[str, go.Figure] = {}
        self._generated_alpha = alpha
        self._prompted_cache: dict[str, tuple[Generation, AlignedPair, pd.DataFrame]] = {}

        style = {"description_width": "70px"}
        self.question = widgets.Dropdown(options=list(dict.fromkeys(questions)), description="question", style=style,
                                         layout=widgets.Layout(width="520px"))
        self.alpha = widgets.FloatSlider(value=alpha, min=min(0.0, alpha), max=max(4.0, alpha), step=0.25,
                                         description="alpha", style=style, continuous_update=False)
        self.layers = widgets.SelectMultiple(options=list(steerer.layers), value=tuple(sorted(set(layers))),
                                             rows=min(10, len(steerer.layers)), description="layers", style=style)
        self.layers_shown = widgets.HTML()
        self.component = widgets.Dropdown(options=list(range(steerer.rank)), value=0, description="component",
                                          style=style, layout=widgets.Layout(
                                              width="160px", display=None if steerer.rank > 1 else "none"))
        self.auto = widgets.Checkbox(value=auto, description="re-generate on change", indent=False)
        self.generate_button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.status = widgets.HTML(status_html("press Generate"))
        self.steered_text, self.steered_plot = widgets.HTML(), widgets.Output()
        self.prompted_text, self.prompted_plot = widgets.HTML(), widgets.Output()

        self.question.observe(self._on_input, names="value")
        self.alpha.observe(self._on_input, names="value")
        self.layers.observe(self._on_view, names="value")
        self.layers.observe(self._show_selection, names="value")
        self._show_selection()
        self.component.observe(self._on_view, names="value")
        self.generate_button.on_click(lambda _: self._guarded(self.refresh))
        self.widget = widgets.VBox([
            self.question, widgets.HBox([self.alpha, self.component, self.auto, self.generate_button]),
            widgets.HBox([self.layers, self.layers_shown]), self.status, self.steered_text, self.steered_plot, self.prompted_text, self.prompted_plot,
        ])

    # -- generation ----------------------------------------------------------------------------

    def refresh(self) -> "LambdaExplorer":
        """Generate (a) the steered answer and (b) the prompted one (cached per question) for the
        current question and alpha, read lambda and Delta_PS, and redraw. Synchronous."""
        question = self.question.value
        alpha = check_alpha(self.alpha.value)
        self._selected_layers()
        self._set_status(f"generating at alpha {alpha:g} ...")
        self.steered = generate_answers(self.model, [question], steerers=[(self.steerer, alpha)], config=self.config,
                                        progress=False)[0]
        self.lambda_table = generation_lambda_table(self.steered, self.model.tokenizer, layers=self.steerer.layers)
        if self.lambda_range is None:  # fixed once, so that colours compare across alpha
            self.lambda_range = (0.0, _nice_ceiling(float(self.lambda_table["lambda"].max())))
        self._generated_alpha = alpha
        self.prompted, self.pair, self.delta_table = self._prompted_side(question)
        self._redraw()
        self._set_status(f"alpha {alpha:g}: steered answer {len(self.steered.ids)} tokens, prompted answer "
                         f"{len(self.prompted.ids)} tokens", "ok")
        return self

    def _prompted_side(self, question: str) -> tuple[Generation, AlignedPair, pd.DataFrame]:
        """The prompt-steered answer, its aligned pair and its Delta_PS table (cached: no alpha in it)."""
        if question not in self._prompted_cache:
            answer = generate_answers(self.model, [question], instruction=self.instruction, config=self.config,
                                      placement=self.placement, progress=False)[0]
            pair = align(self.model.tokenizer, question, self.instruction, answer.ids, placement=self.placement,
                         max_len=self.model.n_ctx)
            table = pair_magnitudes(self.model, [pair], layers=list(self.steerer.layers), kind=self.delta_kind)
            self._prompted_cache[question] = (answer, pair, table)
        return self._prompted_cache[question]

    # -- views ---------------------------------------------------------------------------------

    def _selected_layers(self) -> list[int]:
        layers = sorted(self.layers.value)
        if not layers:
            raise ValueError("no layer selected: choose at least one of the steerer's layers")
        return layers

    def _redraw(self) -> None:
        """Heat maps of the current tables at the selected layers (no model call)."""
        if self.lambda_table is None or self.delta_table is None:
            return
        layers = self._selected_layers()
        name = html.escape(self.steerer.name)
        lam = self.lambda_table[self.lambda_table["component"] == self.component.value]
        part = f", component {self.component.value}" if self.steerer.rank > 1 else ""
        self.figures = {
            "lambda": token_heatmap(lam, value="lambda", layers=layers, scale="linear", zrange=self.lambda_range,
                                    title=f"(a) lambda of {name} at alpha {self._generated_alpha:g}{part} "
                                          f"(colour scale fixed for every alpha)"),
            "delta": token_heatmap(self.delta_table, value="norm", layers=layers, scale="log", per_layer=True,
                                   title=f"(b) ||Delta_PS|| ({self.delta_kind}) of the prompted answer"),
        }
        self.steered_text.value = self._answer_html("steered", self.steered)
        self.prompted_text.value = self._answer_html("prompted", self.prompted)
        show_figure(self.steered_plot, self.figures["lambda"])
        show_figure(self.prompted_plot, self.figures["delta"])

    def _answer_html(self, which: str, answer: Generation) -> str:
        if which == "steered":
            head = f"(a) steered by {self.steerer.name} at alpha {self._generated_alpha:g}"
        else:
            head = f"(b) prompted with: {self.instruction}"
        return f"<b>{html.escape(head)}</b><br><i>{html.escape(answer.text) or '(empty)'}</i>"

    def _on_input(self, change) -> None:
        if self.auto.value:
            self._guarded(self.refresh)
        elif self.steered is not None:
            self._set_status("question or alpha changed: press Generate", "warning")

    def _show_selection(self, change=None) -> None:
        chosen = sorted(self.layers.value)
        text = ", ".join(f"L{l}" for l in chosen) if chosen else "none"
        self.layers_shown.value = (f'<div style="padding-left:1em">drawn: <b>{text}</b><br>'
                                   '<span style="color:#666">Ctrl/Shift-click to choose several</span></div>')

    def _on_view(self, change) -> None:
        self._guarded(self._redraw)

    def _guarded(self, action: Callable[[], Any]) -> None:
        """Run a widget callback; an error goes to the status line instead of the void."""
        try:
            action()
        except Exception as err:  # noqa: BLE001 - shown to the user
            self._set_status(f"error: {type(err).__name__}: {err}", "error")

    def _set_status(self, text: str, kind: str = "info") -> None:
        self.status.value = status_html(text, kind)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 (times a power of ten) that is >= ``value``; 1 for <= 0."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for mantissa in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        candidate = float(f"{mantissa * 10.0 ** exponent:.6g}")
        if candidate >= value:
            return candidate
    return 10.0 ** (exponent + 1)
