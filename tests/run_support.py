"""Main-job test support: composing its config, and faults injected into real runs
(a NaN parameter mid-epoch, an interruption in an epoch)."""
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from tagi import nn

ROOT = Path(__file__).resolve().parents[1]


def config(*overrides, hydra=False):
    """The main job's config composed with ``overrides`` (with its ``hydra`` node if ``hydra``)."""
    with initialize_config_dir(config_dir=str(ROOT / "experiments" / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def poison_after_step(monkeypatch, after, layer=0):
    """Make tagi.nn.Sequential.step put a NaN into layers[layer].mu_w after its ``after``-th call."""
    real_step, calls = nn.Sequential.step, []

    def step(self):
        real_step(self)
        calls.append(1)
        if len(calls) == after:
            self.layers[layer].mu_w[(0,) * self.layers[layer].mu_w.ndim] = np.nan
    monkeypatch.setattr(nn.Sequential, "step", step)


def interrupt_in_epoch(monkeypatch, method_class, epoch):
    """Make ``method_class.train_epoch`` raise KeyboardInterrupt at the start of ``epoch``;
    returns the real method, to put back with monkeypatch.setattr."""
    real_train_epoch = method_class.train_epoch

    def train_epoch(self, batches, current, progress):
        if current == epoch:
            raise KeyboardInterrupt
        return real_train_epoch(self, batches, current, progress)
    monkeypatch.setattr(method_class, "train_epoch", train_epoch)
    return real_train_epoch


# a one-layer network (4x4 average pooling, then a linear layer): an epoch on the tiny data in
# well under a second, for tests of the run machinery rather than of the network
SMALL_MODEL = ["model.name=small", "+model.input_shape=[3,32,32]",
               "+model.layers=[{type: AvgPool2d, kernel_size: 4}, {type: Linear, in_features: 192,"
               " out_features: outputs}]", "backend=numpy", "progress=false"]
