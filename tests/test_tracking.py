"""tracking=mlflow against real stores: an SQLite database and an MLflow server on 127.0.0.1.

The logged metrics equal metrics.csv; a resumed run continues its MLflow run; a sweep is one
experiment; a server answers a REST search with the run; a failing store costs one warning."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import methods, tracking
from experiments.runs import gather
from experiments.train import run
from run_support import SMALL_MODEL, config, interrupt_in_epoch

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402  (only where mlflow is installed)

ROOT = Path(__file__).resolve().parents[1]


def tracked(cifar_root, *more):
    return config(f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20", "data.val_size=20",
                  "tracking=mlflow", *more)


def runs_in(root):
    """-> (client, runs) of the SQLite store in the output root ``root``, outside the Default experiment."""
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments() if e.name != "Default"]
    return client, client.search_runs(ids) if ids else []


def history(client, run_id, key):
    """-> (steps, values) of a logged metric, by step."""
    logged = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return [m.step for m in logged], [m.value for m in logged]


def test_the_logged_metrics_are_metrics_csv(cifar_root, tmp_path):
    run(tracked(cifar_root, "train.epochs=3"), tmp_path / "run")
    client, runs = runs_in(tmp_path)
    assert len(runs) == 1
    logged = runs[0]
    frame = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert set(logged.data.metrics) == set(frame.columns) - {"epoch"}
    for column in set(frame.columns) - {"epoch"}:
        steps, values = history(client, logged.info.run_id, column)
        assert steps == frame["epoch"].tolist()
        np.testing.assert_allclose(values, frame[column], rtol=1e-12)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "run"
    assert client.get_experiment(logged.info.experiment_id).name == str(tmp_path.resolve())
    assert logged.data.params["data.val_size"] == "20" and logged.data.params["train.epochs"] == "3"
    assert logged.data.tags["provenance.data.source"] == "folder"
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} == {
        "summary.json", "metrics.csv", "curves.png"}
    saved = json.loads((tmp_path / "run" / tracking.RUN_ID_FILE).read_text())
    assert saved["run_id"] == logged.info.run_id


def test_a_resumed_run_continues_its_mlflow_run(cifar_root, tmp_path, monkeypatch):
    real = interrupt_in_epoch(monkeypatch, methods.TagiMethod, 2)
    with pytest.raises(KeyboardInterrupt):
        run(tracked(cifar_root, "train.epochs=3"), tmp_path / "run")
    client, runs = runs_in(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
    monkeypatch.setattr(methods.TagiMethod, "train_epoch", real)
    run(tracked(cifar_root, "train.epochs=3"), tmp_path / "run")
    client, again = runs_in(tmp_path)
    assert [r.info.run_id for r in again] == [runs[0].info.run_id]          # no second run
    assert again[0].info.status == "FINISHED"
    assert history(client, runs[0].info.run_id, "test_error")[0] == [1, 2, 3]   # each epoch once


def test_epochs_trained_untracked_are_logged_on_resuming(cifar_root, tmp_path):
    run(tracked(cifar_root, "tracking=none"), tmp_path / "run")
    run(tracked(cifar_root, "train.epochs=2"), tmp_path / "run")
    client, runs = runs_in(tmp_path)
    frame = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert history(client, runs[0].info.run_id, "val_error") == (
        frame["epoch"].tolist(), frame["val_error"].tolist())


def test_a_sweep_is_one_experiment(cifar_root, tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.train", "-m", "seed=0,1",
                             f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20",
                             "data.val_size=20", "tracking=mlflow", f"hydra.sweep.dir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = runs_in(tmp_path)
    assert len(runs) == 2 and len({r.info.experiment_id for r in runs}) == 1
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(runs_in(tmp_path)[1]) == 2 and len(gather([tmp_path])[0]) == 2   # artifacts are no runs


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


@pytest.fixture
def mlflow_server(tmp_path):
    """An MLflow server on 127.0.0.1 (a free port), its store in tmp_path -> its URL; stopped after."""
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1",
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--artifacts-destination", str(tmp_path / "server-artifacts")],
                              cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow server did not answer within 180 s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_a_server_answers_a_rest_search_with_the_run(cifar_root, tmp_path, mlflow_server):
    run(tracked(cifar_root, f"tracking.uri={mlflow_server}", "tracking.experiment=served",
                "train.epochs=2"), tmp_path / "run")
    experiment = call(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=served")
    found = call(f"{mlflow_server}/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [experiment["experiment"]["experiment_id"]]})["runs"]
    assert [r["info"]["run_name"] for r in found] == ["run"]
    metrics = {m["key"]: m for m in found[0]["data"]["metrics"]}
    frame = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["val_error"]["step"] == 2
    assert metrics["val_error"]["value"] == pytest.approx(frame["val_error"].iloc[-1], rel=1e-12)
    assert found[0]["info"]["status"] == "FINISHED"


def fail_artifacts(monkeypatch):
    """Every artifact upload fails as on a full disk."""
    def log_artifact(self, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(MlflowClient, "log_artifact", log_artifact)


@pytest.mark.parametrize("fault", ["missing", "locked", "full"])
def test_a_failing_store_costs_one_warning_and_training_goes_on(cifar_root, tmp_path, monkeypatch,
                                                                caplog, fault):
    more = ["train.epochs=2"]
    if fault == "missing":                          # a store that cannot be: under a plain file
        (tmp_path / "a file").write_text("")
        more.append(f"tracking.uri=sqlite:///{tmp_path / 'a file' / 'mlflow.db'}")
    elif fault == "locked":
        run(tracked(cifar_root, "train.epochs=1"), tmp_path / "first")    # creates the database
        lock = sqlite3.connect(tmp_path / "mlflow.db", timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
    else:
        fail_artifacts(monkeypatch)
    with caplog.at_level("WARNING", logger="experiments.tracking"):
        metrics = run(tracked(cifar_root, *more), tmp_path / "run")
    if fault == "locked":
        lock.rollback()
        lock.close()
    warned = [r for r in caplog.records if r.name == "experiments.tracking"]
    assert len(warned) == 1 and "training goes on" in warned[0].getMessage()
    assert len(metrics) == 2
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
