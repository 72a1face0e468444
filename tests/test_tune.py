"""The tuning app: a tiny study end to end (command line, exports, the final runs' command), a
study interrupted mid-trial and continued, pruned and diverged trials recorded as pruned, a rerun
with other settings refused, and bad settings refused before any work."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

optuna = pytest.importorskip("optuna")

from conftest import write_cifar_folder  # noqa: E402  (after the skip: the app imports optuna)
from experiments import tune  # noqa: E402
from experiments.methods import TagiMethod  # noqa: E402
from experiments.settings import SettingsError  # noqa: E402
from run_support import ROOT, SMALL_MODEL, poison_after_step  # noqa: E402

TrialState = optuna.trial.TrialState
# a pruner that stops every trial at its first report (every validation error is below 2)
PRUNE_ALL = ["pruner._target_=optuna.pruners.ThresholdPruner", "~pruner.n_startup_trials",
             "~pruner.n_warmup_steps", "+pruner.lower=2.0"]


@pytest.fixture
def data_root(tmp_path):
    """A synthetic CIFAR-10 of 300 training and 60 test images."""
    write_cifar_folder(tmp_path / "cifar", n_per_batch=60)
    return tmp_path / "cifar"


def tiny(data_root, *extra, n_trials=3, epochs=1, published=50):
    """Tuning-app overrides for a study of ``n_trials`` TAGI trials of ``epochs`` epochs (a share of
    ``published`` epochs) of the small model, 100 of the 300 training images held out."""
    main = [*SMALL_MODEL, f"data.root={data_root}", f"method.epochs={published}"]
    return [f"overrides={json.dumps(main)}", "val_size=100", f"n_trials={n_trials}",
            f"share={epochs / published}", *extra]


def act(study_dir, *overrides):
    """The tuning app's action in ``study_dir`` with ``overrides``, in process."""
    with initialize_config_dir(config_dir=str(ROOT / "experiments" / "conf"), version_base="1.3"):
        return tune.act(compose(config_name="tuning", overrides=list(overrides)), study_dir)


def load(study_dir, name="tagi"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / tune.DB_NAME}")


def app(*args):
    return subprocess.run([sys.executable, "-m", "experiments.tune", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_a_tiny_study_runs_end_to_end_and_its_best_setting_launches(data_root, tmp_path):
    study_dir, overrides = tmp_path / "study", tiny(data_root, published=10)
    result = app("method=tagi", *overrides, f"hydra.run.dir={study_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(study_dir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    table = pd.read_csv(study_dir / "trials_tagi.csv")
    space = ["sigma_v", "sigma_v_min", "sigma_v_decay", "gain_w", "gain_b", "batch_size"]
    assert list(table.columns) == ["number", "state", *space, "objective", "val_error", "val_nll",
                                   "epochs", "run_folder", "note"]
    assert table.number.tolist() == [0, 1, 2] and (table.state == "COMPLETE").all()
    assert (table.epochs == 1).all() and table.batch_size.isin([16, 32, 64]).all()
    for trial, row in zip(trials, table.itertuples()):
        metrics = pd.read_csv(study_dir / row.run_folder / "metrics.csv")
        assert len(metrics) == 1 and row.objective == row.val_error == metrics.val_error.iloc[-1]
        assert row.val_nll == metrics.val_nll.iloc[-1] == trial.user_attrs["val_nll"]
        assert trial.intermediate_values == {1: row.objective}
        summary = json.loads((study_dir / row.run_folder / "summary.json").read_text())
        assert summary["val_size"] == 100 and summary["config"]["method"]["sigma_v"] == row.sigma_v
        assert (study_dir / row.run_folder / "train.log").exists()
    for plot in ("history_tagi.png", "importance_tagi.png"):
        assert (study_dir / plot).read_bytes().startswith(b"\x89PNG")
    assert "| sigma_v | `method.sigma_v` | log-uniform | 0.5 to 3 |" in \
        (study_dir / "space_tagi.md").read_text()

    # the best setting on every training image, for the (here 10) published epochs, one seed
    final = tmp_path / "final"
    result = app("method=tagi", *overrides, f"hydra.run.dir={study_dir}", "action=launch",
                 f"final.dir={final}", "final.seeds=[0]")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((final / "tagi_seed0" / "summary.json").read_text())
    best = table.loc[table.objective.idxmin()]
    assert summary["status"] == "finished" and summary["epochs"] == 10 and "val_size" not in summary
    assert all(summary["config"]["method"][name] == best[name] for name in space)
    assert (final / "table.md").exists()


def interrupt_call(monkeypatch, call):
    """Count TAGI's training epochs in ``calls``; the ``call``-th raises KeyboardInterrupt."""
    real, calls = TagiMethod.train_epoch, []

    def train_epoch(self, batches, epoch, progress):
        calls.append(epoch)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(self, batches, epoch, progress)
    monkeypatch.setattr(TagiMethod, "train_epoch", train_epoch)
    return calls


def test_an_interrupted_study_continues_without_running_a_finished_trial_again(
        data_root, tmp_path, monkeypatch):
    study_dir, overrides = tmp_path / "study", tiny(data_root, epochs=2)
    calls = interrupt_call(monkeypatch, 4)                  # trial 1's second epoch
    with pytest.raises(KeyboardInterrupt):
        act(study_dir, *overrides)
    assert [t.state for t in load(study_dir).trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert (study_dir / "trials" / "001" / "checkpoint.npz").exists()
    first = (study_dir / "trials" / "000" / "metrics.csv").read_bytes()

    act(study_dir, *overrides)
    # trial 1's settings again, from its checkpoint (epoch 2 only), then trial 3 from the start
    assert calls[4:] == [2, 1, 2]
    trials = load(study_dir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert trials[2].params == trials[1].params and trials[2].user_attrs["retry_of"] == 1
    # the continued study draws new settings, not those of its first trials again
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    assert trials[1].user_attrs["run_folder"] == trials[2].user_attrs["run_folder"] == "trials/001"
    assert trials[2].intermediate_values.keys() == {1, 2}
    assert len(pd.read_csv(study_dir / "trials" / "001" / "metrics.csv")) == 2
    assert (study_dir / "trials" / "000" / "metrics.csv").read_bytes() == first
    table = pd.read_csv(study_dir / "trials_tagi.csv")
    assert table.state.tolist() == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert table.note[1] == "interrupted; its settings ran again as trial 2"

    act(study_dir, *overrides)                              # finished: nothing runs
    assert len(calls) == 7 and len(load(study_dir).trials) == 4


def test_pruned_trials_are_recorded_as_pruned(data_root, tmp_path):
    study_dir = tmp_path / "study"
    act(study_dir, *tiny(data_root, *PRUNE_ALL, n_trials=2, epochs=2))
    assert [t.state for t in load(study_dir).trials] == [TrialState.PRUNED] * 2
    table = pd.read_csv(study_dir / "trials_tagi.csv")
    assert table.state.tolist() == ["PRUNED"] * 2 and table.objective.isna().all()
    assert (table.epochs == 1).all() and table.val_error.between(0, 1).all()
    assert (table.note == "pruned after epoch 1").all()
    assert len(pd.read_csv(study_dir / table.run_folder[0] / "metrics.csv")) == 1
    assert not (study_dir / "history_tagi.png").exists()     # no completed trial to plot
    with pytest.raises(SettingsError, match="no completed trial"):
        act(study_dir, *tiny(data_root, *PRUNE_ALL, "action=best", n_trials=2, epochs=2))
    # a rerun with other settings is refused, naming them; more trials continue the study
    with pytest.raises(SettingsError, match=r"epochs: 2, now 1"):
        act(study_dir, *tiny(data_root, *PRUNE_ALL, n_trials=2, epochs=1))
    act(study_dir, *tiny(data_root, *PRUNE_ALL, n_trials=3, epochs=2))
    assert len(load(study_dir).trials) == 3


def test_a_diverged_trial_is_pruned_with_its_reason(data_root, tmp_path, monkeypatch):
    poison_after_step(monkeypatch, after=1, layer=1)          # the first trial's Linear layer
    study_dir = tmp_path / "study"
    act(study_dir, *tiny(data_root, n_trials=2))
    first, second = load(study_dir).trials
    assert first.state == TrialState.PRUNED and first.value is None
    assert "training diverged at epoch 1" in first.user_attrs["diverged"]
    assert second.state == TrialState.COMPLETE
    table = pd.read_csv(study_dir / "trials_tagi.csv")
    assert table.note[0].startswith("diverged: training diverged at epoch 1")


BAD = [
    (["n_trials=0"], "n_trials"), (["share=0"], "share"), (["action=go"], "action"),
    (["val_size=0"], "val_size"), (["final.seeds=[]"], "final.seeds"),
    (["method.sigma_v=2"], "setting method: .*sigma_v: 1.0, now 2"),
    (["space.params.sigma_v.key=method.nope"], "space.params.sigma_v.key: method.nope"),
    (["space.params.sigma_v.type=log"], "space.params.sigma_v.type"),
    (["space.params.sigma_v.low=0"], "space.params.sigma_v.low"),
    (["space.params.sigma_v.high=0.1"], "space.params.sigma_v.high"),
    (["space.params.batch_size.choices=[]"], "space.params.batch_size.choices"),
    (["+space.params.batch_size.low=1"], "space.params.batch_size: a categorical parameter has no field low"),
    (["space.params.sigma_v_min.high=2"], "sigma_v at its low end, the others at their high ends: "
                                          "bad setting: method.sigma_v_min"),
    (["space.params.batch_size.choices=[16,0]"], "high end: bad setting: method.batch_size"),
    (['overrides=["trian.epochs=3"]'], "setting overrides"),
    (["method=bp", "space.epoch_keys=[method.optimizer.lr]"], "space.epoch_keys: method.optimizer.lr"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_setting_is_refused_by_name_before_any_work(tmp_path, overrides, message):
    with pytest.raises(SettingsError, match=message):
        act(tmp_path / "study", *overrides)
    assert not (tmp_path / "study").exists()


def test_the_spaces_ends_and_the_trial_length_follow_the_published_settings():
    with initialize_config_dir(config_dir=str(ROOT / "experiments" / "conf"), version_base="1.3"):
        plans = {method: tune.make_plan(compose(config_name="tuning", overrides=[f"method={method}"]))
                 for method in ("tagi", "bp")}
        assert (plans["tagi"].epochs, plans["bp"].epochs) == (5, 15)         # a tenth of 50 and 150
        assert plans["bp"].shortened == {"method.schedule.step_size": 3}    # a tenth of 30
        trial = tune.main_config(plans["bp"].trial_overrides(
            {"lr": 1e-05, "momentum": 0.9, "weight_decay": 3e-4, "batch_size": 256, "schedule": "step"}))
    assert trial.method.optimizer.lr == 1e-05 and trial.train.batch_size == 256
    assert trial.method.schedule.name == "step" and trial.method.schedule.step_size == 3
    assert trial.train.epochs == 15 and trial.data.val_size == 5000


def test_the_docs_state_the_configured_search_spaces_and_budgets():
    text = (ROOT / "docs" / "tuning.md").read_text()
    with initialize_config_dir(config_dir=str(ROOT / "experiments" / "conf"), version_base="1.3"):
        for method in ("tagi", "bp"):
            cfg = compose(config_name="tuning", overrides=[f"method={method}"])
            assert tune.space_markdown(tune.make_plan(cfg), cfg.n_trials) in text, method


@pytest.mark.parametrize("value", [0.1, 1e-05, 0.30000000000000004, 64, True, "cosine", "null", "it's"])
def test_an_override_parses_back_to_its_value(value):
    parsed = OverridesParser.create().parse_override(tune.override("a", value)).value()
    assert parsed == value and type(parsed) is type(value)
