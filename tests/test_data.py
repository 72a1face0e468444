"""CIFAR-10 loading (folder and archive), clear errors on bad files, normalised batches."""
import io
import pickle
import tarfile

import numpy as np
import pytest

from conftest import write_cifar_folder
from tagi.data import CIFAR10_MEAN, CIFAR10_STD, Batches, DataError, load_cifar10


def make_archive(root, folder):
    path = root / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return path


def test_loads_the_pickle_folder(cifar_root):
    data = load_cifar10(cifar_root)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (100,) and data.x_test.shape == (20, 3, 32, 32)
    first = pickle.load(open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb"))
    np.testing.assert_array_equal(data.x_train[0].reshape(-1), first[b"data"][0])   # R, G, B planes


def test_loads_the_archive_and_checks_its_md5(tmp_path):
    folder = write_cifar_folder(tmp_path / "src")
    root = tmp_path / "arch"
    root.mkdir()
    path = make_archive(root, folder)
    data = load_cifar10(root, verify_md5=False)
    assert data.x_train.shape == (100, 3, 32, 32)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: md5 .* does not match"):
        load_cifar10(root)
    path.write_bytes(path.read_bytes()[:200])                 # truncated download
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: not a readable tar\.gz"):
        load_cifar10(root, verify_md5=False)


def test_missing_truncated_and_wrong_files_are_named(cifar_root, tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 in"):
        load_cifar10(tmp_path / "nowhere")
    batch = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    raw = batch.read_bytes()
    batch.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"data_batch_3: not a readable CIFAR-10 pickle"):
        load_cifar10(cifar_root)
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"data_batch_3: b'data' must be uint8 rows of 3072"):
        load_cifar10(cifar_root)
    batch.unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing"):
        load_cifar10(cifar_root)


def test_batches_normalise_and_shuffle_reproducibly(cifar_root):
    data = load_cifar10(cifar_root)
    plain = Batches(data.x_train, data.y_train, 32)
    assert len(plain) == 4 and [len(y) for _, y in plain] == [32, 32, 32, 4]
    assert len(Batches(data.x_train, data.y_train, 32, drop_last=True)) == 3
    x, y = next(iter(plain))
    assert x.dtype == np.float32 and x.shape == (32, 3, 32, 32)
    want = (data.x_train[:32] / 255.0 - np.reshape(CIFAR10_MEAN, (1, 3, 1, 1))) \
        / np.reshape(CIFAR10_STD, (1, 3, 1, 1))
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-5)
    runs = [[y.tolist() for _, y in Batches(data.x_train, data.y_train, 16,
                                            rng=np.random.default_rng(7))] for _ in range(2)]
    assert runs[0] == runs[1]
    shuffled = Batches(data.x_train, data.y_train, 100, rng=np.random.default_rng(7))
    epoch1, epoch2 = (next(iter(shuffled))[1] for _ in range(2))
    assert sorted(epoch1) == sorted(data.y_train) and not np.array_equal(epoch1, epoch2)
    with pytest.raises(ValueError, match="batch_size"):
        Batches(data.x_train, data.y_train, 0)
