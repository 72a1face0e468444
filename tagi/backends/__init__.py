"""Backends: one module of pure array functions per device, same names and signatures.

A backend module holds the arithmetic of every op (``linear_forward``,
``conv2d_forward``, ``conv2d_backward``, ``conv2d_param_deltas``,
``avgpool2d_forward``, ``relu_forward``, ``gaussian_innovations``,
``capped_update``, ...), the array module it works on (``xp``), and the two
transfers ``asarray`` (host numpy -> backend array) and ``to_numpy``.

``numpy``  the reference: readable, float64-capable, the oracle of the others.
``numba``  the CPU fast path (``numba`` package).
``cupy``   the GPU: raw CUDA kernels from ``kernels/*.cu``.
``auto``   cupy when a GPU is present, else numba, else numpy.
"""
import importlib
import sys

NAMES = ("numpy", "numba", "cupy")
CHOICES = NAMES + ("auto",)         # what a setting or a Sequential may name
DTYPES = ("float32", "float64")     # the floating types every backend computes in

# The contract: every backend module defines these, with the reference's signatures
# (tagi/backends/numpy_backend.py documents each op and the None conventions).
OPS = ("asarray", "to_numpy", "synchronize", "batch_parts", "run_parts",
       "linear_forward", "linear_backward", "linear_param_deltas",
       "conv2d_forward", "conv2d_backward", "conv2d_param_deltas",
       "avgpool2d_forward", "avgpool2d_backward", "maxpool2d_forward", "maxpool2d_backward",
       "relu_forward", "mixture_relu_forward", "leaky_relu_forward", "mixture_leaky_relu_forward",
       "scale_by_jacobian",
       "gaussian_innovations", "capped_update", "normal_cdf")


def gpu_missing():
    """Why no GPU can be used here (no cupy, no driver, no device), or None when one is present."""
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # no cupy, no driver, an old driver: all mean "no GPU"
        return f"{type(err).__name__}: {err}"
    return None if count > 0 else "cupy finds no CUDA device"


def get_backend(name="numpy"):
    """The backend module called ``name`` (one of CHOICES), or ``name`` itself when it
    is a backend module already. Choosing numba tunes the process for it
    (``numba_backend.tune_process``), before any of its kernels runs."""
    if not isinstance(name, str):
        backend = name
    elif name == "auto":
        if gpu_missing() is None:
            return get_backend("cupy")
        try:
            return get_backend("numba")
        except ImportError:
            return get_backend("numpy")
    elif name not in NAMES:
        raise ValueError(f"unknown backend {name!r}: choose one of {CHOICES}")
    else:
        try:
            backend = importlib.import_module(f"tagi.backends.{name}_backend")
        except ImportError as err:
            raise ImportError(f"backend {name!r} is not available here: {err}") from err
    if backend.NAME == "numba":
        backend.tune_process()
    return backend


def for_array(x):
    """The backend whose array type ``x`` has: cupy for a cupy array, else numpy."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return get_backend("cupy")
    return get_backend("numpy")
