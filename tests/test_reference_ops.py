"""The NumPy reference backend against naive loops written from docs/math.md."""
import numpy as np
import pytest

import naive
from conftest import gaussian_tensors
from tagi.backends import numpy_backend as ref
from tagi.geometry import window2d

# (C, H, W, C_out, kernel, stride, padding, padding_type): odd sizes, both strides and padding types
CONV_CASES = [
    (2, 5, 5, 3, 3, 1, 1, "symmetric"),
    (3, 7, 7, 2, 3, 2, 1, "symmetric"),
    (2, 6, 6, 3, 3, 2, 1, "bottom_right"),
    (1, 7, 5, 2, 5, 1, 2, "symmetric"),
    (2, 9, 9, 2, 3, 2, 1, "bottom_right"),
    (3, 8, 8, 4, 2, 2, 0, "symmetric"),
    (2, 6, 6, 2, 4, 3, 2, "symmetric"),
]
POOL_CASES = [
    (2, 8, 8, 3, 2, 1, "bottom_right"),   # the CIFAR pool: overlapping windows, one-sided padding
    (3, 7, 7, 3, 2, 1, "symmetric"),
    (2, 6, 6, 2, 2, 0, "symmetric"),
    (1, 9, 7, 3, 1, 1, "bottom_right"),
]


def conv_inputs(rng, case, batch=3):
    c, h, w, c_out, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (batch, c, h, w))
    mu_w, var_w = gaussian_tensors(rng, (c_out, c, k, k))
    mu_b, var_b = gaussian_tensors(rng, (c_out,))
    return g, mu_a, var_a, mu_w, var_w, mu_b, var_b


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward(rng, case):
    g, *args = conv_inputs(rng, case)
    for got, want in zip(ref.conv2d_forward(*args, g), naive.conv2d_forward(*args, g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_exact_input_skips_variance_product(rng, case):
    g, mu_a, var_a, *params = conv_inputs(rng, case)
    got = ref.conv2d_forward(mu_a, None, *params, g)
    want = naive.conv2d_forward(mu_a, np.zeros_like(var_a), *params, g)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_backward_and_param_deltas(rng, case):
    g, mu_a, _, mu_w, var_w, _, var_b = conv_inputs(rng, case)
    shape = (mu_a.shape[0], mu_w.shape[0], g.out_height, g.out_width)
    delta_mu, delta_var = rng.standard_normal(shape), -rng.random(shape)
    for got, want in zip(ref.conv2d_backward(delta_mu, delta_var, mu_w, g),
                         naive.conv2d_backward(delta_mu, delta_var, mu_w, g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(ref.conv2d_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b, g),
                         naive.conv2d_param_deltas(mu_a, delta_mu, delta_var, var_w, var_b, g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", POOL_CASES)
def test_avgpool2d_forward_backward(rng, case):
    c, h, w, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (2, c, h, w))
    for got, want in zip(ref.avgpool2d_forward(mu_a, var_a, g), naive.avgpool2d_forward(mu_a, var_a, g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    delta_mu, delta_var = gaussian_tensors(rng, (2, c, g.out_height, g.out_width))
    for got, want in zip(ref.avgpool2d_backward(delta_mu, -delta_var, g),
                         naive.avgpool2d_backward(delta_mu, -delta_var, g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_cifar_geometry_matches_the_published_network():
    """Math doc §3.4: K=3, S=2, one-sided padding 1 halves the map; windows start at 0."""
    g = window2d((32, 32, 32), 3, 2, 1, "bottom_right")
    assert (g.out_height, g.out_width, g.pad_begin, g.pad_end) == (16, 16, 0, 1)
    assert naive.window_cells(g, 0, 0)[0][:2] == (0, 0)
    assert len(naive.window_cells(g, 15, 15)) == 4          # the corner window: 4 real cells of 9
    sym = window2d((32, 32, 32), 5, 1, 2, "symmetric")
    assert (sym.out_height, sym.pad_begin) == (32, 2)


@pytest.mark.parametrize("bad, message", [
    (dict(kernel=0), "kernel_size"), (dict(stride=0), "stride"), (dict(padding=-1), "padding"),
    (dict(padding_type="same"), "padding_type"), (dict(kernel=9), "does not fit"),
])
def test_window_rejects_bad_hyperparameters(bad, message):
    args = dict(in_shape=(1, 5, 5), kernel=3, stride=1, padding=0, padding_type="symmetric")
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        window2d(**args)


def test_linear_forward_backward_param_deltas(rng):
    mu_a, var_a = gaussian_tensors(rng, (4, 5))
    mu_w, var_w = gaussian_tensors(rng, (3, 5))
    mu_b, var_b = gaussian_tensors(rng, (3,))
    mu_z, var_z = ref.linear_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b)
    for b in range(4):
        for i in range(3):
            assert np.isclose(mu_z[b, i], sum(mu_w[i, j] * mu_a[b, j] for j in range(5)) + mu_b[i])
            assert np.isclose(var_z[b, i], var_b[i] + sum(
                (mu_w[i, j] ** 2 + var_w[i, j]) * var_a[b, j] + var_w[i, j] * mu_a[b, j] ** 2
                for j in range(5)))
    d_mu, d_var = rng.standard_normal((4, 3)), -rng.random((4, 3))
    back_mu, back_var = ref.linear_backward(d_mu, d_var, mu_w)
    np.testing.assert_allclose(back_mu[2, 4], sum(mu_w[k, 4] * d_mu[2, k] for k in range(3)))
    np.testing.assert_allclose(back_var[2, 4], sum(mu_w[k, 4] ** 2 * d_var[2, k] for k in range(3)))
    dmu_w, dvar_w, dmu_b, dvar_b = ref.linear_param_deltas(mu_a, d_mu, d_var, var_w, var_b)
    np.testing.assert_allclose(dmu_w[1, 3], var_w[1, 3] * sum(mu_a[b, 3] * d_mu[b, 1] for b in range(4)))
    np.testing.assert_allclose(dvar_w[1, 3],
                               var_w[1, 3] ** 2 * sum(mu_a[b, 3] ** 2 * d_var[b, 1] for b in range(4)))
    np.testing.assert_allclose(dmu_b, var_b * d_mu.sum(0))
    np.testing.assert_allclose(dvar_b, var_b ** 2 * d_var.sum(0))


def test_relu_linearised():
    mu = np.array([[-1.0, 0.0, 2.0]])
    var = np.array([[0.5, 0.5, 0.5]])
    mu_a, var_a, jac = ref.relu_forward(mu, var)
    np.testing.assert_array_equal(mu_a, [[0, 0, 2]])
    np.testing.assert_array_equal(var_a, [[0, 0, 0.5]])
    np.testing.assert_array_equal(jac, [[0, 0, 1]])


def test_capped_update_clips_keeps_sign_and_floors():
    mu = np.array([0.0, 0.0, 0.0, 1.0])
    var = np.array([4.0, 4.0, 1.0, 0.01])
    ref.capped_update(mu, var, np.array([5.0, -0.5, -3.0, 0.0]),
                      np.array([-0.1, -5.0, 0.2, -0.5]), cap_factor=2.0)
    # bounds sqrt(var)/2 = [1, 1, 0.5, 0.05]
    np.testing.assert_allclose(mu, [1.0, -0.5, -0.5, 1.0])
    np.testing.assert_allclose(var, [3.9, 3.0, 1.2, 1e-5])   # last: 0.01 - 0.05 < 0 -> floor


def test_gaussian_innovations_guards():
    mu = np.array([[0.5, 0.0, 1.0]])
    var = np.array([[1.0, 1.0, np.inf]])
    y = np.array([[1.0, np.nan, 2.0]])
    d_mu, d_var = ref.gaussian_innovations(mu, var, y, sigma_v=1.0)
    np.testing.assert_allclose(d_mu, [[0.25, 0.0, 0.0]])
    np.testing.assert_allclose(d_var, [[-0.5, 0.0, 0.0]])


def test_missing_variance_parts_give_the_mean_pass(rng):
    """None for var_w / delta_var: the same means, no variances (the backprop passes)."""
    g, mu_a, var_a, mu_w, var_w, mu_b, var_b = conv_inputs(rng, CONV_CASES[1])
    full = ref.conv2d_forward(mu_a, var_a, mu_w, var_w, mu_b, var_b, g)
    mean = ref.conv2d_forward(mu_a, None, mu_w, None, mu_b, None, g)
    np.testing.assert_array_equal(mean[0], full[0])
    assert mean[1] is None
    shape = full[0].shape
    d_mu, d_var = rng.standard_normal(shape), -rng.random(shape)
    back = ref.conv2d_backward(d_mu, None, mu_w, g)
    np.testing.assert_array_equal(back[0], ref.conv2d_backward(d_mu, d_var, mu_w, g)[0])
    assert back[1] is None
    grads = ref.conv2d_param_deltas(mu_a, d_mu, None, None, None, g)
    scaled = ref.conv2d_param_deltas(mu_a, d_mu, d_var, var_w, var_b, g)
    np.testing.assert_allclose(grads[0] * var_w, scaled[0])
    np.testing.assert_allclose(grads[2] * var_b, scaled[2])
    assert grads[1] is None and grads[3] is None
    pooled = ref.avgpool2d_forward(mu_a, None, window2d(mu_a.shape[1:], 3, 2, 1, "symmetric"))
    assert pooled[1] is None
