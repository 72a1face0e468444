"""Output heads: the Gaussian observation update and the hierarchical softmax (docs/math.md §4, §7).

A head computes with the ops of the network's backend (``backend=net.backend``), on that
backend's arrays; numpy (the default) also serves the numba backend, whose arrays are numpy's.
The training loops (``tagi.loop``) use ``head.on(net.backend)``, so a head built without one
serves a network on any backend there.
"""
import math

import numpy as np

from ..backends import get_backend

ALPHA = 3.0  # node probabilities use Phi(mu / sqrt(1/alpha**2 + var)), docs/math.md §7.3


def _check_sigma_v(sigma_v):
    """Raise ValueError unless the observation noise ``sigma_v`` (a scalar or an array
    broadcasting against the outputs) is finite and > 0 everywhere."""
    values = np.asarray(sigma_v, dtype=float)
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"sigma_v must be finite and > 0, got {sigma_v!r}")


def gaussian_innovations(mu, var, y, sigma_v, backend="numpy"):
    """Output innovations for y = z + v, v ~ N(0, sigma_v**2); NaN in y marks unobserved outputs.

    mu, var: (B, N) arrays of ``backend`` (the network's: a name or a backend module), y: (B, N)
    (copied to the backend) -> delta_mu = (y - mu) / S, delta_var = -1 / S, (B, N), with
    S = var + sigma_v**2; sigma_v finite and > 0.
    """
    _check_sigma_v(sigma_v)
    backend = get_backend(backend)
    return backend.gaussian_innovations(mu, var, backend.asarray(y, dtype=mu.dtype), sigma_v)


def _tree_code(num_classes):
    """Binary-tree code of every class: (indices, targets), each (K, L), 0-based output indices."""
    levels = max(1, math.ceil(math.log2(num_classes)))
    nodes = [num_classes]
    for _ in range(levels):
        nodes.insert(0, math.ceil(nodes[0] / 2))             # nodes per level, root first
    offsets = np.cumsum(nodes) + 1                           # 1-based start of each level
    indices = np.zeros((num_classes, levels), dtype=np.int64)
    targets = np.zeros((num_classes, levels))
    for label in range(num_classes):
        bits = [(label >> (levels - 1 - h)) & 1 for h in range(levels)]
        prefix, index = 0, 1
        for h, bit in enumerate(bits):
            indices[label, h] = index - 1
            targets[label, h] = 1.0 - 2.0 * bit
            prefix = 2 * prefix + bit
            index = prefix + offsets[h]
    return indices, targets


class HierarchicalSoftmax:
    """K classes coded as L = ceil(log2 K) signed observations on a binary tree of outputs.

    Each label observes L of the ``num_outputs`` network outputs (11 for K = 10)
    with targets +1 (bit 0) or -1 (bit 1). Arrays: mu, var (B, num_outputs), of
    ``backend`` (the network's: a name or a backend module, ``net.backend``); labels (B,)
    host integers in [0, K).
    """

    def __init__(self, num_classes, backend="numpy"):
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.backend = get_backend(backend)
        self.num_classes = int(num_classes)
        self.indices, self.targets = _tree_code(self.num_classes)
        self.num_outputs = int(self.indices.max()) + 1
        self._tables = {}

    def __repr__(self):
        return f"HierarchicalSoftmax(num_classes={self.num_classes})"

    def on(self, backend):
        """This head if it computes on the arrays of ``backend`` (a name or a backend module), else
        the same head on that backend."""
        backend = get_backend(backend)
        if backend.xp is self.backend.xp:
            return self
        return HierarchicalSoftmax(self.num_classes, backend=backend)

    def _check_labels(self, labels):
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be a 1-D integer array, got dtype {labels.dtype} "
                             f"and shape {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got values from "
                             f"{labels.min()} to {labels.max()}")
        return labels

    def _check_outputs(self, mu, var):
        if mu.ndim != 2 or mu.shape[1] != self.num_outputs or var.shape != mu.shape:
            raise ValueError(f"{self!r} needs output moments of shape (B, {self.num_outputs}), "
                             f"got {tuple(mu.shape)} and {tuple(var.shape)}")

    def _table(self, dtype):
        """(indices, targets) on the backend's device, cached per dtype."""
        key = np.dtype(dtype).str
        if key not in self._tables:
            self._tables[key] = (self.backend.asarray(self.indices),
                                 self.backend.asarray(self.targets, dtype=dtype))
        return self._tables[key]

    def encode(self, labels):
        """labels (B,) -> (indices, targets), each (B, L): observed outputs (0-based) and +-1 targets."""
        labels = self._check_labels(labels)
        return self.indices[labels], self.targets[labels]

    def decode(self, targets):
        """targets (B, L) of +-1 -> labels (B,): the class whose tree path they spell."""
        bits = (np.asarray(targets) < 0).astype(np.int64)
        return bits @ (1 << np.arange(bits.shape[1] - 1, -1, -1))

    def observations(self, labels, batch_size, dtype):
        """labels (B,) -> (B, num_outputs) backend array of ``dtype``: the targets at each label's
        observed outputs, NaN elsewhere."""
        labels = self._check_labels(labels)
        if len(labels) != batch_size:
            raise ValueError(f"{len(labels)} labels for a batch of {batch_size} outputs")
        y = np.full((batch_size, self.num_outputs), np.nan)
        np.put_along_axis(y, self.indices[labels], self.targets[labels], axis=1)
        return self.backend.asarray(y, dtype=dtype)

    def innovations(self, mu, var, labels, sigma_v):
        """Output update on each label's L observed outputs only; the others get zero innovations.
        sigma_v must be finite and > 0."""
        _check_sigma_v(sigma_v)
        self._check_outputs(mu, var)
        y = self.observations(labels, mu.shape[0], mu.dtype)
        return self.backend.gaussian_innovations(mu, var, y, sigma_v)

    def probabilities(self, mu, var):
        """Class probabilities (B, K) from the prior predictive outputs, normalised over the K classes."""
        self._check_outputs(mu, var)
        xp = self.backend.xp
        indices, targets = self._table(mu.dtype)
        score = mu / xp.sqrt(1.0 / ALPHA ** 2 + var)                           # (B, N_out)
        # P(node says +1) = Phi(score), P(-1) = 1 - Phi(score) = Phi(-score)
        p_class = self.backend.normal_cdf(score[:, indices] * targets).prod(axis=2)  # (B, K)
        return p_class / p_class.sum(axis=1, keepdims=True)

    def predict(self, mu, var):
        """Most probable class of each sample, (B,) integers in the backend's array type."""
        return self.probabilities(mu, var).argmax(axis=1)

