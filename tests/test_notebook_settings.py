"""What keeps the checkout clean when a notebook is opened and run in JupyterLab (issue 12): a
kernelspec in every committed notebook (else JupyterLab writes one), JupyterLab settings without
autosave or saved widget state, and a ``make lab`` that binds 127.0.0.1 and adds ``--allow-root``
only for root."""

import json
import os
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_name_the_python3_kernel(path):
    notebook = nbformat.read(path, as_version=4)
    assert dict(notebook.metadata.get("kernelspec", {})) == KERNELSPEC, (
        f"{path.name}: add the kernelspec JupyterLab would write, {KERNELSPEC}")


def test_lab_settings_turn_off_what_writes_to_the_checkout():
    settings = json.loads((ROOT / "notebooks" / "lab_settings.json").read_text())
    assert settings["@jupyterlab/docmanager-extension:plugin"]["autosave"] is False
    assert settings["@jupyter-widgets/jupyterlab-manager:plugin"]["saveState"] is False
    assert settings["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"  # no request out


def test_make_lab_binds_localhost_and_allows_root_only_as_root():
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (command,) = [line for line in dry.splitlines() if "jupyter lab" in line]
    assert "--ServerApp.ip=127.0.0.1" in command
    assert ("--allow-root" in command) == (os.getuid() == 0)
    assert "lab_settings.json" in dry
