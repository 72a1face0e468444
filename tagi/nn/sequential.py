"""A TAGI network: a chain of layers with one forward, one backward and one step per batch."""
import copy

import numpy as np

from ..chain import build_chain, check_input_batch, check_state_dict
from ..divergence import valid_moments


def default_cap_factor(batch_size):
    """cuTAGI's current cap rule (docs/math.md §6.2, last row): 0.1 for B = 1, 2 below 256, 3 above."""
    if batch_size == 1:
        return 0.1
    return 2.0 if batch_size < 256 else 3.0


def _forward(layers, mu, var):
    for layer in layers:
        mu, var = layer.forward(mu, var)
    return mu, var


def _rows(arrays, first, count):
    """Samples first..first+count-1 of each array (None stays None)."""
    return [None if a is None else a[first:first + count] for a in arrays]


class Sequential:
    """Layers applied in order; every layer's input shape is inferred from ``input_shape``.

    Args:
        *layers: ``tagi.nn`` layers.
        input_shape: one sample's shape, e.g. (3, 32, 32) or (784,).
        backend: "numpy", "numba", "cupy" or "auto".
        dtype: "float32" (default) or "float64".
        seed: seeds the parameter initialisation (same values on every backend).
        cap_factor: bound of the capped update; None picks ``default_cap_factor(B)``.

    ``forward(x)`` takes (B, *input_shape) and returns the output moments
    ``(mu, var)``, each (B, *output_shape); ``backward(delta_mu, delta_var)`` takes
    the output innovations of that batch; ``step()`` updates every parameter.

    Parts: the backend may run a batch in parts (``backend.batch_parts``: on
    numba, up to 8 contiguous parts of at least 4 samples, fixed by the batch
    size). Each part runs the whole forward and backward on copies of the
    layers that share the parameter arrays and keep their own forward state,
    the parts shared out among the threads, so a step hands work between
    threads twice instead of in every op. A parameter delta is var_w (or
    var_w**2) times a sum over the samples, so the parts' deltas, added in part
    order, are the whole batch's (to float round-off), and the same at any
    thread count.
    """

    def __init__(self, *layers, input_shape, backend="numpy", dtype="float32", seed=None,
                 cap_factor=None):
        self.layers = list(layers)
        self.backend, self.dtype, self.input_shape, self.output_shape = build_chain(
            self.layers, input_shape, backend, dtype, seed)
        self.cap_factor = cap_factor
        self.batch_size, self._backward_done = None, False
        self._ranges, self._part_layers = None, {}
        self._first_parametric = next(
            (i for i, layer in enumerate(self.layers) if layer.has_params), len(self.layers))

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return (f"Sequential(\n  {inner},\n  input_shape={self.input_shape}, "
                f"backend={self.backend.NAME!r}, dtype={self.dtype.name!r})")

    @property
    def num_parameters(self):
        """Number of Gaussian parameters (each a mean and a variance)."""
        return sum(int(layer.mu_w.size + layer.mu_b.size) for layer in self.layers if layer.has_params)

    def _check_input(self, x):
        check_input_batch(x, self.input_shape)
        if isinstance(x, np.ndarray) and not np.isfinite(x).all():
            bad = np.unique(np.nonzero(~np.isfinite(x).reshape(len(x), -1))[0])
            raise ValueError(f"input batch holds NaN or infinite values in samples {bad[:10].tolist()}")

    def forward(self, x, var_x=None):
        """x, var_x: (B, *input_shape), var_x None for an exact input -> output (mu, var).

        var_x must be finite and >= 0 (ValueError otherwise)."""
        self._check_input(x)
        self.batch_size, self._backward_done = x.shape[0], False
        mu = self.backend.asarray(x, dtype=self.dtype)
        var = None if var_x is None else self.backend.asarray(var_x, dtype=self.dtype)
        if var is not None and (var.shape != mu.shape or not valid_moments(mu, var)):
            raise ValueError(f"var_x must be finite and >= 0, shaped like x {tuple(mu.shape)}; got shape "
                             f"{tuple(var.shape)}" + ("" if var.shape != mu.shape else
                                                      " with NaN, infinite or negative entries"))
        if var is None and self._first_parametric != 0:
            var = self.backend.xp.zeros_like(mu)
        self._ranges = self.backend.batch_parts(x.shape[0])
        if len(self._ranges) == 1:
            self._part_layers = {}          # no copies from an earlier batch kept alive
            return _forward(self.layers, mu, var)
        self._part_layers = {first: [copy.copy(layer) for layer in self.layers]
                             for first, _ in self._ranges}
        outs = self.backend.run_parts(self._ranges, lambda first, count: _forward(
            self._part_layers[first], *_rows((mu, var), first, count)))
        return tuple(self.backend.xp.concatenate(moment) for moment in zip(*outs))

    def backward(self, delta_mu, delta_var):
        """Push the output innovations (B, *output_shape) back; parameter deltas use prior parameters."""
        if self.batch_size is None:
            raise RuntimeError("backward() called before forward()")
        expected = (self.batch_size,) + self.output_shape
        if tuple(delta_mu.shape) != expected or tuple(delta_var.shape) != expected:
            raise ValueError(f"innovations have shapes {tuple(delta_mu.shape)} and "
                             f"{tuple(delta_var.shape)}, expected {expected}")
        self._backward_done = True
        if len(self._ranges) == 1:
            self._backward(self.layers, delta_mu, delta_var)
            return
        self.backend.run_parts(self._ranges, lambda first, count: self._backward(
            self._part_layers[first], *_rows((delta_mu, delta_var), first, count)))
        for index, layer in enumerate(self.layers):
            if layer.has_params:   # every delta is var_w (or var_w**2) times a sum over samples
                part_deltas = [layers[index].deltas for layers in self._part_layers.values()]
                layer.deltas = tuple(None if parts[0] is None else sum(parts[1:], parts[0])
                                     for parts in zip(*part_deltas))

    def _backward(self, layers, delta_mu, delta_var):
        for index in range(len(layers) - 1, self._first_parametric - 1, -1):
            delta_mu, delta_var = layers[index].backward(
                delta_mu, delta_var, input_delta=index > self._first_parametric)

    def step(self):
        """Apply every layer's capped update, after the whole backward pass (once per backward)."""
        if not self._backward_done:
            raise RuntimeError("step() needs a forward() and backward() of a batch first (and "
                               "applies its deltas once)")
        self._backward_done = False
        cap = self.cap_factor if self.cap_factor is not None else default_cap_factor(self.batch_size)
        for layer in self.layers:
            layer.step(cap)

    def state_dict(self):
        """{"{index}.mu_w": array, ...} as host numpy arrays; weights shaped like PyTorch's."""
        return {f"{i}.{name}": self.backend.to_numpy(value).copy()
                for i, layer in enumerate(self.layers) if layer.has_params
                for name, value in layer.params().items()}

    def load_state_dict(self, state):
        """Set every parameter from ``state``; keys and shapes must match ``state_dict()`` exactly."""
        own = {f"{i}.{name}": value for i, layer in enumerate(self.layers) if layer.has_params
               for name, value in layer.params().items()}
        check_state_dict({key: value.shape for key, value in own.items()}, state)
        for key in own:
            index, name = key.split(".")
            setattr(self.layers[int(index)], name,
                    self.backend.asarray(np.array(state[key]), dtype=self.dtype))
