"""TAGI training: one step on device buffers (``TrainStep``), one epoch, and a prediction pass.

``TrainStep`` is the step users call, and the one the GPU benchmark times: it only queues
work on the backend, so on cupy ``backend.capture(step)`` records it as a CUDA graph.
``train_epoch`` runs the same step with one host read in the middle: the check that the
output moments are finite, made before the update so that a diverging step changes no
parameter. Error counts stay on the backend's device until the end of the epoch.
"""
import numpy as np
from tqdm.auto import tqdm

from .chain import check_input_batch
from .checks import check_number
from .divergence import DivergenceError, first_nonfinite_layer, nonfinite_keys, valid_moments


class TrainStep:
    """One TAGI training step of ``net`` (a ``tagi.nn.Sequential``) with ``head`` (a
    ``HierarchicalSoftmax``, used on the network's backend: ``head.on(net.backend)``) on buffers
    of the backend's arrays.

    Buffers, for a batch of B samples and N = head.num_outputs:
    ``x`` (B, *net.input_shape) of net.dtype, the inputs; ``y`` (B, N) of net.dtype, the head's
    observations (+-1 on each label's tree path, NaN elsewhere: ``head.observations``);
    ``labels`` (B,) int64; ``wrong`` () int64, the wrong prior predictions counted so far.

    ``load(x, labels)`` copies a host batch in; ``step()`` then runs, on the buffers::

        mu, var = net.forward(x)                                # prior outputs (B, N)
        delta_mu, delta_var = gaussian_innovations(mu, var, y, sigma_v)   # docs/math.md §4
        net.backward(delta_mu, delta_var); net.step()           # §5, §6: capped update
        wrong += sum(argmax_k P(k | mu, var) != labels)         # §7.3

    and returns (mu, var). It queues work only (no host copy, no synchronisation), so on cupy
    ``graph = backend.capture(step)`` records it and ``graph.replay()`` reruns it on whatever
    the buffers hold: refill them in place (``load`` with the same B, or ``step.x[...] = ...``)
    before each replay. On numpy and numba it runs eagerly. ``sigma_v`` (finite, > 0) is fixed
    for the life of the step (a recorded graph holds it): make a new step to change it.
    """

    def __init__(self, net, head, sigma_v):
        self.net, self.head, self.backend = net, head.on(net.backend), net.backend
        self.sigma_v = check_number("sigma_v", sigma_v, low=0, low_open=True)
        self.x = self.y = self.labels = None
        self.wrong = self.backend.xp.zeros((), dtype=np.int64)

    def load(self, x, labels):
        """Copy a host batch, x (B, *input_shape) and integer labels (B,), into the buffers;
        a batch of another shape gets new buffers (a recorded graph keeps the old ones)."""
        check_input_batch(x, self.net.input_shape)
        x = self.backend.asarray(x, dtype=self.net.dtype)
        y = self.head.observations(labels, len(x), self.net.dtype)
        labels = self.backend.asarray(np.asarray(labels, dtype=np.int64))
        if self.x is None or self.x.shape != x.shape:
            xp = self.backend.xp
            self.x, self.y, self.labels = xp.empty_like(x), xp.empty_like(y), xp.empty_like(labels)
        self.x[...], self.y[...], self.labels[...] = x, y, labels

    def forward(self):
        """-> the prior (mu, var) of the outputs for the inputs ``x``, each (B, N)."""
        return self.net.forward(self.x)

    def update(self, mu, var):
        """Observe ``y`` at the outputs (mu, var): innovations, backward pass and capped step."""
        self.net.backward(*self.backend.gaussian_innovations(mu, var, self.y, self.sigma_v))
        self.net.step()

    def count_errors(self, mu, var):
        """Add to ``wrong`` the samples whose most probable class under (mu, var) is not their label."""
        self.wrong += (self.head.predict(mu, var) != self.labels).sum()

    def __call__(self):
        mu, var = self.forward()
        self.update(mu, var)
        self.count_errors(mu, var)
        return mu, var

    def checked(self, step=None):
        """``forward``, then ``update`` unless the outputs went wrong -> prior (mu, var), (B, N).

        Raises DivergenceError (naming ``step``, the layer whose output first went wrong and the
        layers with non-finite parameters), before any update, if the output means or variances
        are NaN, infinite or (variances) negative: one host read.
        """
        mu, var = self.forward()
        if not valid_moments(mu, var):
            raise DivergenceError("non-finite output moments", step,
                                  nonfinite_keys(self.net.state_dict(), self.net.layers),
                                  origin=first_nonfinite_layer(self.net, self.x))
        self.update(mu, var)
        return mu, var


def train_step(net, head, x, labels, sigma_v, step=None):
    """One checked training step (``TrainStep.checked``) on a host batch: x (B, *input_shape),
    labels (B,) -> prior (mu, var) of the outputs, each (B, N)."""
    train = TrainStep(net, head, sigma_v)
    train.load(x, labels)
    return train.checked(step)


def train_epoch(net, head, batches, sigma_v, progress=True, desc="train"):
    """Train on every batch once -> {"train_error": error rate of the prior predictions, "images": N};
    DivergenceError (see ``TrainStep.checked``) names the 1-based step of the epoch."""
    train, seen = TrainStep(net, head, sigma_v), 0
    for step, (x, labels) in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False), 1):
        train.load(x, labels)
        train.count_errors(*train.checked(step))
        seen += len(labels)
    return {"train_error": int(train.wrong) / max(seen, 1), "images": seen}


def predict(net, head, batches, progress=True, desc="test"):
    """Class probabilities and labels of every sample, in batch order: host arrays (N, K), (N,)."""
    head = head.on(net.backend)
    probs, labels = [], []
    for x, y in tqdm(batches, desc=desc, disable=not progress, leave=False):
        probs.append(net.backend.to_numpy(head.probabilities(*net.forward(x))))
        labels.append(y)
    return np.concatenate(probs), np.concatenate(labels)

