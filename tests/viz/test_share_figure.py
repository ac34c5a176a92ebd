"""The share-vs-k figure, checked through its data and layout."""

import pandas as pd
import pytest

from workbench.viz.directions import share_vs_k


def curves() -> pd.DataFrame:
    rows = []
    for band, top in (("layers 0-9", 0.6), ("layers 10-19", 0.4)):
        for k in (1, 2, 4, 8):
            rows.append({"layers": band, "k": k, "basis": "principal", "share": min(1.0, top * k ** 0.3),
                         "lo": top * k ** 0.3 - 0.05, "hi": min(1.0, top * k ** 0.3 + 0.05), "n": 12})
            rows.append({"layers": band, "k": k, "basis": "random", "share": k / 64, "lo": k / 70, "hi": k / 60,
                         "n": 12})
    return pd.DataFrame(rows)


def test_one_line_per_band_and_basis_with_bands_and_targets():
    fig = share_vs_k(curves())
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["layers 0-9: top-k principal", "layers 0-9: k random",
                                       "layers 10-19: top-k principal", "layers 10-19: k random"]
    assert lines[0].line.color == lines[1].line.color != lines[2].line.color
    assert [t.line.dash for t in lines] == ["solid", "dash"] * 2
    assert sum(1 for t in fig.data if t.fill == "toself") == 4  # an interval band under every line
    assert list(lines[0].x) == [1, 2, 4, 8] and lines[1].y[-1] == pytest.approx(8 / 64)
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.ticktext) == ["1", "2", "4", "8"]
    assert sorted(shape.y0 for shape in fig.layout.shapes) == [0.5, 0.8]
    assert "12 held-out responses" in fig.layout.title.text


def test_share_vs_k_checks_its_table():
    with pytest.raises(ValueError, match="missing column.*'basis'"):
        share_vs_k(curves().drop(columns="basis"))
    with pytest.raises(ValueError, match=r"basis must be 'principal' or 'random', got \['pca'\]"):
        share_vs_k(curves().replace({"random": "pca"}))
    no_bands = share_vs_k(curves().drop(columns=["lo", "hi", "n"]))
    assert not any(t.fill == "toself" for t in no_bands.data)
