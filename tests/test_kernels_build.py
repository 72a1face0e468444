"""The kernels as the cupy backend compiles them: one translation unit per floating type.

CI compiles each kernels/*.cu file on its own with nvcc (.ci/run). CuPy compiles something else:
the backend's ``cupy_kernels.kernel_source(dtype)``, every file in one unit, with NVRTC, its
``KERNEL_OPTIONS`` and CuPy's own ``-ftz=true``. This builds that same unit with nvcc for sm_90
(``-Xptxas -v``) and checks what a GPU would otherwise be the first to find: the unit compiles,
every kernel the backend launches is in it, and no kernel spills registers or keeps a stack frame
(local memory, slow). NVRTC has no system headers, so the sources may include only each other.
Skipped where nvcc is missing (CI has it).
"""
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cuda_cpu import harness

DTYPES = {"f32": np.float32, "f64": np.float64}
CUPY_OPTIONS = ("-ftz=true",)            # CuPy adds this to every NVRTC compile
LAUNCH = re.compile(r"\b(?:_gemm|_elementwise|kernel)\(\s*\"(\w+)\"")
ENTRY = re.compile(r"Compiling entry function '(\w+)'")
PROPERTIES = re.compile(r"Function properties for (\w+)\s+(\d+) bytes stack frame, "
                        r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def cupy_module(tmp_path_factory, module):
    """tagi/backends/MODULE.py, imported against the CPU stand-in for cupy."""
    return harness.load_cupy_backend(harness.fake_cupy(harness.CpuCuda(tmp_path_factory.mktemp("k")), 0),
                                     module)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """The cupy backend's ops (tagi/backends/cupy_backend.py), which launch the kernels."""
    return cupy_module(tmp_path_factory, "cupy_backend")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """The cupy backend's kernel compilation (tagi/backends/cupy_kernels.py)."""
    return cupy_module(tmp_path_factory, "cupy_kernels")


@pytest.fixture(scope="module")
def ptxas_reports(kernels, tmp_path_factory):
    """{suffix: ptxas -v report} of the backend's translation unit built for sm_90, per dtype."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed (CI compiles the kernels with it)")
    folder = tmp_path_factory.mktemp("nvcc")

    def build(suffix):
        source = folder / f"kernels_{suffix}.cu"
        source.write_text(kernels.kernel_source(DTYPES[suffix]))
        result = subprocess.run(
            ["nvcc", *kernels.KERNEL_OPTIONS, *CUPY_OPTIONS, "-arch=sm_90", "-cubin",
             "-Xptxas", "-v", str(source), "-o", str(source.with_suffix(".cubin"))],
            capture_output=True, text=True)
        assert result.returncode == 0, f"nvcc failed on the {suffix} unit:\n{result.stderr[-6000:]}"
        return result.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(DTYPES, pool.map(build, DTYPES)))


def launched_kernels(backend):
    """Base names of the kernels that cupy_backend.py launches (before the _f32 / _f64 suffix)."""
    return set(LAUNCH.findall(Path(backend.__file__).read_text()))


def test_the_launch_list_is_read_from_the_backend(backend):
    names = launched_kernels(backend)
    assert {"conv2d_forward", "linear_param_deltas", "capped_update", "im2col"} <= names
    assert len(names) >= 15, sorted(names)


@pytest.mark.parametrize("suffix", DTYPES)
def test_every_launched_kernel_is_in_the_unit(backend, ptxas_reports, suffix):
    entries = set(ENTRY.findall(ptxas_reports[suffix]))
    missing = {f"{name}_{suffix}" for name in launched_kernels(backend)} - entries
    assert not missing, f"launched but not compiled: {sorted(missing)}"


@pytest.mark.parametrize("suffix", DTYPES)
def test_no_kernel_spills_or_keeps_a_stack_frame(ptxas_reports, suffix):
    report = ptxas_reports[suffix]
    properties = {name: tuple(map(int, sizes)) for name, *sizes in PROPERTIES.findall(report)}
    assert set(properties) == set(ENTRY.findall(report)), "a kernel without its ptxas properties"
    heavy = {name: sizes for name, sizes in properties.items() if any(sizes)}
    assert not heavy, f"(stack frame, spill stores, spill loads) bytes: {heavy}"


def test_kernel_sources_include_only_each_other(kernels):
    for path in sorted(kernels.KERNELS.glob("*.cu*")):
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("#include"):
                match = re.fullmatch(r'\s*#include "([\w.]+)"\s*', line)
                assert match and (kernels.KERNELS / match.group(1)).is_file(), \
                    f"{path.name}: NVRTC has no system headers: {line.strip()}"
