"""A network as a chain of layers, for TAGI and BP alike: building it, checking an input batch
and a state dict.

Every layer has ``build(in_shape, backend, dtype, rng) -> out_shape`` (one
sample's shapes, no batch axis); ``build_chain`` calls it in order, each layer
on its predecessor's output shape.
"""
import numpy as np

from .backends import DTYPES, get_backend
from .divergence import negative_variance_keys, nonfinite_keys


def build_chain(layers, input_shape, backend, dtype, seed):
    """Check the network's settings and build ``layers`` in order from one sample's ``input_shape``.

    -> (backend module, numpy dtype, input shape, output shape). ``backend`` is a name
    (see ``tagi.backends``) or a backend module; ``seed`` seeds the initialisation
    (the same values on every backend).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not layers:
        raise ValueError("Sequential needs at least one layer")
    backend = get_backend(backend)
    dtype = np.dtype(dtype)
    input_shape = shape = tuple(int(n) for n in input_shape)
    rng = np.random.default_rng(seed)
    for layer in layers:
        shape = layer.build(shape, backend, dtype, rng)
    return backend, dtype, input_shape, tuple(shape)


def check_input_batch(x, input_shape):
    """Raise, naming what is wrong, unless ``x`` is an array (host or backend) of at least one
    sample shaped (B, *input_shape)."""
    expected = f"(batch, {', '.join(map(str, input_shape))})"
    if not hasattr(x, "ndim") or not hasattr(x, "shape"):
        raise TypeError(f"input batch must be an array shaped {expected}, got {type(x).__name__}")
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"input batch has shape {tuple(x.shape)}, expected {expected}")
    if x.shape[0] == 0:
        raise ValueError("input batch holds no samples (batch size 0)")


def check_state_dict(expected, state):
    """Raise unless ``state`` has exactly the keys of ``expected`` ({key: shape}) with those shapes,
    every value finite and every variance (a key whose name starts with "var") >= 0."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(f"state_dict does not fit this network: missing keys {missing}, "
                       f"unexpected keys {unexpected}")
    for key, shape in expected.items():
        if tuple(np.shape(state[key])) != tuple(shape):
            raise ValueError(f"state_dict[{key!r}] has shape {tuple(np.shape(state[key]))}, "
                             f"this network expects {tuple(shape)}")
    arrays = {key: np.asarray(state[key]) for key in expected}
    bad = nonfinite_keys(arrays)
    if bad:
        raise ValueError(f"state_dict holds NaN or infinite values in {', '.join(bad)}")
    negative = negative_variance_keys(arrays)
    if negative:
        raise ValueError(f"state_dict holds negative variances in {', '.join(negative)}")
