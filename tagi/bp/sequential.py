"""A BP network: a chain of point-weight layers with one forward, one backward per batch."""
import numpy as np

from ..chain import build_chain, check_input_batch, check_state_dict


class Sequential:
    """Layers applied in order; every layer's input shape is inferred from ``input_shape``.

    Args:
        *layers: ``tagi.bp`` layers.
        input_shape: one sample's shape, e.g. (3, 32, 32) or (784,).
        backend: "numpy", "numba", "cupy", "auto" or a backend module.
        dtype: "float32" (default) or "float64".
        seed: seeds the parameter initialisation (same values on every backend) and the
            dropout masks (drawn on the backend's device).

    ``forward(x, training)`` takes (B, *input_shape) and returns (B, *output_shape);
    ``backward(grad)`` takes dL/d(output) of the last training forward and sets every
    parameter's ``grad``; an optimiser built on ``parameters()`` then takes the step.
    """

    def __init__(self, *layers, input_shape, backend="numpy", dtype="float32", seed=None):
        self.layers = list(layers)
        self.backend, self.dtype, self.input_shape, self.output_shape = build_chain(
            self.layers, input_shape, backend, dtype, seed)
        self._first_parametric = next(
            (i for i, layer in enumerate(self.layers) if layer.has_params), len(self.layers))
        self._trained_batch = None        # batch size of the last training forward

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return (f"Sequential(\n  {inner},\n  input_shape={self.input_shape}, "
                f"backend={self.backend.NAME!r}, dtype={self.dtype.name!r})")

    def parameters(self):
        """Every ``Parameter``, layer by layer (weight, then bias)."""
        return [param for layer in self.layers for param in layer.params().values()]

    @property
    def num_parameters(self):
        return sum(int(param.value.size) for param in self.parameters())

    def forward(self, x, training=False):
        """x (B, *input_shape), host or backend array -> outputs (B, *output_shape) on the backend."""
        check_input_batch(x, self.input_shape)
        y = self.backend.asarray(x, dtype=self.dtype)
        for layer in self.layers:
            y = layer.forward(y, training)
        self._trained_batch = x.shape[0] if training else None
        return y

    def backward(self, grad, input_grad=False):
        """dL/d(outputs) (B, *output_shape) -> sets every parameter's grad; returns dL/dx if ``input_grad``."""
        if self._trained_batch is None:
            raise RuntimeError("backward() needs a forward(x, training=True) on the same batch first")
        expected = (self._trained_batch,) + self.output_shape
        if tuple(grad.shape) != expected:
            raise ValueError(f"output gradient has shape {tuple(grad.shape)}, expected {expected}")
        stop = 0 if input_grad else self._first_parametric
        for index in range(len(self.layers) - 1, stop - 1, -1):
            grad = self.layers[index].backward(grad, input_grad=input_grad or index > stop)
        return grad if input_grad else None

    def reseed(self, seed):
        """Restart every random layer's generator (dropout masks) from ``seed``, one stream per layer."""
        for index, layer in enumerate(self.layers):
            if hasattr(layer, "reseed"):
                layer.reseed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))

    def state_dict(self):
        """{"{index}.weight": array, "{index}.bias": array} as host numpy copies; weights shaped like PyTorch's."""
        return {f"{i}.{name}": self.backend.to_numpy(param.value).copy()
                for i, layer in enumerate(self.layers) for name, param in layer.params().items()}

    def load_state_dict(self, state):
        """Set every parameter from ``state``; keys and shapes must match ``state_dict()`` exactly."""
        own = {f"{i}.{name}": param for i, layer in enumerate(self.layers)
               for name, param in layer.params().items()}
        check_state_dict({key: param.value.shape for key, param in own.items()}, state)
        for key, param in own.items():
            param.value = self.backend.asarray(np.array(state[key]), dtype=self.dtype)
