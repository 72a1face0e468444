"""Tuning app: an Optuna study of one method's settings, each trial a run of the main job.

    python -m experiments.tune method=tagi          # run the study (or the trials it lacks), export it
    python -m experiments.tune method=bp 'overrides=["backend=numba","threads=2"]'
    python -m experiments.tune method=bp action=export out=experiments/results/tuned_3conv
    python -m experiments.tune method=bp action=best     # the main-job command of the final runs
    python -m experiments.tune method=bp action=launch   # run it

A trial is a run of the main job (``experiments.train.run``) with the trial's values of the
method's search space (``conf/tune/<method>.yaml``) and ``val_size`` training images held out,
for ``share`` of the method's published epochs (``method.epochs``); settings counted in epochs
(the space's ``epoch_keys``) are shortened by the same share. After each epoch the trial
reports its validation error, and the pruner may stop it there; its value is the validation
error at its last epoch, with the validation NLL recorded beside it. A run that diverges ends
its trial pruned, the reason recorded, never scored.

The study folder (``conf/tuning.yaml``: ``tuning/<study_name>``) holds the study (``study.db``,
Optuna's SQLite storage), one run folder per trial (``trials/<number>``, each with its
``train.log``) and the app's log (``tune.log``). One tuner at a time holds it
(``experiments.lock``). A rerun with the same settings continues the study until ``n_trials``
trials have finished (completed or pruned): finished trials are never run again, and a trial
left running by a tuner that was killed is marked failed and its settings run again as a new
trial in the same run folder, resuming from its checkpoint. A rerun with other settings is
refused, naming them (those the main job lets a run change on resume, such as the backend or
the threads, excepted).

Exports: ``trials_<method>.csv`` (one row per trial: its number, state, settings, objective,
validation error and NLL at its last epoch, epochs, run folder and a note),
``history_<method>.png`` (the optimisation history) and ``importance_<method>.png`` (fANOVA
parameter importances). ``best`` prints the main-job multirun of the best trial's settings on
every training image for the published epochs, one run per ``final.seeds``, in ``final.dir``.

Optuna's Hydra sweeper plugin (hydra-optuna-sweeper 1.3.0) requires Optuna below 3, so this
app drives a current Optuna itself.
"""
import json
import logging
import shlex
import subprocess
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import hydra
import matplotlib
import optuna
import pandas as pd
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tagi.checks import check_choice, check_int, check_number
from tagi.divergence import DivergenceError
from tagi.threads import limit_threads

from . import train
from .checkpoint import flatten
from .io import atomic_write, remove_stale_tmp, write_csv
from .lock import FolderBusyError, LinkedRunFolderError, RunLog, hold_run_folder
from .settings import METHODS, SettingsError, validate

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

log = logging.getLogger(__name__)

ACTIONS = ("study", "export", "best", "launch")
PARAM_FIELDS = {"float": {"key", "type", "low", "high", "log"}, "int": {"key", "type", "low", "high", "log"},
                "categorical": {"key", "type", "choices"}}      # the fields of each parameter type
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)   # the trials that n_trials counts
DB_NAME = "study.db"
TRIALS_DIR = "trials"
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"   # Hydra's file log format
_ABSENT = object()


@dataclass
class Plan:
    """A study's checked settings: what each trial runs, and what a rerun must share."""
    method: str
    space: dict          # parameter name -> {"key", "type", and "low", "high", "log" or "choices"}
    epochs: int          # of a trial
    published_epochs: int
    shortened: dict      # the space's epoch_keys in a trial: main-job key -> value
    overrides: list      # of every trial and final run: the method, then the `overrides` setting
    defining: list       # those of them that a rerun must share (not a launch detail)
    val_size: int
    seed: int

    def settings(self):
        """What the study records, and a rerun must match (JSON values)."""
        return json.loads(json.dumps({
            "method": self.method, "space": self.space, "epochs": self.epochs,
            "shortened": self.shortened, "overrides": self.defining, "val_size": self.val_size,
            "seed": self.seed}))

    def trial_overrides(self, params):
        """The main-job overrides of a trial with the values ``params`` (parameter name -> value)."""
        return [*self.overrides, f"seed={self.seed}", f"data.val_size={self.val_size}",
                *(override(self.space[name]["key"], value) for name, value in params.items()),
                *(override(key, value) for key, value in self.shortened.items()),
                f"train.epochs={self.epochs}"]


def override(key, value):
    """``key=value`` as a Hydra override that parses back to ``value``: strings that are not a
    plain word, or that would read as another type, quoted."""
    plain = isinstance(value, str) and value.isidentifier() and value.lower() not in (
        "true", "false", "null", "nan", "inf")
    return f"{key}={value if plain else repr(value)}"


def main_config(overrides, hydra_node=False):
    """The main job's config with ``overrides`` (composed in this app's or a test's Hydra context);
    SettingsError when they do not compose."""
    try:
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)
    except ConfigCompositionException as err:
        raise SettingsError(f"setting overrides: {err}") from err


def check_param(name, spec):
    """A search-space entry (``name`` its config path) -> a plain dict; ValueError names the fault."""
    spec = OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec
    if not isinstance(spec, dict):
        raise ValueError(f"{name} must be a mapping of key, type and bounds or choices, got {spec!r}")
    kind = check_choice(f"{name}.type", spec.get("type"), tuple(PARAM_FIELDS))
    unknown = sorted(set(spec) - PARAM_FIELDS[kind])
    if unknown:
        raise ValueError(f"{name}: a {kind} parameter has no field {', '.join(unknown)} "
                         f"(its fields: {', '.join(sorted(PARAM_FIELDS[kind]))})")
    if not isinstance(spec.get("key"), str) or not spec["key"]:
        raise ValueError(f"{name}.key must name a setting of the main job, got {spec.get('key')!r}")
    if kind == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise ValueError(f"{name}.choices must be a non-empty list, got {spec.get('choices')!r}")
        return {"key": spec["key"], "type": kind, "choices": spec["choices"]}
    log_scale = spec.get("log", False)
    if not isinstance(log_scale, bool):
        raise ValueError(f"{name}.log must be true or false, got {log_scale!r}")
    if kind == "int":
        low = check_int(f"{name}.low", spec.get("low"), 1 if log_scale else -sys.maxsize)
        high = check_int(f"{name}.high", spec.get("high"), low + 1)
    else:
        low = check_number(f"{name}.low", spec.get("low"), low=0 if log_scale else None, low_open=True)
        high = check_number(f"{name}.high", spec.get("high"), low=low, low_open=True)
    return {"key": spec["key"], "type": kind, "low": low, "high": high, "log": log_scale}


def _ends(space):
    """The search space's ends to try the main job on -> [(description, {parameter: value})]: every
    parameter at its low end (a categorical one at its first choice), every one at its high end
    (last choice), and each one at one end with the others at the other (a bound between two
    settings, such as sigma_v_min <= sigma_v, is met everywhere if it is met at these)."""
    low = {name: spec["choices"][0] if spec["type"] == "categorical" else spec["low"]
           for name, spec in space.items()}
    high = {name: spec["choices"][-1] if spec["type"] == "categorical" else spec["high"]
            for name, spec in space.items()}
    ends = [("every parameter at its low end", low), ("every parameter at its high end", high)]
    for name in space if len(space) > 1 else ():
        ends += [(f"{name} at its high end, the others at their low ends", {**low, name: high[name]}),
                 (f"{name} at its low end, the others at their high ends", {**high, name: low[name]})]
    return ends


def make_plan(cfg):
    """The tuning config -> Plan. Every setting is checked before any work starts (a search-space
    key must be a setting of the main job, and the main job must accept the space's ends, ``_ends``):
    SettingsError names the bad one."""
    method = cfg.method.name
    try:
        check_choice("action", cfg.action, ACTIONS)
        check_choice("method.name", method, tuple(METHODS))
        check_int("n_trials", cfg.n_trials, 1)
        check_number("share", cfg.share, low=0, low_open=True, high=1)
        check_int("val_size", cfg.val_size, 1)
        check_int("seed", cfg.seed, 0)
        if not cfg.final.seeds:
            raise ValueError("final.seeds must list at least one seed")
        for seed in cfg.final.seeds:
            check_int("final.seeds", seed, 0)
        if not cfg.space.get("params"):
            raise ValueError(f"space.params must give at least one parameter (conf/tune/{method}.yaml)")
        space = {name: check_param(f"space.params.{name}", spec) for name, spec in cfg.space.params.items()}
    except ValueError as err:
        raise SettingsError(f"bad setting: {err}") from None
    published = main_config([f"method={method}"]).method
    changed = _differences(OmegaConf.to_container(published), OmegaConf.to_container(cfg.method))
    if changed:
        raise SettingsError(f"setting method: the trials' method settings are main-job overrides "
                            f"(overrides=[method.KEY=VALUE]), not the app's; changed here: "
                            f"{'; '.join(changed)}")
    overrides = [f"method={method}", *cfg.overrides]
    main = main_config(overrides, hydra_node=True)
    for name, spec in space.items():
        if OmegaConf.select(main, spec["key"], default=_ABSENT) is _ABSENT:
            raise SettingsError(f"setting space.params.{name}.key: {spec['key']} is not a setting of "
                                "the main job")
    epochs = max(1, round(cfg.share * main.method.epochs))
    shortened = {}
    for key in cfg.space.get("epoch_keys") or []:
        value = OmegaConf.select(main, key, default=_ABSENT)
        if not isinstance(value, int) or isinstance(value, bool):
            raise SettingsError(f"setting space.epoch_keys: {key} is not a main-job setting counted in "
                                f"epochs (an integer), got {None if value is _ABSENT else value!r}")
        shortened[key] = max(1, round(value * epochs / main.method.epochs))
    # the settings that a run may change on resume are launch details, not the study's
    excluded = set(main.hydra.job.config.override_dirname.exclude_keys)
    defining = [item for item in cfg.overrides if item.lstrip("+~").split("=", 1)[0] not in excluded]
    plan = Plan(method, space, epochs, main.method.epochs, shortened, overrides, defining,
                cfg.val_size, cfg.seed)
    for where, values in _ends(space):
        try:
            validate(main_config(plan.trial_overrides(values)))
        except SettingsError as err:
            raise SettingsError(f"space: the main job refuses the search space with {where}: {err}") from None
    return plan


def _differences(old, new):
    """["key: old value, now new value"] for every leaf (dotted key) where two dicts differ."""
    old, new = flatten(old), flatten(new)
    return [f"{key}: {old.get(key)!r}, now {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def open_study(cfg, plan, study_dir, create):
    """The study ``cfg.study_name`` in ``study_dir/study.db`` (created if ``create``), with the
    configured sampler and pruner; SettingsError when it is missing or was run with other settings."""
    path = Path(study_dir).resolve() / DB_NAME
    if not create and not path.exists():
        raise SettingsError(f"setting study_name: {path} does not exist: run the study first (action=study)")
    try:
        sampler, pruner = instantiate(cfg.sampler), instantiate(cfg.pruner)
    except InstantiationException as err:
        raise SettingsError(f"bad setting: sampler or pruner: {err}") from err
    options = {"study_name": cfg.study_name, "storage": f"sqlite:///{path}", "sampler": sampler,
               "pruner": pruner}
    try:
        study = (optuna.create_study(direction="minimize", load_if_exists=True, **options) if create
                 else optuna.load_study(**options))
    except KeyError:
        raise SettingsError(f"setting study_name: {path} holds no study {cfg.study_name!r}") from None
    if "seed" in cfg.sampler and study.trials:
        # a continued study's sampler is seeded on from the trials it holds: seeded as at the
        # start, it would draw the first trials' settings again
        study.sampler = instantiate(cfg.sampler, seed=cfg.sampler.seed + len(study.trials))
    ours, recorded = plan.settings(), study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", ours)
    elif recorded != ours:
        raise SettingsError(f"study {cfg.study_name!r} in {path} was run with other settings (the "
                            f"study's, then these: {'; '.join(_differences(recorded, ours))}): rerun it "
                            "with its own, or choose another study_name")
    return study


def retry_interrupted(study):
    """Mark the trials left running by a tuner that ended mid-trial failed, and queue their settings
    again, in their run folders (call it holding the study folder: no live tuner runs them)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        attrs = {"retry_of": trial.number}
        if "run_folder" in trial.user_attrs:
            attrs["run_folder"] = trial.user_attrs["run_folder"]
        study.enqueue_trial(trial.params, user_attrs=attrs)
        log.warning("trial %d was left running by a tuner that ended mid-trial: marked failed, its "
                    "settings run again%s", trial.number,
                    f", resuming {attrs['run_folder']}" if "run_folder" in attrs else "")


def suggest(trial, name, spec):
    """The trial's value of the parameter ``name`` (a checked search-space entry ``spec``)."""
    if spec["type"] == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    draw = trial.suggest_float if spec["type"] == "float" else trial.suggest_int
    return draw(name, spec["low"], spec["high"], log=spec["log"])


@contextmanager
def trial_log(folder):
    """Within the block the log goes to ``folder/train.log`` too (opened without following a link)."""
    folder.mkdir(parents=True, exist_ok=True)
    handler = RunLog(folder / "train.log", delay=True)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def run_trial(study, plan, study_dir):
    """Ask the study for a trial, train it with the main job, reporting every epoch, and tell the
    study how it ended: completed with its last validation error, pruned (by the pruner, or
    diverged), or failed (any other exception, which propagates). An interruption
    (KeyboardInterrupt) leaves it running, as a kill would: ``retry_interrupted`` runs it again."""
    trial = study.ask()
    params = {name: suggest(trial, name, spec) for name, spec in plan.space.items()}
    folder = trial.user_attrs.get("run_folder") or f"{TRIALS_DIR}/{trial.number:03d}"
    trial.set_user_attr("run_folder", folder)
    log.info("trial %d: %s, %d epochs in %s", trial.number, params, plan.epochs, folder)

    def report(row):
        trial.set_user_attr("epochs", row["epoch"])
        trial.set_user_attr("val_nll", row["val_nll"])
        trial.report(row["val_error"], row["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"trial {trial.number} pruned after epoch {row['epoch']} "
                                     f"(validation error {row['val_error']:.4f})")
    try:
        cfg = main_config(plan.trial_overrides(params))
        with trial_log(Path(study_dir) / folder), limit_threads(cfg.threads):
            metrics = train.run(cfg, Path(study_dir) / folder, on_epoch=report)
    except optuna.TrialPruned as err:
        study.tell(trial, state=TrialState.PRUNED)
        log.info("%s", err)
        return
    except DivergenceError as err:
        trial.set_user_attr("diverged", str(err))
        study.tell(trial, state=TrialState.PRUNED)
        log.warning("trial %d pruned: %s", trial.number, err)
        return
    except Exception as err:
        trial.set_user_attr("error", f"{type(err).__name__}: {err}")
        study.tell(trial, state=TrialState.FAIL)
        raise
    value = float(metrics["val_error"].iloc[-1])
    study.tell(trial, value)
    log.info("trial %d: validation error %.4f after %d epochs", trial.number, value, len(metrics))


def run_study(cfg, plan, study_dir):
    """Run the study in ``study_dir`` until ``cfg.n_trials`` trials have finished, then export it
    there -> the study."""
    study_dir = Path(study_dir)
    with hold_run_folder(study_dir):
        remove_stale_tmp(study_dir)
        study = open_study(cfg, plan, study_dir, create=True)
        retry_interrupted(study)
        while len(study.get_trials(deepcopy=False, states=FINISHED)) < cfg.n_trials:
            run_trial(study, plan, study_dir)
        export(study, plan, study_dir, cfg.n_trials)
    return study


def _note(trial, retried):
    """How a trial ended, in words (empty for a completed one)."""
    attrs = trial.user_attrs
    if trial.state == TrialState.PRUNED:
        return (f"diverged: {attrs['diverged']}" if "diverged" in attrs
                else f"pruned after epoch {trial.last_step}")
    if trial.state == TrialState.FAIL:
        if trial.number in retried:
            return f"interrupted; its settings ran again as trial {retried[trial.number]}"
        return f"failed: {attrs.get('error', 'unknown error')}"
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return trial.state.name.lower()
    return f"run again from trial {attrs['retry_of']}" if "retry_of" in attrs else ""


def trials_frame(study, plan):
    """One row per trial: number, state, the parameters, objective (completed trials only),
    val_error and val_nll at the last epoch reached, epochs, run_folder, note."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    rows = [{"number": t.number, "state": t.state.name, **{name: t.params.get(name) for name in plan.space},
             "objective": t.value if t.state == TrialState.COMPLETE else None,
             "val_error": None if t.last_step is None else t.intermediate_values[t.last_step],
             "val_nll": t.user_attrs.get("val_nll"), "epochs": t.user_attrs.get("epochs", 0),
             "run_folder": t.user_attrs.get("run_folder"), "note": _note(t, retried)} for t in trials]
    columns = ["number", "state", *plan.space, "objective", "val_error", "val_nll", "epochs",
               "run_folder", "note"]
    return pd.DataFrame(rows, columns=columns)


def _save_plot(path, draw, title):
    """Write the figure of the axes that ``draw()`` returns (an optuna.visualization.matplotlib plot)
    under ``title``."""
    with warnings.catch_warnings():      # those plots are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = draw()
    axes.set_title(title)
    figure = axes.figure
    figure.tight_layout()
    atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=120))
    plt.close(figure)


def space_markdown(plan, n_trials):
    """The search space and the budget of a study of ``n_trials`` trials, in markdown."""
    def distribution(spec):
        if spec["type"] == "categorical":
            return "categorical", ", ".join(map(str, spec["choices"]))
        kind = f"{'log-' if spec['log'] else ''}uniform{' integer' if spec['type'] == 'int' else ''}"
        return kind, f"{spec['low']:g} to {spec['high']:g}"
    lines = ["| parameter | setting | distribution | range or choices |", "|---|---|---|---|"]
    lines += [f"| {name} | `{spec['key']}` | {' | '.join(distribution(spec))} |"
              for name, spec in plan.space.items()]
    shortened = "".join(f"; `{key}` is {value} in a trial" for key, value in plan.shortened.items())
    lines += ["", f"{plan.method.upper()}: {n_trials} trials of {plan.epochs} epochs each (of the "
                  f"published {plan.published_epochs}){shortened}; {plan.val_size} training images held out."]
    return "\n".join(lines) + "\n"


def export(study, plan, out, n_trials):
    """Write ``trials_<method>.csv``, ``space_<method>.md`` (``space_markdown``),
    ``history_<method>.png`` (with a completed trial) and ``importance_<method>.png`` (with
    completed trials of two values at least) to ``out`` -> the paths written."""
    out = Path(out)
    written = [out / f"trials_{plan.method}.csv", out / f"space_{plan.method}.md"]
    write_csv(trials_frame(study, plan), written[0])
    atomic_write(written[1], lambda f: f.write(space_markdown(plan, n_trials).encode()))
    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    target = "validation error"
    if values:
        written.append(out / f"history_{plan.method}.png")
        _save_plot(written[-1], lambda: optuna.visualization.matplotlib.plot_optimization_history(
            study, target_name=target), f"{plan.method.upper()}: optimisation history")
    else:
        log.warning("no optimisation history plot: no trial of the study completed")
    if len(set(values)) >= 2:
        written.append(out / f"importance_{plan.method}.png")
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=plan.seed)
        _save_plot(written[-1], lambda: optuna.visualization.matplotlib.plot_param_importances(
            study, evaluator=evaluator, target_name=target),
            f"{plan.method.upper()}: parameter importances (fANOVA)")
    else:
        log.warning("no parameter importance plot: it needs completed trials of 2 different values, "
                    "the study has %d completed, of %d value(s)", len(values), len(set(values)))
    log.info("exported %s", ", ".join(map(str, written)))
    return written


def final_args(study, plan, cfg):
    """The main job's arguments (after ``python -m experiments.train``) for the best trial's settings
    on every training image for the published epochs, a run per ``cfg.final.seeds``, in
    ``cfg.final.dir``; SettingsError before the study has finished its trials or completed one."""
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    if finished < cfg.n_trials:
        raise SettingsError(f"study {cfg.study_name!r} has finished {finished} of its {cfg.n_trials} "
                            "trials: run it to the end first (action=study)")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SettingsError(f"study {cfg.study_name!r} has no completed trial: nothing to run")
    best = study.best_trial
    log.info("best: trial %d, validation error %.4f, %s", best.number, best.value, best.params)
    return ["-m", *plan.overrides,
            *(override(plan.space[name]["key"], value) for name, value in best.params.items()),
            f"train.epochs={plan.published_epochs}", f"seed={','.join(map(str, cfg.final.seeds))}",
            f"experiment_name={Path(cfg.final.dir).name}", f"hydra.sweep.dir={cfg.final.dir}",
            f"hydra.sweep.subdir={plan.method}_seed${{seed}}"]


def act(cfg, study_dir):
    """Do ``cfg.action`` for the study in ``study_dir`` -> the study (study, export), the main
    job's arguments (best) or its exit status (launch)."""
    plan = make_plan(cfg)
    if cfg.action == "study":
        return run_study(cfg, plan, study_dir)
    study = open_study(cfg, plan, study_dir, create=False)
    if cfg.action == "export":
        export(study, plan, cfg.out or study_dir, cfg.n_trials)
        return study
    args = final_args(study, plan, cfg)
    if cfg.action == "best":
        return args
    return subprocess.run([sys.executable, "-m", "experiments.train", *args]).returncode


@hydra.main(version_base="1.3", config_path="conf", config_name="tuning")
def main(cfg):
    optuna.logging.disable_default_handler()     # Optuna's log goes to this app's handlers
    optuna.logging.enable_propagation()
    try:
        result = act(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (SettingsError, FolderBusyError, LinkedRunFolderError) as err:   # its message, not a traceback
        log.error("%s", err)
        sys.exit(2)
    if cfg.action == "best":
        print(shlex.join([Path(sys.executable).name, "-m", "experiments.train", *result]))
    elif cfg.action == "launch":
        sys.exit(result)


if __name__ == "__main__":
    main()
