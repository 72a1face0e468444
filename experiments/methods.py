"""Training methods behind the main job, one class each, with one interface.

A method builds its network from an architecture spec and the config, trains an
epoch, predicts class probabilities, and hands its state to the checkpoint and
back. ``make_method(cfg, spec, num_classes)`` picks the class by ``cfg.method.name``.
"""
from omegaconf import OmegaConf

from tagi import nn
from tagi.loop import predict, train_epoch
from tagi.models import tagi_network


class TagiMethod:
    """TAGI with a hierarchical-softmax head; sigma_v decays once per epoch after the first."""

    name = "tagi"

    def __init__(self, cfg, spec, num_classes):
        self.cfg = cfg.method
        self.head = nn.HierarchicalSoftmax(num_classes)
        self.net = tagi_network(spec, self.head.num_outputs, backend=cfg.backend, dtype=cfg.dtype,
                                seed=cfg.seed, cap_factor=self.cfg.cap_factor)

    def __repr__(self):
        return f"{self.net}\n{self.head}, {self.net.num_parameters} Gaussian parameters"

    @property
    def backend(self):
        return self.net.backend

    def sigma_v(self, epoch):
        """Observation noise of a 1-based epoch: max(sigma_v_min, sigma_v * sigma_v_decay**(epoch - 1))."""
        return max(self.cfg.sigma_v_min, self.cfg.sigma_v * self.cfg.sigma_v_decay ** (epoch - 1))

    def train_epoch(self, batches, epoch, progress):
        """-> {"train_error", "sigma_v", "images"}."""
        sigma_v = self.sigma_v(epoch)
        fit = train_epoch(self.net, self.head, batches, sigma_v, progress=progress,
                          desc=f"tagi epoch {epoch}")
        return {**fit, "sigma_v": sigma_v}

    def predict(self, batches, progress):
        """-> class probabilities (N, K) and labels (N,), host arrays."""
        return predict(self.net, self.head, batches, progress=progress)

    def state(self):
        """-> (arrays, meta) to checkpoint: the parameters; no other state."""
        return self.net.state_dict(), {}

    def load_state(self, arrays, meta):
        self.net.load_state_dict(arrays)


METHODS = {TagiMethod.name: TagiMethod}


def make_method(cfg, spec, num_classes):
    """The method named by cfg.method.name, built for ``spec``."""
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name](cfg, spec, num_classes)


def method_settings(cfg):
    """The method's config as a plain dict (for run identities and summaries)."""
    return OmegaConf.to_container(cfg.method, resolve=True)
