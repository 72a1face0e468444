"""Hostile and malformed inputs: data files that would run code or hold wrong values, run
folders holding symlinks, a full disk; each refused by name, before anything is lost."""
import errno
import hashlib
import logging
import os
import pickle
import tarfile
import traceback

import numpy as np
import pandas as pd
import pytest

from conftest import write_cifar_folder
from experiments import checkpoint, train
from experiments.lock import RunLog
from experiments.settings import SettingsError
from experiments.train import run
from run_support import config
from tagi.backends import gpu_missing
from tagi.data import DataError, load_cifar10


class RunsCommand:
    """Unpickling this runs ``os.system(command)``: the classic hostile pickle."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def hostile_batch(marker):
    """A pickled dict like a CIFAR-10 batch whose b'data' entry, when unpickled, touches ``marker``."""
    return pickle.dumps({b"labels": [0], b"data": RunsCommand(f"touch {marker}")})


@pytest.mark.parametrize("via", ["folder", "archive"])
def test_a_batch_that_would_run_code_is_refused_by_name_before_it_runs(tmp_path, via):
    folder = write_cifar_folder(tmp_path / "src")
    marker = tmp_path / "ran"
    (folder / "data_batch_2").write_bytes(hostile_batch(marker))
    root = folder.parent
    if via == "archive":
        root = tmp_path / "arch"
        root.mkdir()
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match=r"data_batch_2: not a readable CIFAR-10 pickle "
                                        r"\(UnpicklingError: it names posix\.system"):
        load_cifar10(root, verify_md5=False)
    assert not marker.exists(), "the pickle's command ran"


def test_the_real_layout_of_numpy_arrays_is_read(tmp_path):
    """Batches pickled by protocols 2 (as the official archive), 4 and 5 all load."""
    folder = write_cifar_folder(tmp_path / "cifar")
    for protocol in (2, 4, 5):
        record = {b"data": np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072),
                  b"labels": [3, 4], b"batch_label": b"x", b"filenames": [b"a.png", b"b.png"]}
        (folder / "test_batch").write_bytes(pickle.dumps(record, protocol=protocol))
        data = load_cifar10(folder.parent)
        assert data.y_test.tolist() == [3, 4] and data.x_test.shape == (2, 3, 32, 32)


def rewrite_labels(folder, name, labels):
    path = folder / name
    record = pickle.loads(path.read_bytes())
    record[b"labels"] = labels
    path.write_bytes(pickle.dumps(record))


def test_float_labels_are_refused_unless_integral(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar", n_per_batch=4)
    rewrite_labels(folder, "data_batch_4", [1.0, 2.0, 3.0, 9.0])
    assert load_cifar10(folder.parent).y_train[12:16].tolist() == [1, 2, 3, 9]
    rewrite_labels(folder, "data_batch_4", [1.0, 2.5, 3.0, 9.0])
    with pytest.raises(DataError, match=r"data_batch_4: b'labels' must be integer classes, got 2\.5 "
                                        r"at index 1"):
        load_cifar10(folder.parent)
    rewrite_labels(folder, "data_batch_4", np.array([1.0, np.nan, 3.0, 9.0]))
    with pytest.raises(DataError, match=r"data_batch_4: b'labels' must be integer classes, got nan"):
        load_cifar10(folder.parent)


def test_a_batch_with_no_images_is_refused_before_training(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8),
                                                      b"labels": []}))
    with pytest.raises(DataError, match=r"test_batch: the batch holds no images"):
        run(config(f"data.root={folder.parent}", "progress=false"), tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".run.lock"]


TINY = ["data.train_limit=24", "data.test_limit=8", "train.batch_size=8", "backend=numpy", "progress=false"]


class FullDisk:
    """A binary file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_at_a_checkpoint_is_one_error_naming_the_file(cifar_root, tmp_path, monkeypatch):
    run(config(f"data.root={cifar_root}", *TINY), tmp_path)
    kept = (tmp_path / "checkpoint.npz").read_bytes()
    real_savez = np.savez
    monkeypatch.setattr(np, "savez", lambda f, **arrays: real_savez(FullDisk(f, 4096), **arrays))
    with pytest.raises(OSError, match=rf"^\[Errno {errno.ENOSPC}\] {tmp_path / 'checkpoint.npz'} not "
                                      r"written \(No space left on device\)") as caught:
        run(config(f"data.root={cifar_root}", *TINY, "train.epochs=2"), tmp_path)
    printed = "".join(traceback.format_exception(caught.value))
    assert printed.count("No space left on device") == 1                  # one error, not three
    assert (tmp_path / "checkpoint.npz").read_bytes() == kept and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    assert len(run(config(f"data.root={cifar_root}", *TINY, "train.epochs=2"), tmp_path)) == 2
    assert checkpoint.load(tmp_path / "checkpoint.npz")[1]["rows"][-1]["epoch"] == 2


def test_outputs_get_the_mode_other_files_get(cifar_root, tmp_path):
    run(config(f"data.root={cifar_root}", *TINY), tmp_path)
    probe = tmp_path / "probe"
    probe.write_text("")                                 # what open() gives under this umask
    want = probe.stat().st_mode & 0o777
    for name in ("metrics.csv", "summary.json", "test_probs.npz", "checkpoint.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name


def test_a_checkpoint_with_negative_variances_is_refused_naming_the_array(cifar_root, tmp_path):
    run(config(f"data.root={cifar_root}", *TINY), tmp_path)
    path = tmp_path / "checkpoint.npz"
    arrays, meta = checkpoint.load(path)
    arrays["0.var_w"] = arrays["0.var_w"].copy()
    arrays["0.var_w"].flat[3] = -1e-3
    with pytest.raises(checkpoint.CheckpointError, match=r"not saved: negative variances in 0\.var_w"):
        checkpoint.save(path, arrays, meta)
    record = dict(np.load(path))
    record["0.var_w"] = arrays["0.var_w"]
    np.savez(path, **record)                            # written by another program
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoint\.npz: the checkpoint holds negative "
                                                         r"variances in 0\.var_w"):
        run(config(f"data.root={cifar_root}", *TINY, "train.epochs=2"), tmp_path)


def test_backend_cupy_without_a_gpu_is_refused_before_data_loads(cifar_root, tmp_path, monkeypatch):
    if gpu_missing() is None:
        pytest.skip("a GPU is present")

    def load(*args, **kwargs):
        raise AssertionError("the data was loaded")
    monkeypatch.setattr(train, "load_cifar10", load)
    with pytest.raises(SettingsError, match=r"setting backend: cupy needs a GPU and none can be used here"):
        run(config(f"data.root={cifar_root}", *TINY[:-2], "backend=cupy", "progress=false"), tmp_path)
    assert not tmp_path.joinpath("metrics.csv").exists()


def test_a_download_whose_md5_names_a_hostile_archive_runs_no_code(tmp_path):
    """data.md5 vouches only for the bytes; the batches in them are still read safely."""
    folder = write_cifar_folder(tmp_path / "src")
    marker = tmp_path / "ran"
    (folder / "test_batch").write_bytes(hostile_batch(marker))
    archive = tmp_path / "hostile.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    cfg = config(f"data.root={tmp_path / 'root'}", "data.download=true", f"data.url={archive.as_uri()}",
                 f"data.md5={md5}", "progress=false")
    with pytest.raises(DataError, match=r"test_batch: not a readable CIFAR-10 pickle \(UnpicklingError: "
                                        r"it names posix\.system"):
        run(cfg, tmp_path / "run")
    assert (tmp_path / "root" / "cifar-10-python.tar.gz").exists() and not marker.exists()


def test_the_run_log_is_not_written_through_a_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("precious")
    (tmp_path / "train.log").symlink_to(target)
    handler = RunLog(tmp_path / "train.log", delay=True)
    handler.handleError = lambda record: None                    # logging reports, never raises
    handler.emit(logging.makeLogRecord({"msg": "hello"}))
    handler.close()
    assert target.read_text() == "precious"
    plain = RunLog(tmp_path / "plain.log", delay=True)
    plain.emit(logging.makeLogRecord({"msg": "hello"}))
    plain.close()
    assert (tmp_path / "plain.log").read_text() == "hello\n"


def test_a_full_disk_at_the_first_checkpoint_loses_nothing(cifar_root, tmp_path, monkeypatch):
    """The first epoch's results are written, its checkpoint is not: the same command, once
    there is room again, trains from the start and ends as an uninterrupted run."""
    cfg = config(f"data.root={cifar_root}", *TINY, "train.epochs=2")
    whole = run(cfg, tmp_path / "whole")
    real_savez = np.savez
    monkeypatch.setattr(np, "savez", lambda f, **arrays: real_savez(FullDisk(f, 4096), **arrays))
    with pytest.raises(OSError, match=r"checkpoint\.npz not written \(No space left on device\)"):
        run(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.csv").exists() and not (tmp_path / "run" / "checkpoint.npz").exists()
    monkeypatch.undo()
    again = run(cfg, tmp_path / "run")
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), whole.drop(columns="seconds"))


def small_networks():
    """A TAGI and a BP network on (4,) inputs, numpy float64."""
    from tagi import nn
    from tagi.bp import Linear, ReLU, Sequential
    return {"tagi": nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 11), input_shape=(4,),
                                  dtype="float64"),
            "bp": Sequential(Linear(4, 3), ReLU(), Linear(3, 10), input_shape=(4,),
                             dtype="float64")}


@pytest.mark.parametrize("method", ["tagi", "bp"])
@pytest.mark.parametrize("bad, error, message", [
    ([[0.0] * 4], TypeError, "must be an array shaped \\(batch, 4\\), got list"),
    (np.zeros((0, 4)), ValueError, "no samples \\(batch size 0\\)"),
    (np.zeros((2, 5)), ValueError, "has shape \\(2, 5\\), expected \\(batch, 4\\)")])
def test_a_batch_that_is_no_array_empty_or_misshapen_is_named(method, bad, error, message):
    with pytest.raises(error, match=message):
        small_networks()[method].forward(bad)


def test_a_tagi_step_needs_a_backward_first_and_applies_it_once():
    net = small_networks()["tagi"]
    with pytest.raises(RuntimeError, match="step\\(\\) needs a forward\\(\\) and backward\\(\\)"):
        net.step()
    mu, _ = net.forward(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="step\\(\\) needs"):
        net.step()
    net.backward(np.full_like(mu, 0.1), np.full_like(mu, -0.01))
    net.step()
    with pytest.raises(RuntimeError, match="step\\(\\) needs"):
        net.step()


@pytest.mark.parametrize("method, value, message", [
    ("tagi", np.nan, "NaN or infinite values in 0\\.mu_w"),
    ("tagi", np.inf, "NaN or infinite values in 0\\.mu_w"),
    ("tagi", -1.0, "negative variances in 0\\.var_w"),
    ("bp", np.nan, "NaN or infinite values in 0\\.weight"),
    ("bp", -np.inf, "NaN or infinite values in 0\\.weight")])
def test_a_state_dict_with_nan_weights_or_negative_variances_is_refused(method, value, message):
    net = small_networks()[method]
    state = net.state_dict()
    before = {k: v.copy() for k, v in state.items()}
    state["0.var_w" if value == -1.0 else next(iter(state))].flat[0] = value
    with pytest.raises(ValueError, match=message):
        net.load_state_dict(state)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)    # nothing was loaded
