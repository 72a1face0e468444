"""Every fast backend against the NumPy reference: op by op on random shapes, then a training step.

Parametrised over the non-reference backends; a backend that cannot run here
(its module raises ImportError, or it needs a GPU and none is present) is
skipped with the reason. Arrays go in through ``backend.asarray`` and come
back through ``backend.to_numpy``. Each backend compiles its kernels once per
session, in the ``fast`` fixture, before the first test uses them.
"""
import logging
import time

import numpy as np
import pytest

from conftest import gaussian_tensors
from tagi import nn
from tagi.backends import _gpu_present, get_backend
from tagi.backends import numpy_backend as ref
from tagi.geometry import window2d
from tagi.loop import train_step
from tagi.models import architecture, tagi_network

log = logging.getLogger(__name__)

BACKENDS = ["numba", "cupy"]
NEEDS_GPU = {"cupy"}
DTYPES = [np.float32, np.float64]
# (rtol, atol relative to the largest reference value): float32 sums of up to ~1000 terms
TOLERANCE = {np.float32: (1e-4, 1e-5), np.float64: (1e-10, 1e-12)}

# (C, H, W, C_out, kernel, stride, padding, padding_type): odd and non-square maps, strides 1
# and 2, both padding types, 'same' convolutions and others
CONV_CASES = [
    (3, 9, 7, 4, 5, 1, 2, "symmetric"),      # same size, non-square
    (2, 5, 6, 3, 3, 1, 2, "bottom_right"),   # same size through one-sided padding
    (3, 7, 5, 2, 3, 2, 1, "symmetric"),
    (2, 9, 9, 3, 3, 2, 1, "bottom_right"),
    (1, 7, 5, 2, 3, 1, 1, "bottom_right"),   # stride 1, smaller output
    (2, 6, 8, 2, 4, 3, 2, "symmetric"),
    (3, 8, 6, 4, 2, 2, 0, "symmetric"),
]
POOL_CASES = [
    (3, 8, 8, 3, 2, 1, "bottom_right"),      # the CIFAR pool
    (2, 7, 9, 3, 2, 1, "symmetric"),
    (2, 6, 5, 2, 2, 0, "symmetric"),
    (1, 9, 7, 3, 1, 1, "bottom_right"),
]
BATCHES = [1, 17]


@pytest.fixture(scope="session", params=BACKENDS)
def fast(request):
    """The backend under test, its kernels compiled (the first session on a machine pays)."""
    name = request.param
    if name in NEEDS_GPU and not _gpu_present():
        pytest.skip(f"backend {name!r} needs a GPU and none is present")
    try:
        backend = get_backend(name)
    except ImportError as err:
        pytest.skip(str(err))
    start = time.perf_counter()
    for dtype in DTYPES:
        net = cifar_net(backend, dtype)
        x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
        train_step(net, nn.HierarchicalSoftmax(10), x, np.array([0, 7]), 1.0)
    log.info("backend %s: warm-up (kernel compilation) took %.1f s", name, time.perf_counter() - start)
    return backend


def cifar_net(backend, dtype):
    return tagi_network(architecture("cifar10_3conv"), 11, backend=backend, dtype=np.dtype(dtype).name,
                        seed=0)


def run(backend, op, *args, **kwargs):
    """Call ``op`` of the backend on its own arrays; return host arrays (None stays None)."""
    moved = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(backend, op)(*moved, **kwargs)
    out = out if isinstance(out, tuple) else (out,)
    return tuple(None if o is None else backend.to_numpy(o) for o in out)


def check(fast, op, *args, dtype, **kwargs):
    """The backend's ``op`` returns what the reference returns (None where it returns None)."""
    want = run(ref, op, *args, **kwargs)
    got = run(fast, op, *args, **kwargs)
    assert len(got) == len(want)
    rtol, atol = TOLERANCE[dtype]
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None, f"{op} output {i}: expected None"
            continue
        assert g.shape == w.shape and g.dtype == w.dtype, f"{op} output {i}: {g.shape} {g.dtype}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * max(np.abs(w).max(), 1e-30),
                                   err_msg=f"{op} output {i}")


def conv_setup(rng, case, batch, dtype):
    c, h, w, c_out, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (batch, c, h, w), dtype)
    mu_w, var_w = gaussian_tensors(rng, (c_out, c, k, k), dtype)
    mu_b, var_b = gaussian_tensors(rng, (c_out,), dtype)
    delta_mu, delta_var = gaussian_tensors(rng, (batch, c_out, g.out_height, g.out_width), dtype)
    return g, mu_a, var_a, mu_w, var_w, mu_b, var_b, delta_mu, -delta_var


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_ops(fast, rng, case, batch, dtype):
    g, mu_a, var_a, mu_w, var_w, mu_b, var_b, d_mu, d_var = conv_setup(rng, case, batch, dtype)
    check(fast, "conv2d_forward", mu_a, var_a, mu_w, var_w, mu_b, var_b, g, dtype=dtype)
    check(fast, "conv2d_forward", mu_a, None, mu_w, var_w, mu_b, var_b, g, dtype=dtype)
    check(fast, "conv2d_forward", mu_a, None, mu_w, None, mu_b, None, g, dtype=dtype)
    check(fast, "conv2d_backward", d_mu, d_var, mu_w, g, dtype=dtype)
    check(fast, "conv2d_backward", d_mu, None, mu_w, g, dtype=dtype)
    check(fast, "conv2d_param_deltas", mu_a, d_mu, d_var, var_w, var_b, g, dtype=dtype)
    check(fast, "conv2d_param_deltas", mu_a, d_mu, None, var_w, var_b, g, dtype=dtype)
    check(fast, "conv2d_param_deltas", mu_a, d_mu, None, None, None, g, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avgpool2d_ops(fast, rng, case, batch, dtype):
    c, h, w, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (batch, c, h, w), dtype)
    d_mu, d_var = gaussian_tensors(rng, (batch, c, g.out_height, g.out_width), dtype)
    check(fast, "avgpool2d_forward", mu_a, var_a, g, dtype=dtype)
    check(fast, "avgpool2d_forward", mu_a, None, g, dtype=dtype)
    check(fast, "avgpool2d_backward", d_mu, -d_var, g, dtype=dtype)
    check(fast, "avgpool2d_backward", d_mu, None, g, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batch", BATCHES)
def test_linear_ops(fast, rng, batch, dtype):
    mu_a, var_a = gaussian_tensors(rng, (batch, 13), dtype)
    mu_w, var_w = gaussian_tensors(rng, (5, 13), dtype)
    mu_b, var_b = gaussian_tensors(rng, (5,), dtype)
    d_mu, d_var = gaussian_tensors(rng, (batch, 5), dtype)
    check(fast, "linear_forward", mu_a, var_a, mu_w, var_w, mu_b, var_b, dtype=dtype)
    check(fast, "linear_forward", mu_a, None, mu_w, var_w, mu_b, var_b, dtype=dtype)
    check(fast, "linear_forward", mu_a, None, mu_w, None, mu_b, None, dtype=dtype)
    check(fast, "linear_backward", d_mu, -d_var, mu_w, dtype=dtype)
    check(fast, "linear_backward", d_mu, None, mu_w, dtype=dtype)
    check(fast, "linear_param_deltas", mu_a, d_mu, -d_var, var_w, var_b, dtype=dtype)
    check(fast, "linear_param_deltas", mu_a, d_mu, None, None, None, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_activations_and_output_update(fast, rng, dtype):
    mu, var = gaussian_tensors(rng, (17, 3, 5, 7), dtype)
    mu.flat[:4] = 0.0                                      # ReLU's kink: J = 0 at mu_z = 0
    check(fast, "relu_forward", mu, var, dtype=dtype)
    check(fast, "relu_forward", mu, None, dtype=dtype)
    check(fast, "mixture_relu_forward", mu, var, dtype=dtype)
    jac = (rng.random(mu.shape) > 0.5).astype(dtype)
    check(fast, "scale_by_jacobian", mu, -var, jac, dtype=dtype)
    check(fast, "scale_by_jacobian", mu, None, jac, dtype=dtype)
    check(fast, "normal_cdf", mu, dtype=dtype)
    y = np.where(rng.random((17, 11)) < 0.4, rng.choice([-1.0, 1.0], (17, 11)), np.nan).astype(dtype)
    out_mu, out_var = gaussian_tensors(rng, (17, 11), dtype)
    check(fast, "gaussian_innovations", out_mu, out_var, y, 0.7, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_capped_update_in_place(fast, rng, dtype):
    """Clipped steps of both signs, unclipped steps and floored variances, written in place."""
    mu, var = gaussian_tensors(rng, (7, 3, 5, 5), dtype)
    d_mu = (3.0 * rng.standard_normal(mu.shape)).astype(dtype)
    d_var = (2.0 * rng.standard_normal(mu.shape)).astype(dtype)
    results = {}
    for backend in (ref, fast):
        params = [backend.asarray(a.copy()) for a in (mu, var)]
        assert backend.capped_update(*params, backend.asarray(d_mu), backend.asarray(d_var), 2.0) is None
        results[backend.NAME] = [backend.to_numpy(a) for a in params]
    floored = results["numpy"][1] == np.asarray(1e-5, dtype)
    assert floored.any() and (results["numpy"][0] != mu).all()
    for got, want in zip(results[fast.NAME], results["numpy"]):
        np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype][0])


def test_capped_update_writes_through_views(fast, rng):
    """Parameters given as non-contiguous views (here transposed) are still updated in place."""
    mu, var = gaussian_tensors(rng, (6, 4), np.float32)
    d_mu, d_var = gaussian_tensors(rng, (4, 6), np.float32)
    results = {}
    for backend in (ref, fast):
        params = [backend.asarray(a.copy()) for a in (mu, var)]
        backend.capped_update(params[0].T, params[1].T, backend.asarray(d_mu), backend.asarray(-d_var), 2.0)
        results[backend.NAME] = [backend.to_numpy(a) for a in params]
    assert not np.array_equal(results["numpy"][0], mu)
    for got, want in zip(results[fast.NAME], results["numpy"]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_transfers_round_trip(fast, rng):
    x = rng.standard_normal((3, 4))
    back = fast.to_numpy(fast.asarray(x, dtype=np.float32))
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, x.astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_training_step_matches_reference(fast, rng, dtype):
    """The 3-conv CIFAR-10 network: prior outputs, then every parameter after one step."""
    x = rng.standard_normal((5, 3, 32, 32))
    labels = np.array([0, 3, 9, 4, 7])
    head = nn.HierarchicalSoftmax(10)
    nets = {b.NAME: cifar_net(b, dtype) for b in (ref, fast)}
    outputs = {name: train_step(net, head, x, labels, 1.0) for name, net in nets.items()}
    rtol, atol = TOLERANCE[dtype]
    for got, want in zip(outputs[fast.NAME], outputs["numpy"]):
        np.testing.assert_allclose(fast.to_numpy(got), want, rtol=rtol, atol=atol * np.abs(want).max())
    want_state, got_state = nets["numpy"].state_dict(), nets[fast.NAME].state_dict()
    initial = cifar_net(ref, dtype).state_dict()
    for key, want in want_state.items():
        assert not np.array_equal(want, initial[key]), f"{key} did not change: the test is blind"
        np.testing.assert_allclose(got_state[key], want, rtol=rtol, atol=atol * np.abs(want).max(),
                                   err_msg=key)


def test_numba_chunks_agree_with_one_chunk(rng, monkeypatch):
    """The Numba backend cuts large batches into chunks: chunk borders must not show."""
    try:
        numba_backend = get_backend("numba")
    except ImportError as err:
        pytest.skip(str(err))
    g, mu_a, var_a, mu_w, var_w, mu_b, var_b, d_mu, d_var = conv_setup(rng, CONV_CASES[0], 7,
                                                                       np.float64)
    ops = [("conv2d_forward", (mu_a, var_a, mu_w, var_w, mu_b, var_b, g)),
           ("conv2d_backward", (d_mu, d_var, mu_w, g)),
           ("conv2d_param_deltas", (mu_a, d_mu, d_var, var_w, var_b, g))]
    whole = [run(numba_backend, op, *args) for op, args in ops]
    monkeypatch.setattr(numba_backend, "CHUNK_FLOATS", 1)                # one sample per chunk
    for (op, args), want in zip(ops, whole):
        for got, w in zip(run(numba_backend, op, *args), want):
            np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12 * np.abs(w).max(), err_msg=op)


def test_auto_picks_numba_without_a_gpu():
    if _gpu_present():
        pytest.skip("a GPU is present: auto picks cupy")
    try:
        get_backend("numba")
    except ImportError as err:
        pytest.skip(str(err))
    assert get_backend("auto").NAME == "numba"
