"""One run per folder: a second run is refused while the first holds it; killed writes are cleaned."""
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from experiments.lock import FolderBusyError, hold_run_folder
from experiments.train import run
from run_support import ROOT, config


def test_second_run_in_a_busy_folder_is_refused(cifar_root, tmp_path):
    folder = tmp_path / "run"
    settings = [f"data.root={cifar_root}", "train.epochs=3", "data.train_limit=48",
                "data.test_limit=16", "train.batch_size=8", "backend=numpy", "progress=false"]
    first = subprocess.Popen([sys.executable, "-m", "experiments.train", *settings,
                              f"hydra.run.dir={folder}"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (folder / ".run.lock").exists() or not (folder / ".run.lock").read_text().strip():
        assert first.poll() is None and time.time() < deadline, "the first run should start"
        time.sleep(0.02)
    started = time.perf_counter()
    with pytest.raises(FolderBusyError, match=rf"{folder}: another run \(pid {first.pid}\)"):
        run(config(*settings), folder)
    assert time.perf_counter() - started < 30, "refused at once, not after loading data"
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    metrics = pd.read_csv(folder / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3]                 # the first run finished intact


def test_a_killed_holder_never_blocks(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from experiments.lock import "
                               "hold_run_folder\nwith hold_run_folder(sys.argv[1]):\n print(1, flush=True)\n"
                               " time.sleep(600)", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "1"
    with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):
        with hold_run_folder(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with hold_run_folder(tmp_path):
        assert (tmp_path / ".run.lock").read_text().strip() == str(os.getpid())


def test_stale_tmp_files_are_removed_at_start(cifar_root, tmp_path):
    stale = [tmp_path / ".metrics.csv.k3j2h1.tmp", tmp_path / ".checkpoint.npz.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half a write")
    (tmp_path / "notes.tmp").write_text("not ours")               # not an atomic_write name
    run(config(f"data.root={cifar_root}", "data.train_limit=16", "data.test_limit=8", "progress=false"),
        tmp_path)
    assert not any(path.exists() for path in stale) and (tmp_path / "notes.tmp").exists()
    assert not list(tmp_path.glob(".*.tmp"))
