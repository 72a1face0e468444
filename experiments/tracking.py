"""Runs logged to MLflow beside their folders (``tracking=mlflow``), for browsing many of them.

Each run folder is one MLflow run, named after the folder: the flattened settings
as params, every metrics.csv column as a metric per epoch (step = epoch), the
provenance as tags, and summary.json, metrics.csv and ``curves.png`` (its curves)
as artifacts. The store is ``tracking.uri`` (any MLflow tracking URI), by default
an SQLite database ``mlflow.db`` in the output root (the sweep folder under ``-m``,
else the run folder's parent), the artifacts in ``mlartifacts/`` beside it. A
sweep is one MLflow experiment, named by ``tracking.experiment`` or else after its
output root. The run's id is kept in the run folder (``mlflow_run.json``), so a
resumed run continues its own MLflow run, never a second one. The metrics logged
are read from metrics.csv: every epoch it holds that the MLflow run lacks (an
epoch trained while the store was away, or untracked) is logged at the next epoch
or at the end.

The store never stops training: the first call to fail (MLflow missing, the
database locked or unreachable, the disk full) logs one warning and turns the
tracking of this run off; metrics.csv stays the record.
"""
import json
import logging
import math
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pandas as pd
from omegaconf import OmegaConf

from .checkpoint import flatten
from .io import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

log = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run.json"
DATABASE = "mlflow.db"
ARTIFACTS = "mlartifacts"
PARAM_LENGTH = 6000        # MLflow's longest param value
BATCH = 100                # MLflow's most params per log_batch call


def store_uri(tracking_cfg, root):
    """The tracking URI: ``tracking.uri``, else the SQLite database in the output root ``root``."""
    return tracking_cfg.uri or f"sqlite:///{Path(root).resolve() / DATABASE}"


@contextmanager
def tracked(cfg, out_dir, root):
    """The tracker of the run folder ``out_dir`` under the output root ``root`` for the block:
    an MlflowTracker for ``tracking=mlflow``, else NoTracking. Its MLflow run ends FINISHED when
    the block does, KILLED when it is interrupted, FAILED on any other exception (which
    propagates); a launch that fails before its first epoch leaves MLflow untouched."""
    mlflow = cfg.tracking.name == "mlflow"
    tracker = MlflowTracker(cfg, Path(out_dir), Path(root)) if mlflow else NoTracking()
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.finish("KILLED")
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")


class NoTracking:
    """``tracking=none``: the run folder is the only record."""

    def log_epoch(self, provenance=None):
        pass

    def finish(self, status):
        pass


class MlflowTracker:
    """One run folder's MLflow run, opened at its first use. Every method is a no-op once the
    store has failed."""

    def __init__(self, cfg, out_dir, root):
        self.cfg, self.out_dir, self.root = cfg, out_dir, root
        self.client, self.run_id, self.logged, self.failed = None, None, set(), False

    def _guard(self, action):
        """Call ``action()``; the first exception turns tracking off with one warning."""
        if self.failed:
            return
        try:
            action()
        except Exception as err:                  # noqa: BLE001  (no store fault stops training)
            self.failed = True
            first_line = str(err).strip().split("\n")[0]
            log.warning("MLflow tracking of %s is off from here (%s: %s); training goes on and %s "
                        "stays the record", self.out_dir, type(err).__name__, first_line,
                        self.out_dir / "metrics.csv")

    def _open(self):
        """Open (or continue) the MLflow run, log the settings it lacks, learn its logged epochs."""
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        cfg, root = self.cfg, self.root
        uri = store_uri(cfg.tracking, root)
        if uri.startswith(("http://", "https://")):          # a server that is down: fail soon
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self.client = MlflowClient(tracking_uri=uri)
        experiment_id = self._experiment(cfg.tracking.experiment or str(Path(root).resolve()),
                                         None if cfg.tracking.uri else
                                         (Path(root).resolve() / ARTIFACTS).as_uri())
        self.run_id = self._saved_run(uri)
        if self.run_id is None:
            run = self.client.create_run(experiment_id, run_name=self.out_dir.name,
                                         tags={"run_folder": str(self.out_dir.resolve())})
            self.run_id = run.info.run_id
            record = json.dumps({"tracking_uri": uri, "run_id": self.run_id}, indent=2).encode()
            atomic_write(self.out_dir / RUN_ID_FILE, lambda f: f.write(record))
            log.info("MLflow run %s in %s", self.run_id, uri)
        else:
            self.client.update_run(self.run_id, status="RUNNING")
            log.info("continuing MLflow run %s in %s", self.run_id, uri)
        logged = self.client.get_run(self.run_id).data.params       # immutable once logged
        settings = flatten(OmegaConf.to_container(cfg, resolve=True))
        params = [Param(key, str(value)[:PARAM_LENGTH]) for key, value in settings.items()
                  if key not in logged]
        for start in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + BATCH])
        self.logged = {m.step for m in self.client.get_metric_history(self.run_id, "test_error")}

    def _experiment(self, name, artifact_location):
        """The id of the experiment ``name``, created when missing (by this job or another)."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:                   # another job of the sweep created it meanwhile
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _saved_run(self, uri):
        """The run id kept in the run folder when it is of this store and the run still exists."""
        path = self.out_dir / RUN_ID_FILE
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        if saved.get("tracking_uri") != uri:
            log.info("%s names a run of another store (%s); starting a run in %s", path,
                     saved.get("tracking_uri"), uri)
            return None
        from mlflow.exceptions import MlflowException
        try:
            return self.client.get_run(saved["run_id"]).info.run_id
        except MlflowException:
            log.info("%s names run %s, which %s no longer holds; starting a new one", path,
                     saved["run_id"], uri)
            return None

    def _sync(self):
        """Open the run if need be; log every metrics.csv row that it lacks (its columns at step
        epoch) and the run folder's summary.json and metrics.csv -> the rows (dicts)."""
        from mlflow.entities import Metric

        if self.run_id is None:
            self._open()
        path = self.out_dir / "metrics.csv"
        rows = pd.read_csv(path).to_dict("records") if path.exists() else []
        now = int(time.time() * 1000)
        for row in rows:
            if int(row["epoch"]) in self.logged:
                continue
            metrics = [Metric(key, float(value), now, int(row["epoch"])) for key, value in row.items()
                       if key != "epoch"]
            self.client.log_batch(self.run_id, metrics=metrics)
            self.logged.add(int(row["epoch"]))
        for name in ("summary.json", "metrics.csv"):
            if (self.out_dir / name).exists():
                self.client.log_artifact(self.run_id, str(self.out_dir / name))
        return rows

    def log_epoch(self, provenance=None):
        """After an epoch: ``_sync``, and the provenance (flattened, as tags)."""
        def log_all():
            self._sync()
            if provenance is not None:
                for key, value in flatten(provenance, "provenance").items():
                    self.client.set_tag(self.run_id, key, str(value)[:PARAM_LENGTH])
        self._guard(log_all)

    def finish(self, status):
        """End the MLflow run with ``status`` after a last ``_sync`` and its curves as curves.png;
        nothing when it was never opened and the launch did not finish (it failed before its
        first epoch: there is nothing to record)."""
        def end():
            if self.run_id is None and status != "FINISHED":
                return
            rows = self._sync()
            if rows:
                with tempfile.TemporaryDirectory() as folder:
                    plot_curves(rows, Path(folder) / "curves.png")
                    self.client.log_artifact(self.run_id, str(Path(folder) / "curves.png"))
            self.client.set_terminated(self.run_id, status=status)
        self._guard(end)


def plot_curves(rows, path):
    """Error rates (test, validation where held out, training) and NLLs per epoch of one run's
    metrics ``rows`` (dicts of metrics.csv columns), side by side, to ``path``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] for row in rows]
    for ax, what, columns, scale in ((axes[0], "error (%)", ("test_error", "val_error", "train_error"), 100),
                                     (axes[1], "NLL (nats)", ("test_nll", "val_nll"), 1)):
        for column in columns:
            values = [row.get(column, math.nan) for row in rows]
            if not all(math.isnan(value) for value in values):
                ax.plot(epochs, [scale * value for value in values], marker="o", ms=3,
                        label=column.split("_")[0])
        ax.set(xlabel="epoch", ylabel=what)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
