"""Divergence is caught, never reported as a result: the main job, checkpoints, metrics, the library."""
import json

import numpy as np
import pandas as pd
import pytest

from experiments import checkpoint
from experiments.train import run
from run_support import config, poison_after_step
from tagi import nn
from tagi.divergence import DivergenceError
from tagi.metrics import error_rate, expected_calibration_error, nll, reliability_bins

TINY = ["data.train_limit=48", "data.test_limit=16", "train.batch_size=8", "backend=numpy",
        "progress=false"]                                       # 6 steps per epoch


def test_poisoned_parameter_mid_epoch_stops_the_run(cifar_root, tmp_path, monkeypatch):
    poison_after_step(monkeypatch, after=8)                    # epoch 2, after its step 2
    with pytest.raises(DivergenceError, match=r"epoch 2, step 3: non-finite output moments "
                                              r"\(non-finite parameters in layer\(s\) 0\.mu_w \(Conv2d\)\)"):
        run(config(f"data.root={cifar_root}", "train.epochs=3", *TINY), tmp_path)
    arrays, meta = checkpoint.load(tmp_path / "checkpoint.npz")        # the last good epoch, intact
    assert len(meta["rows"]) == 1 and all(np.isfinite(a).all() for a in arrays.values())
    assert pd.read_csv(tmp_path / "metrics.csv")["epoch"].tolist() == [1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 2
    assert "epoch 2, step 3" in summary["error"] and summary["epochs"] == 1


def test_parameters_checked_at_the_end_of_the_epoch(cifar_root, tmp_path, monkeypatch):
    poison_after_step(monkeypatch, after=6, layer=9)           # the last step: no forward sees it
    with pytest.raises(DivergenceError, match=r"epoch 1, the end of the epoch: non-finite parameters "
                                              r"\(non-finite parameters in layer\(s\) 9\.mu_w\)"):
        run(config(f"data.root={cifar_root}", "train.epochs=2", *TINY), tmp_path)
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "metrics.csv").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_bp_divergence_is_caught(cifar_root, tmp_path):
    layers = ("+model.layers=[{type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: 3, stride: 2},"
              " {type: ReLU}, {type: Linear, in_features: 900, out_features: outputs}]")
    cfg = config(f"data.root={cifar_root}", *TINY, "method=bp", "train.epochs=2", "model.name=small",
                 "+model.input_shape=[3,32,32]", layers, "method.optimizer.lr=1e30",
                 "method.schedule.name=constant")
    with pytest.raises(DivergenceError, match=r"epoch 1, step \d: non-finite loss"):
        run(cfg, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_checkpoint_with_a_nan_weight_is_refused(cifar_root, tmp_path):
    run(config(f"data.root={cifar_root}", "train.epochs=1", *TINY), tmp_path)
    ckpt = tmp_path / "checkpoint.npz"
    arrays, meta = checkpoint.load(ckpt)
    arrays["3.mu_w"][0, 0] = np.nan
    with pytest.raises(checkpoint.CheckpointError, match=r"not saved: non-finite values in 3\.mu_w"):
        checkpoint.save(ckpt, arrays, meta)
    meta.pop("format")
    np.savez(ckpt, **arrays, **{checkpoint.META_KEY: np.frombuffer(
        json.dumps({"format": checkpoint.FORMAT, **meta}).encode(), dtype=np.uint8)})
    refused = r"holds non-finite values \(NaN or inf\) in 3\.mu_w"
    with pytest.raises(checkpoint.CheckpointError, match=refused):
        run(config(f"data.root={cifar_root}", "train.epochs=2", *TINY), tmp_path)


@pytest.mark.parametrize("score", [error_rate, nll, expected_calibration_error, reliability_bins])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_metrics_refuse_non_finite_probabilities(score, bad):
    probs = np.array([[0.9, 0.1], [bad, bad], [0.3, 0.7]])
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 of 3 rows \(first: \[1\]\)"):
        score(probs, np.array([0, 1, 1]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e-3])
def test_var_x_must_be_finite_and_non_negative(bad):
    net = nn.Sequential(nn.Linear(3, 2), input_shape=(3,), seed=0)
    x, var_x = np.zeros((2, 3)), np.full((2, 3), 0.1)
    net.forward(x, var_x)
    var_x[1, 2] = bad
    with pytest.raises(ValueError, match="var_x must be finite and >= 0"):
        net.forward(x, var_x)
    with pytest.raises(ValueError, match=r"var_x .* got shape \(2, 2\)"):
        net.forward(x, var_x[:, :2])


@pytest.mark.parametrize("sigma_v", [np.nan, np.inf, 0.0, -1.0])
def test_sigma_v_must_be_finite_and_positive(sigma_v):
    head = nn.HierarchicalSoftmax(4)
    mu, var = np.zeros((2, head.num_outputs)), np.ones((2, head.num_outputs))
    head.innovations(mu, var, np.array([0, 3]), 0.5)
    with pytest.raises(ValueError, match="sigma_v must be finite and > 0"):
        head.innovations(mu, var, np.array([0, 3]), sigma_v)
    with pytest.raises(ValueError, match="sigma_v must be finite and > 0"):
        nn.gaussian_innovations(mu, var, np.zeros_like(mu), sigma_v)


def test_a_divergence_names_the_layer_it_starts_in_and_claims_no_missing_checkpoint(
        cifar_root, tmp_path, caplog):
    """Finite parameters of a huge prior (gain 1e20 on the second conv layer) overflow its output."""
    layers = ("+model.layers=[{type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: 3, stride: 2},"
              " {type: ReLU}, {type: Conv2d, in_channels: 4, out_channels: 4, kernel_size: 3, gain_w: 1e20},"
              " {type: ReLU}, {type: Linear, in_features: 676, out_features: outputs}]")
    cfg = config(f"data.root={cifar_root}", *TINY, "model.name=small", "+model.input_shape=[3,32,32]", layers)
    with caplog.at_level("ERROR", logger="experiments.train"):
        with pytest.raises(DivergenceError, match=r"epoch 1, step 1: non-finite output moments \(every "
                                                  r"parameter still finite\); the first non-finite output "
                                                  r"is layer 2 \(Conv2d\)'s"):
            run(cfg, tmp_path)
    assert not (tmp_path / "checkpoint.npz").exists()
    said = caplog.records[-1].getMessage()
    assert "the checkpoint of epoch" not in said and "no checkpoint was written" in said
