"""One run per folder: a second run is refused while the first holds it; killed writes are cleaned;
nothing is written through a symbolic link; a rerun that trains nothing writes nothing of the run's."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from experiments.lock import FolderBusyError, LinkedRunFolderError, hold_run_folder
from experiments.train import RUN_FILES, run
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


SMALL = ["data.train_limit=24", "data.test_limit=8", "train.batch_size=8", "backend=numpy", "progress=false"]


def main_job(*overrides, check=True):
    result = subprocess.run([sys.executable, "-m", "experiments.train", *overrides], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert not check or result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_symbolic_link_where_a_run_writes_is_refused_naming_it(cifar_root, tmp_path, name):
    folder, target = tmp_path / "run", tmp_path / "target"
    target.write_text("precious")
    (folder / name).parent.mkdir(parents=True)
    (folder / name).symlink_to(target)
    with pytest.raises(LinkedRunFolderError, match=rf"^{folder / name} is a symbolic link"):
        run(config(f"data.root={cifar_root}", *SMALL), folder)
    assert target.read_text() == "precious"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == sorted(
        {name, *(p.as_posix() for p in Path(name).parents if p != Path("."))})


def test_a_linked_folder_inside_the_run_folder_is_refused(cifar_root, tmp_path):
    folder, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder.mkdir()
    (folder / ".hydra").symlink_to(elsewhere)
    result = main_job(f"data.root={cifar_root}", *SMALL, f"hydra.run.dir={folder}", check=False)
    assert result.returncode == 2 and f"{folder / '.hydra'} is a symbolic link" in result.stdout
    assert not list(elsewhere.iterdir()) and sorted(p.name for p in folder.iterdir()) == [".hydra"]


@pytest.mark.parametrize("name", ["train.log", ".hydra/config.yaml", ".run.lock"])
def test_the_main_job_writes_nothing_through_a_link(cifar_root, tmp_path, name):
    """Hydra's own files included: the log and the job's record."""
    folder, target = tmp_path / "run", tmp_path / "target"
    target.write_text("precious")
    (folder / name).parent.mkdir(parents=True)
    (folder / name).symlink_to(target)
    result = main_job(f"data.root={cifar_root}", *SMALL, f"hydra.run.dir={folder}", check=False)
    assert result.returncode == 2 and f"{folder / name} is a symbolic link" in result.stdout
    assert target.read_text() == "precious"
    assert [p for p in folder.rglob("*") if not p.is_symlink() and p.is_file()] == []


def test_the_lock_is_never_opened_through_a_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("precious")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".run.lock").symlink_to(target)
    with pytest.raises(LinkedRunFolderError, match=r"run/\.run\.lock is a symbolic link"):
        with hold_run_folder(tmp_path / "run"):
            pass
    assert target.read_text() == "precious"


@pytest.mark.parametrize("launch", ["run", "sweep"])
def test_a_finished_run_rerun_keeps_its_log_and_record(cifar_root, tmp_path, launch):
    """The committed runs: rerunning their command (the protocol's: a joblib sweep) trains
    nothing and writes nothing of theirs."""
    folder = tmp_path / "run"
    where = ([f"hydra.run.dir={folder}"] if launch == "run" else
             ["-m", "seed=0", "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path}",
              "hydra.sweep.subdir=run"])
    main_job(*where, f"data.root={cifar_root}", *SMALL)
    (folder / "checkpoint.npz").unlink()                               # as committed
    kept = {name: (folder / name).read_bytes() for name in ("train.log", ".hydra/config.yaml",
                                                            "metrics.csv", "summary.json")}
    main_job(*where, f"data.root={cifar_root}", *SMALL[:-1], "progress=true")
    assert {name: (folder / name).read_bytes() for name in kept} == kept


def test_a_refused_relaunch_keeps_the_record_of_the_run(cifar_root, tmp_path):
    folder = tmp_path / "run"
    main_job(f"data.root={cifar_root}", *SMALL, f"hydra.run.dir={folder}")
    record = (folder / ".hydra" / "config.yaml").read_bytes()
    result = main_job(f"data.root={cifar_root}", *SMALL, "method.sigma_v=0.5", f"hydra.run.dir={folder}",
                      check=False)
    assert result.returncode != 0 and "method.sigma_v: checkpoint 1.0, this run 0.5" in result.stderr
    assert (folder / ".hydra" / "config.yaml").read_bytes() == record
    assert OmegaConf.load(folder / ".hydra" / "config.yaml").method.sigma_v == 1.0


def test_a_relaunch_that_resumes_records_its_settings(cifar_root, tmp_path):
    folder = tmp_path / "run"
    main_job(f"data.root={cifar_root}", *SMALL, f"hydra.run.dir={folder}")
    main_job(f"data.root={cifar_root}", *SMALL, "train.epochs=2", f"hydra.run.dir={folder}")
    assert OmegaConf.load(folder / ".hydra" / "config.yaml").train.epochs == 2
    assert OmegaConf.load(folder / ".hydra" / "overrides.yaml")[-1] == "train.epochs=2"
    assert OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.run.dir == str(folder)
    assert len(pd.read_csv(folder / "metrics.csv")) == 2
