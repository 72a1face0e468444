"""One BP training epoch and one evaluation pass, with progress bars.

Error and loss sums stay on the backend's device until the end of the pass; the
one host read per step is the check that the batch's losses are finite, made
before the backward pass and the update. The learning rate is the optimiser's;
set it per epoch from a schedule (``optimizer.lr = schedule(epoch)``) before
calling ``train_epoch``.
"""
import numpy as np
from tqdm.auto import tqdm

from ..divergence import DivergenceError, all_finite, nonfinite_keys
from .loss import log_softmax, softmax_cross_entropy


def train_step(net, optimizer, x, labels, step=None):
    """Forward (training mode), softmax cross-entropy, backward and optimiser step on one batch.

    x: (B, *input_shape); labels: (B,) integers, host or backend array
    -> (logits (B, K), losses (B,)) on the backend. Raises DivergenceError (naming
    ``step`` and the layers with non-finite weights), before any update, if a loss is not finite.
    """
    logits = net.forward(x, training=True)
    losses, grad = softmax_cross_entropy(logits, net.backend.asarray(labels))
    if not all_finite(losses):
        raise DivergenceError("non-finite loss", step, nonfinite_keys(net.state_dict(), net.layers))
    net.backward(grad)
    optimizer.step()
    return logits, losses


def train_epoch(net, optimizer, batches, progress=True, desc="train"):
    """Train on every batch once -> {"train_error", "train_loss", "images"}.

    train_error is the error rate and train_loss the mean cross-entropy (natural log,
    without the weight-decay term) of the training-mode forward passes (dropout on),
    each taken before that batch's step. DivergenceError (see ``train_step``) names the
    1-based step of the epoch.
    """
    xp = net.backend.xp
    wrong, loss_sum, seen = xp.zeros((), dtype=xp.int64), xp.zeros((), dtype=xp.float64), 0
    for step, (x, labels) in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False), 1):
        labels = net.backend.asarray(labels)
        logits, losses = train_step(net, optimizer, x, labels, step)
        wrong += (logits.argmax(axis=1) != labels).sum()
        loss_sum += losses.sum()
        seen += len(labels)
    n = max(seen, 1)
    return {"train_error": int(wrong) / n, "train_loss": float(loss_sum) / n, "images": seen}


def predict(net, batches, progress=True, desc="test"):
    """Softmax class probabilities and labels of every sample, in batch order: host arrays (N, K), (N,)."""
    probs, labels = [], []
    for x, y in tqdm(batches, desc=desc, disable=not progress, leave=False):
        probs.append(net.backend.to_numpy(net.backend.xp.exp(log_softmax(net.forward(x)))))
        labels.append(np.asarray(y))
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(net, batches, progress=True, desc="test"):
    """Predict every batch (dropout off) -> {"error", "nll": mean cross-entropy (natural log), "images"}."""
    xp = net.backend.xp
    wrong, nll_sum, seen = xp.zeros((), dtype=xp.int64), xp.zeros((), dtype=xp.float64), 0
    for x, labels in tqdm(batches, desc=desc, disable=not progress, leave=False):
        log_p = log_softmax(net.forward(x))
        labels = net.backend.asarray(labels)
        wrong += (log_p.argmax(axis=1) != labels).sum()
        nll_sum -= log_p[xp.arange(len(labels)), labels].sum()
        seen += len(labels)
    n = max(seen, 1)
    return {"error": int(wrong) / n, "nll": float(nll_sum) / n, "images": seen}
