"""Static export of figures (PNG, SVG, PDF, ...) through kaleido, which needs a Chrome or Chromium.

:func:`find_browser` says which browser kaleido would use; :func:`export_figure` writes one figure
in several formats in one kaleido session, each file atomically, and raises
:class:`FigureExportError` (with install instructions) when no browser is found or kaleido fails.
kaleido itself is imported only when an export runs.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import plotly.graph_objects as go
import plotly.io as pio

from workbench.core.files import atomic_path

__all__ = ["FigureExportError", "export_figure", "find_browser"]


class FigureExportError(RuntimeError):
    """Static export failed: no Chrome/Chromium for kaleido, or kaleido could not start it."""


_INSTALL_HINT = (
    "kaleido (plotly's static image exporter) needs a Chrome or Chromium browser. Install one with\n"
    "    sudo apt-get install chromium      (Debian/Ubuntu; or your OS's package manager)\n"
    "or let plotly download one:\n"
    "    plotly_get_chrome                  (shell)\n"
    "    import kaleido; kaleido.get_chrome_sync()   (Python)\n"
    "or point BROWSER_PATH at an existing chrome/chromium executable."
)
_FORMATS = ("png", "svg", "pdf", "jpeg", "jpg", "webp")


def find_browser() -> str | None:
    """The Chrome/Chromium executable kaleido would use (``BROWSER_PATH``, kaleido's own download,
    then the usual names on ``PATH``), or None."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium  # optional heavy dependency: imported only when this runs

        found = Chromium.find_browser(skip_local=False)
        if found:
            return str(found)
    except Exception:  # noqa: BLE001 - best effort; fall back to PATH
        pass
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def export_figure(
    fig: go.Figure, path: str | Path, formats: Sequence[str] = ("png", "svg", "pdf"),
    width: int | None = None, height: int | None = None, scale: float = 2.0,
) -> list[Path]:
    """Write ``fig`` as static images: ``path`` with each format's suffix (``fig.png``, ...).

    ``path`` may carry one of the suffixes or none. ``width``/``height`` default to the figure's own
    layout size (else plotly's defaults); ``scale`` multiplies pixels of raster formats. All files
    are written in one kaleido session, each atomically: on failure none is left half-written.

    Raises:
        FigureExportError: no Chrome/Chromium is found or kaleido fails to run; the message says
            how to install one.

    Example:
        >>> import tempfile
        >>> fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
        >>> out = Path(tempfile.mkdtemp()) / "bars"
        >>> try:
        ...     written = export_figure(fig, out, formats=("svg", "png"), width=300, height=200)
        ... except FigureExportError:  # no Chrome/Chromium here: the message says how to get one
        ...     written = [out.with_suffix(".svg"), out.with_suffix(".png")]
        >>> [path.name for path in written]
        ['bars.svg', 'bars.png']
    """
    formats = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in formats if f not in _FORMATS]
    if bad or not formats:
        raise ValueError(f"export_figure: unsupported format(s) {bad or formats}; choose from {_FORMATS}")
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower().lstrip(".") in _FORMATS else path
    targets = [stem.parent / f"{stem.name}.{f}" for f in formats]
    browser = find_browser()
    if browser is None:
        raise FigureExportError(f"cannot export {stem.name}: no Chrome/Chromium found.\n{_INSTALL_HINT}")
    width = width or fig.layout.width
    height = height or fig.layout.height
    try:
        from kaleido.errors import KaleidoError  # optional heavy dependency: imported only when this runs
    except ImportError:
        raise FigureExportError('static export needs kaleido>=1: pip install "kaleido>=1"') from None
    with ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(t)) for t in targets]
        try:
            kinds = ["jpeg" if f == "jpg" else f for f in formats]
            if hasattr(pio, "write_images"):  # plotly >= 6.1: one browser session for all files
                pio.write_images([fig] * len(tmps), tmps, format=kinds, width=width, height=height, scale=scale)
            else:
                for tmp, kind in zip(tmps, kinds):
                    pio.write_image(fig, tmp, format=kind, width=width, height=height, scale=scale)
        except (RuntimeError, OSError, KaleidoError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise FigureExportError(f"kaleido failed to export {stem.name} with browser {browser} "
                                    f"({type(exc).__name__}: {first}).\n{_INSTALL_HINT}") from None
    return targets
