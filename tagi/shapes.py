"""Shapes and initial scales of the layers, shared by TAGI (``tagi.nn``) and BP (``tagi.bp``).

Plain functions of a layer's hyperparameters and of one sample's input shape
(no batch axis); this module imports no backend.

- ``linear_shapes`` / ``conv2d_shapes``: the weight shape, fan-in, fan-out and
  output shape of a layer with a weight and a bias (``ParamShapes``);
- ``Pool2dWindow``: a pooling layer's hyperparameters and window
  (``tagi.geometry.window2d``), mixed into the TAGI and the BP pooling layers;
- ``init_scale``: the standard deviation of the initial means (docs/math.md §2.1).
"""
import math
from typing import NamedTuple

from .geometry import check_max_pool, window2d

INIT_METHODS = ("He", "Xavier")


class ParamShapes(NamedTuple):
    """What a layer with a weight and a bias needs to build: shapes without the batch axis."""

    weight: tuple   # (N_out, N_in) or (C_out, C_in, K, K)
    fan_in: int
    fan_out: int
    out: tuple      # one sample's output shape


def linear_shapes(in_features, out_features, in_shape):
    """z = W a + b, W (out_features, in_features); an image input (C, H, W) is read flattened."""
    if math.prod(in_shape) != in_features:
        raise ValueError(f"Linear({in_features}, {out_features}) expects {in_features} input "
                         f"features, but its input has shape {tuple(in_shape)}")
    return ParamShapes((out_features, in_features), in_features, out_features, (out_features,))


def conv2d_shapes(in_channels, out_channels, kernel_size, stride, padding, padding_type, in_shape):
    """A cross-correlation with weights (C_out, C_in, K, K) -> (ParamShapes, Window2d).

    ``padding_type`` is "symmetric" (PyTorch-like) or "bottom_right" (cuTAGI's type 2).
    """
    if len(in_shape) != 3 or in_shape[0] != in_channels:
        raise ValueError(f"Conv2d({in_channels}, {out_channels}, {kernel_size}) expects a "
                         f"({in_channels}, H, W) input, got shape {tuple(in_shape)}")
    geom = window2d(in_shape, kernel_size, stride, padding, padding_type)
    k = geom.kernel
    shapes = ParamShapes((out_channels, in_channels, k, k), k * k * in_channels,
                         k * k * out_channels, (out_channels, geom.out_height, geom.out_width))
    return shapes, geom


class Pool2dWindow:
    """A pooling layer's window over (C, H, W) maps, mixed in before a method's ``Layer``
    (``class AvgPool2d(Pool2dWindow, Layer)``); ``stride`` defaults to ``kernel_size``.

    ``build`` builds the ``Layer``, sets ``self.geom`` (``tagi.geometry.Window2d``) and returns
    the (C, Ho, Wo) output shape; a layer with ``max_pool`` set also requires padding <
    kernel_size (``tagi.geometry.check_max_pool``).
    """

    max_pool = False

    def __init__(self, kernel_size, stride=None, padding=0, padding_type="symmetric"):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.padding_type = padding, padding_type

    def __repr__(self):
        return (f"{type(self).__name__}({self.kernel_size}, {self.stride}, padding={self.padding}, "
                f"padding_type={self.padding_type!r})")

    def build(self, in_shape, backend, dtype, rng):
        super().build(in_shape, backend, dtype, rng)
        self.geom = window2d(self.in_shape, self.kernel_size, self.stride, self.padding,
                             self.padding_type)
        if self.max_pool:
            check_max_pool(self.geom, self)
        return (self.geom.channels, self.geom.out_height, self.geom.out_width)


def init_scale(init_method, fan_in, fan_out):
    """Math doc §2.1: the std of the initial means; "He" is sqrt(1/fan_in) (1, not 2), else Xavier."""
    if init_method not in INIT_METHODS:
        raise ValueError(f"init_method must be one of {INIT_METHODS}, got {init_method!r}")
    if init_method == "He":
        return math.sqrt(1.0 / fan_in)
    return math.sqrt(2.0 / (fan_in + fan_out))
