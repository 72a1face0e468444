"""Every fast backend against the NumPy reference: op by op, then whole training steps.

Parametrised over the non-reference backends; one that cannot run here (its
module raises ImportError, or it needs a GPU and none is present) is skipped
with the reason. Arrays go in through ``backend.asarray`` and come back through
``backend.to_numpy``; results are compared with the float64 reference
(tests/op_parity.py). Each backend compiles its kernels once per pytest run, in
the ``fast`` fixture, before the first test uses them.
"""
import logging
import time
from functools import partial

import numpy as np
import pytest

from op_parity import (BACKWARD, DELTAS, FORWARD, OP_CASES, check_op, check_training_steps,
                       conv_arrays, elementwise_arrays, op_arguments, pool_arrays)
from tagi import nn
from tagi.backends import get_backend, gpu_missing
from tagi.loop import train_step
from tagi.models import architecture, tagi_network

log = logging.getLogger(__name__)

BACKENDS = ["numba", "cupy"]
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]

# Beyond the shared cases, on batches of 1 and 17: 'same' convolutions on non-square maps (one
# through one-sided padding), a stride-1 convolution with a smaller output, a kernel larger than
# its stride, and the CIFAR pool on a non-square map.
MORE_CONV_CASES = [
    (3, 9, 7, 4, 5, 1, 2, "symmetric"),
    (2, 5, 6, 3, 3, 1, 2, "bottom_right"),
    (1, 7, 5, 2, 3, 1, 1, "bottom_right"),
    (2, 6, 8, 2, 4, 3, 2, "symmetric"),
]
MORE_POOL_CASES = [(3, 10, 8, 3, 2, 1, "bottom_right"), (2, 7, 9, 3, 2, 1, "symmetric")]
BATCHES = [1, 17]


def cifar_net(backend, dtype):
    return tagi_network(architecture("cifar10_3conv"), 11, backend=backend, dtype=dtype, seed=0)


@pytest.fixture(scope="session", params=BACKENDS)
def fast(request):
    """The backend under test, its kernels compiled (the first pytest run on a machine pays)."""
    name = request.param
    try:
        backend = get_backend(name)
    except ImportError as err:
        pytest.skip(str(err))
    start = time.perf_counter()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    for dtype in DTYPES:
        train_step(cifar_net(backend, np.dtype(dtype).name), nn.HierarchicalSoftmax(10, backend=backend),
                   x, np.array([0, 7]), 1.0)
    log.info("backend %s: warm-up (kernel compilation) took %.1f s", name, time.perf_counter() - start)
    return backend


def check(fast, op, args, dtype):
    check_op(fast, op, args, dtype, to_device=fast.asarray, to_host=fast.to_numpy)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("op_case", OP_CASES, ids=[case[0] for case in OP_CASES])
def test_op(fast, op_case, dtype):
    """Every op of the contract with every None pattern it allows (tests/op_parity.py)."""
    _, op, make_arrays, case, dropped = op_case
    check(fast, op, op_arguments(op, make_arrays, case, dropped), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", MORE_CONV_CASES, ids=str)
def test_conv2d_more_shapes(fast, case, batch, dtype):
    arrays = partial(conv_arrays, batch=batch)
    for op, modes in [("conv2d_forward", FORWARD), ("conv2d_backward", BACKWARD),
                      ("conv2d_param_deltas", DELTAS)]:
        for dropped in modes.values():
            check(fast, op, op_arguments(op, arrays, case, dropped), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", MORE_POOL_CASES, ids=str)
def test_avgpool2d_more_shapes(fast, case, batch, dtype):
    arrays = partial(pool_arrays, batch=batch)
    for op in ("avgpool2d_forward", "avgpool2d_backward"):
        for dropped in [(), ("var_a", "delta_var")]:
            check(fast, op, op_arguments(op, arrays, case, dropped), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_training_steps_match_reference(fast, rng, dtype):
    """The 3-conv CIFAR-10 network: prior outputs, then every parameter after two steps."""
    x = rng.standard_normal((5, 3, 32, 32))
    check_training_steps(cifar_net, fast, dtype, x, np.array([0, 3, 9, 4, 7]), to_host=fast.to_numpy)


def test_capped_update_writes_through_views(fast):
    """Parameters given as non-contiguous views (here transposed) are still updated in place."""
    mu, var, d_mu, d_var, cap = op_arguments("capped_update", elementwise_arrays, "capped_update", ())
    want = [mu.copy(), var.copy()]
    get_backend("numpy").capped_update(*want, d_mu, d_var, cap)
    params = [fast.asarray(np.ascontiguousarray(a.T)) for a in (mu, var)]
    fast.capped_update(params[0].T, params[1].T, fast.asarray(d_mu), fast.asarray(d_var), cap)
    for got, w in zip(params, want):
        np.testing.assert_allclose(fast.to_numpy(got).T, w, rtol=1e-12)


def test_transfers_round_trip(fast, rng):
    x = rng.standard_normal((3, 4))
    back = fast.to_numpy(fast.asarray(x, dtype=np.float32))
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, x.astype(np.float32))


def numba_or_skip():
    try:
        return get_backend("numba")
    except ImportError as err:
        pytest.skip(str(err))


def test_numba_chunks_agree_with_one_chunk(monkeypatch):
    """The Numba backend cuts large batches into chunks: chunk borders must not show."""
    numba_backend = numba_or_skip()
    ops = ["conv2d_forward", "conv2d_backward", "conv2d_param_deltas"]
    args = {op: op_arguments(op, partial(conv_arrays, batch=7), MORE_CONV_CASES[0], ()) for op in ops}
    whole = {op: getattr(numba_backend, op)(*args[op]) for op in ops}
    monkeypatch.setattr(numba_backend, "CHUNK_FLOATS", 1)                # one sample per chunk
    for op in ops:
        for got, want in zip(getattr(numba_backend, op)(*args[op]), whole[op]):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max(), err_msg=op)


def test_auto_picks_numba_without_a_gpu():
    if gpu_missing() is None:
        pytest.skip("a GPU is present: auto picks cupy")
    numba_or_skip()
    assert get_backend("auto").NAME == "numba"
