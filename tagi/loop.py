"""One TAGI training epoch and one prediction pass over a dataset, with progress bars.

Error counts stay on the backend's device until the end of the epoch; the one
host read per step is the check that the output moments are finite, made before
the update so that a diverging step changes no parameter.
"""
import numpy as np
from tqdm.auto import tqdm

from .divergence import DivergenceError, first_nonfinite_layer, nonfinite_keys, valid_moments


def train_step(net, head, x, labels, sigma_v, step=None):
    """Forward, output update, backward and capped step on one batch -> prior (mu, var) of the outputs.

    Raises DivergenceError (naming ``step``, the layer whose output first went wrong and the
    layers with non-finite parameters), before any update, if the output means or variances
    are NaN, infinite or (variances) negative.
    """
    mu, var = net.forward(x)
    if not valid_moments(mu, var):
        raise DivergenceError("non-finite output moments", step, nonfinite_keys(net.state_dict(), net.layers),
                              origin=first_nonfinite_layer(net, x))
    delta_mu, delta_var = head.innovations(mu, var, labels, sigma_v)
    net.backward(delta_mu, delta_var)
    net.step()
    return mu, var


def train_epoch(net, head, batches, sigma_v, progress=True, desc="train"):
    """Train on every batch once -> {"train_error": error rate of the prior predictions, "images": N};
    DivergenceError (see ``train_step``) names the 1-based step of the epoch."""
    backend = net.backend
    wrong, seen = backend.xp.zeros((), dtype=np.int64), 0
    for step, (x, labels) in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False), 1):
        mu, var = train_step(net, head, x, labels, sigma_v, step)
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

