"""Results do not depend on the thread count: the numba backend runs a batch in parts fixed by the
batch (not by the threads) and adds the parts' sums in part order, so TAGI and BP training steps
give bit-identical parameters at 1, 2 and 16 threads, and so does the main job (metrics too).

16 threads need Numba's thread count set before it is imported: that side runs in a child
process (this file run as a script, NUMBA_NUM_THREADS=16) and writes its parameters to a file.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pandas as pd

BATCH = 17          # four uneven parts: 5, 4, 4, 4
STEPS = 3


def trained_parameters(threads):
    """TAGI and BP numba networks after STEPS float32 training steps at ``threads`` threads ->
    {"tagi.{key}" / "bp.{key}": array}."""
    from tagi import nn
    from tagi.bp import make_optimizer
    from tagi.bp.loop import train_step as bp_train_step
    from tagi.loop import train_step
    from tagi.models import architecture, bp_network
    from tagi.threads import limit_threads
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS, BATCH, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, (STEPS, BATCH))
    with limit_threads(threads):
        net = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2, 2),
                            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                            nn.Linear(512, 16), nn.ReLU(), nn.Linear(16, 11),
                            input_shape=(3, 32, 32), backend="numba", seed=1)
        head = nn.HierarchicalSoftmax(10)
        bp = bp_network(architecture("pytorch_tutorial"), 10, backend="numba", dtype="float32",
                        seed=1)
        optimizer = make_optimizer("sgd", bp.parameters(), lr=0.01, momentum=0.9)
        for step in range(STEPS):
            train_step(net, head, x[step], labels[step], 1.0)
            bp_train_step(bp, optimizer, x[step], labels[step])
    return {**{f"tagi.{k}": v for k, v in net.state_dict().items()},
            **{f"bp.{k}": v for k, v in bp.state_dict().items()}}


def assert_identical(got, want):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_training_steps_are_identical_at_one_two_and_sixteen_threads(tmp_path):
    one = trained_parameters(1)
    assert_identical(trained_parameters(2), one)
    out = tmp_path / "sixteen.npz"
    env = {**os.environ, "NUMBA_NUM_THREADS": "16"}
    child = subprocess.run([sys.executable, __file__, "16", str(out)], env=env,
                           capture_output=True, text=True, cwd=Path(__file__).parent)
    assert child.returncode == 0, child.stderr[-3000:]
    with np.load(out) as sixteen:
        assert json.loads(child.stdout.strip().splitlines()[-1]) == 16   # it did run 16 threads
        assert_identical(dict(sixteen), one)


def test_the_main_job_ends_the_same_at_any_thread_count_and_across_a_resume(cifar_root, tmp_path):
    """The same run at 1 and at 2 threads (the main job's cap, ``threads=N``), and one that trains
    its first epoch at 1 thread and resumes at 2: the same metrics and the same parameters."""
    from experiments.checkpoint import META_KEY
    from experiments.train import run
    from run_support import config
    from tagi.threads import limit_threads
    args = [f"data.root={cifar_root}", "backend=numba", "data.train_limit=40", "data.test_limit=20",
            "train.batch_size=16", "progress=false"]
    plans = {"1 thread": [(1, 2)], "2 threads": [(2, 2)], "resumed at 2": [(1, 1), (2, 2)]}
    two = min(2, numba.config.NUMBA_NUM_THREADS)
    threads_run = {"1 thread": [1, 1], "2 threads": [two, two], "resumed at 2": [1, two]}
    ends = {}
    for name, launches in plans.items():
        folder = tmp_path / name.replace(" ", "_")
        for threads, epochs in launches:
            with limit_threads(threads):
                run(config(*args, f"train.epochs={epochs}"), folder)
        metrics = pd.read_csv(folder / "metrics.csv")
        assert metrics["threads"].tolist() == threads_run[name], name
        with np.load(folder / "checkpoint.npz") as checkpoint:
            params = {k: checkpoint[k] for k in checkpoint.files if k != META_KEY}
        ends[name] = metrics.drop(columns=["seconds", "threads"]), params
    want_metrics, want_params = ends["1 thread"]
    assert len(want_metrics) == 2 and want_params, "two epochs and a checkpoint were expected"
    for name in ("2 threads", "resumed at 2"):
        pd.testing.assert_frame_equal(ends[name][0], want_metrics, check_exact=True, obj=name)
        assert_identical(ends[name][1], want_params)


if __name__ == "__main__":
    threads, out = int(sys.argv[1]), sys.argv[2]
    np.savez(out, **trained_parameters(threads))
    print(json.dumps(numba.config.NUMBA_NUM_THREADS))
