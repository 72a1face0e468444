"""The TAGI layer contract and the Gaussian parameters of a parametric layer.

A layer is declared with its hyperparameters only; ``Sequential`` calls
``build(in_shape, backend, dtype, rng)`` once the input shape is known, which
returns the output shape (per sample, without the batch axis; the shape logic
is shared with BP in ``tagi.layer_shapes``).

- ``forward(mu, var) -> (mu, var)`` keeps what ``backward`` needs;
- ``backward(delta_mu, delta_var, input_delta=True)`` returns the innovations of
  the layer's input (``None, None`` when ``input_delta`` is False), computed with
  the prior parameters; a parametric layer also computes its parameter deltas;
- ``step(cap_factor)`` applies the parameter deltas (parametric layers only).
"""
import math

import numpy as np

from .. import layer_shapes

PARAM_NAMES = ("mu_w", "var_w", "mu_b", "var_b")
INIT_METHODS = ("He", "Xavier")


def init_scale(init_method, fan_in, fan_out):
    """Math doc §2.1: the std of the initial means; "He" is sqrt(1/fan_in) (1, not 2), else Xavier."""
    if init_method == "He":
        return math.sqrt(1.0 / fan_in)
    return math.sqrt(2.0 / (fan_in + fan_out))


class Layer(layer_shapes.Layer):
    """A TAGI layer without parameters (activations, pooling)."""

    def step(self, cap_factor):
        """Nothing to update."""


class ParametricLayer(layer_shapes.ParametricShape, Layer):
    """A layer with Gaussian weights and biases, N(mu, var) each, all independent.

    Holds ``mu_w, var_w`` (shape ``weight_shape``), ``mu_b, var_b`` (``(out,)``) in
    the backend's array type, and after ``backward`` their deltas.
    """

    def __init__(self, init_method="He", gain_w=1.0, gain_b=1.0):
        if init_method not in INIT_METHODS:
            raise ValueError(f"init_method must be one of {INIT_METHODS}, got {init_method!r}")
        if not (gain_w > 0 and gain_b > 0):
            raise ValueError(f"gain_w and gain_b must be > 0, got {gain_w!r}, {gain_b!r}")
        self.init_method, self.gain_w, self.gain_b = init_method, float(gain_w), float(gain_b)
        self.deltas = None

    def init_params(self, weight_shape, fan_in, fan_out, dtype, rng):
        """Math doc §2.1: mu ~ N(0, scale**2) for weights and biases; var = (gain * scale)**2."""
        scale = init_scale(self.init_method, fan_in, fan_out)
        n_out = weight_shape[0]
        host = {
            "mu_w": rng.normal(0.0, scale, size=weight_shape),
            "var_w": np.full(weight_shape, (self.gain_w * scale) ** 2),
            "mu_b": rng.normal(0.0, scale, size=n_out),
            "var_b": np.full(n_out, (self.gain_b * scale) ** 2),
        }
        for name, value in host.items():
            setattr(self, name, self.backend.asarray(value, dtype=dtype))

    def params(self):
        """{"mu_w": ..., "var_w": ..., "mu_b": ..., "var_b": ...} in the backend's array type."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def step(self, cap_factor):
        """Capped update of every weight and bias from the stored deltas (math doc §6.2)."""
        if self.deltas is None:
            raise RuntimeError(f"{self!r}: step() called before backward()")
        dmu_w, dvar_w, dmu_b, dvar_b = self.deltas
        self.backend.capped_update(self.mu_w, self.var_w, dmu_w, dvar_w, cap_factor)
        self.backend.capped_update(self.mu_b, self.var_b, dmu_b, dvar_b, cap_factor)
        self.deltas = None
