"""Shared fixtures: random Gaussian tensors and a small synthetic CIFAR-10 on disk."""
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))   # lets tests import naive.py


def gaussian_tensors(rng, shape, dtype=np.float64):
    """(mu, var) of the given shape: means ~ N(0, 1), variances in [0.1, 1.1)."""
    return (rng.standard_normal(shape).astype(dtype), (0.1 + rng.random(shape)).astype(dtype))


def write_cifar_folder(root, n_per_batch=20, seed=0):
    """A CIFAR-10 python-pickle folder with random images: 5 train batches and a test batch."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        record = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                  b"labels": rng.integers(0, 10, n_per_batch).tolist(),
                  b"batch_label": name.encode(), b"filenames": [b"x"] * n_per_batch}
        with open(folder / name, "wb") as f:
            pickle.dump(record, f)
    return folder


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cifar_root(tmp_path):
    """A folder holding a small synthetic cifar-10-batches-py/ (100 train, 20 test images)."""
    write_cifar_folder(tmp_path / "cifar")
    return tmp_path / "cifar"


@pytest.fixture(scope="session")
def cpu_cuda(tmp_path_factory):
    """The g++ build of the kernels (tests/cuda_cpu/), float32 and float64 compiled side by side."""
    from cuda_cpu import harness
    cuda = harness.CpuCuda(tmp_path_factory.mktemp("cuda_cpu"))
    kernels = harness.load_cupy_backend(harness.fake_cupy(cuda, 0), "cupy_kernels")
    cuda.compile([(kernels.kernel_source(dtype), kernels.KERNEL_OPTIONS)
                  for dtype in (np.float32, np.float64)])
    return cuda
