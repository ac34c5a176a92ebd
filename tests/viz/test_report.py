import re

import pandas as pd
import pytest

from workbench.app.demo import spread_table
from workbench.viz.figures import shown_layers
from workbench.viz.report import display_token, html_page, log_scale, ramp_colour, token_heatmap_html


def _table():
    tokens = ["<|im_start|>", "assistant", "\n", "<script>alert(1)</script>", " Arr", " matey", "&", " "]
    rows = []
    for layer in (0, 1):
        for pos, tok in enumerate(tokens):
            rows.append({"sample": 0, "layer": layer, "position": pos, "token": tok, "is_header": pos < 3,
                         "norm": 10.0 ** (pos - 3) * (layer + 1), "rel_norm": 0.1 * pos})
    return pd.DataFrame(rows)


def test_heatmap_escapes_model_text_and_needs_no_network():
    page = html_page("t <b>", [token_heatmap_html(_table(), 0, [0, 1])])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;|im_start|&gt;" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page) and "<script" not in page
    assert "t &lt;b&gt;" in page


def test_heatmap_colours_follow_the_value_on_a_log_scale():
    fragment = token_heatmap_html(_table(), 0, [0])
    colours = re.findall(r'background:(#[0-9a-f]{6})', fragment)
    assert len(colours) == 8
    darkness = [sum(w * int(c[i:i + 2], 16) for w, i in ((0.299, 1), (0.587, 3), (0.114, 5))) for c in colours]  # luminance
    assert darkness == sorted(darkness, reverse=True)  # larger norm, darker colour
    assert colours[0] == ramp_colour(0) and colours[-1] == ramp_colour(1)


def test_heatmap_rejects_unknown_sample_layer_or_column():
    with pytest.raises(ValueError, match="sample 5 is not in the token table"):
        token_heatmap_html(_table(), 5, [0])
    with pytest.raises(ValueError, match="layer 7 is not in the token table"):
        token_heatmap_html(_table(), 0, [7])
    with pytest.raises(ValueError, match="lacks columns"):
        token_heatmap_html(_table().drop(columns="norm"), 0, [0])


def test_whitespace_tokens_are_legible():
    assert display_token("\n") == "↵"
    assert display_token("  ") == "··"
    assert display_token(" Arr") == " Arr"
    assert display_token("") == "∅"


def test_log_scale_spans_the_percentiles():
    lo, hi = log_scale([1e-3, 1e-2, 1e-1, 1, 10])
    assert -3 < lo < -2.5 and 0.5 < hi < 1


def test_spread_table_measures_orders_of_magnitude():
    spread = spread_table(_table())
    assert list(spread["layer"]) == [0, 1]
    # response tokens have norms 1, 10, 100, 1000, 10000 (x layer+1): a huge 90/10 ratio
    assert spread.loc[0, "p90_over_p10"] > 100


def test_shown_layers_cover_first_and_last():
    assert shown_layers(30) == [0, 7, 14, 22, 29]
    assert shown_layers(3) == [0, 1, 2]
    assert shown_layers([2, 4, 6, 8, 10, 12], 4) == [2, 6, 8, 12]  # spread over a steerer's own layers
    assert shown_layers([3, 9], 4) == [3, 9]


def test_layers_label():
    from workbench.steering import layers_label

    assert layers_label([15]) == "15" and layers_label(range(30)) == "0-29"
    assert layers_label([3, 4]) == "3,4" and layers_label([3, 7, 12]) == "3,7,12"
