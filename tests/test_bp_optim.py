"""SGD (momentum, weight decay) and Adam steps by hand, schedules, and bad hyperparameters."""
import math

import numpy as np
import pytest
from bp_support import BACKENDS

from tagi import bp
from tagi.bp.loop import train_step


def hand_gradients(x, labels, w1, b1, w2, b2):
    """Mean cross-entropy of softmax(relu(x w1^T + b1) w2^T + b2), differentiated by hand."""
    h_pre = x @ w1.T + b1
    h = np.maximum(h_pre, 0)
    z = h @ w2.T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g_z = p.copy()
    g_z[np.arange(len(labels)), labels] -= 1
    g_z /= len(labels)
    g_h = (g_z @ w2) * (h_pre > 0)
    return g_h.T @ x, g_h.sum(0), g_z.T @ h, g_z.sum(0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_sgd_steps_with_momentum_and_weight_decay_by_hand(backend, rng):
    lr, momentum, decay = 0.1, 0.9, 0.01
    net = bp.Sequential(bp.Linear(3, 4), bp.ReLU(), bp.Linear(4, 2),
                        input_shape=(3,), backend=backend, dtype="float64", seed=0)
    optimizer = bp.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=decay)
    params = [net.state_dict()[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias")]
    velocity = [np.zeros_like(p) for p in params]
    for _ in range(2):
        x, labels = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
        grads = hand_gradients(x, labels, *params)
        for i, (p, g) in enumerate(zip(params, grads)):
            decays = i in (0, 2)                                   # weights decay, biases do not
            velocity[i] = momentum * velocity[i] + g + (decay * p if decays else 0)
            params[i] = p - lr * velocity[i]
        train_step(net, optimizer, x, labels)
    state = net.state_dict()
    for key, expected in zip(("0.weight", "0.bias", "2.weight", "2.bias"), params):
        np.testing.assert_allclose(state[key], expected, rtol=1e-12, atol=1e-14, err_msg=key)


def test_adam_two_steps_by_hand():
    lr, (beta1, beta2), eps, decay = 0.01, (0.8, 0.9), 1e-3, 0.1
    w = bp.Parameter(np.array([1.0, -2.0, 0.5]), decay=True)
    b = bp.Parameter(np.array([0.3]), decay=False)
    optimizer = bp.Adam([w, b], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=decay)
    w_hand, b_hand = w.value.copy(), b.value.copy()
    m, v = [np.zeros(3), np.zeros(1)], [np.zeros(3), np.zeros(1)]
    for t, (gw, gb) in enumerate([([0.5, -1.0, 2.0], [1.5]), ([-0.2, 0.4, 1.0], [-3.0])], start=1):
        w.grad, b.grad = np.array(gw), np.array(gb)
        optimizer.step()
        for i, (p, g) in enumerate([(w_hand, np.array(gw) + decay * w_hand), (b_hand, np.array(gb))]):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / (1 - beta1 ** t), v[i] / (1 - beta2 ** t)
            p -= lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(w.value, w_hand, rtol=1e-14)
        np.testing.assert_allclose(b.value, b_hand, rtol=1e-14)
    # the first step moves every coordinate by about lr, against the sign of its gradient
    first = bp.Parameter(np.zeros(2), decay=False)
    first.grad = np.array([1e-3, -50.0])
    bp.Adam([first], lr=0.01, eps=1e-12).step()
    np.testing.assert_allclose(first.value, [-0.01, 0.01], rtol=1e-6)


def test_adamax_two_steps_by_hand():
    lr, (beta1, beta2), eps, decay = 0.01, (0.8, 0.9), 1e-3, 0.1
    w = bp.Parameter(np.array([1.0, -2.0, 0.5]), decay=True)
    optimizer = bp.make_optimizer("adamax", [w], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=decay)
    hand, m, u = w.value.copy(), np.zeros(3), np.zeros(3)
    for t, gw in enumerate([[0.5, -1.0, 2.0], [-0.2, 4.0, 1.0]], start=1):   # |g| grows in one entry only
        w.grad = np.array(gw)
        optimizer.step()
        g = np.array(gw) + decay * hand
        m = beta1 * m + (1 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g))
        hand -= lr / (1 - beta1 ** t) * m / (u + eps)
        np.testing.assert_allclose(w.value, hand, rtol=1e-14)
    state = optimizer.state_dict()
    assert sorted(state) == ["m.0", "steps", "u.0"]
    np.testing.assert_allclose(state["u.0"], u, rtol=1e-14)


def test_schedules():
    assert [bp.make_schedule("constant", 0.1)(e) for e in (1, 7)] == [0.1, 0.1]
    step = bp.make_schedule("step", 0.1, step_size=2, gamma=0.5)
    np.testing.assert_allclose([step(e) for e in range(1, 6)], [0.1, 0.1, 0.05, 0.05, 0.025])
    cosine = bp.make_schedule("cosine", 0.1, epochs=4, min_lr=0.02)
    np.testing.assert_allclose([cosine(e) for e in range(1, 5)],
                               [0.02 + 0.08 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)])
    assert cosine(1) == 0.1 and cosine(100) == pytest.approx(0.02)


def test_optimizer_lr_follows_a_schedule(rng):
    net = bp.Sequential(bp.Linear(2, 2), input_shape=(2,), seed=0)
    optimizer = bp.make_optimizer("sgd", net.parameters(), lr=0.5)
    optimizer.lr = bp.CosineLR(0.5, epochs=2)(2)
    assert optimizer.lr == pytest.approx(0.25)


def params():
    return [bp.Parameter(np.zeros(2), decay=True)]


@pytest.mark.parametrize("make, message", [
    (lambda: bp.SGD(params(), lr=-0.1), r"lr \(learning rate\) must be a finite number >= 0, got -0.1"),
    (lambda: bp.Adam(params(), lr=float("nan")), r"lr \(learning rate\)"),
    (lambda: bp.SGD(params(), lr=0.1, momentum=1.0), r"momentum must be .*>= 0 and < 1, got 1.0"),
    (lambda: bp.SGD(params(), lr=0.1, momentum=-0.5), r"momentum .*got -0.5"),
    (lambda: bp.SGD(params(), lr=0.1, weight_decay=-1), r"weight_decay .*got -1"),
    (lambda: bp.Adam(params(), betas=(0.9, 1.5)), r"beta2 .*got 1.5"),
    (lambda: bp.Adam(params(), eps=0), r"eps must be a finite number > 0"),
    (lambda: bp.make_optimizer("rmsprop", params(), lr=0.1), r"optimizer must be one of \('sgd', 'adam', 'adamax'\), got 'rmsprop'"),
    (lambda: bp.SGD([], lr=0.1), r"SGD got no parameters"),
    (lambda: bp.make_schedule("linear", 0.1), r"schedule must be one of \('constant', 'step', 'exponential', 'cosine'\), got 'linear'"),
    (lambda: bp.make_schedule("step", -0.1, step_size=2), r"lr \(learning rate\) .*got -0.1"),
    (lambda: bp.make_schedule("step", 0.1, step_size=0), r"step_size must be an integer >= 1, got 0"),
    (lambda: bp.make_schedule("step", 0.1, step_size=2, gamma=0), r"gamma .*got 0"),
    (lambda: bp.make_schedule("cosine", 0.1, epochs=0), r"epochs must be an integer >= 1"),
    (lambda: bp.make_schedule("cosine", 0.1, epochs=5, min_lr=0.2), r"min_lr .*<= 0.1, got 0.2"),
    (lambda: bp.make_schedule("constant", 0.1)(0), r"epoch must be an integer >= 1, got 0"),
    (lambda: bp.Dropout(1.0), r"dropout p must be a finite number >= 0 and < 1, got 1.0"),
    (lambda: bp.Dropout(-0.1), r"dropout p .*got -0.1"),
    (lambda: bp.Linear(3, 2, init_method="kaiming"), r"init_method must be one of \('He', 'Xavier', 'torch_default', 'glorot_uniform'\)"),
    (lambda: bp.Conv2d(3, 2, 3, gain_w=0), r"gain_w must be a finite number > 0"),
])
def test_bad_hyperparameters_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_setting_of_lr_later_and_step_before_backward():
    optimizer = bp.SGD(params(), lr=0.1)
    with pytest.raises(ValueError, match=r"lr \(learning rate\) .*got -1"):
        optimizer.lr = -1
    with pytest.raises(RuntimeError, match=r"step\(\) before any backward"):
        optimizer.step()
