"""The kernels as shipped: in the wheel, found by a non-editable install, tiled as the backend says.

``setup.py`` installs the top-level ``kernels/`` folder as package data ``tagi/kernels/``; the cupy
backend (``tagi/backends/cupy_kernels.py``) finds it there with ``importlib.resources`` and falls
back to the checkout's ``kernels/`` (a source tree or an editable install). The Gaussian-GEMM tile
sizes have one source of truth, ``cupy_kernels.GEMM_TILE``, handed to NVRTC as -D defines;
``tagi_gemm.cuh`` keeps the same values as #ifndef defaults for nvcc builds of a single file
(CI's nvcc loop), and this checks that they agree.
"""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cuda_cpu import harness

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SHIPPED = ("*.cu", "*.cuh", "README.md")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """tagi/backends/cupy_kernels.py, imported against the CPU stand-in for cupy."""
    return harness.load_cupy_backend(harness.fake_cupy(harness.CpuCuda(tmp_path_factory.mktemp("k")), 0),
                                     "cupy_kernels")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel ``pip wheel`` builds from a copy of the checkout (so no build/ folder lands in it)."""
    pytest.importorskip("wheel", reason="building a wheel needs the wheel package (the dev extra)")
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    shutil.copy(ROOT / "setup.py", source)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    for folder in ("tagi", "kernels", "experiments", "benchmarks"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(out), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    (path,) = out.glob("tagi-*.whl")
    return path


def kernel_files():
    return sorted(p.name for pattern in SHIPPED for p in (ROOT / "kernels").glob(pattern))


def test_the_wheel_ships_every_kernel_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.removeprefix("tagi/kernels/"): archive.read(name)
                   for name in archive.namelist() if name.startswith("tagi/kernels/")}
    assert sorted(shipped) == kernel_files()
    for name, data in shipped.items():
        assert data == (ROOT / "kernels" / name).read_bytes(), name


def test_an_installed_wheel_finds_its_kernels(wheel, tmp_path):
    """The wheel unpacked as site-packages, imported from elsewhere: the backend reads the
    kernels beside its package, not from any checkout."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = ("import tagi, cuda_cpu.harness as h; "
            "b = h.load_cupy_backend(h.fake_cupy(h.CpuCuda('.'), 0), 'cupy_kernels'); "
            "print(tagi.__file__); print(b.KERNELS); print(len(b.kernel_source('float32')))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(TESTS)]))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    package, kernels, length = result.stdout.split()
    assert Path(package).parent == site / "tagi"
    assert Path(kernels) == site / "tagi" / "kernels"
    assert int(length) > 10_000


def test_a_source_checkout_finds_the_top_level_kernels(kernels, tmp_path):
    assert kernels.KERNELS == ROOT / "kernels"
    with pytest.raises(FileNotFoundError, match="reinstall tagi"):
        kernels.kernel_folder("tagi.no_kernels_here", tmp_path)


TILE_PROBE = """
#include "tagi_gemm.cuh"
extern "C" __global__ void TAGI_NAME(tile_sizes)(int* out) {
  const int sizes[] = {GEMM_BM, GEMM_BN, GEMM_BK, GEMM_TM, GEMM_TN, GEMM_REDUCE_OUTPUTS, GEMM_THREADS};
  for (int i = 0; i < 7; ++i) out[i] = sizes[i];
}
"""


def compiled_tile_sizes(kernels, cuda, options):
    out = np.zeros(7, dtype=np.int32)
    cuda.module(TILE_PROBE, options).get_function("tile_sizes_f32")((1,), (1,), (out,))
    return dict(zip([*kernels.GEMM_TILE, "GEMM_THREADS"], out.tolist()))


def test_tile_sizes_reach_the_kernels_as_defines_and_match_the_header_defaults(kernels, tmp_path):
    cuda = harness.CpuCuda(tmp_path)
    want = {**kernels.GEMM_TILE, "GEMM_THREADS": kernels.GEMM_THREADS}
    assert set(kernels.KERNEL_OPTIONS) >= {f"-D{k}={v}" for k, v in kernels.GEMM_TILE.items()}
    assert compiled_tile_sizes(kernels, cuda, [f"-I{kernels.KERNELS}"]) == want    # header defaults
    assert compiled_tile_sizes(kernels, cuda, kernels.KERNEL_OPTIONS) == want        # the -D path
    wider = [f"-I{kernels.KERNELS}", "-DGEMM_BN=64"]                                 # a -D wins
    assert compiled_tile_sizes(kernels, cuda, wider)["GEMM_THREADS"] == 2 * kernels.GEMM_THREADS
