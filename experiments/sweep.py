"""Sweeps that survive a bad job: a failed job records why, and the sweep ends listing them.

In a multirun the main job catches its own failure (a bad setting, a refused run
folder, an error in training), logs it and records it as
``SWEEP_DIR/.failed_jobs/JOB_NUM.json`` (its folder, overrides and error), so the
launcher goes on to the other jobs. ``FailedJobs``, a Hydra callback, clears those
records when a multirun starts; when it ends, it logs every failed job and why, and
exits with status 1.
"""
import json
import logging
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from .io import atomic_write

log = logging.getLogger(__name__)
FAILED_DIR = ".failed_jobs"


def record_failure(hydra_cfg, err):
    """Log a multirun job's exception ``err`` and record it for ``FailedJobs``; ``hydra_cfg`` is
    the job's HydraConfig."""
    folder = hydra_cfg.runtime.output_dir
    log.error("job %d (%s) failed: %s: %s", hydra_cfg.job.num, folder, type(err).__name__, err,
              exc_info=err)
    record = {"job": hydra_cfg.job.num, "folder": folder, "overrides": list(hydra_cfg.overrides.task),
              "error": f"{type(err).__name__}: {err}"}
    path = Path(hydra_cfg.sweep.dir) / FAILED_DIR / f"{hydra_cfg.job.num}.json"
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=2).encode()))


def failed_jobs(sweep_dir):
    """The failure records of a sweep folder, by job number -> list of dicts."""
    records = [json.loads(p.read_text()) for p in (Path(sweep_dir) / FAILED_DIR).glob("*.json")]
    return sorted(records, key=lambda record: record["job"])


class FailedJobs(Callback):
    """Hydra callback: a multirun ends listing its failed jobs, and with exit status 1 if any."""

    def on_multirun_start(self, config, **kwargs):
        shutil.rmtree(Path(config.hydra.sweep.dir) / FAILED_DIR, ignore_errors=True)

    def on_multirun_end(self, config, **kwargs):
        failed = failed_jobs(config.hydra.sweep.dir)
        if not failed:
            return
        lines = [f"  #{r['job']} {' '.join(r['overrides'])} ({r['folder']}): {r['error']}" for r in failed]
        log.error("%d job(s) of the sweep failed, the others ran:\n%s", len(failed), "\n".join(lines))
        sys.exit(1)
