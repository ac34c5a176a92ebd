"""The notebooks as a product: all nine are there in reading order, each paired with a reviewable
py:percent script with the same cells, and each stored with the outputs of one top-to-bottom run in
a fresh kernel (so nbval, which reruns them in ``make test``, compares something real)."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ORDER = ["01_quick_start", "02_which_tokens", "03_train_probes", "04_lambda_over_text", "05_faithfulness",
         "06_equal_coherence", "07_instruction_following", "08_ways_to_adapt", "09_policy_gated_steering"]


def _notebooks():
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_the_notebooks_are_there_in_reading_order():
    assert [p.stem for p in _notebooks()] == ORDER


@pytest.mark.parametrize("name", ORDER)
def test_notebook_and_its_script_hold_the_same_cells(name):
    import jupytext

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    def cells(nb):
        return [(c.cell_type, c.source.strip()) for c in nb.cells]
    assert cells(script) == cells(notebook), f"{name}.py and {name}.ipynb differ: run `make notebooks`"


@pytest.mark.parametrize("name", ORDER)
def test_stored_outputs_come_from_one_fresh_run(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{name}: {counts.count(None)} code cell(s) never ran: run `make notebooks`"
    assert counts == list(range(1, len(code) + 1)), f"{name}: not one top-to-bottom run in a fresh kernel: {counts}"
    compared = [o for c in code for o in c.outputs
                if o.output_type == "stream" and o.name == "stdout"
                or o.output_type in ("execute_result", "display_data") and "text/plain" in o.get("data", {})
                and not {"text/html", "application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-view+json"}
                & set(o.get("data", {}))]
    assert len(compared) >= 3, f"{name}: only {len(compared)} outputs that nbval compares"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: stored outputs hold an error: {errors[0].get('ename')}"


def test_notebooks_import_the_library_rather_than_define_logic():
    for path in _notebooks():
        notebook = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
        assert "import workbench" in code or "from workbench" in code, path.name
        defined = [line for line in code.splitlines() if line.startswith(("def ", "class "))]
        assert len(defined) <= 2, f"{path.name} defines {defined}: move logic into the library"
