"""The TAGI layer contract, and the Gaussian weights and biases of a parametric layer.

A layer is declared with its hyperparameters only; ``Sequential`` calls
``build(in_shape, backend, dtype, rng)`` once the input shape is known, which
returns the output shape (one sample's, no batch axis; the shape arithmetic is
``tagi.shapes``, shared with BP).

- ``forward(mu, var) -> (mu, var)`` keeps what ``backward`` needs;
- ``backward(delta_mu, delta_var, input_delta=True)`` returns the innovations of
  the layer's input (``None, None`` when ``input_delta`` is False), computed with
  the prior parameters; a parametric layer also computes its parameter deltas;
- ``step(cap_factor)`` applies the parameter deltas (parametric layers only).
"""
import numpy as np

from ..shapes import INIT_METHODS, init_scale

PARAM_NAMES = ("mu_w", "var_w", "mu_b", "var_b")


class Layer:
    """A TAGI layer without parameters (activations, pooling): the output shape is the input shape."""

    has_params = False

    def build(self, in_shape, backend, dtype, rng):
        self.backend = backend
        self.in_shape = tuple(in_shape)
        return self.in_shape

    def step(self, cap_factor):
        """Nothing to update."""

    def __repr__(self):
        return f"{type(self).__name__}()"


class ParametricLayer(Layer):
    """A layer with Gaussian weights and biases, N(mu, var) each, all independent.

    Holds ``mu_w, var_w`` (the weight shape), ``mu_b, var_b`` (``(out,)``) in the
    backend's array type, and after ``backward`` their ``deltas``
    ``(delta_mu_w, delta_var_w, delta_mu_b, delta_var_b)``. Prior (docs/math.md §2.1):
    every mean ~ N(0, scale**2), every variance (gain * scale)**2, with
    ``scale = init_scale(init_method, fan_in, fan_out)``.
    """

    has_params = True

    def __init__(self, init_method="He", gain_w=1.0, gain_b=1.0):
        if init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}, got {init_method!r}")
        if not (gain_w > 0 and gain_b > 0):
            raise ValueError(f"gain_w and gain_b must be > 0, got {gain_w!r}, {gain_b!r}")
        self.init_method, self.gain_w, self.gain_b = init_method, float(gain_w), float(gain_b)
        self.deltas = None

    def init_params(self, shapes, dtype, rng):
        """Draw the prior of ``shapes`` (a ``tagi.shapes.ParamShapes``) on the host, then move it."""
        scale = init_scale(self.init_method, shapes.fan_in, shapes.fan_out)
        n_out = shapes.weight[0]
        host = {
            "mu_w": rng.normal(0.0, scale, size=shapes.weight),
            "var_w": np.full(shapes.weight, (self.gain_w * scale) ** 2),
            "mu_b": rng.normal(0.0, scale, size=n_out),
            "var_b": np.full(n_out, (self.gain_b * scale) ** 2),
        }
        for name, value in host.items():
            setattr(self, name, self.backend.asarray(value, dtype=dtype))

    def params(self):
        """{"mu_w": ..., "var_w": ..., "mu_b": ..., "var_b": ...} in the backend's array type."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def step(self, cap_factor):
        """Capped update of every weight and bias from the stored deltas (docs/math.md §6.2)."""
        if self.deltas is None:
            raise RuntimeError(f"{self!r}: step() called before backward()")
        delta_mu_w, delta_var_w, delta_mu_b, delta_var_b = self.deltas
        self.backend.capped_update(self.mu_w, self.var_w, delta_mu_w, delta_var_w, cap_factor)
        self.backend.capped_update(self.mu_b, self.var_b, delta_mu_b, delta_var_b, cap_factor)
        self.deltas = None
