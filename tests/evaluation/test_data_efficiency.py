import pandas as pd
import pytest

from workbench.evaluation.data_efficiency import EFFICIENCY_COLUMNS, efficiency_pivot, efficiency_table, subset_sizes


def _results(attr: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method, a in attr.items():
        for target in ("C80", "Cp"):
            rows.append({"method": method, "target": target, "alpha": 1.0, "reached": True, "attribute": a,
                         "attribute_lo": a - 5, "attribute_hi": a + 5, "coherence": 80.0, "n": 12, "n_missing": 0})
    return pd.DataFrame(rows)


def test_subset_sizes():
    assert subset_sizes(26) == [8, 16, 26]
    assert subset_sizes(40) == [8, 16, 32, 40]
    assert subset_sizes(8) == [8]
    assert subset_sizes(5, (2, None, 2)) == [2, 5]
    with pytest.raises(ValueError, match="no kept triplets"):
        subset_sizes(0)
    with pytest.raises(ValueError, match="integer >= 1 or None"):
        subset_sizes(10, (0,))
    with pytest.raises(ValueError, match="none of the sizes"):
        subset_sizes(4, (8, 16))


def test_efficiency_table_gathers_one_row_per_method_and_size():
    table = efficiency_table({8: _results({"prompt": 70, "LoRA r8": 20}), 26: _results({"prompt": 70, "LoRA r8": 50})},
                             n_kept=26)
    assert list(table.columns) == EFFICIENCY_COLUMNS
    lora = table[table["method"] == "LoRA r8"]
    assert lora["n_train"].tolist() == [8, 26] and lora["attribute"].tolist() == [20, 50]
    assert lora["all"].tolist() == [False, True] and set(table["target"]) == {"C80"}
    pivot = efficiency_pivot(table)
    assert pivot.loc["LoRA r8", 26] == "50.0 [45.0, 55.0]"
    with pytest.raises(ValueError, match="no target 'C50'"):
        efficiency_table({8: _results({"prompt": 1})}, 8, target="C50")
    with pytest.raises(ValueError, match="no results"):
        efficiency_table({}, 8)


def test_the_figure_draws_methods_as_lines_and_the_prompt_as_a_band():
    from workbench.viz.data_efficiency import data_efficiency_figure

    table = efficiency_table({8: _results({"prompt": 70, "A-PSR": 30, "LoRA r8": 20}),
                              16: _results({"prompt": 70, "A-PSR": 40, "LoRA r8": 35})}, n_kept=16)
    fig = data_efficiency_figure(table)
    named = {t.name: t for t in fig.data if t.name}
    assert set(named) == {"prompt", "A-PSR", "LoRA r8"}
    assert list(named["LoRA r8"].y) == [20, 35] and list(named["LoRA r8"].error_y.array) == [5, 5]
    assert list(named["prompt"].y) == [70, 70] and named["prompt"].line.dash == "dash"
    assert fig.layout.xaxis.type == "log"


def test_the_demo_report_shows_a_stored_efficiency_table(tmp_path):
    from workbench.app.demo import efficiency_html

    assert efficiency_html(tmp_path / "efficiency.csv") == []
    table = efficiency_table({8: _results({"prompt": 70, "LoRA r8": 20}), 16: _results({"prompt": 70, "LoRA r8": 35})},
                             n_kept=16)
    table.to_csv(tmp_path / "efficiency.csv", index=False)
    sections = efficiency_html(tmp_path / "efficiency.csv", first=True)
    assert "Data efficiency" in sections[0] and "plotly" in sections[2] and "35.0 [30.0, 40.0]" in sections[3]
