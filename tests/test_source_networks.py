"""The PyTorch tutorial's variants (its width sweep, its 3-conv and 4-conv nets): built for both
methods, with the output shapes and parameter counts their layer lists give, and trainable."""
import numpy as np
import pytest

from tagi import bp, nn
from tagi.bp.loop import train_step
from tagi.loop import train_step as tagi_train_step
from tagi.models import architecture, bp_network, tagi_network


def conv(c_in, c_out, k):
    """Parameters of a k x k conv (weights and biases)."""
    return c_in * c_out * k * k + c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


def width_count(n, outputs):
    return conv(3, n, 5) + conv(n, 200, 5) + fc(200 * 5 * 5, 100) + fc(100, 84) + fc(84, outputs)


def count_3conv(outputs):
    return conv(3, 100, 5) + conv(100, 180, 5) + conv(180, 240, 5) + fc(240, 100) + fc(100, 200) + fc(200, outputs)


def count_4conv(outputs):
    return (conv(3, 100, 3) + conv(100, 180, 3) + conv(180, 240, 2) + conv(240, 300, 2)
            + fc(300, 100) + fc(100, 200) + fc(200, outputs))


NETWORKS = [(("pytorch_tutorial_width", {"width": n}), lambda k, n=n: width_count(n, k))
            for n in range(30, 171, 20)]
NETWORKS += [(("pytorch_tutorial_3conv", {}), count_3conv), (("pytorch_tutorial_4conv", {}), count_4conv)]
IDS = [f"{name}{params.get('width', '')}" for (name, params), _ in NETWORKS]


def test_counts_by_hand():
    """The counting functions against figures worked out on paper."""
    assert width_count(30, 10) == 661_914 and width_count(170, 10) == 1_372_554
    assert count_3conv(10) == 1_584_330 and count_4conv(10) == 678_630


@pytest.mark.parametrize("net, count", NETWORKS, ids=IDS)
def test_builds_for_both_methods_with_its_parameter_count(net, count):
    """Building checks that every Linear's in_features is what the conv/pool geometry leaves
    (5x5x200 = 5000, 1x1x240, 1x1x300); TAGI has one output more (11 for the 10-class tree)."""
    name, params = net
    spec = architecture(name, **params)
    bp_net, tagi_net = bp_network(spec, 10, seed=0), tagi_network(spec, 11, seed=0)
    assert bp_net.output_shape == (10,) and tagi_net.output_shape == (11,)
    assert bp_net.num_parameters == count(10) and tagi_net.num_parameters == count(11)


@pytest.mark.parametrize("name, params", [("pytorch_tutorial_width", {"width": 30}),
                                          ("pytorch_tutorial_3conv", {}), ("pytorch_tutorial_4conv", {})])
def test_one_training_step_on_a_tiny_batch(name, params, rng):
    """BP: one SGD step lowers the loss on its batch; TAGI: ten steps raise its labels' probability."""
    spec = architecture(name, **params)
    x, labels = rng.standard_normal((4, 3, 32, 32)), np.array([0, 3, 7, 9])
    net = bp_network(spec, 10, init_method="torch_default", seed=0)
    optimizer = bp.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def loss():
        return float(bp.softmax_cross_entropy(net.forward(x), net.backend.asarray(labels))[0].mean())

    before = loss()
    logits, _ = train_step(net, optimizer, x, labels)
    assert logits.shape == (4, 10) and loss() < before
    tagi_net, head = tagi_network(spec, 11, seed=0), nn.HierarchicalSoftmax(10)

    def label_probability():
        return float(np.mean(np.asarray(head.probabilities(*tagi_net.forward(x)))[np.arange(4), labels]))

    before = label_probability()
    for _ in range(10):
        tagi_train_step(tagi_net, head, x, labels, sigma_v=1.0)
    assert label_probability() > before


def test_width_is_the_first_conv_layers_channels():
    layers = architecture("pytorch_tutorial_width", width=70)["layers"]
    assert (layers[0]["out_channels"], layers[3]["in_channels"], layers[3]["out_channels"]) == (70, 70, 200)


@pytest.mark.parametrize("name, params, message", [
    ("pytorch_tutorial_width", {}, r"takes the parameters \['width'\], got \[\]"),
    ("pytorch_tutorial_width", {"width": 0}, r"width must be a positive integer, got 0"),
    ("pytorch_tutorial_width", {"width": 2.5}, r"width must be a positive integer, got 2.5"),
    ("pytorch_tutorial_3conv", {"width": 30}, r"takes no parameters, got \['width'\]"),
])
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(ValueError, match=message):
        architecture(name, **params)
