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


# ----------------------------------------------------------------------------- max pooling

# (C, H, W, kernel, stride, padding, padding_type): overlapping windows (stride < kernel), both
# padding types, H != W, non-overlapping windows, a stride larger than the kernel
MAXPOOL_CASES = POOL_CASES + [(2, 7, 6, 3, 2, 1, "symmetric"), (1, 7, 9, 2, 3, 1, "bottom_right")]


def naive_maxpool(mu_a, var_a, delta_mu, delta_var, g):
    """Loops: per window the first cell (row-major) of largest mean; its moments; deltas back to it."""
    b_, shape = mu_a.shape[0], (mu_a.shape[0], g.channels, g.out_height, g.out_width)
    mu, var, index = np.zeros(shape), np.zeros(shape), np.zeros(shape, np.int32)
    d_mu, d_var = np.zeros_like(mu_a), np.zeros_like(mu_a)
    for b in range(b_):
        for c in range(g.channels):
            for oy in range(g.out_height):
                for ox in range(g.out_width):
                    best = None
                    for iy, ix, ky, kx in naive.window_cells(g, oy, ox):
                        if best is None or mu_a[b, c, iy, ix] > mu_a[b, c, best[0], best[1]]:
                            best = (iy, ix, ky * g.kernel + kx)
                    iy, ix, r = best
                    mu[b, c, oy, ox], var[b, c, oy, ox] = mu_a[b, c, iy, ix], var_a[b, c, iy, ix]
                    index[b, c, oy, ox] = r
                    d_mu[b, c, iy, ix] += delta_mu[b, c, oy, ox]
                    d_var[b, c, iy, ix] += delta_var[b, c, oy, ox]
    return (mu, var, index), (d_mu, d_var)


def maxpool_inputs(rng, case, batch=2):
    c, h, w, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    mu_a, var_a = gaussian_tensors(rng, (batch, c, h, w))
    out = (batch, c, g.out_height, g.out_width)
    return g, mu_a, var_a, rng.standard_normal(out), -rng.random(out)


@pytest.mark.parametrize("case", MAXPOOL_CASES)
def test_maxpool2d_forward_backward(rng, case):
    g, mu_a, var_a, delta_mu, delta_var = maxpool_inputs(rng, case)
    mu_a[0, 0, :2, :2] = 0.5                      # ties: the first cell in row-major order wins
    forward = ref.maxpool2d_forward(mu_a, var_a, g)
    (want_forward, want_backward) = naive_maxpool(mu_a, var_a, delta_mu, delta_var, g)
    for got, want in zip(forward, want_forward):
        np.testing.assert_array_equal(got, want)
    assert forward[2].dtype == np.int32
    for got, want in zip(ref.maxpool2d_backward(delta_mu, delta_var, forward[2], g), want_backward):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_maxpool2d_well_separated_means_pass_the_winner_and_route_to_it(rng):
    """One cell per window stands 10 units above the rest: its moments come out unchanged, and
    the innovations go back to it alone (the other cells of the map get exactly 0)."""
    g = window2d((1, 4, 6), 2, 2, 0, "symmetric")
    mu_a, var_a = gaussian_tensors(rng, (1, 1, 4, 6))
    winners = [(0, 1), (1, 2), (0, 5), (3, 0), (2, 3), (3, 5)]   # one per 2x2 window
    for iy, ix in winners:
        mu_a[0, 0, iy, ix] += 10.0
    mu, var, index = ref.maxpool2d_forward(mu_a, var_a, g)
    rows, cols = zip(*winners)
    np.testing.assert_array_equal(mu.ravel(), mu_a[0, 0, rows, cols])
    np.testing.assert_array_equal(var.ravel(), var_a[0, 0, rows, cols])
    np.testing.assert_array_equal(index.ravel(), [(iy % 2) * 2 + ix % 2 for iy, ix in winners])
    delta_mu, delta_var = rng.standard_normal(mu.shape), -rng.random(mu.shape)
    d_mu, d_var = ref.maxpool2d_backward(delta_mu, delta_var, index, g)
    want_mu, want_var = np.zeros_like(mu_a), np.zeros_like(mu_a)
    want_mu[0, 0, rows, cols], want_var[0, 0, rows, cols] = delta_mu.ravel(), delta_var.ravel()
    np.testing.assert_array_equal(d_mu, want_mu)
    np.testing.assert_array_equal(d_var, want_var)


def test_maxpool2d_padding_never_wins_and_ties_take_the_first_cell():
    """All means -5 (below the 0 that padding holds in an average pool) and all equal: every
    window passes -5, never a padding cell, and names its first input cell in row-major order."""
    g = window2d((1, 3, 3), 3, 2, 1, "symmetric")          # 2x2 windows over a 5x5 padded map
    mu_a, var_a = np.full((1, 1, 3, 3), -5.0), np.arange(9.0).reshape(1, 1, 3, 3) + 1
    mu, var, index = ref.maxpool2d_forward(mu_a, var_a, g)
    np.testing.assert_array_equal(mu, np.full((1, 1, 2, 2), -5.0))
    # windows start at input (-1, -1), (-1, 1), (1, -1), (1, 1): first real cells (0,0) (0,1) (1,0) (1,1)
    np.testing.assert_array_equal(index.ravel(), [4, 3, 1, 0])
    np.testing.assert_array_equal(var.ravel(), [1, 2, 4, 5])


def test_maxpool2d_is_the_bp_max_pool_on_the_means(rng):
    """The mean pass is tagi.bp.MaxPool2d's forward, and the routed mean innovations are its gradient."""
    from tagi import bp
    for case in MAXPOOL_CASES:
        c, h, w, k, s, p, ptype = case
        layer = bp.Sequential(bp.MaxPool2d(k, s, padding=p, padding_type=ptype), input_shape=(c, h, w),
                              backend="numpy", dtype="float64").layers[0]
        g, mu_a, var_a, delta_mu, _ = maxpool_inputs(rng, case)
        mu, _, index = ref.maxpool2d_forward(mu_a, var_a, g)
        np.testing.assert_array_equal(layer.forward(mu_a, training=True), mu)
        np.testing.assert_array_equal(layer.backward(delta_mu),
                                      ref.maxpool2d_backward(delta_mu, None, index, g)[0])


def test_maxpool2d_mean_only_pass(rng):
    g, mu_a, var_a, delta_mu, delta_var = maxpool_inputs(rng, MAXPOOL_CASES[0])
    full, mean = ref.maxpool2d_forward(mu_a, var_a, g), ref.maxpool2d_forward(mu_a, None, g)
    np.testing.assert_array_equal(mean[0], full[0])
    np.testing.assert_array_equal(mean[2], full[2])
    assert mean[1] is None
    back = ref.maxpool2d_backward(delta_mu, None, full[2], g)
    np.testing.assert_array_equal(back[0], ref.maxpool2d_backward(delta_mu, delta_var, full[2], g)[0])
    assert back[1] is None


# ----------------------------------------------------------------------------- leaky ReLU

def test_leaky_relu_linearised():
    mu = np.array([[-1.0, 0.0, 2.0]])
    var = np.array([[0.5, 0.5, 0.5]])
    mu_a, var_a, jac = ref.leaky_relu_forward(mu, var, 0.1)
    np.testing.assert_allclose(mu_a, [[-0.1, 0, 2]])
    np.testing.assert_allclose(var_a, [[0.005, 0.005, 0.5]])
    np.testing.assert_allclose(jac, [[0.1, 0.1, 1]])
    mean = ref.leaky_relu_forward(mu, None, 0.1)
    np.testing.assert_array_equal(mean[0], mu_a)
    assert mean[1] is None


def test_mixture_leaky_relu_limits(rng):
    """Slope 0 is the mixture ReLU (above its 1e-6 floors); slope 1 the identity, J = 1."""
    mu, var = gaussian_tensors(rng, (4, 6))
    relu, zero = ref.mixture_relu_forward(mu, var), ref.mixture_leaky_relu_forward(mu, var, 0.0)
    above = (relu[0] > 1e-6) & (relu[1] > 1e-6)
    for got, want in zip(zero, relu):
        np.testing.assert_allclose(got[above], want[above], rtol=1e-12)
    one = ref.mixture_leaky_relu_forward(mu, var, 1.0)
    for got, want in zip(one, (mu, var, np.ones_like(mu))):
        np.testing.assert_allclose(got, want, rtol=1e-12)


# ----------------------------------------------------------------------------- the layers' checks

@pytest.mark.parametrize("layer", ["LeakyReLU", "MixtureLeakyReLU"])
@pytest.mark.parametrize("slope", [float("nan"), float("inf"), "0.1x", None])
def test_leaky_layers_refuse_a_slope_that_is_no_finite_number(layer, slope):
    from tagi import nn
    with pytest.raises(ValueError, match=r"negative_slope must be a finite number.*got"):
        getattr(nn, layer)(slope)


def test_maxpool2d_layer_refuses_a_window_of_padding_only():
    from tagi import nn
    with pytest.raises(ValueError, match=r"MaxPool2d\(2, 2, padding=2.*padding must be < kernel_size"):
        nn.Sequential(nn.MaxPool2d(2, padding=2), input_shape=(1, 4, 4))
