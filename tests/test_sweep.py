"""A sweep survives a bad job: the other jobs run, and the sweep ends listing the failed ones."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.sweep import failed_jobs
from experiments.runs import gather
from run_support import ROOT


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_job_with_a_bad_setting_fails_alone(cifar_root, tmp_path, launcher):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "-m", "seed=0,1", "method.sigma_v=1,-1",
         f"hydra/launcher={launcher}",
         f"data.root={cifar_root}", "data.train_limit=16", "data.test_limit=8", "backend=numpy",
         "progress=false", f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    runs, _ = gather([tmp_path])
    assert sorted(runs["seed"]) == [0, 1] and (runs["status"] == "finished").all()
    assert all(json.loads((Path(run) / "summary.json").read_text())["config"]["method"]["sigma_v"] == 1
               for run in runs["run"])
    failed = failed_jobs(tmp_path)
    assert [(r["job"], r["overrides"][:2]) for r in failed] == [
        (1, ["seed=0", "method.sigma_v=-1"]), (3, ["seed=1", "method.sigma_v=-1"])]
    assert all(r["error"] == "SettingsError: bad setting: method.sigma_v must be a finite number > 0, "
               "got -1.0" for r in failed), failed
    printed = result.stdout + result.stderr
    assert "2 job(s) of the sweep failed, the others ran:" in printed
    assert "#1 seed=0 method.sigma_v=-1" in printed and "#3 seed=1 method.sigma_v=-1" in printed
    assert "± " in (tmp_path / "table.md").read_text()               # the table of the good jobs
