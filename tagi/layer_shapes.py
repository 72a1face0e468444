"""What TAGI (``tagi.nn``) and BP (``tagi.bp``) layers share: hyperparameters and shape inference.

A layer is declared with its hyperparameters only; ``build(in_shape, backend,
dtype, rng)`` is called by its network once the input shape (per sample) is
known and returns the output shape. The method-specific classes add their
parameters and arithmetic on top of these:

- ``Layer``: the base of every layer (remembers the backend and input shape);
- ``ParametricShape``: a layer with a weight and a bias; its ``build`` draws them
  through the method's ``init_params(weight_shape, fan_in, fan_out, dtype, rng)``;
- ``LinearShape``, ``Conv2dShape``: their hyperparameters and ``param_shapes``;
- ``Pool2dShape``: a pooling window over (C, H, W) maps;
- ``build_chain``: builds a network's layers in order, each on its predecessor's output shape.
"""
import math

import numpy as np

from .backends import get_backend
from .geometry import window2d

DTYPES = ("float32", "float64")


class Layer:
    """A layer without parameters: the output shape is the input shape."""

    has_params = False

    def build(self, in_shape, backend, dtype, rng):
        self.backend = backend
        self.in_shape = tuple(in_shape)
        return self.in_shape

    def __repr__(self):
        return f"{type(self).__name__}()"


class ParametricShape(Layer):
    """A layer with a weight and a bias; subclasses give ``param_shapes`` and ``init_params``."""

    has_params = True

    def build(self, in_shape, backend, dtype, rng):
        super().build(in_shape, backend, dtype, rng)
        weight_shape, fan_in, fan_out, out_shape = self.param_shapes(self.in_shape)
        self.init_params(weight_shape, fan_in, fan_out, dtype, rng)
        return out_shape


class LinearShape(ParametricShape):
    """z = W a + b with W (out_features, in_features); an image input is read flattened (C, H, W)."""

    def __init__(self, in_features, out_features, **init):
        super().__init__(**init)
        self.in_features, self.out_features = int(in_features), int(out_features)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"

    def param_shapes(self, in_shape):
        """-> (weight shape, fan_in, fan_out, output shape)."""
        if math.prod(in_shape) != self.in_features:
            raise ValueError(f"{self!r} expects {self.in_features} input features, "
                             f"but its input has shape {in_shape}")
        return (self.out_features, self.in_features), self.in_features, self.out_features, \
            (self.out_features,)


class Conv2dShape(ParametricShape):
    """Weights (out_channels, in_channels, k, k), biases (out_channels,); a cross-correlation.

    ``padding_type`` is "symmetric" (PyTorch-like) or "bottom_right" (cuTAGI type 2).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 padding_type="symmetric", **init):
        super().__init__(**init)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.padding_type = padding_type

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, {self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, padding_type={self.padding_type!r})")

    def param_shapes(self, in_shape):
        """Sets ``self.geom`` -> (weight shape, fan_in, fan_out, output shape)."""
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"{self!r} expects a ({self.in_channels}, H, W) input, got shape {in_shape}")
        self.geom = window2d(in_shape, self.kernel_size, self.stride, self.padding, self.padding_type)
        k = self.geom.kernel
        return ((self.out_channels, self.in_channels, k, k), k * k * self.in_channels,
                k * k * self.out_channels, (self.out_channels, self.geom.out_height, self.geom.out_width))


class Pool2dShape(Layer):
    """(B, C, H, W) -> (B, C, Ho, Wo) over ``kernel_size`` windows; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, padding_type="symmetric"):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.padding_type = padding, padding_type

    def __repr__(self):
        return (f"{type(self).__name__}({self.kernel_size}, {self.stride}, padding={self.padding}, "
                f"padding_type={self.padding_type!r})")

    def build(self, in_shape, backend, dtype, rng):
        super().build(in_shape, backend, dtype, rng)
        self.geom = window2d(in_shape, self.kernel_size, self.stride, self.padding, self.padding_type)
        return (self.geom.channels, self.geom.out_height, self.geom.out_width)


def build_chain(layers, input_shape, backend, dtype, seed):
    """Check the network's settings and build ``layers`` in order from one sample's ``input_shape``.

    -> (backend module, numpy dtype, input shape, output shape). ``seed`` seeds the
    initialisation (the same values on every backend).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not layers:
        raise ValueError("Sequential needs at least one layer")
    backend = get_backend(backend) if isinstance(backend, str) else backend
    dtype = np.dtype(dtype)
    input_shape = shape = tuple(int(n) for n in input_shape)
    rng = np.random.default_rng(seed)
    for layer in layers:
        shape = layer.build(shape, backend, dtype, rng)
    return backend, dtype, input_shape, tuple(shape)
