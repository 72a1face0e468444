"""One TAGI training epoch and one evaluation pass, with progress bars.

Error counts stay on the backend's device until the end of the pass, so a GPU
step never waits for the host.
"""
import logging

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def train_step(net, head, x, labels, sigma_v):
    """Forward, output update, backward and capped step on one batch -> prior (mu, var) of the outputs."""
    mu, var = net.forward(x)
    delta_mu, delta_var = head.innovations(mu, var, labels, sigma_v)
    net.backward(delta_mu, delta_var)
    net.step()
    return mu, var


def train_epoch(net, head, batches, sigma_v, progress=True, desc="train"):
    """Train on every batch once -> {"train_error": error rate of the prior predictions, "images": N}."""
    backend = net.backend
    wrong, seen = backend.xp.zeros((), dtype=np.int64), 0
    for x, labels in tqdm(batches, desc=desc, disable=not progress, leave=False):
        mu, var = train_step(net, head, x, labels, sigma_v)
        wrong += (head.predict(mu, var) != backend.asarray(labels)).sum()
        seen += len(labels)
    return {"train_error": int(wrong) / max(seen, 1), "images": seen}


def evaluate(net, head, batches, progress=True, desc="test"):
    """Predict every batch -> {"error": error rate, "nll": mean negative log-likelihood, "images": N}."""
    backend = net.backend
    wrong, nll_sum, seen = backend.xp.zeros((), dtype=np.int64), 0.0, 0
    for x, labels in tqdm(batches, desc=desc, disable=not progress, leave=False):
        mu, var = net.forward(x)
        probs = head.probabilities(mu, var)
        wrong += (probs.argmax(axis=1) != backend.asarray(labels)).sum()
        p_true = backend.to_numpy(probs[np.arange(len(labels)), backend.asarray(labels)])
        nll_sum += float(-np.log(np.maximum(p_true.astype(np.float64), 1e-30)).sum())
        seen += len(labels)
    return {"error": int(wrong) / max(seen, 1), "nll": nll_sum / max(seen, 1), "images": seen}
