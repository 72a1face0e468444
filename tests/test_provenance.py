"""Every summary says where its numbers come from: the data read (source and md5 of each file),
the code (version, git commit, dirty), the backend resolved, dtype, threads per epoch, the machine."""
import hashlib
import json
import os
import pickle
import subprocess
import tarfile

import pandas as pd
import pytest

import tagi
import tagi.data
from experiments import provenance, report
from experiments.train import run
from run_support import SMALL_MODEL, config
from tagi.data import cifar10_source
from tagi.threads import limit_threads

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_summary_records_its_provenance(cifar_root, tmp_path):
    run(config(f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20"), tmp_path)
    record = json.loads((tmp_path / "summary.json").read_text())["provenance"]
    folder = cifar_root / "cifar-10-batches-py"
    assert record["data"] == {"source": "folder", "path": str(folder),
                              "md5": {name: md5(folder / name) for name in BATCHES}}
    assert record["backend"] == "numpy" and record["dtype"] == "float32"
    assert record["threads"] == [provenance.thread_count()]
    assert record["cpu"]["cores"] == os.cpu_count() and record["cpu"]["model"]
    assert record["package_version"] == tagi.__version__
    assert set(record["git"]) == {"commit", "dirty"} and "gpu" in record


def test_the_backend_recorded_is_the_one_resolved(cifar_root, tmp_path):
    run(config(f"data.root={cifar_root}", *SMALL_MODEL, "backend=auto", "data.test_limit=20"), tmp_path)
    backend = json.loads((tmp_path / "summary.json").read_text())["provenance"]["backend"]
    assert backend in ("numpy", "numba", "cupy")


def test_the_threads_of_every_epoch_are_kept_across_a_resume(cifar_root, tmp_path):
    args = [f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20"]
    with limit_threads(1):
        run(config(*args), tmp_path)
    with limit_threads(2):                      # at most the cores Numba has: 2 where there are 2
        run(config(*args, "train.epochs=2"), tmp_path)
    expected = [1, min(2, provenance.numba.config.NUMBA_NUM_THREADS)]
    assert pd.read_csv(tmp_path / "metrics.csv")["threads"].tolist() == expected
    assert json.loads((tmp_path / "summary.json").read_text())["provenance"]["threads"] == expected


def rename_images(folder, names):
    """Give every image of a CIFAR-10 folder's batches the file names ``names(n)``."""
    for name in BATCHES:
        with open(folder / name, "rb") as f:
            record = pickle.load(f, encoding="bytes")
        record[b"filenames"] = names(len(record[b"labels"]))
        with open(folder / name, "wb") as f:
            pickle.dump(record, f)


def test_the_offline_jpeg_copy_is_recognised(cifar_root):
    folder = cifar_root / "cifar-10-batches-py"
    rename_images(folder, lambda n: [f"cat_{i:04d}.jpg".encode() for i in range(n)])
    assert cifar10_source(cifar_root)["source"] == "offline JPEG copy"
    rename_images(folder, lambda n: [f"felis_catus_s_{i:06d}.png".encode() for i in range(n)])
    assert cifar10_source(cifar_root)["source"] == "folder"


def test_an_archive_is_official_by_its_md5(cifar_root, tmp_path, monkeypatch):
    root = tmp_path / "archive"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(cifar_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    digest = md5(root / "cifar-10-python.tar.gz")
    assert cifar10_source(root) == {"source": "archive", "path": str(root / "cifar-10-python.tar.gz"),
                                    "md5": {"cifar-10-python.tar.gz": digest}}
    monkeypatch.setattr(tagi.data, "CIFAR10_MD5", digest)          # as if it were the official one
    assert cifar10_source(root)["source"] == "official archive"


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_the_git_commit_and_dirty_flag(tmp_path):
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}      # no checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    (tmp_path / "untracked.txt").write_text("run outputs do not make the code dirty\n")
    assert provenance.git_state(tmp_path) == {"commit": git(tmp_path, "rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path)["dirty"] is True


def test_the_table_warns_when_runs_read_different_data(cifar_root, tmp_path, caplog):
    args = [f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20"]
    for seed in (0, 1):
        run(config(*args, f"seed={seed}"), tmp_path / "runs" / f"seed={seed}")
    assert "Warning" not in report.report([tmp_path / "runs"], tmp_path / "out")
    path = tmp_path / "runs" / "seed=1" / "summary.json"
    summary = json.loads(path.read_text())
    summary["provenance"]["data"]["source"] = "offline JPEG copy"
    path.write_text(json.dumps(summary))
    with caplog.at_level("WARNING", logger="experiments.report"):
        text = report.report([tmp_path / "runs"], tmp_path / "out")
    warning = "Warning: the runs read different data (folder: 1 run, offline JPEG copy: 1 run)"
    assert text.startswith(warning) and [r.getMessage()[:len(warning)] for r in caplog.records] == [warning]
