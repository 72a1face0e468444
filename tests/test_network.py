"""Sequential: shape inference, initialisation, dtypes, state_dict, bad input, learning."""
import numpy as np
import pytest

from tagi import nn
from tagi.loop import train_step
from tagi.metrics import error_rate
from tagi.models import architecture, tagi_network


def cifar_net(**options):
    return tagi_network(architecture("cifar10_3conv"), 11, **options)


def test_cifar_network_shapes_and_init():
    """Math doc §2.1, §9.2: output shapes, 145,643 parameters, var = 1/fan_in for weights and biases."""
    net = cifar_net(seed=0)
    assert net.output_shape == (11,) and net.num_parameters == 145_643
    state = net.state_dict()
    fan_in = {"0": 75, "3": 800, "6": 800, "9": 1024, "11": 64}
    for index, n in fan_in.items():
        np.testing.assert_allclose(state[f"{index}.var_w"], 1 / n, rtol=1e-6)
        np.testing.assert_allclose(state[f"{index}.var_b"], 1 / n, rtol=1e-6)
        assert state[f"{index}.mu_w"].dtype == np.float32
    assert state["0.mu_w"].shape == (32, 3, 5, 5) and state["9.mu_w"].shape == (64, 1024)
    assert abs(state["3.mu_w"].std() - np.sqrt(1 / 800)) < 0.05 * np.sqrt(1 / 800)
    assert state["3.mu_b"].std() > 0                              # random bias means, not zeros


def test_seed_reproduces_and_gain_scales():
    a, b, c = cifar_net(seed=5), cifar_net(seed=5), cifar_net(seed=6)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key])
    assert not np.array_equal(a.state_dict()["0.mu_w"], c.state_dict()["0.mu_w"])
    layer = nn.Linear(4, 2, gain_w=0.5, gain_b=2.0)
    nn.Sequential(layer, input_shape=(4,), seed=0)
    np.testing.assert_allclose(layer.var_w, (0.5 * 0.5) ** 2)
    np.testing.assert_allclose(layer.var_b, (2.0 * 0.5) ** 2)


def test_float64_on_request(rng):
    net = cifar_net(seed=0, dtype="float64")
    mu, var = net.forward(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    assert mu.dtype == var.dtype == np.float64
    assert (var > 0).all()


def test_float32_matches_float64(rng):
    x = rng.standard_normal((4, 3, 32, 32))
    labels = np.array([1, 5, 9, 0])
    head = nn.HierarchicalSoftmax(10)
    outs = {}
    for dtype in ("float32", "float64"):
        net = cifar_net(seed=0, dtype=dtype)
        train_step(net, head, x, labels, 1.0)
        outs[dtype] = (net.forward(x), net.state_dict())
    np.testing.assert_allclose(outs["float32"][0][0], outs["float64"][0][0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(outs["float32"][1]["6.mu_w"], outs["float64"][1]["6.mu_w"],
                               rtol=1e-3, atol=1e-5)


def test_state_dict_round_trip_and_mismatch(rng):
    net, other = cifar_net(seed=0), cifar_net(seed=1)
    other.load_state_dict(net.state_dict())
    x = rng.standard_normal((2, 3, 32, 32))
    np.testing.assert_array_equal(net.forward(x)[0], other.forward(x)[0])
    state = net.state_dict()
    state["0.mu_w"][:] = 0                      # a copy: the network must not change
    assert np.abs(net.state_dict()["0.mu_w"]).sum() > 0
    small = nn.Sequential(nn.Linear(3, 2), input_shape=(3,))
    with pytest.raises(KeyError, match="missing keys"):
        small.load_state_dict({"0.mu_w": np.zeros((2, 3))})
    wrong = small.state_dict()
    wrong["0.mu_w"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"0\.mu_w.*\(2, 3\)"):
        small.load_state_dict(wrong)


def test_bad_input_is_named(rng):
    net = cifar_net(seed=0)
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\).*\(batch, 3, 32, 32\)"):
        net.forward(np.zeros((2, 3, 28, 28)))
    x = rng.standard_normal((4, 3, 32, 32))
    x[2, 1, 5, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\[2\]"):
        net.forward(x)
    with pytest.raises(ValueError, match=r"expects 1000 input features.*\(64, 4, 4\)"):
        nn.Sequential(nn.Linear(1000, 2), input_shape=(64, 4, 4))
    with pytest.raises(ValueError, match=r"expects a \(3, H, W\) input"):
        nn.Sequential(nn.Conv2d(3, 4, 3), input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="dtype"):
        nn.Sequential(nn.Linear(2, 2), input_shape=(2,), dtype="float16")
    with pytest.raises(ValueError, match="unknown backend"):
        nn.Sequential(nn.Linear(2, 2), input_shape=(2,), backend="tpu")
    net.forward(x[:2] * 0)
    with pytest.raises(ValueError, match="innovations have shapes"):
        net.backward(np.zeros((3, 11)), np.zeros((3, 11)))


def test_mixture_relu_network_runs(rng):
    net = nn.Sequential(nn.Linear(4, 8), nn.MixtureReLU(), nn.Linear(8, 1), input_shape=(4,),
                        dtype="float64", seed=0)
    mu, var = net.forward(rng.standard_normal((5, 4)))
    assert mu.shape == (5, 1) and (var > 0).all()


def blobs(rng, n, dim=8, classes=3):
    """Three Gaussian clusters in `dim` dimensions: a learnable classification problem."""
    centres = rng.standard_normal((classes, dim)) * 2.0
    labels = rng.integers(0, classes, n)
    return centres[labels] + rng.standard_normal((n, dim)) * 0.7, labels


def test_learns_a_synthetic_problem(rng):
    """A constant predictor errs on >= 2/3 of balanced 3-class data; TAGI must do far better."""
    x, y = blobs(rng, 1200)
    head = nn.HierarchicalSoftmax(3)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, head.num_outputs),
                        input_shape=(8,), seed=0)
    for epoch in range(3):
        for i in range(0, 1000, 10):
            train_step(net, head, x[i:i + 10], y[i:i + 10], sigma_v=0.5)
    mu, var = net.forward(x[1000:])
    assert error_rate(head.probabilities(mu, var), y[1000:]) < 0.15


def test_conv_net_learns_where_the_bright_quadrant_is(rng):
    """4 classes: which quadrant of an 8x8 image is bright. Conv -> ReLU -> pool -> linear."""
    n = 800
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n, 1, 8, 8)) * 0.5
    for i, label in enumerate(y):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.5
    head = nn.HierarchicalSoftmax(4)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                        nn.AvgPool2d(3, 2, padding=1, padding_type="bottom_right"),
                        nn.Linear(64, head.num_outputs), input_shape=(1, 8, 8), seed=0)
    for i in range(0, 600, 8):
        train_step(net, head, x[i:i + 8], y[i:i + 8], sigma_v=0.5)
    mu, var = net.forward(x[600:])
    assert error_rate(head.probabilities(mu, var), y[600:]) < 0.2           # constant predictor: >= 0.75


def small_conv_net(backend="numpy", dtype="float64"):
    """Conv, ReLU, both pools and two linear layers: every layer type that keeps forward state."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2, 2),
        nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Linear(20, 6), nn.ReLU(), nn.Linear(6, 11),
        input_shape=(3, 8, 8), backend=backend, dtype=dtype, seed=4)


def test_a_batch_in_uneven_parts_trains_as_the_whole_batch(rng, monkeypatch):
    """Sequential's parts (backend.batch_parts): each part's forward and backward on its own
    copies of the layers, the parts' parameter deltas summed. On the float64 reference, three
    uneven parts give the whole batch's outputs and parameters to round-off."""
    from tagi.backends import numpy_backend
    x, labels = rng.standard_normal((8, 3, 8, 8)), rng.integers(0, 10, 8)
    head = nn.HierarchicalSoftmax(10)
    whole, parted = small_conv_net(), small_conv_net()
    for _ in range(2):
        want = train_step(whole, head, x, labels, sigma_v=1.0)
    monkeypatch.setattr(numpy_backend, "batch_parts", lambda batch: [(0, 3), (3, 1), (4, 4)])
    for _ in range(2):
        got = train_step(parted, head, x, labels, sigma_v=1.0)
    assert sorted(parted._part_layers) == [0, 3, 4]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    reference = whole.state_dict()
    for key, value in parted.state_dict().items():
        np.testing.assert_allclose(value, reference[key], rtol=1e-12, atol=1e-14, err_msg=key)
    np.testing.assert_allclose(parted.forward(x)[1], whole.forward(x)[1], rtol=1e-12)
