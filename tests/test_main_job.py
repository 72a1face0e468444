"""The Hydra main job: composes, trains, writes metrics.csv atomically, refuses bad config."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from experiments.io import atomic_write
from experiments.methods import TagiMethod
from experiments.train import COLUMNS, model_spec, run, run_identity
from run_support import SMALL_MODEL
from tagi.data import DataError

ROOT = Path(__file__).resolve().parents[1]


def config(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "experiments" / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_defaults_are_the_published_tagi_settings():
    cfg = config()
    assert cfg.train.batch_size == 16 and cfg.method.sigma_v == 1.0
    assert cfg.method.sigma_v_min == 0.3 and cfg.method.sigma_v_decay == 0.975
    assert cfg.model.name == "cifar10_3conv" and cfg.dtype == "float32"


def test_run_writes_metrics(cifar_root, tmp_path):
    cfg = config(f"data.root={cifar_root}", "train.epochs=2", "data.train_limit=48",
                 "train.batch_size=16", "progress=false")
    metrics = run(cfg, tmp_path)
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(table.columns) == COLUMNS and len(table) == 2
    pd.testing.assert_frame_equal(table, metrics, check_dtype=False)
    assert table.test_error.between(0, 1).all() and table.train_error.between(0, 1).all()
    assert table.sigma_v.tolist() == [1.0, 0.975] and (table.seconds > 0).all()
    assert (table.test_nll > 0).all()


def test_unknown_config_key_is_refused():
    with pytest.raises(ConfigCompositionException, match="trian"):
        config("trian.epochs=3")


def test_corrupt_data_writes_nothing(cifar_root, tmp_path):
    (cifar_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    cfg = config(f"data.root={cifar_root}", "progress=false")
    with pytest.raises(DataError, match="test_batch"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old complete content\n")

    def half_then_crash(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old complete content\n"
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_command_line(cifar_root, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", f"data.root={cifar_root}", "train.epochs=1",
         "data.train_limit=32", "data.test_limit=16", "progress=false", f"hydra.run.dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(pd.read_csv(out / "metrics.csv").columns) == COLUMNS


def test_prior_gains_set_the_prior_variances_and_keep_old_identities():
    def method(*overrides):
        cfg = config(*SMALL_MODEL, *overrides)
        return cfg, TagiMethod(cfg, model_spec(cfg.model), cfg.data.num_classes)
    cfg, plain = method()
    _, gained = method("method.gain_w=0.5", "method.gain_b=2")
    linear_plain, linear_gained = plain.net.layers[-1], gained.net.layers[-1]
    assert (linear_gained.var_w == 0.25 * linear_plain.var_w).all()
    assert (linear_gained.var_b == 4 * linear_plain.var_b).all()
    assert (linear_gained.mu_w == linear_plain.mu_w).all()          # the means are drawn as before
    # at gain 1 a run's identity is what it was before the gains were settings: its checkpoint resumes
    assert not {"gain_w", "gain_b"} & set(run_identity(cfg, model_spec(cfg.model))["method"])
    other = config(*SMALL_MODEL, "method.gain_w=0.5")
    assert run_identity(other, model_spec(other.model))["method"]["gain_w"] == 0.5


def test_on_epoch_gets_every_epoch_the_resumed_ones_first(cifar_root, tmp_path):
    def settings(epochs):
        return config(*SMALL_MODEL, f"data.root={cifar_root}", f"train.epochs={epochs}")
    run(settings(1), tmp_path)
    seen = []
    metrics = run(settings(3), tmp_path, on_epoch=seen.append)
    assert [row["epoch"] for row in seen] == [1, 2, 3]
    assert pd.DataFrame(seen).equals(metrics)
