"""The ``Example:`` blocks in the docstrings of the main figure entry points run as written."""

from __future__ import annotations

import doctest

import pytest

from workbench.viz import curves, directions, export, notebook, token_maps


@pytest.mark.parametrize("module", [token_maps, curves, directions, export, notebook], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0
