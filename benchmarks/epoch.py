"""The whole main job as a subprocess: one TAGI epoch on CIFAR-10 plus evaluation, and its memory.

The job (``python -m experiments.train``) runs in its own process and reports
its own peak resident memory in ``summary.json`` (``peak_rss_mib``, the
process's VmHWM). The child's ``ru_maxrss`` would not do: Linux carries the
parent's high-water mark across fork and exec, so it would report this
benchmark's own peak.
"""
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tagi.data import load_cifar10

from . import flops
from .report import record
from .suites import network
from .timing import Timing

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZE = 16  # the main job's default


@functools.lru_cache
def dataset_sizes(data_root, train_limit, test_limit):
    """(train images, test images) the job will see under the limits (None: all); read once."""
    data = load_cifar10(data_root)
    n_train, n_test = len(data.y_train), len(data.y_test)
    return (min(n_train, train_limit or n_train), min(n_test, test_limit or n_test))


def run_main_job(backend_name, dtype, data_root, run_dir, train_limit, test_limit):
    """Run one epoch of the main job -> (training seconds from its metrics.csv, wall s, max RSS MiB)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "experiments.train", f"backend={backend_name}",
               f"dtype={dtype}", "train.epochs=1", f"train.batch_size={BATCH_SIZE}",
               f"data.root={Path(data_root).resolve()}",
               f"data.train_limit={train_limit or 'null'}",
               f"data.test_limit={test_limit or 'null'}",
               "progress=false", f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log_path = run_dir / "job.log"
    with open(log_path, "wb") as log_file:
        start = time.perf_counter()
        job = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file,
                               stderr=subprocess.STDOUT)
        job.wait()
        wall = time.perf_counter() - start
    if job.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"the main job exited with status {job.returncode} "
                           f"({' '.join(command)}); end of {log_path}:\n{tail}")
    seconds = float(pd.read_csv(run_dir / "metrics.csv").seconds.iloc[0])
    return seconds, wall, json.loads((run_dir / "summary.json").read_text())["peak_rss_mib"]


def epoch_rows(backend, dtype, data_root, run_dir, train_limit, test_limit, peak):
    """Two rows: "epoch" (training images/s from the job's own clock) and "epoch_job" (whole job)."""
    n_train, n_test = dataset_sizes(data_root, train_limit, test_limit)
    seconds, wall, max_rss = run_main_job(backend.NAME, dtype, data_root, run_dir,
                                          train_limit, test_limit)
    net, _ = network(backend, dtype)
    train_flops = flops.train_step_flops(net) * n_train
    job_flops = train_flops + flops.inference_flops(net) * n_test
    return [record("epoch", backend, "network", "train_epoch", BATCH_SIZE, dtype, n_train,
                   Timing((seconds,)), train_flops, peak),
            record("epoch_job", backend, "network", "main job (train + evaluate)", BATCH_SIZE,
                   dtype, n_train + n_test, Timing((wall,)), job_flops, peak, max_rss)]
