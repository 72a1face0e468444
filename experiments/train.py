"""Main job: train and evaluate a network on CIFAR-10, one metrics.csv row per epoch.

    python -m experiments.train                                   # the config's defaults
    python -m experiments.train train.epochs=1 data.train_limit=5000 backend=numba
    python -m experiments.train hydra.run.dir=runs/a              # choose the run folder

Writes ``metrics.csv`` in the Hydra run folder with the columns epoch, test_error,
test_nll, train_error, sigma_v, seconds (error rates as fractions; seconds of
training, evaluation excluded), rewritten atomically after every epoch.
"""
import logging
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import OmegaConf

from tagi import nn
from tagi.data import Batches, load_cifar10
from tagi.loop import evaluate, train_epoch
from tagi.models import architecture, tagi_network

from .io import write_csv

log = logging.getLogger(__name__)
COLUMNS = ["epoch", "test_error", "test_nll", "train_error", "sigma_v", "seconds"]


def model_spec(model_cfg):
    """The model config -> architecture spec: the named one, or the layers given in the config."""
    if model_cfg.get("layers"):
        if not model_cfg.get("input_shape"):
            raise ValueError("a model config that lists `layers` needs an `input_shape` too")
        return OmegaConf.to_container(model_cfg, resolve=True)
    return architecture(model_cfg.name)


def load_data(data_cfg):
    """The data config -> tagi.data.Dataset, cut to train_limit / test_limit images."""
    data = load_cifar10(to_absolute_path(data_cfg.root), verify_md5=data_cfg.verify_md5)
    for split, limit in (("train", data_cfg.train_limit), ("test", data_cfg.test_limit)):
        if limit is not None:
            if limit < 1:
                raise ValueError(f"data.{split}_limit must be >= 1 or null, got {limit}")
            setattr(data, f"x_{split}", getattr(data, f"x_{split}")[:limit])
            setattr(data, f"y_{split}", getattr(data, f"y_{split}")[:limit])
    return data


def sigma_v_at(method_cfg, epoch):
    """Observation noise of a 1-based epoch: decayed once per epoch after the first, floored."""
    return max(method_cfg.sigma_v_min, method_cfg.sigma_v * method_cfg.sigma_v_decay ** (epoch - 1))


def run(cfg, out_dir):
    """Train cfg.train.epochs epochs; return the metrics as a DataFrame (also in out_dir/metrics.csv)."""
    if cfg.train.epochs < 1 or cfg.train.batch_size < 1:
        raise ValueError(f"train.epochs and train.batch_size must be >= 1, got "
                         f"{cfg.train.epochs} and {cfg.train.batch_size}")
    data = load_data(cfg.data)
    head = nn.HierarchicalSoftmax(cfg.data.num_classes)
    net = tagi_network(model_spec(cfg.model), head.num_outputs, backend=cfg.backend,
                       dtype=cfg.dtype, seed=cfg.seed, cap_factor=cfg.method.cap_factor)
    log.info("%s\n%d Gaussian parameters; %d train / %d test images", net, net.num_parameters,
             len(data.y_train), len(data.y_test))
    rng = np.random.default_rng(cfg.seed)
    dtype = np.dtype(cfg.dtype)
    train = Batches(data.x_train, data.y_train, cfg.train.batch_size, rng=rng, dtype=dtype)
    test = Batches(data.x_test, data.y_test, max(cfg.train.batch_size, 256), dtype=dtype)
    rows = []
    for epoch in range(1, cfg.train.epochs + 1):
        sigma_v = sigma_v_at(cfg.method, epoch)
        start = time.perf_counter()
        fit = train_epoch(net, head, train, sigma_v, progress=cfg.progress,
                          desc=f"epoch {epoch}/{cfg.train.epochs}")
        net.backend.synchronize()
        seconds = time.perf_counter() - start
        scores = evaluate(net, head, test, progress=cfg.progress)
        rows.append({"epoch": epoch, "test_error": scores["error"], "test_nll": scores["nll"],
                     "train_error": fit["train_error"], "sigma_v": sigma_v, "seconds": seconds})
        write_csv(pd.DataFrame(rows, columns=COLUMNS), out_dir / "metrics.csv")
        log.info("epoch %d: test error %.4f, test NLL %.4f, train error %.4f, sigma_v %.4f, "
                 "%.1f s (%.0f images/s)", epoch, scores["error"], scores["nll"],
                 fit["train_error"], sigma_v, seconds, fit["images"] / seconds)
    metrics = pd.DataFrame(rows, columns=COLUMNS)
    log.info("results in %s\n%s", out_dir / "metrics.csv", metrics.to_markdown(index=False))
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
