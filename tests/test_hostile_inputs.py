"""Hostile and malformed inputs: data files that would run code or hold wrong values, run
folders holding symlinks, a full disk; each refused by name, before anything is lost."""
import errno
import os
import pickle
import tarfile

import numpy as np
import pytest

from conftest import write_cifar_folder
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
    from experiments.train import run
    from run_support import config
    folder = write_cifar_folder(tmp_path / "cifar")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8),
                                                      b"labels": []}))
    with pytest.raises(DataError, match=r"test_batch: the batch holds no images"):
        run(config(f"data.root={folder.parent}", "progress=false"), tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".run.lock"]
