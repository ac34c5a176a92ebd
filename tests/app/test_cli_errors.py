"""The CLI's errors: one line ``workbench <command>: error: <message>`` on stderr, exit status 2, no
traceback (``--debug`` adds it); bad counts and layers are refused before any model is loaded."""

import json
import subprocess
import sys

import pytest
from safetensors import SafetensorError

import workbench.activations.deltas as deltas
import workbench.app.experiment as experiment
import workbench.core.models as models
from workbench.app.cli import describe_error, main


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: what is refused must be refused before that."""
    def load_model(*args, **kwargs):
        raise AssertionError("load_model was called")

    monkeypatch.setattr(models, "load_model", load_model)


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"workbench {command}: error: "), err
    assert "Traceback" not in err and "AssertionError" not in err, err
    return err


def _usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    return _one_line_error(capsys, argv[0])


#: argv -> fragments of the one-line message; each is refused before any model is loaded
REFUSED_EARLY = {
    ("evaluate", "--layer", "-1"): ["argument --layer", ">= 0", "'-1'"],
    ("evaluate", "--layer", "1.5"): ["argument --layer", "'1.5'"],
    ("evaluate", "--n-train", "0"): ["argument --n-train", ">= 1", "'0'"],
    ("evaluate", "--judge-retries", "-2"): ["argument --judge-retries", "'-2'"],
    ("plan", "--triplets", "-3"): ["argument --triplets", ">= 1", "'-3'"],
    ("plan", "--triplets", "2.5"): ["argument --triplets", "'2.5'"],
    ("plan", "--triplets", "4", "--tokens", "0"): ["argument --tokens", "'0'"],
    ("plan", "--triplets", "4", "--batch-size", "0"): ["argument --batch-size", "'0'"],
    ("plan", "--triplets", "4", "--layers", "0,-1"): ["argument --layers", "'0,-1'"],
    ("extract", "--triplets", "t", "--out", "o", "--layers", "1,x"): ["argument --layers", "'1,x'"],
    ("extract", "--triplets", "t", "--out", "o", "--batch-size", "-8"): ["argument --batch-size", "'-8'"],
    ("triplets", "--attribute", "pirate", "--out", "o", "--n-questions", "0"): ["argument --n-questions", "'0'"],
    ("triplets", "--attribute", "pirate", "--out", "o", "--samples-per-question", "-1"): [
        "argument --samples-per-question", "'-1'"],
    ("triplets", "--attribute", "pirate", "--out", "o", "--max-new-tokens", "0"): ["argument --max-new-tokens", "'0'"],
    ("demo", "--n-questions", "-5"): ["argument --n-questions", "'-5'"],
    ("check-attributes", "--n", "0"): ["argument --n", "'0'"],
    ("gate", "--scenario", "sea_and_ships", "--seed", "-1"): ["argument --seed", "'-1'"],
    ("evaluate", "--judge", "nobody"): ["argument --judge", "invalid choice: 'nobody'"],
}


@pytest.mark.parametrize("argv", list(REFUSED_EARLY), ids=" ".join)
def test_bad_options_are_one_line_before_any_model_loads(argv, no_model, capsys):
    err = _usage_error(capsys, list(argv))
    for fragment in REFUSED_EARLY[argv]:
        assert fragment in err


@pytest.mark.parametrize("argv", [["evaluate", "--attribute", "no-such-thing"],
                                  ["triplets", "--attribute", "no-such-thing", "--out", "never-written"],
                                  ["check-attributes", "--attributes", "pirate,no-such-thing"]], ids=lambda a: a[0])
def test_an_unknown_attribute_is_refused_before_the_model_loads(argv, no_model, capsys):
    assert main(argv) == 2
    assert "unknown attribute 'no-such-thing'" in _one_line_error(capsys, argv[0])


def test_a_layer_past_the_depth_is_refused_after_loading_before_sampling(monkeypatch, tiny_model, capsys, tmp_path):
    monkeypatch.setattr(models, "load_model", lambda name: tiny_model)

    def sampled(*args, **kwargs):
        raise AssertionError("prepare_data ran: the layer was checked too late")

    monkeypatch.setattr(experiment, "prepare_data", sampled)
    assert main(["evaluate", "--layer", "7", "--out", str(tmp_path / "run")]) == 2
    assert "layer index 7 is out of range" in _one_line_error(capsys, "evaluate")
    assert not (tmp_path / "run").exists()


def test_a_runtime_error_is_one_line_with_its_type(monkeypatch, capsys, tmp_path):
    def run_experiment(*args, **kwargs):
        raise RuntimeError("only 0 of 60 prompt-steered samples of 'pirate' were kept\n(both judges >= 50)")

    monkeypatch.setattr(experiment, "run_experiment", run_experiment)
    monkeypatch.setattr(models, "load_model", lambda name: name)
    assert main(["evaluate", "--out", str(tmp_path)]) == 2
    err = _one_line_error(capsys, "evaluate")
    assert "RuntimeError: only 0 of 60 prompt-steered samples of 'pirate' were kept (both judges >= 50)" in err


def _corrupted_triplets(directory):
    directory.mkdir()
    (directory / "triplets.json").write_text(json.dumps({"format_version": 1, "model_id": "m"}))
    (directory / "triplets.parquet").write_bytes(b"PAR1" + b"\xff" * 20 + (16).to_bytes(4, "little") + b"PAR1")
    return directory


def test_a_corrupted_parquet_is_one_line_naming_the_file(monkeypatch, capsys, tmp_path):
    triplets = _corrupted_triplets(tmp_path / "t")
    monkeypatch.setattr(models, "load_model", lambda name: name)
    assert main(["extract", "--triplets", str(triplets), "--out", str(tmp_path / "d")]) == 2
    err = _one_line_error(capsys, "extract")
    assert "triplets.parquet is not a readable parquet table (corrupt or truncated)" in err
    assert "Couldn't deserialize thrift" in err


def test_debug_adds_the_traceback(monkeypatch, capsys, tmp_path):
    triplets = _corrupted_triplets(tmp_path / "t")
    monkeypatch.setattr(models, "load_model", lambda name: name)
    assert main(["extract", "--triplets", str(triplets), "--out", str(tmp_path / "d"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "pyarrow" in err
    assert err.splitlines()[-1].startswith(f"workbench extract: error: {triplets}/triplets.parquet is not a readable")


def test_a_full_disk_is_one_line(monkeypatch, capsys, tmp_path):
    class Model:
        model_id, tokenizer = "m", None

    class Triplets:
        meta = {"model_id": "m"}

        def pairs(self, tokenizer):
            return []

    def extract_deltas(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    monkeypatch.setattr(models, "load_model", lambda name: Model())
    monkeypatch.setattr("workbench.data.triplets.TripletSet.load", lambda directory: Triplets())
    monkeypatch.setattr(deltas, "extract_deltas", extract_deltas)
    assert main(["extract", "--triplets", str(tmp_path), "--out", str(tmp_path / "d")]) == 2
    err = _one_line_error(capsys, "extract")
    assert "SafetensorError: Error while serializing" in err and "No space left on device" in err


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("workbench.data.attributes.list_attributes", interrupted)
    assert main(["attributes"]) == 130
    assert capsys.readouterr().err == "workbench attributes: interrupted\n"


def test_describe_error_names_the_type_where_the_message_alone_would_not():
    assert describe_error(ValueError("n_questions must be >= 1")) == "n_questions must be >= 1"
    assert describe_error(KeyError("x")) == "KeyError: 'x'"
    assert describe_error(FileNotFoundError(2, "No such file or directory", "/x/y")) == \
        "[Errno 2] No such file or directory: '/x/y'"
    assert describe_error(OSError(28, "No space left on device")) == "OSError: [Errno 28] No space left on device"
    assert describe_error(RuntimeError()) == "RuntimeError"


def test_the_installed_command_prints_one_line_and_no_traceback():
    done = subprocess.run([sys.executable, "-m", "workbench", "plan", "--triplets", "-3"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "workbench plan: error: argument --triplets: must be an integer >= 1, got '-3'\n"
