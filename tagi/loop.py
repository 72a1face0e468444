"""One TAGI training epoch and one prediction pass over a dataset, with progress bars.

Error counts stay on the backend's device until the end of the epoch, so a GPU
training step never waits for the host.
"""
import numpy as np
from tqdm.auto import tqdm



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


def predict(net, head, batches, progress=True, desc="test"):
    """Class probabilities and labels of every sample, in batch order: host arrays (N, K), (N,)."""
    probs, labels = [], []
    for x, y in tqdm(batches, desc=desc, disable=not progress, leave=False):
        probs.append(net.backend.to_numpy(head.probabilities(*net.forward(x))))
        labels.append(y)
    return np.concatenate(probs), np.concatenate(labels)

