"""BP networks from the shared architecture specs: shapes, init, state, errors, the loop, and learning."""
import logging

import numpy as np
import pytest
from bp_support import BACKENDS

from tagi import bp, nn
from tagi.bp.loop import evaluate, predict, train_epoch, train_step
from tagi.loop import train_step as tagi_train_step
from tagi.models import architecture, bp_network, tagi_network

TUTORIALS = {"pytorch_tutorial": 62_006, "keras_tutorial": 122_570, "cnn4_leaky_dropout": 1_084_234,
             "fc_3072_128": 394_634, "cnn_32_64": 315_722}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_tutorial_architectures_build_and_train_a_step(name, backend, rng):
    """Parameter counts as the tutorials print them; one step lowers the loss on its batch."""
    net = bp_network(architecture(name), 10, backend=backend, seed=0)
    assert net.output_shape == (10,) and net.num_parameters == TUTORIALS[name]
    optimizer = bp.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, labels = rng.standard_normal((4, 3, 32, 32)), np.array([0, 3, 7, 9])

    def loss():
        return float(bp.softmax_cross_entropy(net.forward(x), net.backend.asarray(labels))[0].mean())

    before = loss()
    logits, losses = train_step(net, optimizer, x, labels)
    assert logits.shape == (4, 10) and logits.dtype == np.float32 and losses.shape == (4,)
    assert loss() < before


@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_tutorial_architectures_train_with_tagi(name, rng):
    """Every tutorial CNN builds for TAGI (Dropout left out) with the BP weights' shapes (one output
    more: 11 for the 10-class tree), and ten steps on one batch raise its labels' probability."""
    spec = architecture(name)
    net, head = tagi_network(spec, 11, seed=0), nn.HierarchicalSoftmax(10)
    bp_shapes = [value.shape for value in bp_network(spec, 11).state_dict().values()]
    assert [net.state_dict()[k].shape for k in net.state_dict() if k.split(".")[1] in ("mu_w", "mu_b")] == bp_shapes
    x, labels = rng.standard_normal((4, 3, 32, 32)), np.array([0, 3, 7, 9])

    def label_probability():
        probs = head.probabilities(*net.forward(x))
        return float(np.mean(np.asarray(probs)[np.arange(4), labels]))

    before = label_probability()
    for _ in range(10):
        tagi_train_step(net, head, x, labels, sigma_v=1.0)
    assert label_probability() > before + 0.04


def test_every_missing_type_is_named_at_once():
    spec = {"input_shape": (3, 8, 8), "layers": [
        {"type": "Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 3}, {"type": "Swish"},
        {"type": "Swish"}, {"type": "Dropout", "p": 0.5}, {"type": "Linear", "in_features": 72,
                                                           "out_features": "outputs"}, {"type": "Gelu"}]}
    with pytest.raises(ValueError, match=r"tagi\.nn has no layer of type 'Swish' \(layers 1, 2\); "
                                         r"'Gelu' \(layer 5\); its layers are AvgPool2d, Conv2d, LeakyReLU, Linear, "
                                         r"MaxPool2d, MixtureLeakyReLU, MixtureReLU, ReLU$"):
        tagi_network(spec, 11)
    spec = {"input_shape": (4,), "layers": [{"type": "MixtureReLU"}, {"type": "Sequential"}]}
    with pytest.raises(ValueError, match=r"tagi\.bp has no layer of type 'MixtureReLU' \(layer 0\); "
                                         r"'Sequential' \(layer 1\)"):
        bp_network(spec, 10)


def test_tagi_leaves_out_dropout_and_logs_which(caplog):
    spec = {"input_shape": (4,), "layers": [
        {"type": "Linear", "in_features": 4, "out_features": 5}, {"type": "Dropout", "p": 0.5},
        {"type": "ReLU"}, {"type": "Dropout", "p": 0.25}, {"type": "Linear", "in_features": 5, "out_features": "outputs"}]}
    with caplog.at_level(logging.INFO, logger="tagi.models"):
        net = tagi_network(spec, 3)
    assert [type(layer).__name__ for layer in net.layers] == ["Linear", "ReLU", "Linear"]
    assert "TAGI leaves out layers 1 (Dropout), 3 (Dropout)" in caplog.text
    assert len(bp_network(spec, 3).layers) == 5


def test_same_spec_builds_tagi_and_bp_and_bp_starts_at_the_tagi_means():
    """Default init "He" is TAGI's rule: same spec and seed give the TAGI network's initial means."""
    spec = architecture("cifar10_3conv")
    tagi_net, bp_net = tagi_network(spec, 11, seed=4), bp_network(spec, 10, seed=4)
    assert tagi_net.output_shape == (11,) and bp_net.output_shape == (10,)
    tagi_state = tagi_net.state_dict()
    for key, value in bp_network(spec, 11, seed=4).state_dict().items():
        index, name = key.split(".")
        np.testing.assert_array_equal(value, tagi_state[f"{index}.mu_{name[0]}"])
        assert value.dtype == np.float32


def pytorch_init(spec):
    for entry in spec["layers"]:
        if entry["type"] in ("Conv2d", "Linear"):
            entry["init_method"] = "torch_default"
    return spec


def test_pytorch_init_bounds_and_seeding():
    net = bp_network(pytorch_init(architecture("cifar10_3conv")), 10, seed=0)
    state = net.state_dict()
    for key, fan_in in (("0.weight", 75), ("0.bias", 75), ("3.weight", 800), ("9.weight", 1024)):
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(state[key]).max() <= bound and np.abs(state[key]).max() > 0.9 * bound
    assert abs(state["3.weight"].std() - 1 / np.sqrt(3 * 800)) < 0.02 / np.sqrt(800)   # U(-a, a): sd a/sqrt(3)
    again = bp_network(pytorch_init(architecture("cifar10_3conv")), 10, seed=0)
    other = bp_network(pytorch_init(architecture("cifar10_3conv")), 10, seed=1)
    np.testing.assert_array_equal(again.state_dict()["6.weight"], state["6.weight"])
    assert not np.array_equal(other.state_dict()["6.weight"], state["6.weight"])
    layer = bp.Linear(4, 3, init_method="torch_default", gain_w=0.5, gain_b=2.0)
    bp.Sequential(layer, input_shape=(4,), seed=0)
    assert np.abs(layer.weight.value).max() <= 0.25 and np.abs(layer.bias.value).max() > 0.5


def test_state_dict_round_trip_and_mismatch(rng):
    net, other = (bp_network(architecture("pytorch_tutorial"), 10, seed=s) for s in (0, 1))
    other.load_state_dict(net.state_dict())
    x = rng.standard_normal((2, 3, 32, 32))
    np.testing.assert_array_equal(net.forward(x), other.forward(x))
    small = bp.Sequential(bp.Linear(3, 2), input_shape=(3,))
    with pytest.raises(KeyError, match=r"missing keys \['0.bias'\]"):
        small.load_state_dict({"0.weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"0\.weight.*\(2, 3\)"):
        small.load_state_dict({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(2)})


def test_misuse_is_named(rng):
    net = bp.Sequential(bp.Conv2d(3, 4, 3), bp.ReLU(), bp.Linear(4 * 30 * 30, 2), input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\).*\(batch, 3, 32, 32\)"):
        net.forward(np.zeros((2, 3, 28, 28)))
    net.forward(np.zeros((2, 3, 32, 32)))
    with pytest.raises(RuntimeError, match=r"training=True"):
        net.backward(np.zeros((2, 2)))
    net.forward(np.zeros((2, 3, 32, 32)), training=True)
    with pytest.raises(ValueError, match=r"output gradient has shape \(3, 2\), expected \(2, 2\)"):
        net.backward(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"Linear\(10, 2\) expects 10 input features"):
        bp.Sequential(bp.Conv2d(3, 4, 3), bp.Linear(10, 2), input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match=r"padding_type must be one of"):
        bp.Sequential(bp.MaxPool2d(2, padding_type="same"), input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"MaxPool2d\(2, 2, padding=2.*padding must be < kernel_size"):
        bp.Sequential(bp.MaxPool2d(2, padding=2), input_shape=(1, 4, 4))


def quadrant_images(n, rng):
    """4 classes: +1 added to one quadrant (the class's) of unit-normal 3x32x32 noise."""
    labels = rng.integers(0, 4, n)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    for k in range(4):
        row, col = divmod(k, 2)
        x[labels == k, :, 16 * row:16 * row + 16, 16 * col:16 * col + 16] += 1.0
    return x, labels


def batches(x, labels, size, rng=None):
    order = rng.permutation(len(labels)) if rng is not None else np.arange(len(labels))
    return [(x[order[i:i + size]], labels[order[i:i + size]]) for i in range(0, len(order), size)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_cifar_3conv_learns_a_synthetic_problem(backend):
    rng = np.random.default_rng(0)
    x_train, y_train = quadrant_images(128, rng)
    x_test, y_test = quadrant_images(64, rng)
    net = bp_network(architecture("cifar10_3conv"), 4, backend=backend, seed=0)
    optimizer = bp.Adam(net.parameters(), lr=1e-3)
    fits = [train_epoch(net, optimizer, batches(x_train, y_train, 16, rng), progress=False)
            for _ in range(2)]
    scores = evaluate(net, batches(x_test, y_test, 64), progress=False)
    constant = 1 - np.bincount(y_test).max() / len(y_test)          # the best constant predictor's error
    assert constant > 0.6 and scores["error"] < 0.2
    assert fits[1]["train_loss"] < fits[0]["train_loss"] < np.log(4) + 0.2
    assert fits[0]["images"] == 128 and scores["images"] == 64
    assert 0 <= scores["nll"] < 0.7 and 0 <= fits[1]["train_error"] < fits[0]["train_error"]


def test_loop_counts_errors_and_nll_exactly(rng):
    """evaluate: error rate and mean -log softmax(label) over batches of unequal size."""
    net = bp.Sequential(bp.Linear(3, 4), input_shape=(3,), dtype="float64", seed=0)
    x, labels = rng.standard_normal((7, 3)), rng.integers(0, 4, 7)
    logits = net.forward(x)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    scores = evaluate(net, batches(x, labels, 3), progress=False)
    assert scores["error"] == np.mean(logits.argmax(1) != labels) and scores["images"] == 7
    assert scores["nll"] == pytest.approx(-log_p[np.arange(7), labels].mean(), rel=1e-12)
    fit = train_epoch(net, bp.SGD(net.parameters(), lr=0.0), batches(x, labels, 3), progress=False)
    assert fit["train_error"] == scores["error"] and fit["train_loss"] == pytest.approx(scores["nll"])
    probs, seen_labels = predict(net, batches(x, labels, 3), progress=False)
    np.testing.assert_allclose(probs, np.exp(log_p), rtol=1e-12)
    np.testing.assert_array_equal(seen_labels, labels)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_from_network_and_optimizer_state_continues_exactly(optimizer, rng):
    """Two steps in one go == one step, a save/load into fresh objects, one more step."""
    spec = architecture("pytorch_tutorial")
    x, labels = rng.standard_normal((2, 4, 3, 32, 32)), rng.integers(0, 10, (2, 4))
    options = {"lr": 0.01, "weight_decay": 1e-3, **({"momentum": 0.9} if optimizer == "sgd" else {})}

    def fresh(seed):
        net = bp_network(spec, 10, dtype="float64", seed=seed)
        return net, bp.make_optimizer(optimizer, net.parameters(), **options)

    net, opt = fresh(0)
    for step in range(2):
        train_step(net, opt, x[step], labels[step])
    first, first_opt = fresh(0)
    train_step(first, first_opt, x[0], labels[0])
    resumed, resumed_opt = fresh(1)
    resumed.load_state_dict(first.state_dict())
    resumed_opt.load_state_dict(first_opt.state_dict())
    assert resumed_opt.steps == 1
    train_step(resumed, resumed_opt, x[1], labels[1])
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value, err_msg=key)
    with pytest.raises(KeyError, match=r"missing keys \['steps'\]"):
        resumed_opt.load_state_dict({k: v for k, v in first_opt.state_dict().items() if k != "steps"})
