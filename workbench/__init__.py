"""workbench: measure, imitate and inspect how a prompt steers a language model from the inside.

Reproduces *Steer Like the LLM* (Heyman and Vandeputte, ICML 2026): Delta_PS, the activation
change a steering instruction causes, token by token and layer by layer; PSR probes that imitate
it; and their comparison with constant steering vectors.

The package is laid out by stage, each importing only from the stages before it::

    core/  ->  judges/, activations/  ->  data/, steering/  ->  evaluation/, viz/  ->  app/

This module re-exports what a notebook needs most.

Example:
    >>> import workbench as wb
    >>> model = wb.load_model("tiny-random-llama", n_layers=2)
    >>> answers = wb.generate_answers(model, ["What is rain?"], config=wb.SamplingConfig(max_new_tokens=4),
    ...                               progress=False)
    >>> len(answers), answers[0].question
    (1, 'What is rain?')
"""

from workbench.activations import DeltaStore, extract_deltas, token_magnitudes
from workbench.app import ExperimentConfig, run_experiment
from workbench.core import (
    EMBEDDED_MODEL,
    TINY_MODEL,
    LoadedModel,
    SamplingConfig,
    generate,
    generate_answers,
    load_model,
    prompt_ids,
)
from workbench.core.files import package_version
from workbench.data import TripletConfig, build_triplets, load_attribute, make_attribute
from workbench.evaluation import EvalConfig, compare_methods, faithfulness
from workbench.steering import Steerer, TrainConfig, load_steerer, train_steerer

__version__ = package_version()

__all__ = [
    "__version__", "EMBEDDED_MODEL", "TINY_MODEL", "DeltaStore", "EvalConfig", "ExperimentConfig", "LoadedModel",
    "SamplingConfig", "Steerer", "TrainConfig", "TripletConfig", "build_triplets", "compare_methods",
    "extract_deltas", "faithfulness", "generate", "generate_answers", "load_attribute", "load_model",
    "load_steerer", "make_attribute", "prompt_ids", "run_experiment", "token_magnitudes", "train_steerer",
]
