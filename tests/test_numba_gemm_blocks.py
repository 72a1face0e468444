"""The Numba backend's column-blocked GEMM (numba_backend._matmul): every block lands where it
belongs, at the first conv layer's real shape and inside a conv op, against float64 products."""
import numpy as np
import pytest

from op_parity import CONV_CASES, conv_arrays
from tagi.backends import numpy_backend as reference

backend = pytest.importorskip("tagi.backends.numba_backend")


@pytest.mark.parametrize("columns", [6144, 6144 + 7, 300])
def test_blocked_product_matches_the_float64_product(columns):
    """(32, 75) x (75, N) float32: blocks of 416 columns, the last one short; 300: one GEMM."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((32, 75)), rng.standard_normal((75, columns))
    got = backend._matmul(a.astype(np.float32), b.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (32, columns)
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


def test_conv_forward_in_small_blocks_matches_the_reference(monkeypatch):
    """Blocks of 16 columns (a conv of 33 output channels over 75-cell patches) -> the float64
    reference's forward moments, to float32 round-off."""
    monkeypatch.setattr(backend, "SMALL_GEMM", 33 * 75 * 16)
    monkeypatch.setattr(backend, "MIN_BLOCK_COLUMNS", 8)
    arrays = conv_arrays(CONV_CASES[3], np.random.default_rng(1), batch=3)
    names = ("mu_a", "var_a", "mu_w", "var_w", "mu_b", "var_b")
    want = reference.conv2d_forward(*(arrays[n] for n in names), arrays["g"])
    for var_a in (arrays["var_a"], None):                 # the [mu_a**2 | var_a] rows, and mu_a**2 alone
        args = [arrays[n].astype(np.float32) for n in names]
        args[1] = None if var_a is None else var_a.astype(np.float32)
        got = backend.conv2d_forward(*args, arrays["g"])
        ref = want if var_a is not None else reference.conv2d_forward(
            arrays["mu_a"], None, *(arrays[n] for n in names[2:]), arrays["g"])
        for g_moment, w_moment in zip(got, ref):
            np.testing.assert_allclose(g_moment, w_moment, rtol=2e-4, atol=2e-4 * np.abs(w_moment).max())
