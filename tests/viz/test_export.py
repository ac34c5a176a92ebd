"""Static export: one real export where a browser is installed, and the failures without one."""

from __future__ import annotations

import shutil

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from workbench.viz import export
from workbench.viz.export import FigureExportError, export_figure, find_browser
from workbench.viz.theme import apply_template


def small_figure() -> go.Figure:
    return apply_template(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])))


@pytest.mark.skipif(find_browser() is None and shutil.which("chromium") is None,
                    reason="no Chrome/Chromium for kaleido on this machine (apt-get install chromium)")
def test_export_svg(tmp_path):
    written = export_figure(small_figure(), tmp_path / "fig.png", formats=("svg",), width=300, height=200)
    assert written == [tmp_path / "fig.svg"]
    assert "<svg" in written[0].read_text()[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.svg"]  # no temporary left behind


def test_export_without_browser_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "find_browser", lambda: None)
    with pytest.raises(FigureExportError) as err:
        export_figure(small_figure(), tmp_path / "fig", formats=("svg",))
    message = str(err.value)
    assert "Chromium" in message and "apt-get install chromium" in message and "plotly_get_chrome" in message
    assert not list(tmp_path.iterdir())


def test_export_failure_leaves_no_half_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "find_browser", lambda: "/usr/bin/chromium")

    def broken(figs, files, **kwargs):
        files[0].write_bytes(b"half")  # a partial write, then the browser dies
        raise RuntimeError("BrowserFailedError: chromium exited\nlong traceback ...")

    monkeypatch.setattr(pio, "write_images", broken)
    with pytest.raises(FigureExportError, match="kaleido failed.*chromium exited") as err:
        export_figure(small_figure(), tmp_path / "fig", formats=("png", "svg"))
    assert "long traceback" not in str(err.value) and err.value.__cause__ is None
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="eps"):
        export_figure(small_figure(), tmp_path / "fig", formats=("eps",))
