"""Stage 4, what a user runs: the experiment runner (triplets -> deltas -> steerers -> TA@C table
and faithfulness), the demo page, the command line, and the notebook widgets (one module each,
imported by name: :mod:`workbench.app.training_panel`, :mod:`workbench.app.lambda_explorer`)."""

from workbench.app.experiment import ExperimentConfig, ExperimentResult, prepare_data, run_experiment, train_methods

__all__ = ["ExperimentConfig", "ExperimentResult", "prepare_data", "run_experiment", "train_methods"]
