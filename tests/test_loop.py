"""tagi.loop: the training step on buffers is forward, output update, backward and step by hand;
its buffers stay put for a batch of the same shape; the head computes on the network's backend."""
import types

import numpy as np
import pytest

from tagi import nn
from tagi.divergence import DivergenceError
from tagi.loop import TrainStep, train_epoch, train_step


def small_net(backend):
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Linear(4 * 4 * 4, 11), input_shape=(3, 8, 8), backend=backend, seed=3)


def batches(rng, n=3, size=6):
    return [(rng.standard_normal((size, 3, 8, 8)), rng.integers(0, 10, size)) for _ in range(n)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_step_is_forward_update_backward_and_step_by_hand(backend, rng):
    by_hand, stepped = small_net(backend), small_net(backend)
    head = nn.HierarchicalSoftmax(10, backend=by_hand.backend)
    step, wrong = TrainStep(stepped, head, 0.7), 0
    for x, labels in batches(rng):
        mu, var = by_hand.forward(x)
        by_hand.backward(*head.innovations(mu, var, labels, 0.7))
        by_hand.step()
        wrong += int((head.predict(mu, var) != labels).sum())
        step.load(x, labels)
        got = step()
        for a, b in zip(got, (mu, var)):
            np.testing.assert_array_equal(a, b)
    assert int(step.wrong) == wrong
    want = by_hand.state_dict()
    for key, value in stepped.state_dict().items():
        np.testing.assert_array_equal(value, want[key], err_msg=key)


def test_an_epoch_is_the_checked_step_on_every_batch(rng):
    data = batches(rng)
    by_steps, by_epoch = small_net("numpy"), small_net("numpy")
    head = nn.HierarchicalSoftmax(10)
    wrong = 0
    for x, labels in data:
        mu, var = train_step(by_steps, head, x, labels, 0.7)
        wrong += int((head.predict(mu, var) != labels).sum())
    fit = train_epoch(by_epoch, head, data, 0.7, progress=False)
    assert fit == {"train_error": wrong / 18, "images": 18}
    want = by_steps.state_dict()
    for key, value in by_epoch.state_dict().items():
        np.testing.assert_array_equal(value, want[key], err_msg=key)


def test_buffers_are_refilled_in_place_for_the_same_batch_shape(rng):
    step = TrainStep(small_net("numpy"), nn.HierarchicalSoftmax(10), 1.0)
    (x, labels), (x2, labels2) = batches(rng, 2)
    step.load(x, labels)
    buffers = step.x, step.y, step.labels
    step.load(x2, labels2)
    assert all(a is b for a, b in zip((step.x, step.y, step.labels), buffers))
    np.testing.assert_array_equal(step.x, x2.astype(np.float32))
    np.testing.assert_array_equal(step.labels, labels2)
    assert x is not step.x and not np.shares_memory(x2, step.x)      # the caller's arrays are copied
    step.load(x[:2], labels[:2])                                     # another batch size
    assert step.x.shape == (2, 3, 8, 8) and step.y.shape == (2, 11) and step.x is not buffers[0]
    with pytest.raises(TypeError, match=r"input batch must be an array shaped \(batch, 3, 8, 8\)"):
        step.load(x.tolist(), labels)                                # the network's own check


def test_a_diverging_step_raises_before_any_update(rng):
    net = small_net("numpy")
    net.layers[0].mu_w[0, 0, 0, 0] = np.nan
    before = net.state_dict()
    (x, labels), = batches(rng, 1)
    with pytest.raises(DivergenceError, match=r"step 4: non-finite output moments .*0\.mu_w"):
        train_step(net, nn.HierarchicalSoftmax(10), x, labels, 1.0, step=4)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_the_step_uses_the_head_on_the_networks_backend():
    net, elsewhere = small_net("numpy"), types.SimpleNamespace(NAME="elsewhere", xp=types.SimpleNamespace())
    head = nn.HierarchicalSoftmax(10, backend=elsewhere)
    step = TrainStep(net, head, 1.0)
    assert step.head.backend is net.backend and step.head.num_classes == 10
    assert head.backend is elsewhere                                  # the caller's head as it was
    numpy_head = nn.HierarchicalSoftmax(10)
    assert TrainStep(small_net("numba"), numpy_head, 1.0).head is numpy_head    # numba's arrays are numpy's
    with pytest.raises(ValueError, match="sigma_v must be a finite number > 0"):
        TrainStep(small_net("numpy"), nn.HierarchicalSoftmax(10), 0.0)
