"""The cupy backend on a GPU against the NumPy reference.

Every op (op_parity.OP_CASES) on the three GEMM paths, one training step of the 3-conv CIFAR-10
network parameter by parameter, and a training step recorded as a CUDA graph (which also shows
that a step never synchronises: a synchronisation inside stream capture is an error).
Skipped where cupy or a CUDA device is missing; tests/test_kernels_cpu.py runs the same kernels
on the CPU.
"""
import contextlib

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="the cupy backend needs cupy (pip install cupy-cuda13x)")

from op_parity import (GEMM_PATHS, OP_CASES, check_op, check_training_steps, op_arguments,  # noqa: E402
                       replay_training_steps)
from tagi import models, nn  # noqa: E402
from tagi.backends import get_backend  # noqa: E402


def _devices():
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


if not _devices():
    pytest.skip("no CUDA device", allow_module_level=True)

backend = get_backend("cupy")
DTYPES = (np.float32, np.float64)
PATHS = tuple(GEMM_PATHS)
OP_RUNS = [(path, *case) for case in OP_CASES
           for path in (PATHS if case[1].startswith(("conv2d", "linear")) else PATHS[:1])]


@pytest.fixture
def gemm_path():
    """Select a GEMM path of the backend (op_parity.GEMM_PATHS) for the rest of the test."""
    with contextlib.ExitStack() as stack:
        def select(path):
            stack.enter_context(backend.gemm_settings(**GEMM_PATHS[path]))
            return backend
        yield select


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path, name, op, make_arrays, case, dropped", OP_RUNS,
                         ids=[f"{run[0]}-{run[1]}" for run in OP_RUNS])
def test_op_matches_the_reference(gemm_path, path, name, op, make_arrays, case, dropped, dtype):
    check_op(gemm_path(path), op, op_arguments(op, make_arrays, case, dropped), dtype,
             to_device=cupy.asarray, to_host=cupy.asnumpy)


def cifar_net(backend_name, dtype, seed=0):
    return models.tagi_network(models.architecture("cifar10_3conv"), 11, backend=backend_name,
                               dtype=dtype, seed=seed)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path", PATHS)
def test_cifar_training_step_matches_the_reference(gemm_path, path, rng, dtype):
    """float64: round-off only. float32: a ReLU whose mu_z lies within float32 round-off of 0
    may switch off in one run and not the other, which moves a few deltas by more."""
    gemm_path(path)
    x, labels = rng.standard_normal((8, 3, 32, 32)), rng.integers(0, 10, 8)
    check_training_steps(cifar_net, "cupy", dtype, x, labels, steps=1, to_host=cupy.asnumpy,
                         tol=1e-4 if dtype == np.float32 else None)


def test_a_captured_training_step_replays_like_eager_steps(rng):
    head = nn.HierarchicalSoftmax(10, backend=backend)
    batches = [(rng.standard_normal((16, 3, 32, 32)), rng.integers(0, 10, 16)) for _ in range(3)]
    eager, graphed = cifar_net("cupy", "float32"), cifar_net("cupy", "float32")
    for x, labels in batches:
        mu, var = eager.forward(x)
        eager.backward(*head.innovations(mu, var, labels, sigma_v=1.0))
        eager.step()

    graph = replay_training_steps(backend, graphed, head, batches)
    assert graph.captured, graph.reason
    got = graphed.state_dict()
    for key, want in eager.state_dict().items():
        np.testing.assert_allclose(got[key], want, rtol=1e-6, atol=1e-7, err_msg=key)
