"""Divergence: NaN or infinite values in training are an error saying where, never a result.

The training loops check each batch's outputs (small arrays, one host read per
step) before updating; the main job checks every parameter at each epoch's end,
before anything of that epoch is written.
"""
import numpy as np


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinite values.

    Attributes: ``what`` (what was found non-finite), ``step`` (1-based batch of the
    epoch, or None at its end), ``layers`` (the parameter keys, "{index}.{name}",
    holding non-finite values), ``origin`` (the layer, "{index} ({type})", whose output
    moments were the first non-finite ones, when known: ``first_nonfinite_layer``) and
    ``epoch`` (set by the caller that knows it).
    """

    def __init__(self, what, step=None, layers=(), epoch=None, origin=None):
        self.what, self.step, self.layers, self.epoch = what, step, list(layers), epoch
        self.origin = origin
        super().__init__(what)

    def __str__(self):
        where = [f"epoch {self.epoch}"] if self.epoch is not None else []
        where.append(f"step {self.step}" if self.step is not None else "the end of the epoch")
        layers = (f"non-finite parameters in layer(s) {', '.join(self.layers)}" if self.layers
                  else "every parameter still finite")
        origin = f"; the first non-finite output is layer {self.origin}'s" if self.origin else ""
        return f"training diverged at {', '.join(where)}: {self.what} ({layers}){origin}"


def _finite(array):
    """On the array's device: whether every entry is finite (NaN and inf fail ``abs(a) < inf``);
    array operators only, so the arrays of every backend work."""
    return (abs(array) < np.inf).all()


def all_finite(array):
    """True if every entry of a backend array is finite (one host read)."""
    return bool(_finite(array))


def valid_moments(mu, var):
    """True if every mean and variance is finite and every variance >= 0 (one host read)."""
    return bool(_finite(mu) & _finite(var) & (var >= 0).all())


def nonfinite_keys(state, layers=None):
    """The keys of the host arrays in ``state`` (name -> array) that hold NaN or infinite values;
    with ``layers`` (a network's list, keys "{index}.{name}"), each followed by its layer's type."""
    keys = [key for key, value in state.items()
            if np.issubdtype(np.asarray(value).dtype, np.inexact) and not np.isfinite(value).all()]
    if layers is None:
        return keys
    return [f"{key} ({type(layers[int(key.split('.')[0])]).__name__})" for key in keys]


def negative_variance_keys(state):
    """The keys of the variances in ``state`` (name -> host array; a variance's name, after its
    layer's "{index}.", starts with "var": ``var_w``, ``var_b``) that hold a negative entry."""
    return [key for key, value in state.items()
            if key.rsplit(".", 1)[-1].startswith("var") and (np.asarray(value) < 0).any()]


def first_nonfinite_layer(net, x):
    """The layer of ``net`` (a tagi.nn.Sequential) where the forward pass of the batch ``x``
    (B, *input_shape) first goes wrong -> "{index} ({type})" of the first layer whose output
    means or variances are NaN, infinite or (variances) negative, or None if none is. Runs
    the layers one by one, once, on the whole batch: for reporting a divergence only."""
    mu = net.backend.asarray(x, dtype=net.dtype)
    var = None if net.layers and net.layers[0].has_params else net.backend.xp.zeros_like(mu)
    for index, layer in enumerate(net.layers):
        mu, var = layer.forward(mu, var)
        if not (all_finite(mu) if var is None else valid_moments(mu, var)):
            return f"{index} ({type(layer).__name__})"
    return None
