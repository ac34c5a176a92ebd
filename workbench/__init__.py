"""workbench: measure, imitate and inspect how a prompt steers a language model from the inside.

Reproduces *Steer Like the LLM* (Heyman and Vandeputte, ICML 2026): Delta_PS, the activation
change a steering instruction causes, token by token and layer by layer.
"""

__version__ = "0.1.0"

from workbench.core.models import EMBEDDED_MODEL, TINY_MODEL, LoadedModel, load_model

__all__ = ["__version__", "EMBEDDED_MODEL", "TINY_MODEL", "LoadedModel", "load_model"]
