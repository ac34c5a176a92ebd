"""The notebooks' tolerant comparison: a last-digit change passes, anything more fails.

Tested on the function and through nbval itself, on a planted notebook whose stored output differs
from what its cell prints.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workbench.viz.printed_numbers import number_tolerance, printed_numbers_match, split_numbers

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("stored, rerun", [
    ("ye   1.816", "ye   1.817"),                                     # the four cells issue #29 saw
    ("alpha 1.75  mean lambda@15  0.78  pirate  95.0", "alpha 1.75  mean lambda@15  0.79  pirate  95.0"),
    ("A-PSR   82.1     True", "A-PSR   82.2     True"),
    ("12.0982->70, 10.3303->84 => alpha 10.3303 (reached)", "12.0981->70, 10.3303->84 => alpha 10.3303 (reached)"),
    ("-0.01", "0.00"),                                                # one unit across zero
    ("2.5e-04", "2.6e-04"),
    ("10.33->80", "10.3301->80"),                                     # %g drops zeros: the finer precision rules
    ("x  9.99 |", "x 10.00 |"),                                       # padding follows the width
    ("L10 Q4_K_M v0.1.2", "L10 Q4_K_M v0.1.2"),
])
def test_a_last_digit_change_passes(stored, rerun):
    assert printed_numbers_match(stored, rerun)


@pytest.mark.parametrize("stored, rerun", [
    ("ye   1.816", "ye   1.818"),                                     # two units
    ("mean 0.78", "mean 0.80"),
    ("10.33->80", "10.3312->80"),                                     # beyond the finer precision
    ("alpha 10.3303 (reached)", "alpha 10.3303 (max steps)"),         # a decision
    ("A-PSR   82.1     True", "A-PSR   82.1     False"),
    ("S-PSR  A-PSR", "A-PSR  S-PSR"),                                 # a method order
    ("n = 40", "n = 41"),                                             # integers are exact
    ("n = 40", "n = 40.5"),                                           # an integer against a decimal: the decimal sets it
    ("L10 holds", "L11 holds"),                                       # digits inside a word are text
    ("1.5 and 2.5", "1.5 and"),                                       # the count of numbers
    ("a\nb 1.0", "a b 1.0"),                                          # line breaks are exact
    ("kept 12", "kept  12 "),                                         # trailing blanks appear
    ("nan", "0.0"),
])
def test_anything_more_fails(stored, rerun):
    assert not printed_numbers_match(stored, rerun)


def test_tolerance_is_one_unit_of_the_last_digit():
    assert number_tolerance("1.816") == pytest.approx(0.001)
    assert number_tolerance("82.") == 1.0
    assert number_tolerance("3E+02") == 100.0
    assert number_tolerance("40") == 0.0
    assert split_numbers("x=-1.5e3, y2") == (["x=", ", y2"], ["-1.5e3"])


def _planted_notebook(path: Path, prints: str, stored: str) -> None:
    cell = nbformat.v4.new_code_cell(f"print({prints!r})", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored + "\n")]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


PLANTED = {  # notebook name: (what its cell prints, its stored output, whether nbval passes it)
    "last_digit": ("top ye   1.817 took 3.9 s", "top ye   1.816 took 0.2 s", True),  # and a masked timing
    "two_units": ("top ye   1.818", "top ye   1.816", False),
    "changed_word": ("top yo   1.816", "top ye   1.816", False),
}


@pytest.fixture(scope="module")
def nbval_run(tmp_path_factory):
    """One nbval run over every planted notebook (one pytest process instead of one per case):
    its junit report, by notebook, and its output."""
    import xml.etree.ElementTree as ET

    where = tmp_path_factory.mktemp("planted")
    for name in ("conftest.py", "sanitize.cfg"):
        shutil.copy(NOTEBOOKS / name, where / name)
    for name, (prints, stored, _) in PLANTED.items():
        _planted_notebook(where / f"{name}.ipynb", prints, stored)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *(f"{name}.ipynb" for name in PLANTED), "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", "sanitize.cfg", "-p", "no:cacheprovider", "-q", "--junitxml=report.xml"],
        cwd=where, capture_output=True, text=True, timeout=600)
    cases = ET.parse(where / "report.xml").getroot().iter("testcase")
    failed = {}
    for case in cases:
        name = Path(case.get("file") or case.get("classname", "")).stem or case.get("classname", "").split(".")[0]
        bad = case.find("failure") is not None or case.find("error") is not None
        failed[name] = failed.get(name, False) or bad
    return failed, done


@pytest.mark.parametrize("name", list(PLANTED))
def test_nbval_compares_within_printed_precision(nbval_run, name):
    failed, done = nbval_run
    passes = PLANTED[name][2]
    assert name in failed, f"nbval did not run {name}.ipynb: {done.stdout[-3000:]}{done.stderr[-2000:]}"
    assert failed[name] != passes, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == (0 if all(p for *_, p in PLANTED.values()) else 1)
    if not passes:
        assert "1.816" in done.stdout  # nbval's own diff shows the stored text
