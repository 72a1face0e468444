"""BP forward values against naive loops (tests/naive.py) and closed forms, on odd sizes and every padding type."""
import naive
import numpy as np
import pytest
from bp_support import BACKENDS

from tagi import bp
from tagi.geometry import window2d

GEOMETRIES = [(3, 1, 1, "symmetric"), (3, 2, 1, "bottom_right"), (2, 2, 0, "symmetric"),
              (3, 2, 2, "bottom_right")]


def one_layer(layer, in_shape, backend):
    return bp.Sequential(layer, input_shape=in_shape, backend=backend, dtype="float64", seed=2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel, stride, padding, padding_type", GEOMETRIES)
def test_maxpool_takes_the_max_of_the_real_cells(backend, kernel, stride, padding, padding_type, rng):
    layer = bp.MaxPool2d(kernel, stride, padding=padding, padding_type=padding_type)
    net = one_layer(layer, (2, 7, 7), backend)
    x = rng.standard_normal((2, 2, 7, 7)) - 3.0                 # mostly negative: a zero pad would win
    y = net.backend.to_numpy(net.forward(x))
    g = window2d((2, 7, 7), kernel, stride, padding, padding_type)
    expected = np.empty((2, 2, g.out_height, g.out_width))
    for oy in range(g.out_height):
        for ox in range(g.out_width):
            cells = naive.window_cells(g, oy, ox)
            expected[:, :, oy, ox] = np.max([x[:, :, iy, ix] for iy, ix, _, _ in cells], axis=0)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel, stride, padding, padding_type", GEOMETRIES)
def test_conv_and_avgpool_are_the_naive_sums(backend, kernel, stride, padding, padding_type, rng):
    conv = bp.Conv2d(2, 3, kernel, stride, padding=padding, padding_type=padding_type)
    x = rng.standard_normal((2, 2, 7, 7))
    net = one_layer(conv, (2, 7, 7), backend)
    w, b = (net.backend.to_numpy(p.value) for p in net.parameters())
    zeros = np.zeros_like
    g = window2d((2, 7, 7), kernel, stride, padding, padding_type)
    expected, _ = naive.conv2d_forward(x, zeros(x), w, zeros(w), b, zeros(b), g)
    np.testing.assert_allclose(net.backend.to_numpy(net.forward(x)), expected, rtol=1e-12, atol=1e-12)
    pool = bp.AvgPool2d(kernel, stride, padding=padding, padding_type=padding_type)
    net = one_layer(pool, (2, 7, 7), backend)
    expected = np.zeros((2, 2, g.out_height, g.out_width))
    for oy in range(g.out_height):
        for ox in range(g.out_width):
            for iy, ix, _, _ in naive.window_cells(g, oy, ox):
                expected[:, :, oy, ox] += x[:, :, iy, ix] / kernel ** 2   # padding counts in the divisor
    np.testing.assert_allclose(net.backend.to_numpy(net.forward(x)), expected, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_and_activations(backend, rng):
    linear = bp.Linear(2 * 3 * 4, 5)
    net = one_layer(linear, (2, 3, 4), backend)
    x = rng.standard_normal((3, 2, 3, 4))
    w, b = (net.backend.to_numpy(p.value) for p in net.parameters())
    np.testing.assert_allclose(net.backend.to_numpy(net.forward(x)), x.reshape(3, -1) @ w.T + b, rtol=1e-12)
    x = rng.standard_normal((3, 6))
    for layer, expected in ((bp.ReLU(), np.maximum(x, 0)), (bp.LeakyReLU(0.1), np.where(x > 0, x, 0.1 * x))):
        net = one_layer(layer, (6,), backend)
        np.testing.assert_array_equal(net.backend.to_numpy(net.forward(x)), expected)
