"""tagi: Tractable Approximate Gaussian Inference (Goulet, Nguyen & Amiri, JMLR 2021)."""
from . import nn
from .backends import get_backend

__version__ = "0.1.0"
__all__ = ["nn", "get_backend"]
