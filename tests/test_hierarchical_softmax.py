"""Hierarchical softmax: the K=10 code of docs/math.md §7.2, round trips, the output update."""
import numpy as np
import pytest

from tagi import nn

# docs/math.md §7.2: class -> observed outputs (1-based) and targets
TABLE_K10 = {
    0: ([1, 2, 4, 7], [1, 1, 1, 1]),     1: ([1, 2, 4, 7], [1, 1, 1, -1]),
    2: ([1, 2, 4, 8], [1, 1, -1, 1]),    3: ([1, 2, 4, 8], [1, 1, -1, -1]),
    4: ([1, 2, 5, 9], [1, -1, 1, 1]),    5: ([1, 2, 5, 9], [1, -1, 1, -1]),
    6: ([1, 2, 5, 10], [1, -1, -1, 1]),  7: ([1, 2, 5, 10], [1, -1, -1, -1]),
    8: ([1, 3, 6, 11], [-1, 1, 1, 1]),   9: ([1, 3, 6, 11], [-1, 1, 1, -1]),
}


def test_k10_table():
    head = nn.HierarchicalSoftmax(10)
    assert head.num_outputs == 11
    indices, targets = head.encode(np.arange(10))
    for label, (idx, tgt) in TABLE_K10.items():
        assert indices[label].tolist() == [i - 1 for i in idx]
        assert targets[label].tolist() == tgt


@pytest.mark.parametrize("k", range(2, 101))
def test_round_trip(k):
    head = nn.HierarchicalSoftmax(k)
    labels = np.arange(k)
    indices, targets = head.encode(labels)
    assert indices.shape == (k, max(1, int(np.ceil(np.log2(k)))))
    assert (head.decode(targets) == labels).all()
    assert head.num_outputs == indices.max() + 1 and (k & (k - 1) or head.num_outputs == k - 1)
    # outputs that say each label's targets loudly must predict that label
    mu = np.zeros((k, head.num_outputs))
    np.put_along_axis(mu, indices, 8.0 * targets, axis=1)
    var = np.full_like(mu, 0.01)
    assert (head.predict(mu, var) == labels).all()
    probs = head.probabilities(mu, var)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-12)


def test_probabilities_formula():
    """P(class) = prod over its path of Phi(+-mu / sqrt(1/9 + var)), then normalised over K."""
    from scipy.stats import norm
    head = nn.HierarchicalSoftmax(10)
    rng = np.random.default_rng(0)
    mu, var = rng.standard_normal((5, 11)), rng.random((5, 11))
    p_node = norm.cdf(mu / np.sqrt(1 / 9 + var))
    raw = np.ones((5, 10))
    for label, (idx, tgt) in TABLE_K10.items():
        for i, t in zip(idx, tgt):
            raw[:, label] *= p_node[:, i - 1] if t > 0 else 1 - p_node[:, i - 1]
    np.testing.assert_allclose(head.probabilities(mu, var), raw / raw.sum(1, keepdims=True), rtol=1e-10)
    assert (head.predict(mu, var) == raw.argmax(1)).all()


def test_innovations_only_on_observed_outputs():
    head = nn.HierarchicalSoftmax(10)
    rng = np.random.default_rng(1)
    mu, var = rng.standard_normal((3, 11)), rng.random((3, 11))
    labels = np.array([0, 6, 9])
    d_mu, d_var = head.innovations(mu, var, labels, sigma_v=0.5)
    for row, label in enumerate(labels):
        idx = np.array(TABLE_K10[label][0]) - 1
        tgt = np.array(TABLE_K10[label][1])
        s = var[row, idx] + 0.25
        np.testing.assert_allclose(d_mu[row, idx], (tgt - mu[row, idx]) / s)
        np.testing.assert_allclose(d_var[row, idx], -1 / s)
        others = np.setdiff1d(np.arange(11), idx)
        assert (d_mu[row, others] == 0).all() and (d_var[row, others] == 0).all()


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 10]), r"\[0, 10\)"), (np.array([-1]), r"\[0, 10\)"),
    (np.array([0.5]), "integer"), (np.array([[1]]), "1-D"),
])
def test_bad_labels(labels, message):
    head = nn.HierarchicalSoftmax(10)
    mu = np.zeros((labels.size, 11))
    with pytest.raises(ValueError, match=message):
        head.innovations(mu, mu + 1, labels, 1.0)


def test_bad_outputs_and_classes():
    head = nn.HierarchicalSoftmax(10)
    with pytest.raises(ValueError, match=r"\(B, 11\)"):
        head.probabilities(np.zeros((2, 10)), np.ones((2, 10)))
    with pytest.raises(ValueError, match="num_classes"):
        nn.HierarchicalSoftmax(1)
