"""tagi: Tractable Approximate Gaussian Inference (Goulet, Nguyen & Amiri, JMLR 2021).

The subpackages load when first used (``tagi.nn``, ``tagi.bp``, ``tagi.loop``, ...; PEP 562),
so that importing a backend (``tagi.backends.numpy_backend``) loads no layer code.
"""
import importlib

from .backends import get_backend

__version__ = "0.1.0"      # the one place of the version: setup.py and the run summaries read it
__all__ = ["nn", "get_backend"]


def __getattr__(name):
    """``tagi.NAME`` for a submodule not imported yet: import it."""
    if name.startswith("__"):                       # dunders (``__wrapped__``, ...) are never modules
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":      # the submodule exists, one of its imports does not
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
