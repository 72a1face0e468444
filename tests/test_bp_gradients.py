"""BP gradients of every layer, of the loss and of a whole network against central finite differences (float64)."""
import numpy as np
import pytest
from bp_support import BACKENDS

from tagi import bp
from tagi.backends import get_backend

EPS = 1e-6


def away_from_zero(rng, shape, gap=0.1):
    """Standard normals pushed at least ``gap`` away from 0, so that ReLU kinks stay out of reach of EPS."""
    x = rng.standard_normal(shape)
    return x + gap * np.sign(x)


def numeric_gradient(f, array, coords):
    """Central differences of the scalar f() with respect to array.flat[i] for i in coords (array changed in place)."""
    flat = array.reshape(-1)
    out = []
    for i in coords:
        keep = float(flat[i])
        flat[i] = keep + EPS
        up = f()
        flat[i] = keep - EPS
        down = f()
        flat[i] = keep
        out.append((up - down) / (2 * EPS))
    return np.array(out)


def check_gradients(net, x, loss_and_grad, rng, max_coords=400):
    """Compare the analytic dL/dx and dL/dparameter of ``net`` with finite differences.

    loss_and_grad(y) -> (scalar loss on the backend, dL/dy).
    """
    to_numpy = net.backend.to_numpy

    def loss():
        return float(loss_and_grad(net.forward(x, training=True))[0])

    _, grad_y = loss_and_grad(net.forward(x, training=True))
    grad_x = to_numpy(net.backward(grad_y, input_grad=True))
    analytic = [(x, grad_x)] + [(p.value, to_numpy(p.grad)) for p in net.parameters()]
    for array, grad in analytic:
        assert grad.shape == array.shape
        coords = rng.permutation(array.size)[:max_coords]
        numeric = numeric_gradient(loss, array, coords)
        np.testing.assert_allclose(grad.reshape(-1)[coords], numeric, rtol=1e-5, atol=1e-8)


def weighted_sum(weights):
    """L = sum(y * weights): its gradient dL/dy is ``weights``."""
    return lambda y: ((y * weights).sum(), weights)


LAYERS = [
    ("linear", lambda: bp.Linear(12, 5), (12,)),
    ("linear_reads_image", lambda: bp.Linear(2 * 3 * 2, 4), (2, 3, 2)),
    ("conv_symmetric", lambda: bp.Conv2d(2, 3, 3, padding=1), (2, 5, 5)),
    ("conv_stride2_bottom_right", lambda: bp.Conv2d(2, 3, 3, stride=2, padding=1,
                                                    padding_type="bottom_right"), (2, 6, 6)),
    ("conv_kernel5_no_pad", lambda: bp.Conv2d(1, 2, 5, init_method="torch_default"), (1, 7, 7)),
    ("avgpool_cifar", lambda: bp.AvgPool2d(3, 2, padding=1, padding_type="bottom_right"), (2, 6, 6)),
    ("avgpool_2", lambda: bp.AvgPool2d(2), (2, 4, 4)),
    ("maxpool_2", lambda: bp.MaxPool2d(2), (2, 4, 5)),
    ("maxpool_overlap_symmetric", lambda: bp.MaxPool2d(3, 2, padding=1), (2, 7, 7)),
    ("maxpool_bottom_right", lambda: bp.MaxPool2d(3, 2, padding=1, padding_type="bottom_right"), (1, 6, 6)),
    ("relu", lambda: bp.ReLU(), (3, 4)),
    ("leaky_relu", lambda: bp.LeakyReLU(0.1), (3, 4)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make, in_shape", [case[1:] for case in LAYERS], ids=[c[0] for c in LAYERS])
def test_layer_gradients(backend, make, in_shape, rng):
    net = bp.Sequential(make(), input_shape=in_shape, backend=backend, dtype="float64", seed=3)
    x = away_from_zero(rng, (3,) + in_shape)
    weights = get_backend(backend).asarray(rng.standard_normal((3,) + net.output_shape))
    check_gradients(net, x, weighted_sum(weights), rng)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_scales_kept_units_and_its_gradient(backend, rng):
    p = 0.3
    net = bp.Sequential(bp.Dropout(p), input_shape=(100, 100), backend=backend, dtype="float64", seed=0)
    to_numpy = net.backend.to_numpy
    x = away_from_zero(rng, (2, 100, 100))
    np.testing.assert_array_equal(to_numpy(net.forward(x)), x)              # identity when not training
    y = to_numpy(net.forward(x, training=True))
    scale = y / x
    kept = scale != 0
    np.testing.assert_allclose(scale[kept], 1 / (1 - p), rtol=1e-12)
    assert abs(kept.mean() - (1 - p)) < 0.01                               # 20,000 draws: sd 0.003
    weights = rng.standard_normal(x.shape)
    grad = to_numpy(net.backward(net.backend.asarray(weights), input_grad=True))
    np.testing.assert_allclose(grad, weights * scale, rtol=1e-12)          # y is linear in x
    assert not np.array_equal(to_numpy(net.forward(x, training=True)), y)   # a fresh mask per batch
    again = bp.Sequential(bp.Dropout(p), input_shape=(100, 100), backend=backend, dtype="float64", seed=0)
    np.testing.assert_array_equal(to_numpy(again.forward(x, training=True)), y)   # seeded


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_values_and_gradient(backend, rng):
    xp = get_backend(backend).xp
    logits = xp.asarray(rng.standard_normal((4, 5)) * 3)
    labels = xp.asarray([0, 4, 2, 2])
    losses, grad = bp.softmax_cross_entropy(logits, labels)
    host, host_labels = get_backend(backend).to_numpy(logits), np.array([0, 4, 2, 2])
    p = np.exp(host) / np.exp(host).sum(1, keepdims=True)
    np.testing.assert_allclose(get_backend(backend).to_numpy(losses), -np.log(p[range(4), host_labels]))
    numeric = numeric_gradient(lambda: float(bp.softmax_cross_entropy(logits, labels)[0].mean()),
                               logits, range(logits.size))
    np.testing.assert_allclose(get_backend(backend).to_numpy(grad).reshape(-1), numeric, rtol=1e-6, atol=1e-9)
    big_losses, big_grad = bp.softmax_cross_entropy(xp.asarray([[1000.0, 0.0], [0.0, 1000.0]]),
                                                    xp.asarray([1, 1]))
    np.testing.assert_allclose(get_backend(backend).to_numpy(big_losses), [1000.0, 0.0])   # no overflow
    assert np.isfinite(get_backend(backend).to_numpy(big_grad)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_network_gradient_with_the_loss(backend, rng):
    """Every layer kind and padding type in one chain, mean softmax cross-entropy on top."""
    net = bp.Sequential(
        bp.Conv2d(2, 4, 3, padding=1), bp.LeakyReLU(0.1),
        bp.MaxPool2d(3, 2, padding=1),                                           # 9 -> 5
        bp.Conv2d(4, 5, 3, padding=1, padding_type="bottom_right"), bp.ReLU(),    # 5 -> 4
        bp.AvgPool2d(3, 2, padding=1, padding_type="bottom_right"),              # 4 -> 2
        bp.Linear(5 * 2 * 2, 6), bp.ReLU(), bp.Linear(6, 4),
        input_shape=(2, 9, 9), backend=backend, dtype="float64", seed=1)
    x = rng.standard_normal((3, 2, 9, 9))
    labels = net.backend.asarray([0, 3, 1])

    def mean_cross_entropy(logits):
        losses, grad = bp.softmax_cross_entropy(logits, labels)
        return losses.mean(), grad

    check_gradients(net, x, mean_cross_entropy, rng, max_coords=1000)
