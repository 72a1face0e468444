"""The BP layer contract and point parameters.

A layer is declared with its hyperparameters only (the same constructor
arguments as its ``tagi.nn`` namesake); ``Sequential`` calls
``build(in_shape, backend, dtype, rng)`` once the input shape is known, which
returns the output shape (per sample, without the batch axis).

- ``forward(x, training) -> y`` keeps what ``backward`` needs; ``training``
  switches on dropout masks and the bookkeeping of max-pool winners;
- ``backward(grad, input_grad=True)`` takes dL/dy of the last training forward,
  sets the ``grad`` of every parameter (overwritten, not accumulated) and
  returns dL/dx (``None`` when ``input_grad`` is False).

Arrays are in the backend's type (``backend.xp``): NCHW images, (B, N) vectors.
"""
import numpy as np

from .. import shapes
from ..checks import check_choice, check_number

# every initialisation a BP layer knows: TAGI's rules for the initial means, then two frameworks' defaults
INIT_METHODS = shapes.INIT_METHODS + ("torch_default", "glorot_uniform")


class Parameter:
    """A point parameter: ``value`` (backend array), ``grad`` (same shape, after a backward pass).

    ``decay`` says whether weight decay applies to it (weights yes, biases no).
    """

    def __init__(self, value, decay):
        self.value, self.grad, self.decay = value, None, decay

    def __repr__(self):
        return f"Parameter(shape={tuple(self.value.shape)}, decay={self.decay})"


class Layer:
    """A BP layer without parameters: the output shape is the input shape."""

    has_params = False

    def build(self, in_shape, backend, dtype, rng):
        self.backend = backend
        self.in_shape = tuple(in_shape)
        return self.in_shape

    def __repr__(self):
        return f"{type(self).__name__}()"

    def params(self):
        """{name: Parameter} of this layer; none here."""
        return {}


class ParametricLayer(Layer):
    """A layer with a weight and a bias ``Parameter``.

    Initialisation (``init_method``, one of ``INIT_METHODS``), seeded by the Sequential's generator,
    with fan_in / fan_out = in / out features (Linear) or k*k*in / k*k*out channels (Conv2d):

    - ``"He"`` (default) / ``"Xavier"``: TAGI's rule for the initial means (docs/math.md
      §2.1), N(0, 1/fan_in) or N(0, 2/(fan_in + fan_out)) for weights and biases alike
      (TAGI's "He" uses 1, not 2, over fan_in); with the same seed and spec a BP
      network starts from exactly the means of its TAGI twin;
    - ``"torch_default"``: PyTorch's defaults for Linear and Conv2d, weights and biases
      ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Kaiming-uniform with a = sqrt(5));
    - ``"glorot_uniform"``: Keras' defaults for Dense and Conv2D, weights
      ~ U(-sqrt(6/(fan_in + fan_out)), +sqrt(6/(fan_in + fan_out))), biases zero.

    ``gain_w`` / ``gain_b`` multiply the spread of the initial weights / biases (in
    TAGI they scale the prior standard deviations; point weights have none).
    """

    has_params = True

    def __init__(self, init_method="He", gain_w=1.0, gain_b=1.0):
        self.init_method = check_choice("init_method", init_method, INIT_METHODS)
        self.gain_w = check_number("gain_w", gain_w, low=0, low_open=True)
        self.gain_b = check_number("gain_b", gain_b, low=0, low_open=True)

    def init_params(self, param_shapes, dtype, rng):
        """Draw ``self.weight`` and ``self.bias`` of ``param_shapes`` (``tagi.shapes.ParamShapes``)
        on the host, then move them."""
        weight_shape, fan_in, fan_out = param_shapes.weight, param_shapes.fan_in, param_shapes.fan_out
        n_out = weight_shape[0]
        if self.init_method == "torch_default":
            bound = 1.0 / np.sqrt(fan_in)
            w = rng.uniform(-bound, bound, size=weight_shape) * self.gain_w
            b = rng.uniform(-bound, bound, size=n_out) * self.gain_b
        elif self.init_method == "glorot_uniform":
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-bound, bound, size=weight_shape) * self.gain_w
            b = np.zeros(n_out)
        else:
            scale = shapes.init_scale(self.init_method, fan_in, fan_out)
            w = rng.normal(0.0, scale, size=weight_shape) * self.gain_w
            b = rng.normal(0.0, scale, size=n_out) * self.gain_b
        self.weight = Parameter(self.backend.asarray(w, dtype=dtype), decay=True)
        self.bias = Parameter(self.backend.asarray(b, dtype=dtype), decay=False)

    def params(self):
        return {"weight": self.weight, "bias": self.bias}
