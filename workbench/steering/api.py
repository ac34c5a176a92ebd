"""One entry point for every steering method: :func:`train_steerer` (and :func:`make_trainer`
when a notebook wants to stop and resume).

=============  ======================  ==========================================================
method         ``layers=15`` (S-)      ``layers=None`` or a list (A-)
=============  ======================  ==========================================================
const-dim      mean of D_acc           mean of D_loc per layer
const-mse      least squares on D_acc  least squares on D_loc per layer, or ``training="joint"``
psr-mse        fit on D_acc            fit on D_loc per layer, or ``training="joint"``
psr-ll         through the model       through the model (always joint)
=============  ======================  ==========================================================

Layerwise fits read deltas from a :class:`~workbench.activations.store.DeltaStore` (``store=``) or extract
them from aligned pairs (``pairs=``); training through the model needs the pairs, and starts
from the layerwise fit of the same form and rank unless ``init=`` gives a steerer.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import torch
from tqdm.auto import tqdm

from workbench.activations.extraction import extract_batch
from workbench.core.chat import AlignedPair
from workbench.core.checks import check_instance, check_int, is_int
from workbench.steering.data import TokenData, label_lookup, load_token_data, pairs_hash
from workbench.steering.joint import DEFAULT_MODEL_BATCH, ModelTrainer
from workbench.steering.layerwise import ClosedForm, LayerwisePSRTrainer, closed_form
from workbench.steering.names import TRAININGS
from workbench.steering.steerer import METHODS, Steerer, SteererInfo
from workbench.steering.train import Callback, TrainConfig


def token_data_from_pairs(model, pairs: Sequence[AlignedPair], layers: Sequence[int], kind: str, soft_labels,
                          batch_size: int = DEFAULT_MODEL_BATCH, progress: bool = False) -> TokenData:
    """Extract :class:`TokenData` (``kind`` ``"acc"`` or ``"loc"``) from aligned pairs, in memory.

    Sample ids are the pair indices ``0..n-1``, as :func:`workbench.activations.deltas.extract_deltas` uses.
    """
    if not pairs:
        raise ValueError("no pairs to train on (empty data)")
    acts, deltas, seqs = [], [], []
    for start in tqdm(range(0, len(pairs), batch_size), desc="extracting deltas", disable=not progress, leave=False):
        batch = pairs[start : start + batch_size]
        out = extract_batch(model, batch, layers, local=kind == "loc")
        acts.append(out.base)
        deltas.append(out.loc if kind == "loc" else out.acc)
        seqs.append(out.sample + start)
    seq = torch.cat(seqs)
    labels = label_lookup(soft_labels, range(len(pairs)))
    return TokenData(tuple(layers), torch.cat(acts, 1), torch.cat(deltas, 1), labels[seq], seq)


def _check_store(store, model, layers: list[int], kind: str) -> None:
    if store.model_id != model.model_id or store.d_model != model.d_model:
        raise ValueError(f"the delta store {store.directory} was extracted from {store.model_id!r} "
                         f"(d_model {store.d_model}) but the model is {model.model_id!r} (d_model {model.d_model})")
    missing = [l for l in layers if l not in store.layers]
    if missing:
        raise ValueError(f"layer {missing[0]} is not in the delta store {store.directory}, which holds layers {store.layers}")
    if kind == "loc" and not store.has_local:
        raise ValueError(f"all-layer steerers fit on local deltas, but {store.directory} was extracted without them")


def make_trainer(
    method: str,
    model,
    triplets,
    *,
    layers: int | Sequence[int] | None,
    store=None,
    pairs: Sequence[AlignedPair] | None = None,
    rank: int = 1,
    training: str | None = None,
    config: TrainConfig = TrainConfig(),
    init: Steerer | None = None,
    attribute: str | None = None,
    progress: bool = True,
):
    """Set up the training of one steerer; call ``.run()`` on the result (again to resume).

    Args:
        method: ``"const-dim"``, ``"const-mse"``, ``"psr-mse"`` or ``"psr-ll"``.
        model: the :class:`~workbench.core.models.LoadedModel` it is trained on and for.
        triplets: the training triplets, for their soft labels (the attribute score of each in
            [0, 1]): a ``TripletSet`` (its ``kept`` rows' ``soft_label``, sample id = row of
            ``kept``, the order of ``triplets.pairs(...)``), or the labels themselves: a mapping
            ``sample id -> label``, a list indexed by sample id, or one float for all.
        layers: an int for a single-layer (S-) steerer at that layer; a list, or ``None`` for
            every layer, for an all-layer (A-) steerer.
        store, pairs: where the data comes from (see the module docstring).
        rank: number of PSR components (constant vectors: 1).
        training: ``"layerwise"`` (default) or ``"joint"`` (through the model; the only choice,
            and the default, for ``"psr-ll"``).
        init: starting steerer for training through the model.
    Returns:
        A trainer with ``run(steps=None, callback=None, progress=True) -> Steerer``, ``stop()``
        and ``result()``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown steering method {method!r}; expected one of {METHODS}")
    rank = check_int("rank", rank, minimum=1)
    check_instance("config", config, TrainConfig)
    if method.startswith("const") and rank != 1:
        raise ValueError(f"{method} is a constant vector; rank must be 1, got {rank}")
    training = training or ("joint" if method == "psr-ll" else "layerwise")
    if training not in TRAININGS:
        raise ValueError(f"unknown training {training!r}; expected one of {TRAININGS}")
    if method == "psr-ll" and training != "joint":
        raise ValueError("psr-ll is trained through the model on the log-likelihood; training must be 'joint'")
    if method == "const-dim" and training == "joint":
        raise ValueError("const-dim is a closed-form mean; it has no joint training (use const-mse)")
    single = is_int(layers)
    layer_list = model.check_layers(layers)
    kind = "acc" if single else "loc"
    if store is None and pairs is None:
        raise ValueError("give the training data: store= (a DeltaStore) or pairs= (aligned pairs)")
    if training == "joint" and pairs is None:
        raise ValueError(f"training {method} through the model needs the aligned pairs (pairs=)")
    if pairs is not None and len(pairs) == 0:
        raise ValueError("no pairs to train on (empty data)")
    base_info = dict(method=method, scope="single" if single else "all", layers=tuple(layer_list), rank=rank,
                     model_id=model.model_id, d_model=model.d_model, n_layers=model.n_layers, attribute=attribute,
                     config=asdict(config))

    if training == "layerwise" or init is None:
        if store is not None:
            _check_store(store, model, layer_list, kind)
            data = load_token_data(store, layer_list, kind, triplets)  # streamed from disk when large
        else:
            data = token_data_from_pairs(model, pairs, layer_list, kind, triplets, progress=progress)
        fit_method = method if training == "layerwise" else method.replace("psr-ll", "psr-mse")
        info = SteererInfo(**{**base_info, "method": fit_method}, training="layerwise", data_hash=data.fingerprint())
        if info.form == "const":
            trainer = ClosedForm(closed_form(info, data))
        else:
            trainer = LayerwisePSRTrainer(info, data, config, init)
        if training == "layerwise":
            return trainer
        init = trainer.run(progress=progress)
    labels = label_lookup(triplets, range(len(pairs)))
    info = SteererInfo(**base_info, training="joint", data_hash=pairs_hash(pairs, labels),
                       history={"init": init.name, "init_history": dict(init.info.history)})
    init.check_model(model)
    return ModelTrainer(info, model, pairs, labels, config, init, "nll" if method == "psr-ll" else "mse")


def train_steerer(
    method: str,
    model,
    triplets,
    *,
    layers: int | Sequence[int] | None,
    store=None,
    pairs: Sequence[AlignedPair] | None = None,
    rank: int = 1,
    training: str | None = None,
    config: TrainConfig = TrainConfig(),
    init: Steerer | None = None,
    attribute: str | None = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> Steerer:
    """Train one steerer (see :func:`make_trainer` for the arguments).

    Example:
        >>> from workbench.core.models import load_model
        >>> from workbench.core.chat import align, encode_response
        >>> model = load_model("tiny-random-llama", n_layers=2)
        >>> pair = align(model.tokenizer, "Hi?", "Talk like a pirate.", encode_response(model.tokenizer, "Arr, hi!"))
        >>> s = train_steerer("const-dim", model, 1.0, layers=1, pairs=[pair], progress=False)
        >>> s.name, s.layers
        ('Const-DiM', (1,))

    ``callback(TrainProgress) -> bool | None`` is called after every step (return True to stop);
    without it, a tqdm.auto bar shows progress unless ``progress=False``.
    """
    trainer = make_trainer(method, model, triplets, layers=layers, store=store, pairs=pairs, rank=rank,
                           training=training, config=config, init=init, attribute=attribute, progress=progress)
    return trainer.run(callback=callback, progress=progress)
