"""The capped update (docs/math.md §6.2): the cap factor per batch size, and ``capped_update`` on
every backend against the equations, at cap factors where the cap binds for some entries only.

For every parameter independently, with its prior variance ``var``:

    bar     = sqrt(var) / cap_factor
    mu_new  = mu  + sign(dmu)  * min(|dmu|,  bar)
    var_new = var + sign(dvar) * min(|dvar|, bar);   var_new <= 0 -> 1e-5

``capped_by_hand`` evaluates these one entry at a time in float64 Python, independent of the
backends' vectorised code. The CUDA kernel runs on the CPU through tests/cuda_cpu/, and on a
GPU where there is one.
"""
import math

import numpy as np
import pytest

from cuda_cpu import harness
from op_parity import assert_close
from tagi import nn
from tagi.backends import get_backend

CAPS = [0.5, 2.0, 3.0]
DTYPES = [np.float32, np.float64]
# |delta| / sqrt(var) of the entries: each cap factor c clips those above 1/c (2, 0.5, 1/3)
# and leaves those below, and every pair of caps disagrees on some entry.
RATIOS = [0.1, 0.25, 0.4, 0.7, 1.5, 3.0, 5.0]


@pytest.mark.parametrize("batch, cap", [(1, 0.1), (2, 2.0), (16, 2.0), (255, 2.0), (256, 3.0),
                                        (1024, 3.0)])
def test_default_cap_factor_follows_cutagi_head(batch, cap):
    """§6.2, last row: 0.1 for B = 1, 2 for 1 < B < 256, 3 from 256 on."""
    assert nn.default_cap_factor(batch) == cap


def capped_by_hand(mu, var, delta_mu, delta_var, cap_factor):
    """The §6.2 equations entry by entry (float64) -> new (mu, var)."""
    mu_new, var_new = np.empty_like(mu, dtype=np.float64), np.empty_like(var, dtype=np.float64)
    for i in np.ndindex(mu.shape):
        bar = math.sqrt(var[i]) / cap_factor
        mu_new[i] = mu[i] + math.copysign(min(abs(delta_mu[i]), bar), delta_mu[i])
        v = var[i] + math.copysign(min(abs(delta_var[i]), bar), delta_var[i])
        var_new[i] = 1e-5 if v <= 0 else v
    return mu_new, var_new


def cap_inputs():
    """(mu, var, delta_mu, delta_var), (6, 7) float64: every ratio of RATIOS in every row for both
    deltas, random signs; the last row has variances of 1e-4 and variance steps that floor them
    at every cap (large negative steps floor other entries at cap 0.5)."""
    rng = np.random.default_rng(7)
    shape = (6, len(RATIOS))
    var = 0.05 + rng.random(shape)
    var[-1] = 1e-4
    ratios = np.array([rng.permutation(RATIOS) for _ in range(2 * shape[0])]).reshape(2, *shape)
    signs = np.where(rng.random((2, *shape)) < 0.5, -1.0, 1.0)
    delta_mu, delta_var = signs * ratios * np.sqrt(var)
    delta_var[-1] = -0.2 * ratios[1, -1] * np.sqrt(var[-1])   # |step| >= 2e-4 > var: floored
    return rng.standard_normal(shape), var, delta_mu, delta_var


def test_the_inputs_make_the_cap_bind_for_some_entries_only():
    mu, var, delta_mu, delta_var = cap_inputs()
    for cap in CAPS:
        bar = np.sqrt(var) / cap
        for delta in (delta_mu, delta_var):
            binds = np.abs(delta) > bar
            assert binds.any() and not binds.all(), cap
        others = [capped_by_hand(mu, var, delta_mu, delta_var, c) for c in CAPS + [1.0] if c != cap]
        here = capped_by_hand(mu, var, delta_mu, delta_var, cap)
        for other in others:
            assert not np.allclose(here[0], other[0]) and not np.allclose(here[1], other[1])
        assert (here[1] == 1e-5).any() and (here[1] > 1e-5).any()     # floored and not


@pytest.fixture(params=["numpy", "numba", "cuda_on_cpu", "cupy"])
def backend(request):
    """Each backend; "cuda_on_cpu" is the cupy backend's launches of the CUDA kernels on the CPU,
    "cupy" the same on a GPU (skipped without one)."""
    if request.param == "cuda_on_cpu":
        # tagi/backends/cupy_backend.py on the g++ build of kernels/*.cu (conftest.cpu_cuda)
        return harness.load_cupy_backend(harness.fake_cupy(request.getfixturevalue("cpu_cuda"), 0))
    try:
        fast = get_backend(request.param)
    except ImportError as err:
        pytest.skip(str(err))
    if request.param != "numpy" and fast.capped_update is get_backend("numpy").capped_update:
        pytest.skip(f"{request.param} re-exports the reference op capped_update")
    return fast


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cap", CAPS)
def test_capped_update_matches_the_equations(backend, cap, dtype):
    mu, var, delta_mu, delta_var = cap_inputs()
    want = capped_by_hand(mu, var, delta_mu, delta_var, cap)
    got = [backend.asarray(a, dtype=dtype) for a in (mu, var)]
    backend.capped_update(*got, backend.asarray(delta_mu, dtype=dtype),
                          backend.asarray(delta_var, dtype=dtype), cap)
    for name, g, w in zip(("mu", "var"), got, want):
        assert_close(backend.to_numpy(g), w, dtype, f"{name} at cap {cap}")


@pytest.mark.parametrize("batch", [1, 16, 256])
def test_step_uses_the_default_cap_unless_given(monkeypatch, batch):
    """Sequential.step passes default_cap_factor(B) of the last batch, or its own cap_factor."""
    caps = []
    numpy_backend = get_backend("numpy")
    real = numpy_backend.capped_update
    monkeypatch.setattr(numpy_backend, "capped_update", lambda *args: caps.append(args[-1]) or real(*args))
    x = np.random.default_rng(0).standard_normal((batch, 3))
    for cap_factor, want in [(None, nn.default_cap_factor(batch)), (0.5, 0.5)]:
        caps.clear()
        net = nn.Sequential(nn.Linear(3, 2), input_shape=(3,), seed=0, cap_factor=cap_factor)
        mu, var = net.forward(x)
        net.backward(*nn.gaussian_innovations(mu, var, np.zeros((batch, 2)), 1.0))
        net.step()
        assert caps == [want, want]              # weights, then biases
