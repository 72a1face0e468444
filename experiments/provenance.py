"""Where a run's numbers come from: the data files read, the code run, and the machine.

``provenance(...)`` is the ``provenance`` entry of summary.json: the data source
(``tagi.data.cifar10_source``: official archive, offline JPEG copy or another folder)
with the md5 of each file read; the version of the code run (``tagi.__version__``) and
its git commit, with a dirty flag (None for both where the code is not a git checkout); the backend
actually used (never "auto"), the dtype and the CPU threads of every epoch; the
CPU model and core count, and the GPU's name where there is one.
"""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np

import tagi

CODE_ROOT = Path(tagi.__file__).resolve().parents[1]     # the checkout holding the tagi package


def thread_count():
    """CPU threads of Numba's parallel kernels now (what ``tagi.threads.limit_threads`` caps)."""
    return numba.get_num_threads()


def git_state(folder=CODE_ROOT):
    """-> {"commit", "dirty"} of the git checkout holding ``folder``: its HEAD and whether any
    tracked file differs from it; both None where there is no checkout (or no git)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def cpu_model():
    """The CPU's model name (/proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def gpu_name(backend_name):
    """The GPU's name: cupy's device 0 under the cupy backend, else nvidia-smi's first GPU;
    None where there is none."""
    if backend_name == "cupy":
        try:
            import cupy
            name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:                     # noqa: BLE001  (no name is no reason to stop)
            pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
            names = out.strip().splitlines()
            return names[0].strip() if names else None
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def provenance(data_source, backend_name, dtype):
    """The summary's provenance of this launch: ``data_source`` as ``tagi.data.cifar10_source``
    gives it, the backend used (its NAME) and ``dtype``; ``with_threads`` adds the threads."""
    return {"data": data_source, "package_version": tagi.__version__, "git": git_state(),
            "backend": backend_name, "dtype": str(np.dtype(dtype)),
            "cpu": {"model": cpu_model(), "cores": os.cpu_count()}, "gpu": gpu_name(backend_name),
            "python": sys.version.split()[0], "numpy": np.__version__}


def with_threads(launch, rows):
    """``launch`` (``provenance(...)``) plus ``threads``: the CPU threads of each metrics row's
    epoch (a resumed run may have run its epochs with different counts)."""
    return {**launch, "threads": [row.get("threads") for row in rows]}
