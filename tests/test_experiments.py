"""Experiments: kill and resume, checkpoint refusals, sweeps and launchers, the results table."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments import checkpoint
from experiments.aggregate import results_table
from experiments.report import report
from experiments.runs import gather, run_reliability
from tagi.metrics import expected_calibration_error, pooled_reliability, reliability_sums
from experiments.train import run
from run_support import interrupt_in_epoch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "experiments" / "conf"
TINY = ["data.train_limit=64", "data.test_limit=20", "progress=false"]


def config(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def main_job(*overrides, timeout=600):
    result = subprocess.run([sys.executable, "-m", "experiments.train", *overrides], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_kill_and_resume_gives_the_same_metrics(cifar_root, tmp_path):
    args = [sys.executable, "-m", "experiments.train", f"data.root={cifar_root}", "train.epochs=3",
            "data.train_limit=48", "train.batch_size=8", *TINY[1:]]
    killed = tmp_path / "killed"
    job = subprocess.Popen(args + [f"hydra.run.dir={killed}"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint.npz").exists() and time.time() < deadline and job.poll() is None:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)                           # mid-way through epoch 2
    job.wait()
    done_before = len(pd.read_csv(killed / "metrics.csv"))
    assert 1 <= done_before < 3, "the kill should land before the last epoch"
    main_job(*args[3:], f"hydra.run.dir={killed}")             # the same command again
    whole = run(config(*args[3:]), tmp_path / "whole")
    resumed = pd.read_csv(killed / "metrics.csv")
    assert len(resumed) == 3
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), whole.drop(columns="seconds"))


def test_bp_interrupted_mid_run_resumes_exactly(cifar_root, tmp_path, monkeypatch):
    """Optimiser momentum, lr schedule and dropout masks all continue as if never interrupted."""
    from experiments import methods
    layers = ("+model.layers=[{type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: 3, stride: 2},"
              " {type: ReLU}, {type: Dropout, p: 0.3}, {type: Linear, in_features: 900,"
              " out_features: outputs}]")
    cfg = config(f"data.root={cifar_root}", *TINY, "method=bp", "train.epochs=3", "train.batch_size=16",
                 "model.name=small", "+model.input_shape=[3,32,32]", layers)
    whole = run(cfg, tmp_path / "whole")
    real_train_epoch = interrupt_in_epoch(monkeypatch, methods.BpMethod, 2)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut")
    monkeypatch.setattr(methods.BpMethod, "train_epoch", real_train_epoch)
    resumed = run(cfg, tmp_path / "cut")
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), whole.drop(columns="seconds"))
    assert resumed["sigma_v"].isna().all() and resumed["test_error"].between(0, 1).all()


def test_checkpoint_refusals(cifar_root, tmp_path):
    run(config(f"data.root={cifar_root}", *TINY), tmp_path)
    other = config(f"data.root={cifar_root}", *TINY, "method.sigma_v=0.5")
    with pytest.raises(checkpoint.CheckpointError, match=r"method\.sigma_v: checkpoint 1\.0, this run 0\.5"):
        run(other, tmp_path)
    small = config(f"data.root={cifar_root}", *TINY, "model.name=tiny", "+model.input_shape=[3,32,32]",
                   "+model.layers=[{type: AvgPool2d, kernel_size: 4}, {type: Linear, in_features: 192,"
                   " out_features: outputs}]")
    with pytest.raises(checkpoint.CheckpointError, match="another architecture"):
        run(small, tmp_path)
    ckpt = tmp_path / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        run(config(f"data.root={cifar_root}", *TINY), tmp_path)


def write_fixture_run(folder, method, seed, errors, batch_size, probs, nll=1.0, ece=0.05):
    """A finished run folder as the main job writes it, with chosen numbers, on the full data."""
    folder.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(errors) + 1), "test_error": errors, "test_nll": nll,
                  "train_error": 0.5, "sigma_v": 1.0, "seconds": 1.0}).to_csv(folder / "metrics.csv", index=False)
    summary = {"status": "finished", "method": method, "model": "cifar10_3conv", "seed": seed,
               "epochs": len(errors), "planned_epochs": len(errors), "batch_size": batch_size,
               "train_limit": None, "test_limit": None, "dtype": "float32", "debug_run": False,
               "test_error": errors[-1], "test_nll": nll, "test_ece": ece, "error_e1": errors[0],
               "config": {"method": {"name": method, "sigma_v": 1.0}, "model": {"layers": None}}}
    (folder / "summary.json").write_text(json.dumps(summary))
    np.savez(folder / "test_probs.npz", probs=probs, labels=np.array([0, 1, 1, 0]))


def test_table_from_fixture_runs(tmp_path):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    write_fixture_run(tmp_path / "tagi" / "seed=0", "tagi", 0, [0.50, 0.30], 16, probs)
    write_fixture_run(tmp_path / "tagi" / "seed=1", "tagi", 1, [0.54, 0.34], 16, probs, nll=1.2, ece=0.09)
    write_fixture_run(tmp_path / "bp", "bp", 0, [0.60, 0.40, 0.25], 128, probs)
    table = results_table(*gather([tmp_path])).set_index("method")
    assert table.loc["tagi", "seeds"] == 2 and table.loc["bp", "seeds"] == 1
    assert table.loc["tagi", "error_e1"] == pytest.approx(0.52)
    assert table.loc["tagi", "error_e1_std"] == pytest.approx(np.std([0.50, 0.54], ddof=1))
    assert table.loc["tagi", "error_at_e"] == pytest.approx(0.32)
    assert table.loc["tagi", "diff_e1"] == pytest.approx(0.52 - 0.5271)
    assert np.isnan(table.loc["tagi", "diff_e"]) and np.isnan(table.loc["bp", "diff_e"])
    assert table.loc["bp", "epochs"] == 3 and table.loc["bp", "batch_size"] == 128
    assert table.loc["bp", "note"] == "published E not reached (ran 3)"
    text = report([tmp_path], tmp_path / "out")
    assert "| TAGI" in text and "52.00 ± 2.83 %" in text and "-0.71 pt" in text
    assert "1.100 ± 0.141" in text and "0.070 ± 0.028" in text           # NLL and ECE over 2 seeds
    bp_row = next(line for line in text.splitlines() if line.startswith("| BP"))
    assert "0.050" in bp_row and "±" not in bp_row                       # BP: one seed, no ±
    for name in ("table.md", "table.csv", "curves.png", "reliability.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="no runs"):
        gather([tmp_path / "out"])


def test_table_from_committed_results_without_probabilities(tmp_path, caplog):
    """Results committed as metrics.csv and summary.json only: the table and curves as before; the
    reliability diagram pools a run by the bins its summary keeps, else by its test_probs.npz, and
    leaves out, and logs, a run with neither."""
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    write_fixture_run(tmp_path / "tagi", "tagi", 0, [0.50, 0.30], 16, probs)
    write_fixture_run(tmp_path / "bp", "bp", 0, [0.60, 0.40], 128, probs)
    write_fixture_run(tmp_path / "bp1", "bp", 1, [0.60, 0.40], 128, probs)
    summary = json.loads((tmp_path / "bp1" / "summary.json").read_text())
    summary["reliability"] = reliability_sums(probs, np.array([0, 1, 1, 0]))
    (tmp_path / "bp1" / "summary.json").write_text(json.dumps(summary))
    for run in ("bp", "bp1"):
        (tmp_path / run / "test_probs.npz").unlink()
    with caplog.at_level("WARNING", logger="experiments.runs"):
        text = report([tmp_path], tmp_path / "out")
    assert "| TAGI" in text and "| BP" in text and (tmp_path / "out" / "reliability.png").exists()
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [f"{tmp_path / 'bp'}: no reliability bins in summary.json and no test_probs.npz, "
                      "left out of the reliability diagram"]
    assert run_reliability(tmp_path / "bp1") == run_reliability(tmp_path / "tagi")   # summary = probs


def test_table_compares_at_the_published_epoch(tmp_path):
    """A run past the published E is scored at E, and only there is Δ taken."""
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    errors = [0.6] + [0.4] * 49 + [0.3, 0.2]                       # 52 epochs, 0.4 at epoch 50
    write_fixture_run(tmp_path / "tagi", "tagi", 0, errors, 16, probs)
    row = results_table(*gather([tmp_path])).iloc[0]
    assert row["epochs"] == 50 and row["error_at_e"] == pytest.approx(0.4)
    assert row["diff_e"] == pytest.approx(0.4 - 0.2966) and row["note"] == ""


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_runs_in_debug_mode(cifar_root, tmp_path, experiment):
    main_job(f"experiment={experiment}", "debug=on", f"data.root={cifar_root}", *TINY,
             f"hydra.sweep.dir={tmp_path}")
    runs, _ = gather([tmp_path])
    swept = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    models = swept.get("model", config(f"experiment={experiment}").model.name).split(",")
    widths = [int(w) for w in str(swept["model.width"]).split(",")] if "model.width" in swept else [None]
    assert sorted(zip(runs["model"], runs["method"], runs["width"].replace({np.nan: None})),
                  key=str) == sorted(((model, method, width) for model in models
                                      for method in swept.method.split(",") for width in widths), key=str)
    assert (runs["epochs"] == 2).all() and (tmp_path / "table.md").exists()
    if "zoo_page" in OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml").hydra.get("callbacks", {}):
        assert (tmp_path / "zoo.md").exists() and (tmp_path / "accuracy_vs_width.png").exists()


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_seed_sweep_with_each_launcher(cifar_root, tmp_path, launcher):
    main_job("-m", "seed=0,1", f"hydra/launcher={launcher}", f"data.root={cifar_root}", *TINY,
             "data.train_limit=32", f"hydra.sweep.dir={tmp_path}")
    runs, _ = gather([tmp_path])
    assert sorted(runs["seed"]) == [0, 1]
    assert "± " in (tmp_path / "table.md").read_text()


def test_committed_results_without_a_checkpoint_are_kept(cifar_root, tmp_path):
    """A finished run whose checkpoint was dropped (as committed results are) trains nothing on a
    rerun; an unfinished one, or one asked for more epochs, is refused by folder, not overwritten."""
    from experiments.train import RunFolderError
    args = [f"data.root={cifar_root}", "train.epochs=2", *TINY]
    folder = tmp_path / "run"
    first = run(config(*args), folder)
    summary = json.loads((folder / "summary.json").read_text())    # the calibration kept without probs
    with np.load(folder / "test_probs.npz") as record:
        probs, labels = record["probs"], record["labels"]
    kept = pooled_reliability([summary["reliability"]])
    assert kept["count"].sum() == len(labels)
    right = np.nansum(kept["accuracy"] * kept["count"])
    assert right == pytest.approx(len(labels) * (1 - first["test_error"].iloc[-1]))
    assert summary["test_ece"] == pytest.approx(expected_calibration_error(probs, labels))
    (folder / "checkpoint.npz").unlink()
    written = (folder / "metrics.csv").read_bytes()
    again = run(config(*args), folder)
    pd.testing.assert_frame_equal(again, first)
    assert (folder / "metrics.csv").read_bytes() == written
    with pytest.raises(RunFolderError, match=r"run holds results \(status finished after 2 epochs\) "
                                             r"but no checkpoint\.npz"):
        run(config(f"data.root={cifar_root}", "train.epochs=3", *TINY), folder)
    with pytest.raises(RunFolderError, match=r"settings differ in seed"):
        run(config(*args, "seed=5"), folder)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "status": "unfinished"}))
    with pytest.raises(RunFolderError, match=r"status unfinished after 2 epochs"):
        run(config(*args), folder)
    assert (folder / "metrics.csv").read_bytes() == written
    restarted = run(config(*args, "resume=false"), folder)
    assert len(restarted) == 2
