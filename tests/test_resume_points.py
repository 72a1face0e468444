"""A run stopped right after any write of an epoch's end, the first epoch's included, resumes
with the same command and ends with the metrics of an uninterrupted run."""
import json
import os

import pandas as pd
import pytest

from experiments.train import run
from run_support import config

EPOCHS = 3
WRITES = 4                      # per epoch's end: summary.json, metrics.csv, test_probs.npz, checkpoint.npz


def settings(cifar_root):
    return [f"data.root={cifar_root}", f"train.epochs={EPOCHS}", "data.train_limit=24", "data.test_limit=8",
            "train.batch_size=8", "backend=numpy", "progress=false"]


def stop_after_write(monkeypatch, folder, count):
    """Stop the process (KeyboardInterrupt, as a kill would) right after the ``count``-th file that
    atomic_write renames into ``folder``; returns the names written, in order."""
    real_replace, written = os.replace, []

    def replace(src, dst):
        real_replace(src, dst)
        if os.path.dirname(os.path.abspath(dst)) == str(folder):
            written.append(os.path.basename(dst))
            if len(written) == count:
                raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", replace)
    return written


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    from conftest import write_cifar_folder
    root = tmp_path_factory.mktemp("data")
    write_cifar_folder(root)
    folder = tmp_path_factory.mktemp("whole")
    return root, run(config(*settings(root)), folder)


@pytest.mark.parametrize("count", range(1, EPOCHS * WRITES))
def test_stopped_after_any_write_resumes_to_the_same_metrics(whole, tmp_path, monkeypatch, count):
    root, metrics = whole
    folder = tmp_path / "run"
    written = stop_after_write(monkeypatch, folder, count)
    with pytest.raises(KeyboardInterrupt):
        run(config(*settings(root)), folder)
    epoch = (count - 1) // WRITES + 1
    order = ("summary.json", "metrics.csv", "test_probs.npz", "checkpoint.npz")
    assert written[-1] == order[(count - 1) % WRITES]
    assert json.loads((folder / "summary.json").read_text())["epochs"] == epoch
    monkeypatch.undo()
    resumed = run(config(*settings(root)), folder)                      # the same command again
    on_disk = pd.read_csv(folder / "metrics.csv")
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), metrics.drop(columns="seconds"))
    pd.testing.assert_frame_equal(on_disk.drop(columns="seconds"), metrics.drop(columns="seconds"),
                                  check_dtype=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == EPOCHS
    assert summary["test_error"] == metrics["test_error"].iloc[-1]
