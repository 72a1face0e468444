"""Importing changes nothing in the process; choosing the numba backend tunes it.

Each case runs in a fresh interpreter (a module imports once per process), with no
``OMP_WAIT_POLICY`` and no glibc ``MALLOC_*`` setting in its environment unless the case sets
one, and with ``ctypes.CDLL`` recording every look-up of ``mallopt``. The probe prints what
changed in ``os.environ``, whether ``mallopt`` was looked up, and which modules of the project
were loaded. threadpoolctl (a dependency) sets ``KMP_DUPLICATE_LIB_OK`` when imported, so the
probe imports it before it looks.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import ctypes, json, os, sys
import threadpoolctl
looked_up = []

class RecordingCDLL(ctypes.CDLL):
    def __getattr__(self, name):
        looked_up.append(name)
        return super().__getattr__(name)

ctypes.CDLL = RecordingCDLL
before = dict(os.environ)
{code}
print(json.dumps({{
    "changed": {{k: v for k, v in os.environ.items() if before.get(k) != v}},
    "removed": sorted(set(before) - set(os.environ)),
    "mallopt": "mallopt" in looked_up,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("tagi", "experiments"))}}))
"""


def probe(code, **env):
    """Run ``code`` after the recording set-up in a fresh interpreter -> what it changed."""
    clean = {k: v for k, v in os.environ.items()
             if k != "OMP_WAIT_POLICY" and not k.startswith("MALLOC_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], cwd=ROOT,
                            env={**clean, **env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", ["tagi.backends.numpy_backend", "tagi.backends.numba_backend",
                                    "tagi.threads", "experiments.train"])
def test_importing_changes_nothing_in_the_process(module):
    seen = probe(f"import {module}")
    assert seen["changed"] == {} and seen["removed"] == [] and not seen["mallopt"]
    if module.startswith("tagi.backends"):        # a backend imports no layer code
        assert not [m for m in seen["modules"] if m.startswith(("tagi.nn", "tagi.bp"))], seen["modules"]


def test_the_cupy_backend_imports_no_layer_code(tmp_path):
    """Its modules imported against the CPU stand-in for cupy (tests/cuda_cpu), as on a GPU."""
    seen = probe("sys.path.insert(0, 'tests')\nfrom cuda_cpu import harness\n"
                 f"harness.load_cupy_backend(harness.fake_cupy(harness.CpuCuda({str(tmp_path)!r}), 0))")
    assert "tagi.backends.cupy_backend" not in seen["modules"]         # the harness put it back
    assert not [m for m in seen["modules"] if m.startswith(("tagi.nn", "tagi.bp"))], seen["modules"]
    assert seen["changed"] == {} and not seen["mallopt"]


CHOICES = {
    "get_backend": "from tagi.backends import get_backend; get_backend('numba')",
    "Sequential": "from tagi import nn; nn.Sequential(nn.Linear(2, 1), input_shape=(2,), backend='numba')",
    "limit_threads": "from tagi.threads import limit_threads\nwith limit_threads(1): pass",
}


@pytest.mark.parametrize("choice", CHOICES)
def test_choosing_the_numba_backend_tunes_the_process(choice):
    pytest.importorskip("numba")
    imported = "import tagi.backends.numba_backend\nassert 'OMP_WAIT_POLICY' not in os.environ\n"
    seen = probe(imported + CHOICES[choice])
    assert seen["changed"] == {"OMP_WAIT_POLICY": "PASSIVE"} and seen["mallopt"]


def test_the_tuning_keeps_the_users_own_settings():
    pytest.importorskip("numba")
    seen = probe(CHOICES["get_backend"], OMP_WAIT_POLICY="ACTIVE", MALLOC_ARENA_MAX="2")
    assert seen["changed"] == {} and not seen["mallopt"]
