"""The ``Example:`` blocks of the main entry points run as written (doctest), on the tiny model.

(The figure modules and the instruction modules have their own doctest tests beside their tests.)
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["workbench", "workbench.activations.directions", "workbench.core.checks", "workbench.core.fingerprint",
           "workbench.core.generation", "workbench.core.identity", "workbench.core.templates", "workbench.judges.echo",
           "workbench.data.echoes", "workbench.data.attributes", "workbench.evaluation.direction_shares",
           "workbench.evaluation.lambda_reading", "workbench.evaluation.spread", "workbench.steering.api",
           "workbench.steering.names", "workbench.steering.steerer", "workbench.steering.gates"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
