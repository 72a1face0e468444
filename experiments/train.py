"""Main job: train and evaluate a network on CIFAR-10, one metrics.csv row per epoch.

    python -m experiments.train                                   # one TAGI epoch, the defaults
    python -m experiments.train train.epochs=3 data.train_limit=5000 backend=numba
    python -m experiments.train hydra.run.dir=runs/a              # choose the run folder
    python -m experiments.train experiment=cifar10_3conv          # the published table, both methods

The run folder gets, rewritten atomically after every epoch in this order:
``summary.json`` (the latest scores, ECE included, the settings and the provenance:
``experiments.provenance``), ``metrics.csv`` (epoch, test_error, test_nll,
train_error, sigma_v, seconds, threads: error rates as fractions, seconds of training
without evaluation, the CPU threads it ran with; with ``data.val_size=N`` also
val_error and val_nll, of the N training images held out), ``test_probs.npz`` (the
latest test-set class probabilities and labels) and ``checkpoint.npz``; with
``tracking=mlflow`` the run is logged to MLflow too (``experiments.tracking``).
Rerunning the same command resumes from the checkpoint (a run stopped before its
first checkpoint trains again from the start) and ends with the same metrics as an
uninterrupted run, wherever it was stopped.
"""
import json
import logging
import os
import sys
import resource
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import OmegaConf

from tagi.backends import gpu_missing
from tagi.checks import check_int
from tagi.data import (Batches, cifar10_source, download_cifar10, load_cifar10, preprocess_stats,
                       stratified_split)
from tagi.divergence import DivergenceError, nonfinite_keys
from tagi.metrics import error_rate, expected_calibration_error, nll, reliability_sums
from tagi.models import architecture
from tagi.threads import limit_threads

from . import checkpoint, provenance, tracking
from .io import atomic_write, remove_stale_tmp, write_csv
from .lock import LOCK_NAME, LinkedRunFolderError, hold_run_folder, refuse_links, stop_run_log
from .methods import initialisation, make_method, method_settings
from .settings import SettingsError, validate
from .sweep import record_failure

log = logging.getLogger(__name__)


class RunFolderError(RuntimeError):
    """A run folder holds results that this run would overwrite; the message names the folder."""


COLUMNS = ["epoch", "test_error", "test_nll", "train_error", "sigma_v", "seconds", "threads"]
VAL_COLUMNS = ["val_error", "val_nll"]     # with a validation split (data.val_size > 0) only
# Hydra's record of the job, written by the run itself (hydra.output_subdir is null) once the
# folder is accepted, so that a refused or a finished run leaves the folder's record as it was
JOB_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")
# every file a run writes in its folder; none may be a symbolic link
RUN_FILES = (LOCK_NAME, "train.log", *JOB_FILES, "metrics.csv", "summary.json", "test_probs.npz",
             "checkpoint.npz", tracking.RUN_ID_FILE)
# Hydra names a run folder after its overrides; "defaults" when there are none
OmegaConf.register_new_resolver("run_name", lambda overrides: overrides or "defaults", replace=True)


def model_spec(model_cfg):
    """The model config -> architecture spec: the named one (built from ``width`` when the config
    sets one), or the layers given in the config."""
    if model_cfg.get("layers"):
        if not model_cfg.get("input_shape"):
            raise ValueError("a model config that lists `layers` needs an `input_shape` too")
        return OmegaConf.to_container(model_cfg, resolve=True)
    width = model_cfg.get("width")
    return architecture(model_cfg.name, **({} if width is None else {"width": width}))


def load_data(data_cfg, progress):
    """The data config -> tagi.data.Dataset, cut to train_limit / test_limit images; with
    ``download`` the archive is fetched from ``url`` first when ``root`` holds no CIFAR-10."""
    root = to_absolute_path(data_cfg.root)
    if data_cfg.download:
        download_cifar10(root, data_cfg.url, data_cfg.md5, progress)
    data = load_cifar10(root, verify_md5=data_cfg.verify_md5, md5=data_cfg.md5)
    for split, limit in (("train", data_cfg.train_limit), ("test", data_cfg.test_limit)):
        if limit is not None:
            setattr(data, f"x_{split}", getattr(data, f"x_{split}")[:limit])
            setattr(data, f"y_{split}", getattr(data, f"y_{split}")[:limit])
    return data


def split_settings(data_cfg):
    """{"val_size", "split_seed"} of a run with a validation split, {} without one (so runs
    without one keep the identity and the summary settings they always had)."""
    return ({"val_size": data_cfg.val_size, "split_seed": data_cfg.split_seed}
            if data_cfg.val_size else {})


def hold_out(data, data_cfg):
    """Take the validation split (``data.val_size`` images of the training set, stratified by
    class, drawn by ``data.split_seed``: ``tagi.data.stratified_split``) out of ``data`` ->
    (images, labels) of the held-out images, or None when ``val_size`` is 0; ``data`` keeps the
    others, in their order. SettingsError when val_size is not below the training images."""
    if not data_cfg.val_size:
        return None
    if data_cfg.val_size >= len(data.y_train):
        raise SettingsError(f"bad setting: data.val_size must be below the {len(data.y_train)} "
                            f"training images, got {data_cfg.val_size}")
    kept, held = stratified_split(data.y_train, data_cfg.val_size, data_cfg.split_seed)
    x_val, y_val = data.x_train[held], data.y_train[held]
    data.x_train, data.y_train = data.x_train[kept], data.y_train[kept]
    return x_val, y_val


def run_identity(cfg, spec):
    """The settings a checkpoint must share with this run to be resumed (JSON-normalised)."""
    identity = {"model_name": cfg.model.name, "model": spec, "method": method_settings(cfg),
                "data": {**{key: cfg.data[key] for key in ("name", "num_classes", "preprocess",
                                                            "train_limit", "test_limit")},
                         **split_settings(cfg.data)},
                "seed": cfg.seed, "dtype": cfg.dtype, "batch_size": cfg.train.batch_size}
    return json.loads(json.dumps(identity))


def check_backend(name):
    """Refuse ``backend=cupy`` where no GPU can be used, before any data is read."""
    if name == "cupy" and gpu_missing() is not None:
        raise SettingsError(f"setting backend: cupy needs a GPU and none can be used here "
                            f"({gpu_missing()}); choose backend=numba, numpy or auto")


def run(cfg, out_dir, on_start=None, output_root=None, on_epoch=None):
    """Train up to cfg.train.epochs epochs in ``out_dir``, resuming its checkpoint -> metrics DataFrame.

    The settings are checked first (``settings.validate``, ``check_backend``), before any
    data is read; a folder where a file the run writes is a symbolic link is refused
    (``lock.refuse_links``). Then the run holds its folder for its whole life (a second
    run there is refused at once) and removes the temporary files of writes that a
    killed run left behind. ``on_start(out_dir)``, if given, is called once the run is
    accepted (not refused, not finished already), just before it trains; ``on_epoch(row)``, if
    given, with each epoch's metrics row once the epoch is saved, the resumed epochs' first (an
    exception it raises ends the run there, its epochs kept). ``output_root`` (default: the
    folder's parent) holds the tracking store (``experiments.tracking``).
    """
    cfg = validate(cfg)
    check_backend(cfg.backend)
    refuse_links(out_dir, RUN_FILES)
    with hold_run_folder(out_dir) as out_dir:
        remove_stale_tmp(out_dir)
        with tracking.tracked(cfg, out_dir, output_root or out_dir.parent) as tracker:
            return _train(cfg, out_dir, tracker, on_start, on_epoch or (lambda row: None))


# settings summaries record since a later version: a summary without one ran with this value
RECORDED_LATER = {"preprocess": "standardize", "init": "He", "width": None}


def committed_results(cfg, out_dir):
    """A run folder holding results but no checkpoint (committed runs keep only metrics.csv and
    summary.json) -> its metrics when its summary says it finished at least the planned epochs
    with this run's settings (the folder's log gets nothing more: ``lock.stop_run_log``), else
    RunFolderError: training from scratch would overwrite them. None when there is a
    checkpoint to resume from, no results, results of this run's first epoch only (a run
    stopped before that epoch's checkpoint: training again gives them again), or ``resume``
    is off."""
    metrics_path, summary_path = out_dir / "metrics.csv", out_dir / "summary.json"
    if not cfg.resume or (out_dir / "checkpoint.npz").exists() or not metrics_path.exists():
        return None
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    ours = run_settings(cfg)
    settings = [key for key in dict.fromkeys([*ours, "val_size", "split_seed"])   # a split either side
                if key not in ("planned_epochs", "backend", "config")]
    differ = [key for key in settings if summary.get(key, RECORDED_LATER.get(key)) != ours.get(key)]
    if summary.get("status") == "finished" and summary.get("epochs", 0) >= cfg.train.epochs and not differ:
        stop_run_log(out_dir)
        log.info("%s finished %d epochs already (no checkpoint to resume from): nothing to train",
                 out_dir, summary["epochs"])
        return pd.read_csv(metrics_path)
    if summary.get("status") == "unfinished" and summary.get("epochs") == 1 and not differ:
        log.info("%s holds this run's epoch 1 but not its checkpoint: training from the start", out_dir)
        return None
    found = (f"settings differ in {', '.join(differ)}" if differ else
             f"status {summary.get('status', 'unknown')} after {summary.get('epochs', '?')} epochs")
    raise RunFolderError(f"{out_dir} holds results ({found}) but no checkpoint.npz to resume from; "
                         f"training again would overwrite them: restore the checkpoint, choose "
                         f"another folder, or pass resume=false to start over")


def metric_columns(cfg):
    """The columns of this run's metrics.csv: COLUMNS, and VAL_COLUMNS with a validation split."""
    return COLUMNS + (VAL_COLUMNS if cfg.data.val_size else [])


def _train(cfg, out_dir, tracker, on_start, on_epoch):
    spec = model_spec(cfg.model)
    identity = run_identity(cfg, spec)
    done = committed_results(cfg, out_dir)
    if done is not None:
        return done
    data = load_data(cfg.data, cfg.progress)
    held_out = hold_out(data, cfg.data)
    method = make_method(cfg, spec, cfg.data.num_classes)
    rng = np.random.default_rng(cfg.seed)
    dtype = np.dtype(cfg.dtype)
    mean, std = preprocess_stats(cfg.data.preprocess)
    batch_options = {"mean": mean, "std": std, "dtype": dtype}
    train = Batches(data.x_train, data.y_train, cfg.train.batch_size, rng=rng, **batch_options)
    test = Batches(data.x_test, data.y_test, max(cfg.train.batch_size, 256), **batch_options)
    val = None if held_out is None else Batches(*held_out, max(cfg.train.batch_size, 256),
                                                **batch_options)
    launch = provenance.provenance(cifar10_source(to_absolute_path(cfg.data.root)),
                                   method.backend.NAME, dtype)
    columns = metric_columns(cfg)
    log.info("%r\n%d train / %d validation / %d test images, run folder %s", method,
             len(data.y_train), 0 if val is None else len(val.labels), len(data.y_test), out_dir)

    rows, ckpt = [], out_dir / "checkpoint.npz"
    if cfg.resume and ckpt.exists():
        arrays, meta = checkpoint.load(ckpt)
        checkpoint.check_identity(ckpt, meta["identity"], identity)
        method.load_state(arrays, meta["method"])
        rng.bit_generator.state = meta["rng"]
        rows = meta["rows"]
        write_csv(pd.DataFrame(rows, columns=columns), out_dir / "metrics.csv")
        log.info("resumed from %s after epoch %d", ckpt, len(rows))
    if on_start is not None:
        on_start(out_dir)
    for row in rows:
        on_epoch(row)

    for epoch in range(len(rows) + 1, cfg.train.epochs + 1):
        try:
            probs, labels, fit, seconds, arrays, method_meta = train_and_predict(
                method, train, test, epoch, cfg)
            scores = validation_scores(method, val, cfg.progress)
        except DivergenceError as err:
            err.epoch = epoch
            mark_diverged(out_dir, cfg, rows, err)
            raise
        rows.append({"epoch": epoch, "test_error": error_rate(probs, labels),
                     "test_nll": nll(probs, labels), "train_error": fit["train_error"],
                     "sigma_v": fit.get("sigma_v", float("nan")), "seconds": seconds,
                     "threads": provenance.thread_count(), **scores})
        write_summary(out_dir, cfg, rows, probs, labels, launch)   # first: results never lack it
        write_csv(pd.DataFrame(rows, columns=columns), out_dir / "metrics.csv")
        atomic_write(out_dir / "test_probs.npz",
                     lambda f: np.savez_compressed(f, probs=probs.astype(np.float32), labels=labels))
        checkpoint.save(ckpt, arrays, {"identity": identity, "method": method_meta,   # last: the
                                       "rng": rng.bit_generator.state, "rows": rows})  # epoch is done
        tracker.log_epoch(provenance.with_threads(launch, rows))
        log.info("epoch %d: test error %.4f, test NLL %.4f, train error %.4f, %.1f s (%.0f images/s)",
                 epoch, rows[-1]["test_error"], rows[-1]["test_nll"], fit["train_error"], seconds,
                 fit["images"] / seconds)
        on_epoch(rows[-1])
    metrics = pd.DataFrame(rows, columns=columns)
    log.info("results in %s\n%s", out_dir / "metrics.csv", metrics.to_markdown(index=False))
    return metrics


def validation_scores(method, val, progress):
    """{"val_error", "val_nll"} of the held-out images ``val`` (Batches), {} when there are none;
    DivergenceError if a prediction is not finite."""
    if val is None:
        return {}
    probs, labels = method.predict(val, progress)
    if not np.isfinite(probs).all():
        raise DivergenceError("non-finite validation probabilities")
    return {"val_error": error_rate(probs, labels), "val_nll": nll(probs, labels)}


def train_and_predict(method, train, test, epoch, cfg):
    """One epoch of training, then the test predictions -> (probs, labels, fit, seconds, arrays, meta),
    arrays and meta the method's state; DivergenceError if a parameter or a prediction is not finite."""
    start = time.perf_counter()
    fit = method.train_epoch(train, epoch, cfg.progress)
    method.backend.synchronize()
    seconds = time.perf_counter() - start
    arrays, meta = method.state()
    bad = nonfinite_keys(arrays)
    if bad:
        raise DivergenceError("non-finite parameters", layers=bad)
    probs, labels = method.predict(test, cfg.progress)
    if not np.isfinite(probs).all():
        raise DivergenceError("non-finite test probabilities")
    return probs, labels, fit, seconds, arrays, meta


def peak_rss_mib():
    """This process's peak resident memory in MiB (VmHWM: since its exec, not its parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:                        # no /proc: ru_maxrss, KiB on Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_settings(cfg):
    """The settings that summary.json records and experiments.table keys its rows by."""
    return {"method": cfg.method.name, "model": cfg.model.name, "seed": cfg.seed,
            "planned_epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size,
            "backend": cfg.backend, "dtype": cfg.dtype, "train_limit": cfg.data.train_limit,
            "test_limit": cfg.data.test_limit, **split_settings(cfg.data), "debug_run": cfg.debug_run,
            "preprocess": cfg.data.preprocess, "init": initialisation(cfg), "width": cfg.model.get("width"),
            "config": OmegaConf.to_container(cfg, resolve=True)}


def write_summary(out_dir, cfg, rows, probs, labels, launch=None):
    """summary.json: status ("finished" or, before the planned epochs are done, "unfinished"),
    the latest epoch's scores (its test probabilities ``probs`` (N, K) against ``labels`` (N,) give
    the ECE and the reliability bins as sums, ``reliability_sums``; the validation scores where
    there is a split), the first epoch's error, time, the settings, and the provenance
    (``launch``, from ``provenance.provenance``, with the threads of every epoch)."""
    last = rows[-1]
    summary = {"status": "finished" if last["epoch"] >= cfg.train.epochs else "unfinished",
               "epochs": last["epoch"], "test_error": last["test_error"], "test_nll": last["test_nll"],
               **{key: last[key] for key in VAL_COLUMNS if key in last},
               "test_ece": expected_calibration_error(probs, labels),
               "reliability": reliability_sums(probs, labels), "error_e1": rows[0]["test_error"],
               "train_seconds": sum(row["seconds"] for row in rows), "peak_rss_mib": peak_rss_mib(),
               **run_settings(cfg)}
    if launch is not None:
        summary["provenance"] = provenance.with_threads(launch, rows)
    atomic_write(out_dir / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))


def mark_diverged(out_dir, cfg, rows, err):
    """summary.json says the run diverged and where; the scores it keeps are the last good epoch's."""
    path = out_dir / "summary.json"
    summary = json.loads(path.read_text()) if rows and path.exists() else {"epochs": len(rows)}
    summary.update(run_settings(cfg), status="diverged", error=str(err), diverged_epoch=err.epoch)
    atomic_write(path, lambda f: f.write(json.dumps(summary, indent=2).encode()))
    log.error("%s; %s", err, f"the checkpoint of epoch {len(rows)} is kept" if rows else
              "no checkpoint was written (the run diverged in its first epoch)")


def job_threads(cfg, launcher):
    """CPU threads for this job: ``cfg.threads``, else under the joblib launcher the cores
    divided among its parallel jobs (n_jobs=-1: one per core), else None (every core)."""
    if cfg.threads is not None:
        return check_int("threads", cfg.threads, 1)
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    cores = os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs") or -1
    parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)   # joblib's reading of n_jobs
    return max(1, cores // parallel)


def hydra_job_files(cfg):
    """Hydra's record of the running job, as Hydra writes it -> {path in the run folder: YAML}."""
    hydra_cfg = HydraConfig.instance().cfg
    texts = (OmegaConf.to_yaml(cfg), OmegaConf.to_yaml(hydra_cfg),
             OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task))
    return dict(zip(JOB_FILES, texts))


def job(cfg, out_dir):
    """One job of the main app: its settings checked, its threads capped, its run in ``out_dir``;
    once the run is accepted, Hydra's record of the job is written and the thread cap logged."""
    files = hydra_job_files(cfg)
    cfg = validate(cfg)
    threads = job_threads(cfg, HydraConfig.get().launcher)

    def on_start(folder):
        for name, text in files.items():
            atomic_write(folder / name, lambda f, text=text: f.write(text.encode()))
        if threads is not None:
            log.info("CPU threads capped at %d", threads)
    with limit_threads(threads):
        run(cfg, out_dir, on_start, output_root(HydraConfig.get()))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        refuse_links(out_dir, RUN_FILES)   # before anything, this error included, goes to its log
        job(cfg, out_dir)
    except Exception as err:
        if isinstance(err, LinkedRunFolderError):
            stop_run_log(out_dir)
        if hydra_cfg.mode == RunMode.MULTIRUN:   # the job fails alone; the sweep lists it at its end
            record_failure(hydra_cfg, err)
            return
        if isinstance(err, (SettingsError, LinkedRunFolderError)):   # its message, not a traceback
            log.error("%s", err)
            sys.exit(2)
        raise


def output_root(hydra_cfg):
    """Where the tracking store lives by default: the sweep folder of a multirun, else None
    (the run folder's parent)."""
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(to_absolute_path(hydra_cfg.sweep.dir))
    return None


if __name__ == "__main__":
    main()
