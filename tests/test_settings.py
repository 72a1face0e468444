"""Settings are checked before any data is read: each bad value is refused by its key."""
import subprocess
import sys

import pytest

from experiments.settings import SettingsError, validate
from experiments.train import run
from run_support import ROOT, config

# (overrides, the key the message must name): a value of a wrong type or out of its range for
# the checked settings
BAD = [
    ("data.train_limit=abc", "data.train_limit"), ("data.train_limit=[1,2]", "data.train_limit"),
    ("data.train_limit=0", "data.train_limit"), ("data.test_limit=-3", "data.test_limit"),
    ("method.sigma_v=abc", "method.sigma_v"), ("method.sigma_v=-1", "method.sigma_v"),
    ("method.sigma_v=nan", "method.sigma_v"), ("method.sigma_v=inf", "method.sigma_v"),
    ("method.sigma_v_min=-1", "method.sigma_v_min"), ("method.sigma_v_min=0", "method.sigma_v_min"),
    ("method.sigma_v_min=1.5", "method.sigma_v_min"), ("method.sigma_v_decay=1.5", "method.sigma_v_decay"),
    ("method.sigma_v_decay=0", "method.sigma_v_decay"), ("method.cap_factor=-2", "method.cap_factor"),
    ("method.cap_factor=0", "method.cap_factor"), ("method.gain_w=0", "method.gain_w"),
    ("method.gain_b=-1", "method.gain_b"), ("train.epochs=0", "train.epochs"),
    ("train.epochs=true", "train.epochs"), ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=1.5", "train.batch_size"), ("seed=-1", "seed"), ("dtype=float16", "dtype"),
    ("backend=gpu", "backend"), ("threads=0", "threads"),
    ("method=bp method.optimizer.lr=0", "method.optimizer.lr"),
    ("method=bp method.optimizer.lr=abc", "method.optimizer.lr"),
    ("method=bp method.optimizer.momentum=1", "method.optimizer.momentum"),
    ("method=bp method.optimizer.momentum=-0.1", "method.optimizer.momentum"),
    ("method=bp method.optimizer.weight_decay=-1", "method.optimizer.weight_decay"),
    ("method=bp method.optimizer.name=adam method.optimizer.betas=[0.9,1.0]", "method.optimizer.betas"),
    ("method=bp method.optimizer.name=rmsprop", "method.optimizer.name"),
    ("method=bp method.schedule.gamma=0", "method.schedule.gamma"),
    ("method=bp method.schedule.epochs=0", "method.schedule.epochs"),
    ("experiment=cifar10_3conv method=bp method.epochs=0", "method.epochs"),
]


@pytest.mark.parametrize("overrides, key", BAD, ids=[o for o, _ in BAD])
def test_bad_setting_is_refused_by_key_before_data_loads(tmp_path, overrides, key):
    # data.root names no data: a check that ran after loading would fail with DataError instead
    cfg = config(*overrides.split(), f"data.root={tmp_path / 'nothing'}", "progress=false")
    with pytest.raises(SettingsError, match=rf"(^|\W){key}\W"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("overrides", ["", "method=bp", "method=bp method.optimizer.name=adam",
                                       "experiment=cifar10_3conv debug=on", "method.cap_factor=0.5"])
def test_shipped_settings_pass(overrides):
    typed = validate(config(*overrides.split()))
    assert typed.train.batch_size >= 1 and isinstance(typed.method.name, str)


def test_main_job_exits_non_zero_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "method.sigma_v_decay=1.5",
         f"data.root={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "method.sigma_v_decay must be a finite number > 0 and <= 1, got 1.5" in output
    assert "Traceback" not in output                        # the message, not a stack trace
    assert "DataError" not in output and not (tmp_path / "run" / "metrics.csv").exists()
