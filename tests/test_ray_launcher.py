"""hydra/launcher=ray: a two-job sweep on a local Ray instance, and on a Ray "cluster" that the
test starts (ray start --head on 127.0.0.1) and stops. Skipped where the plugin is not installed
(the ray extra)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from experiments.runs import gather
from run_support import SMALL_MODEL

pytest.importorskip("hydra_plugins.hydra_ray_launcher")
pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
# a cluster of this machine only, for the test: no token authentication between its processes
LOCAL_RAY = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_temp():
    """A short folder for Ray's session files (its socket paths must stay under 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def ray_head(tmp_path, ray_temp):
    """A Ray head node on 127.0.0.1 (a free port), run by ``ray start --block`` in its own process
    group -> its address; the group is stopped after the test."""
    port = free_port()
    log = open(tmp_path / "ray.log", "wb")
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={ray_temp}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=LOCAL_RAY)
    try:
        deadline = time.monotonic() + 180
        while b"Ray runtime started" not in (tmp_path / "ray.log").read_bytes():
            assert head.poll() is None, (tmp_path / "ray.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Ray did not start within 180 s"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()


def sweep(cifar_root, folder, *more):
    result = subprocess.run([sys.executable, "-m", "experiments.train", "-m", "seed=0,1",
                             "hydra/launcher=ray", f"data.root={cifar_root}", *SMALL_MODEL,
                             "data.test_limit=20", "threads=1", f"hydra.sweep.dir={folder}", *more],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=LOCAL_RAY)
    assert result.returncode == 0, result.stderr[-3000:]
    runs, _ = gather([folder])
    assert sorted(runs["seed"]) == [0, 1] and (runs["status"] == "finished").all()
    assert "± " in (folder / "table.md").read_text()                       # two seeds pooled


def test_a_sweep_on_a_local_ray_instance(cifar_root, tmp_path, ray_temp):
    sweep(cifar_root, tmp_path / "sweep",
          f"+hydra.launcher.ray.init._temp_dir={ray_temp}", "+hydra.launcher.ray.init.num_cpus=2")


def test_a_sweep_on_a_ray_cluster_by_its_address(cifar_root, tmp_path, ray_head):
    sweep(cifar_root, tmp_path / "sweep", f"hydra.launcher.ray.init.address={ray_head}")
