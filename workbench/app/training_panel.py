"""The training panel ("Train probes interactively"), a notebook widget (ipywidgets glue only).

Choose an attribute, a method (Const-DiM, Const-MSE, PSR-MSE, PSR-LL), one layer or every layer,
the rank and the training, press Train; the loss curve draws live, Stop ends training after the
current step, and the new steerer is then compared with the ones given as ``others`` and every one
trained earlier in the panel (faithfulness on the held-out triplets, final training and best
validation loss: :mod:`workbench.app.steerer_comparison`).
Steerers are named by :func:`workbench.steering.names.method_name`, like everywhere else, and a
one-layer run adds its layer (``"S-PSR L10"``), so that runs at different layers are kept apart
and never confused with the experiment's steerer of the same method (``others``).

Drive it from code as a browser would: ``panel.method.value = "PSR-MSE"``,
``panel.train(blocking=True)``; display the object itself (or its ``.widget``). The live loss
curve is a ``plotly.graph_objects.FigureWidget`` (anywidget in JupyterLab 4; its script ships with
plotly, so no network is needed); the faithfulness curves are a plain figure in an Output.

Threads: the Train button trains in a background thread so that JupyterLab can deliver the Stop
click meanwhile; do not use the same model in other cells while it runs (training through the
model hooks it). ``panel.wait()`` joins the thread. While a run is under way the Train button is
disabled; preparing (loading the data, recording the prompt-steered targets, the layerwise fit a
joint training starts from) reports its progress every second and Stop interrupts it.

Losses are shown per layer: a layerwise all-layer fit sums its layers' relative MSEs, which the
panel divides by the number of layers, so one-layer and all-layer runs read on one scale; PSR-LL's
negative log-likelihood per token is another quantity and gets its own panel and column label.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from workbench.app.experiment import PreparedData
from workbench.app.steerer_comparison import FaithfulnessCache, comparison_table, loss_kind, loss_per_layer_divisor
from workbench.app.widget_base import Displayable, show_figure, status_html
from workbench.steering import Steerer, TrainConfig, TrainProgress, make_trainer
from workbench.steering.names import method_name
from workbench.viz.curves import faithfulness_curves, log_ticks, loss_curves
from workbench.viz.figures import shown_layers
from workbench.viz.theme import TEMPLATE, method_color

__all__ = ["METHOD_LABELS", "TrainChoice", "TrainingPanel"]

#: Method dropdown labels and the :func:`workbench.steering.make_trainer` method each stands for.
METHOD_LABELS: dict[str, str] = {"Const-DiM": "const-dim", "Const-MSE": "const-mse", "PSR-MSE": "psr-mse",
                                 "PSR-LL": "psr-ll"}
_SCOPE_OPTIONS = [("one layer", "single"), ("every layer", "all")]
_TRAINING_OPTIONS = [("layerwise (MSE on stored deltas)", "layerwise"), ("joint (through the model)", "joint")]
#: Trainings that a method allows only one of (the training dropdown is then fixed and disabled).
_FIXED_TRAINING = {"psr-ll": "joint", "const-dim": "layerwise"}
MAX_RANK = 8


@dataclass(frozen=True)
class TrainChoice:
    """What the panel's controls ask for, validated.

    Attributes:
        attribute: the attribute whose data trains the steerer.
        name: the run's name: the method's name, plus `` L<layer>`` for one layer (e.g.
            ``"S-PSR r2 L10"``, ``"A-PSR (joint)"``); the panel keys its runs by it.
        method_name: the method's name alone (``"S-PSR r2"``), as tables and legends write it.
        method: ``"const-dim"``, ``"const-mse"``, ``"psr-mse"`` or ``"psr-ll"``.
        layers: an int (one layer) or ``None`` (every layer), as :func:`make_trainer` takes them.
        rank, training, steps: as :func:`make_trainer` and :class:`TrainConfig` take them.
    """

    attribute: str
    name: str
    method_name: str
    method: str
    layers: int | None
    rank: int
    training: str
    steps: int


class _Interrupted(Exception):
    """Raised inside a model pass when Stop is pressed while the panel prepares a run."""


class TrainingPanel(Displayable):
    """Train one steerer at a time, watch its loss, stop it, and compare it with others.

    Args:
        model: the :class:`~workbench.core.models.LoadedModel` to train on.
        data: a :class:`~workbench.app.experiment.PreparedData`; or ``{attribute name: PreparedData}``;
            or a callable ``name -> PreparedData`` (prepared on first use) with ``attributes=``.
        others: already trained steerers to compare with, ``{name: Steerer}``; each is compared
            on the attribute it was trained for (``steerer.info.attribute``; any, when unknown).
        config: the training configuration; the Steps box sets ``steps``.
        attributes: attribute names for the dropdown (required with a callable ``data``).
        plot_every: redraw the loss curve every this many steps (and at every validation, and
            whenever ``redraw_seconds`` have passed since the last redraw).
        redraw_seconds: the longest the curve and status go without a redraw during training.
        min_redraw_seconds: the shortest time between two redraws (fast steps would otherwise
            flood the browser with figures); 0 draws every step.

    Attributes (widgets): ``attribute``, ``method``, ``scope``, ``layer``, ``rank``, ``training``,
    ``steps``, ``train_button``, ``stop_button``, ``status``, ``notice`` (a warning that stays until
    the run ends, e.g. "already training"), ``placeholder`` (shown until the first loss point),
    ``curve_plot`` (Output showing ``figure``: train loss line, validation loss markers),
    ``results`` (HTML: the comparison table; marked stale while a new one is measured),
    ``results_plot`` (Output: faithfulness curves after an all-layer steerer).

    Attributes (state): ``history`` (``[{step, train_loss, val_loss}]`` of the last run, per layer),
    ``steerer`` (its result), ``trained`` (``{run name: Steerer}`` trained in the panel for the
    current attribute; a new run of the same name, i.e. same method and layer, replaces the old
    one), ``comparison`` (one row per compared method), ``faithfulness`` (tidy ``method, layer,
    rel_rmse``), ``error`` (the last exception), ``step_callbacks`` (extra ``fn(TrainProgress)``
    called every step after the redraw; returning True stops training), ``redraws`` (how many
    times the curve was drawn in the last run).
    """

    def __init__(
        self,
        model,
        data: PreparedData | Mapping[str, PreparedData] | Callable[[str], PreparedData],
        others: Mapping[str, Steerer] | None = None,
        config: TrainConfig = TrainConfig(),
        *,
        attributes: Sequence[str] | None = None,
        plot_every: int = 1,
        redraw_seconds: float = 2.0,
        min_redraw_seconds: float = 0.25,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a workbench.steering.TrainConfig, got {type(config).__name__}")
        if isinstance(plot_every, bool) or not isinstance(plot_every, int) or plot_every < 1:
            raise ValueError(f"plot_every must be an integer >= 1, got {plot_every!r}")
        if not isinstance(redraw_seconds, (int, float)) or isinstance(redraw_seconds, bool) or redraw_seconds <= 0:
            raise ValueError(f"redraw_seconds must be a number > 0, got {redraw_seconds!r}")
        if not isinstance(min_redraw_seconds, (int, float)) or isinstance(min_redraw_seconds, bool) \
                or not 0 <= min_redraw_seconds <= redraw_seconds:
            raise ValueError(f"min_redraw_seconds must be a number in [0, redraw_seconds], got {min_redraw_seconds!r}")
        self.model, self.config, self.plot_every, self.redraw_seconds = model, config, plot_every, float(redraw_seconds)
        self.min_redraw_seconds = float(min_redraw_seconds)
        self._loader, names = self._data_source(data, attributes)
        self._data: dict[str, PreparedData] = {}
        self.others: dict[str, Steerer] = {}
        for name, steerer in (others or {}).items():
            if not isinstance(steerer, Steerer):
                raise ValueError(f"others[{name!r}] is a {type(steerer).__name__}, not a Steerer")
            try:
                steerer.check_model(model)
            except ValueError as err:
                raise ValueError(f"others[{name!r}]: {err}") from None
            self.others[str(name)] = steerer
        self._trained: dict[str, dict[str, Steerer]] = {n: {} for n in names}
        self._histories: dict[tuple[str, Steerer], list[dict]] = {}  # loss history of each panel steerer
        self._faithfulness = FaithfulnessCache(model)

        self.history: list[dict] = []
        self.steerer: Steerer | None = None
        self.trainer = None
        self.comparison: pd.DataFrame | None = None
        self.faithfulness: pd.DataFrame | None = None
        self.faithfulness_figure: go.Figure | None = None
        self.error: BaseException | None = None
        self.step_callbacks: list[Callable[[TrainProgress], bool | None]] = []
        self.redraws = 0
        self._lock = threading.Lock()
        self._running: str | None = None  # the name being trained, or None
        self._stop_requested = False
        self._thread: threading.Thread | None = None
        self._run_name = ""
        self._run_steps = 0
        self._divisor = 1
        self._last_draw = 0.0
        self._preparing: str | None = None  # what the preparation is doing now (for the ticker)
        self._model_passes = 0

        style, wide = {"description_width": "80px"}, widgets.Layout(width="340px")
        self.attribute = widgets.Dropdown(options=list(names), description="attribute", style=style, layout=wide)
        self.method = widgets.Dropdown(options=list(METHOD_LABELS), value="PSR-MSE", description="method",
                                       style=style, layout=wide)
        self.scope = widgets.ToggleButtons(options=_SCOPE_OPTIONS, value="single", description="scope", style=style)
        self.layer = widgets.IntSlider(value=model.n_layers // 2, min=0, max=model.n_layers - 1, description="layer",
                                       style=style, layout=wide, continuous_update=False)
        self.rank = widgets.IntSlider(value=1, min=1, max=MAX_RANK, description="rank", style=style, layout=wide,
                                      continuous_update=False)
        self.training = widgets.Dropdown(options=_TRAINING_OPTIONS, value="layerwise", description="training",
                                         style=style, layout=wide)
        self.steps = widgets.IntText(value=config.steps, description="steps", style=style,
                                     layout=widgets.Layout(width="200px"))
        self.train_button = widgets.Button(description="Train", button_style="primary", icon="play")
        self.stop_button = widgets.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.preview = widgets.HTML()
        self.status = widgets.HTML(status_html("ready"))
        self.notice = widgets.HTML()
        self.placeholder = widgets.HTML(
            '<div style="color:#666;padding:1em 0">The loss curve appears here once training starts '
            '(press <b>Train</b>).</div>')
        self.figure = go.Figure(
            data=[go.Scatter(x=[], y=[], mode="lines", name="train loss"),
                  go.Scatter(x=[], y=[], mode="markers", name="validation loss", marker=dict(size=8))],
            layout=dict(template=TEMPLATE, height=320, width=700, title=dict(text="Training loss"),
                        xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="loss"))))
        self.curve_plot = widgets.Output(layout=widgets.Layout(display="none"))
        self.results = widgets.HTML()
        self.results_plot = widgets.Output()

        self._free_rank, self._free_training, self._syncing = 1, "layerwise", False
        for control in (self.method, self.scope, self.rank, self.training, self.layer):
            control.observe(self._sync_controls, names="value")
        self.attribute.observe(self._on_attribute, names="value")
        self.train_button.on_click(lambda _: self.train(blocking=False))
        self.stop_button.on_click(lambda _: self.stop())
        self._sync_controls()
        self.widget = widgets.VBox([
            widgets.HBox([self.attribute, self.method]), self.scope, widgets.HBox([self.layer, self.rank]),
            widgets.HBox([self.training, self.steps]),
            widgets.HBox([self.train_button, self.stop_button, self.preview]),
            self.status, self.notice, self.placeholder, self.curve_plot, self.results, self.results_plot,
        ])

    # -- data ----------------------------------------------------------------------------------

    @staticmethod
    def _data_source(data, attributes) -> tuple[Callable[[str], PreparedData], list[str]]:
        if isinstance(data, PreparedData):
            names = [data.attribute.name]
            if attributes is not None and list(attributes) != names:
                raise ValueError(f"attributes {list(attributes)} do not match the data's attribute {names[0]!r}")
            return {names[0]: data}.__getitem__, names
        if isinstance(data, Mapping):
            names = list(data) if attributes is None else [str(a) for a in attributes]
            missing = [a for a in names if a not in data]
            if missing:
                raise ValueError(f"attribute {missing[0]!r} is not in the data, which has {list(data)}")
            if not names:
                raise ValueError("data is an empty mapping: give at least one attribute's PreparedData")
            return data.__getitem__, names
        if callable(data):
            if isinstance(attributes, str) or not attributes:
                raise ValueError("with a callable data loader, name the attributes: attributes=['pirate', ...]")
            return data, [str(a) for a in attributes]
        raise TypeError(f"data must be a PreparedData, a mapping of them, or a callable; got {type(data).__name__}")

    def data_for(self, attribute: str | None = None) -> PreparedData:
        """The prepared data of ``attribute`` (default: the selected one), loaded on first use."""
        name = self.attribute.value if attribute is None else attribute
        if name not in self._trained:
            raise ValueError(f"unknown attribute {name!r}; the panel has {list(self._trained)}")
        if name not in self._data:
            loaded = self._loader(name)
            if not isinstance(loaded, PreparedData):
                raise TypeError(f"the data of {name!r} is a {type(loaded).__name__}, not a PreparedData")
            self._data[name] = loaded
        return self._data[name]

    @property
    def data(self) -> PreparedData:
        """The selected attribute's prepared data."""
        return self.data_for()

    def _all_trained(self) -> list[Steerer]:
        return [s for per_attribute in self._trained.values() for s in per_attribute.values()]

    @property
    def trained(self) -> dict[str, Steerer]:
        """Steerers trained in the panel for the selected attribute, by run name."""
        return self._trained[self.attribute.value]

    def history_of(self, name: str, attribute: str | None = None) -> list[dict]:
        """The loss history (``[{step, train_loss, val_loss}]``, per layer) of the panel run ``name``."""
        attribute = self.attribute.value if attribute is None else attribute
        steerer = self._trained.get(attribute, {}).get(name)
        if steerer is None:
            raise ValueError(f"no steerer {name!r} trained in the panel for {attribute!r}; "
                             f"it has {sorted(self._trained.get(attribute, {}))}")
        return next((list(h) for (a, s), h in self._histories.items() if a == attribute and s is steerer), [])

    def loss_figure(self, attribute: str | None = None, title: str | None = None) -> go.Figure:
        """The loss curves of every run trained in the panel for ``attribute`` (default: the selected
        one), per layer, one panel per kind of loss (relative MSE, NLL): they are not comparable."""
        attribute = self.attribute.value if attribute is None else attribute
        runs = {name: s for name, s in self._trained.get(attribute, {}).items() if self.history_of(name, attribute)}
        if not runs:
            raise ValueError(f"no run with training steps in the panel for {attribute!r} yet: train one first")
        return loss_curves({name: self.history_of(name, attribute) for name in runs},
                           kinds={name: loss_kind(s) for name, s in runs.items()},
                           title=title or f"Panel runs ({attribute}): loss per layer")

    # -- controls ------------------------------------------------------------------------------

    def _sync_controls(self, change=None) -> None:
        """Enable what the method allows: rank for PSR only, the training where it is a choice,
        the layer for one-layer steerers; then preview the steerer's name."""
        if self._syncing:
            return
        self._syncing = True
        try:
            method = METHOD_LABELS.get(self.method.value, "")
            const = method.startswith("const")
            if const and not self.rank.disabled:
                self._free_rank, self.rank.value = self.rank.value, 1
            elif not const and self.rank.disabled:
                self.rank.value = self._free_rank
            self.rank.disabled = const
            fixed = _FIXED_TRAINING.get(method)
            if fixed is not None:
                if not self.training.disabled:
                    self._free_training = self.training.value
                self.training.value = fixed
            elif self.training.disabled:
                self.training.value = self._free_training
            self.training.disabled = fixed is not None
            self.layer.disabled = self.scope.value == "all"
        finally:
            self._syncing = False
        try:
            choice = self.choice
            where = "every layer" if choice.layers is None else f"layer {choice.layers}"
            self.preview.value = f"trains <b>{html.escape(choice.name)}</b> at {where}"
        except (ValueError, TypeError) as err:
            self.preview.value = status_html(f"invalid: {err}", "error")

    def _on_attribute(self, change) -> None:
        trained = self._trained.get(change["new"], {})
        names = ", ".join(trained) or "none yet"
        self._set_status(f"attribute {change['new']!r}: trained here: {names}")

    def _snapshot(self) -> dict[str, Any]:
        names = ("attribute", "method", "scope", "layer", "rank", "training", "steps")
        return {name: getattr(self, name).value for name in names}

    @staticmethod
    def _choice_from(values: Mapping[str, Any]) -> TrainChoice:
        label = values["method"]
        if label not in METHOD_LABELS:
            raise ValueError(f"unknown method {label!r}; expected one of {list(METHOD_LABELS)}")
        method, scope, rank, training = METHOD_LABELS[label], values["scope"], int(values["rank"]), values["training"]
        base = method_name(method, scope, rank, training)
        layers = int(values["layer"]) if scope == "single" else None
        name = base if layers is None else f"{base} L{layers}"
        return TrainChoice(values["attribute"], name, base, method, layers, rank, training, int(values["steps"]))

    @property
    def choice(self) -> TrainChoice:
        """What Train would train now (raises ValueError for an invalid combination)."""
        return self._choice_from(self._snapshot())

    # -- training ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a training (or its comparison) is under way."""
        return self._running is not None

    def train(self, blocking: bool = False) -> Steerer | None:
        """Train what the controls say, then compare (see the class docstring).

        ``blocking=False`` (the Train button): in a background thread; returns None at once
        (``wait()`` joins it); errors go to the status line and ``self.error``.
        ``blocking=True``: in the calling thread; returns the steerer (None when Stop interrupted
        the preparation) and re-raises errors.
        A second call while one runs is refused (a warning that stays until the run ends;
        RuntimeError when blocking).
        """
        values = self._snapshot()
        with self._lock:
            if self._running is not None:
                message = f"already training {self._running}: press Stop or wait for it to finish"
                self.notice.value = status_html(message, "warning")
                if blocking:
                    raise RuntimeError(message)
                return None
            self._running = f"{values['method']} on {values['attribute']!r}"
            self._stop_requested = False
        self.notice.value = ""
        self.train_button.disabled = True
        self.stop_button.disabled = False
        if blocking:
            return self._work(values, raise_errors=True)
        self._thread = threading.Thread(target=self._work, args=(values, False), name="workbench-training", daemon=True)
        self._thread.start()
        return None

    def stop(self) -> None:
        """Stop the run: during preparation at once (the current model pass is interrupted), during
        training after the current step (the Stop button)."""
        self._stop_requested = True
        trainer = self.trainer
        if trainer is not None:
            trainer.stop()
        if self.running:
            what = "now" if self._preparing else "after the current step"
            self._set_status(f"stopping {self._run_name or self._running} {what} ...", "warning")

    def wait(self, timeout: float | None = None) -> Steerer | None:
        """Join the background training thread (if any); returns the last steerer."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"training still running after {timeout} s")
        return self.steerer

    def _work(self, values: Mapping[str, Any], raise_errors: bool) -> Steerer | None:
        try:
            return self._train_and_compare(self._choice_from(values))
        except _Interrupted:
            self._set_status(f"{self._run_name}: stopped while preparing; nothing was trained", "warning")
            return None
        except Exception as err:  # noqa: BLE001 - shown in the status line; re-raised when blocking
            self.error = err
            self._set_status(f"error: {type(err).__name__}: {err}", "error")
            if raise_errors:
                raise
            return None
        finally:
            self.trainer = None
            self._preparing = None
            self.stop_button.disabled = True
            self.train_button.disabled = False
            self.notice.value = ""
            self._unmark_results()
            with self._lock:
                self._running = None

    # -- preparation (interruptible, with progress) ---------------------------------------------

    def _prepare(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action`` (loading data, recording targets: model passes) with a status line that
        ticks every second and a Stop that interrupts the current model pass."""
        if self._stop_requested:
            raise _Interrupted()
        self._preparing, self._model_passes, start = what, 0, time.perf_counter()
        done = threading.Event()

        def tick() -> None:
            while not done.wait(1.0):
                if not self._stop_requested:
                    self._set_status(f"preparing {self._run_name}: {what} ... {time.perf_counter() - start:.0f} s, "
                                     f"{self._model_passes} model passes (Stop interrupts)")

        def check(module, args):  # a forward pre-hook on the model: count passes, stop on request
            self._model_passes += 1
            if self._stop_requested:
                raise _Interrupted()

        self._set_status(f"preparing {self._run_name}: {what} ...")
        module = _input_embedding(self.model)
        handle = module.register_forward_pre_hook(check) if module is not None else None
        ticker = threading.Thread(target=tick, name="workbench-training-ticker", daemon=True)
        ticker.start()
        try:
            result = action()
        finally:
            done.set()
            if handle is not None:
                handle.remove()
            self._preparing = None
        if self._stop_requested:
            raise _Interrupted()
        return result

    def _on_prep_step(self, progress: TrainProgress) -> bool:
        """Callback of the layerwise fit a joint training starts from."""
        if progress.step % 10 == 0 or progress.step == 1:
            self._set_status(f"preparing {self._run_name}: the layerwise fit it starts from, step {progress.step}"
                             f"/{self._run_steps} (Stop interrupts)")
        return self._stop_requested

    def _make_trainer(self, choice: TrainChoice, data: PreparedData, config: TrainConfig):
        kwargs = dict(store=data.store, pairs=data.pairs, rank=choice.rank, config=config,
                      attribute=data.attribute.name, progress=False)
        if choice.training != "joint":
            return self._prepare("reading the training data", lambda: make_trainer(
                choice.method, self.model, data.soft_labels, layers=choice.layers, training=choice.training, **kwargs))
        # a joint training starts from the layerwise fit of the same form (as make_trainer does),
        # fitted here so that its progress shows and Stop reaches it
        start_method = "psr-mse" if choice.method == "psr-ll" else choice.method
        first = self._prepare("reading the training data", lambda: make_trainer(
            start_method, self.model, data.soft_labels, layers=choice.layers, training="layerwise", **kwargs))
        init = first.run(callback=self._on_prep_step, progress=False)
        if self._stop_requested:
            raise _Interrupted()
        return self._prepare(f"recording the prompt-steered targets of {len(data.pairs)} answers", lambda: make_trainer(
            choice.method, self.model, data.soft_labels, layers=choice.layers, training="joint", init=init, **kwargs))

    def _train_and_compare(self, choice: TrainChoice) -> Steerer | None:
        self.error = None
        self._running = self._run_name = choice.name
        self._run_steps = choice.steps
        config = replace(self.config, steps=choice.steps)
        self.history, self.redraws = [], 0
        self._mark_results_stale()
        self._reset_figure(choice)
        first_use = choice.attribute not in self._data
        data = self._prepare(f"preparing the data of {choice.attribute!r}" + (" (first use: minutes)" if first_use else ""),
                             lambda: self.data_for(choice.attribute))
        self.trainer = self._make_trainer(choice, data, config)
        self._divisor = loss_per_layer_divisor(self.trainer.info if hasattr(self.trainer, "info") else None)
        steerer = self.trainer.run(callback=self._on_step, progress=False)
        reason = getattr(self.trainer, "stopped_because", None)
        self._draw_losses()
        self.steerer = steerer
        self._trained[choice.attribute][choice.name] = steerer
        self._histories = {k: h for k, h in self._histories.items() if k[1] in self._all_trained()}
        self._histories[(choice.attribute, steerer)] = list(self.history)
        self._set_status(f"{choice.name}: measuring faithfulness on {len(data.heldout_pairs)} held-out triplets ...")
        self.comparison = self.compare(choice.attribute, new=choice.name)
        self._show_results(choice.name)
        self._set_status(self._finished_message(choice, reason), "ok")
        return steerer

    def _finished_message(self, choice: TrainChoice, reason: str | None) -> str:
        done = len(self.history)
        if reason is None:
            return f"{choice.name}: fitted in closed form (no training steps)"
        if reason in ("stop flag", "callback"):
            text = f"{choice.name}: stopped after {done} of {choice.steps} steps"
        elif reason == "early stopping":
            text = f"{choice.name}: stopped early at step {done} (validation loss stopped improving)"
        else:
            text = f"{choice.name}: finished {done} steps"
        best = self.steerer.info.history.get("best_val_loss") if self.steerer is not None else None
        per = " per layer" if self._divisor > 1 else ""
        return text + (f"; best validation loss{per} {best / self._divisor:.4g}" if best is not None else "")

    def _on_step(self, progress: TrainProgress) -> bool:
        """The trainer's callback (training thread): record, redraw (every ``plot_every`` steps, at
        validations, or after ``redraw_seconds``; never twice within ``min_redraw_seconds``), then
        call the extra callbacks."""
        d = self._divisor
        val = None if progress.val_loss is None else progress.val_loss / d
        self.history.append({"step": progress.step, "train_loss": progress.train_loss / d, "val_loss": val})
        now = time.perf_counter()
        since = now - self._last_draw
        wanted = progress.step % self.plot_every == 0 or val is not None or since >= self.redraw_seconds
        if wanted and since >= self.min_redraw_seconds:
            self._draw_losses()
            best = "" if progress.best_val_loss is None else f", best validation {progress.best_val_loss / d:.4g}"
            per = " per layer" if d > 1 else ""
            self._set_status(f"training {self._run_name}: step {progress.step}/{self._run_steps}, "
                             f"train loss{per} {progress.train_loss / d:.4g}{best}")
        for callback in self.step_callbacks:
            if callback(progress):
                self._stop_requested = True
        return self._stop_requested

    # -- views ---------------------------------------------------------------------------------

    def _set_status(self, text: str, kind: str = "info") -> None:
        self.status.value = status_html(text, kind)

    def _mark_results_stale(self) -> None:
        if self.results.value and not self.results.value.startswith(_STALE):
            self.results.value = f'{_STALE}<div style="opacity:0.45">{self.results.value}</div></div>'

    def _unmark_results(self) -> None:
        """After a run that produced no new table (error, Stop while preparing): the old one is current again."""
        value = self.results.value
        if value.startswith(_STALE):
            self.results.value = value[len(_STALE) + len('<div style="opacity:0.45">'):-len("</div></div>")]

    def _reset_figure(self, choice: TrainChoice) -> None:
        colour = method_color(choice.method_name)
        kind = loss_kind(choice.method)
        self.figure.data[0].x, self.figure.data[0].y = [], []
        self.figure.data[1].x, self.figure.data[1].y = [], []
        self.figure.data[0].line.color = colour
        self.figure.data[1].marker.color = colour
        self.figure.layout.title.text = f"{html.escape(choice.name)}: training loss"
        self.figure.layout.yaxis.title.text = f"{kind} per layer" if choice.layers is None else kind
        self.placeholder.value = status_html(f"{choice.name}: the loss curve appears with the first training step.")
        self.placeholder.layout.display = None
        self.curve_plot.layout.display = "none"
        self._last_draw = 0.0

    def _draw_losses(self) -> None:
        """Copy ``history`` into the figure's two traces and show it (markers while there are few points)."""
        rows = list(self.history)
        self._last_draw = time.perf_counter()
        if not rows:
            return
        val = [r for r in rows if r["val_loss"] is not None]
        losses = [r["train_loss"] for r in rows] + [r["val_loss"] for r in val]
        fig = self.figure
        fig.data[0].x, fig.data[0].y = [r["step"] for r in rows], [r["train_loss"] for r in rows]
        fig.data[0].mode = "lines+markers" if len(rows) < 15 else "lines"
        fig.data[1].x, fig.data[1].y = [r["step"] for r in val], [r["val_loss"] for r in val]
        if min(losses) > 0:
            values, labels = log_ticks(min(losses), max(losses))
            fig.layout.yaxis.update(type="log", tickvals=values, ticktext=labels)
        else:
            fig.layout.yaxis.update(type="linear", tickvals=None, ticktext=None)
        fig.layout.xaxis.update(range=[0, max(r["step"] for r in rows) + 1])
        show_figure(self.curve_plot, fig)
        self.redraws += 1
        self.curve_plot.layout.display = None
        self.placeholder.layout.display = "none"

    def _show_results(self, new: str) -> None:
        table = self.comparison.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="—", border=0)
        note = ("relative RMSE to the prompt-steered activations on the held-out triplets (1 = no better than "
                "not steering, 0 = the prompt); each steerer at the triplets' soft labels, Const-DiM at 1; "
                "losses per layer (relative MSE, or NLL per token for PSR-LL)")
        self.results.value = f"<b>{html.escape(new)}</b> compared ({html.escape(note, quote=False)}):{table}"
        show_figure(self.results_plot, self.faithfulness_figure)

    # -- comparison ----------------------------------------------------------------------------

    def _compared(self, attribute: str) -> dict[str, Steerer]:
        """``others`` trained for ``attribute`` (or for an unknown one), then the panel's own."""
        data_name = self.data_for(attribute).attribute.name
        out = {name: s for name, s in self.others.items() if s.info.attribute in (None, data_name, attribute)}
        for name, steerer in self._trained[attribute].items():
            out[f"{name} (panel)" if name in out else name] = steerer
        return out

    def compare(self, attribute: str | None = None, new: str | None = None) -> pd.DataFrame:
        """Faithfulness (relative RMSE) and losses of every compared steerer, one row each.

        ``new`` is a panel run's name. Measured at the layer of ``new`` (a one-layer steerer) and
        the last layer; for an all-layer ``new`` (or none), at every layer, tabled at a few spread
        layers, and drawn with :func:`workbench.viz.curves.faithfulness_curves`
        (``self.faithfulness_figure``). Measurements are cached per steerer object;
        ``self.faithfulness`` gets the tidy table.
        """
        attribute = self.attribute.value if attribute is None else attribute
        data = self.data_for(attribute)
        steerers = self._compared(attribute)
        if not steerers:
            raise ValueError(f"nothing to compare for {attribute!r}: train a steerer or pass others=")
        mine = self._trained[attribute].get(new) if new is not None else None
        if new is not None and mine is None:
            raise ValueError(f"no run {new!r} in the panel for {attribute!r}; it has {sorted(self._trained[attribute])}")
        last = self.model.n_layers - 1
        one_layer = mine is not None and len(mine.layers) == 1
        table_layers = sorted({mine.layers[0], last}) if one_layer else shown_layers(self.model.n_layers, 4)
        self.faithfulness = faith = self._faithfulness.measure(attribute, data, steerers)
        self.faithfulness_figure = None if one_layer else faithfulness_curves(
            faith, title=f"Faithfulness to the prompt ({html.escape(data.attribute.name)})")
        histories = {name: next((h for (a, s), h in self._histories.items() if a == attribute and s is steerer), [])
                     for name, steerer in steerers.items()}
        return comparison_table(faith, steerers, table_layers, histories)


def _input_embedding(model):
    """The model's input embedding module (every model pass starts there), or None."""
    hf = getattr(model, "hf_model", None)
    getter = getattr(hf, "get_input_embeddings", None)
    try:
        return getter() if callable(getter) else hf
    except (AttributeError, NotImplementedError):
        return hf


_STALE = ('<div class="workbench-stale"><span style="color:#B35806">previous comparison (stale: a new run is '
          'under way; its comparison replaces this one)</span>')
