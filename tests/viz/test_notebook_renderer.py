"""How a notebook stores a figure: plotly's JSON plus a description any viewer can show."""

import plotly.graph_objects as go
import plotly.io as pio

from workbench.viz.notebook import RENDERER, figure_bundle, figure_summary, use_notebook_renderer


def test_bundle_has_the_plotly_json_and_a_readable_fallback():
    fig = go.Figure([go.Scatter(x=[1, 2], y=[3, 4], name="A-PSR"), go.Scatter(x=[1], y=[2], name="Const-DiM")],
                    layout=dict(title=dict(text="Faithfulness <b>per layer</b>"),
                                xaxis=dict(title=dict(text="layer")), yaxis=dict(title=dict(text="relRMSE"))))
    bundle = figure_bundle(fig)
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["name"] == "A-PSR"
    assert figure_summary(fig) == 'plotly figure "Faithfulness per layer": 2 traces (A-PSR, Const-DiM); relRMSE vs layer'
    assert figure_summary(fig) in bundle["text/plain"] and "Faithfulness per layer" in bundle["text/html"]
    assert "<b>" not in bundle["text/html"]  # the title's markup is flattened, then escaped


def test_renderer_is_registered_but_the_default_only_on_request():
    before = pio.renderers.default
    try:
        assert RENDERER in pio.renderers
        assert use_notebook_renderer() == RENDERER and pio.renderers.default == RENDERER
        bundle = pio.renderers[RENDERER].to_mimebundle(go.Figure(layout=dict(title=dict(text="x"))).to_dict())
        assert {"application/vnd.plotly.v1+json", "text/html", "text/plain"} == set(bundle)
    finally:
        pio.renderers.default = before
