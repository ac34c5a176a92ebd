"""Cached results: a corrupt one is computed again with a warning naming the file, never a block;
one written before checksums is read once and written again with one. Through the helper, and
through the run files that use it (evaluations, triplets)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from workbench.core.cached import cached, read_cached
from workbench.core.checked_files import read_frame, read_json, write_frame, write_json
from workbench.core.tensor_files import CorruptFileError


def _corrupt(path):
    """Cut the file short (a flipped byte may land where it changes nothing: see the sweeps in
    tests/activations/test_store_integrity.py and tests/steering/test_steering_io.py)."""
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 2 // 3])


@pytest.mark.parametrize("suffix, value", [(".parquet", pd.DataFrame({"x": [1.0, 2.0]})), (".json", {"rows": [1, 2]})])
def test_a_corrupt_result_is_computed_again_with_a_warning(tmp_path, suffix, value):
    path = tmp_path / f"key{suffix}"
    calls = []

    def compute():
        calls.append(1)
        return value

    cached(path, compute)
    _corrupt(path)
    with pytest.warns(RuntimeWarning, match=rf"key{suffix}.*computing it again"):
        again = cached(path, compute)
    assert len(calls) == 2
    assert again.equals(value) if suffix == ".parquet" else again == value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # whole again: read back without a warning
        cached(path, compute)
    assert len(calls) == 2


def test_a_result_written_before_checksums_is_read_and_given_one(tmp_path):
    legacy = tmp_path / "old.json"
    legacy.write_text(json.dumps({"rows": [3]}))
    assert read_cached(legacy) == {"rows": [3]}
    assert read_json(legacy) == {"rows": [3]}  # now with its checksum
    frame = tmp_path / "old.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(frame)
    assert read_cached(frame)["x"].tolist() == [1]
    assert read_frame(frame)["x"].tolist() == [1]


def test_checked_files_refuse_what_they_did_not_write(tmp_path):
    (tmp_path / "edited.json").write_text(json.dumps({"rows": [1], "checksum": "0" * 64}))
    with pytest.raises(CorruptFileError, match="edited.json does not match its checksum"):
        read_json(tmp_path / "edited.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(CorruptFileError, match="list.json holds a JSON list"):
        read_json(tmp_path / "list.json")
    (tmp_path / "plain.json").write_text("{}")
    with pytest.raises(CorruptFileError, match="plain.json has no checksum"):
        read_json(tmp_path / "plain.json")
    write_frame(tmp_path / "t.parquet", pd.DataFrame({"x": [1.5]}))
    (tmp_path / "t.parquet").write_bytes((tmp_path / "t.parquet").read_bytes()[:-30])
    with pytest.raises(CorruptFileError, match="t.parquet is not a readable parquet table"):
        read_frame(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="a .parquet table or a .json object"):
        cached(tmp_path / "x.csv", dict)
    with pytest.raises(TypeError, match="writes a JSON object"):
        write_json(tmp_path / "x.json", [1])


def test_a_corrupt_evaluation_is_made_again(tiny_model, tmp_path):
    from workbench.data.attributes import make_attribute
    from workbench.evaluation.comparison import EvalConfig, Evaluator, Method
    from workbench.judges.offline import CoherenceJudge

    attribute = make_attribute("a", "d", ["Be."], [f"Q{i}?" for i in range(10)], lambda r: 50.0)
    config = EvalConfig(n_validation=2, n_test=2, max_new_tokens=3)
    first = Evaluator(tiny_model, attribute, config, coherence_judge=CoherenceJudge(), cache_dir=tmp_path)
    method = Method("prompt", prompt=True)
    want = first.evaluate(method, 0.0, "test")
    (stored,) = tmp_path.glob("*.parquet")
    _corrupt(stored)
    again = Evaluator(tiny_model, attribute, config, coherence_judge=CoherenceJudge(), cache_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match=f"{stored.name}.*computing it again"):
        got = again.evaluate(method, 0.0, "test")
    assert got["response"].tolist() == want["response"].tolist() and got["attribute"].tolist() == [50.0, 50.0]


def test_a_corrupt_triplet_run_is_sampled_again(tiny_model, tmp_path):
    from workbench.data.attributes import make_attribute
    from workbench.data.triplets import TripletConfig, build_triplets
    from workbench.judges.offline import CoherenceJudge

    attribute = make_attribute("a", "d", ["Be."], [f"Q{i}?" for i in range(10)], lambda r: 80.0)
    config = TripletConfig(n_questions=2, max_new_tokens=3)
    want = build_triplets(tiny_model, attribute, tmp_path, config, coherence=CoherenceJudge(), progress=False)
    for name in ("triplets.json", "triplets.parquet"):
        _corrupt(tmp_path / name)
        with pytest.warns(RuntimeWarning, match=f"{name}.*sampling these triplets again"):
            got = build_triplets(tiny_model, attribute, tmp_path, config, coherence=CoherenceJudge(), progress=False)
        assert got.table["response"].tolist() == want.table["response"].tolist()


def test_no_flipped_byte_gives_a_silently_different_table_or_record(tmp_path):
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5], "b": ["x", "y", "z"], "n": [1, None, 3]})
    record = {"rows": [1, 2.5, "three"], "key": "abc"}
    for path, write, read, same in (
            (tmp_path / "t.parquet", write_frame, read_frame, lambda got: got.equals(frame)),
            (tmp_path / "r.json", write_json, read_json, lambda got: got == record)):
        write(path, frame if path.suffix == ".parquet" else record)
        clean = path.read_bytes()
        silent = []
        for offset in range(len(clean)):
            data = bytearray(clean)
            data[offset] ^= 0x04
            path.write_bytes(bytes(data))
            try:
                got = read(path)
            except CorruptFileError:
                continue
            if not same(got):
                silent.append(offset)
        assert silent == [], f"{path.name}: flipped bytes at {silent[:5]} changed what was read"
