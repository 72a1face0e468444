"""Training methods behind the main job, one class each, with one interface.

A method builds its network from an architecture spec and the config, trains an
epoch, predicts class probabilities, and hands its state to the checkpoint and
back. ``make_method(cfg, spec, num_classes)`` picks the class by ``cfg.method.name``.
"""
import numpy as np
from omegaconf import OmegaConf

from tagi import bp, nn
from tagi import loop as tagi_loop
from tagi.backends import get_backend
from tagi.bp import loop as bp_loop
from tagi.models import bp_network, tagi_network


class TagiMethod:
    """TAGI with a hierarchical-softmax head; sigma_v decays once per epoch after the first."""

    name = "tagi"

    def __init__(self, cfg, spec, num_classes):
        self.cfg = cfg.method
        backend = get_backend(cfg.backend)
        self.head = nn.HierarchicalSoftmax(num_classes, backend=backend)
        spec = with_prior_gains(spec, self.cfg.gain_w, self.cfg.gain_b)
        self.net = tagi_network(spec, self.head.num_outputs, backend=backend, dtype=cfg.dtype,
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
        fit = tagi_loop.train_epoch(self.net, self.head, batches, sigma_v, progress=progress,
                                    desc=f"tagi epoch {epoch}")
        return {**fit, "sigma_v": sigma_v}

    def predict(self, batches, progress):
        """-> class probabilities (N, K) and labels (N,), host arrays."""
        return tagi_loop.predict(self.net, self.head, batches, progress=progress)

    def state(self):
        """-> (arrays, meta) to checkpoint: the parameters; no other state."""
        return self.net.state_dict(), {}

    def load_state(self, arrays, meta):
        self.net.load_state_dict(arrays)


def with_prior_gains(spec, gain_w, gain_b):
    """``spec`` with the prior gains ``gain_w``, ``gain_b`` (docs/math.md §2.1) on every layer that
    has parameters (a ``tagi.nn.ParametricLayer``), except where its entry sets its own."""
    def parametric(entry):
        cls = getattr(nn, str(entry.get("type")), None)
        return isinstance(cls, type) and issubclass(cls, nn.ParametricLayer)
    layers = [{"gain_w": gain_w, "gain_b": gain_b, **entry} if parametric(entry) else entry
              for entry in spec["layers"]]
    return {**spec, "layers": layers}


class BpMethod:
    """Backprop with softmax cross-entropy, an optimiser (SGD, Adam or Adamax), a per-epoch lr
    schedule, and the initialisation ``method.init``.

    Dropout masks are reseeded from (seed, epoch) at the start of every epoch, so a
    resumed run draws the same masks as an uninterrupted one.
    """

    name = "bp"

    def __init__(self, cfg, spec, num_classes):
        self.cfg, self.seed = cfg.method, cfg.seed
        self.net = bp_network(spec, num_classes, init_method=self.cfg.init, backend=cfg.backend,
                              dtype=cfg.dtype, seed=cfg.seed)
        opt = self.cfg.optimizer
        options = {"lr": opt.lr, "weight_decay": opt.weight_decay}
        if opt.name == "sgd":
            options["momentum"] = opt.momentum
        else:
            options["betas"] = tuple(opt.betas)
        self.optimizer = bp.make_optimizer(opt.name, self.net.parameters(), **options)
        sched = self.cfg.schedule
        schedule_options = {"cosine": {"epochs": sched.epochs},
                            "step": {"step_size": sched.step_size, "gamma": sched.gamma},
                            "exponential": {"gamma": sched.gamma}}
        self.schedule = bp.make_schedule(sched.name, opt.lr, **schedule_options.get(sched.name, {}))

    def __repr__(self):
        return (f"{self.net}\n{type(self.optimizer).__name__}, {self.cfg.schedule.name} schedule, "
                f"{self.net.num_parameters} parameters")

    @property
    def backend(self):
        return self.net.backend

    def train_epoch(self, batches, epoch, progress):
        """-> {"train_error", "train_loss", "lr", "images"}."""
        self.optimizer.lr = self.schedule(epoch)
        self.net.reseed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))
        fit = bp_loop.train_epoch(self.net, self.optimizer, batches, progress=progress,
                                  desc=f"bp epoch {epoch}")
        return {**fit, "lr": self.optimizer.lr}

    def predict(self, batches, progress):
        """-> softmax class probabilities (N, K) and labels (N,), host arrays."""
        return bp_loop.predict(self.net, batches, progress=progress)

    def state(self):
        """-> (arrays, meta): the weights under "net.", the optimiser's buffers under "opt."."""
        arrays = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        arrays.update({f"opt.{k}": v for k, v in self.optimizer.state_dict().items()})
        return arrays, {}

    def load_state(self, arrays, meta):
        part = {prefix: {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                for prefix in ("net.", "opt.")}
        self.net.load_state_dict(part["net."])
        self.optimizer.load_state_dict(part["opt."])


METHODS = {TagiMethod.name: TagiMethod, BpMethod.name: BpMethod}


def make_method(cfg, spec, num_classes):
    """The method named by cfg.method.name, built for ``spec``."""
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name](cfg, spec, num_classes)


# the rule TAGI's layers draw their initial means by (tagi.nn's default init_method)
TAGI_INIT = "He"


def initialisation(cfg):
    """The name of the run's initialisation: ``method.init`` for BP, ``TAGI_INIT`` for TAGI."""
    return cfg.method.init if cfg.method.name == BpMethod.name else TAGI_INIT


# method settings added after runs were checkpointed, with the value every such run had: at that
# value they stay out of the run identity, so those runs still resume
IDENTITY_LATER = {"gain_w": 1.0, "gain_b": 1.0}


def method_settings(cfg):
    """The method's config as a plain dict, for run identities: the ``IDENTITY_LATER`` settings
    at their values left out."""
    settings = OmegaConf.to_container(cfg.method, resolve=True)
    return {key: value for key, value in settings.items()
            if not (key in IDENTITY_LATER and value == IDENTITY_LATER[key])}
