"""The validation split: stratified, seeded, disjoint from the images trained on, scored every
epoch, part of the run identity, refused when out of range; the table picks epochs by it only."""
import numpy as np
import pandas as pd
import pytest

from experiments import checkpoint, methods
from experiments.report import report as table_report
from experiments.settings import SettingsError
from experiments.train import COLUMNS, VAL_COLUMNS, run
from run_support import SMALL_MODEL, config
from tagi.data import load_cifar10, stratified_split


@pytest.mark.parametrize("size", [0, 1, 37, 500, 999])
def test_a_split_is_stratified_disjoint_and_whole(size):
    labels = np.random.default_rng(0).integers(0, 10, 1000)
    kept, held = stratified_split(labels, size, seed=3)
    assert len(held) == size and len(kept) == 1000 - size
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(1000))
    counts, quota = np.bincount(labels[held], minlength=10), size * np.bincount(labels) / 1000
    assert (counts >= np.floor(quota)).all() and (counts <= np.ceil(quota)).all()


def test_a_split_is_drawn_by_its_seed_alone():
    labels = np.random.default_rng(0).integers(0, 10, 1000)
    first, again = stratified_split(labels, 100, 0), stratified_split(labels, 100, 0)
    assert np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], stratified_split(labels, 100, 1)[1])


@pytest.mark.parametrize("size", [-1, 1000, 2.5, True])
def test_a_split_size_out_of_range_is_refused(size):
    with pytest.raises(ValueError, match="held-out size"):
        stratified_split(np.zeros(1000, dtype=int), size, 0)


def spy_on_batches(monkeypatch):
    """Record the images of every Batches that TagiMethod trains on and predicts."""
    seen = {"train": [], "predict": []}
    real_train, real_predict = methods.TagiMethod.train_epoch, methods.TagiMethod.predict

    def train_epoch(self, batches, epoch, progress):
        seen["train"].append(batches.images)
        return real_train(self, batches, epoch, progress)

    def predict(self, batches, progress):
        seen["predict"].append(batches.images)
        return real_predict(self, batches, progress)
    monkeypatch.setattr(methods.TagiMethod, "train_epoch", train_epoch)
    monkeypatch.setattr(methods.TagiMethod, "predict", predict)
    return seen


def test_held_out_images_are_scored_and_never_trained_on(cifar_root, tmp_path, monkeypatch):
    seen = spy_on_batches(monkeypatch)
    cfg = config(f"data.root={cifar_root}", *SMALL_MODEL, "train.epochs=2", "data.train_limit=80",
                 "data.test_limit=20", "data.val_size=30", "data.split_seed=4")
    metrics = run(cfg, tmp_path)
    assert list(metrics.columns) == COLUMNS + VAL_COLUMNS
    assert list(pd.read_csv(tmp_path / "metrics.csv").columns) == COLUMNS + VAL_COLUMNS
    assert metrics["val_error"].between(0, 1).all() and (metrics["val_nll"] > 0).all()
    data = load_cifar10(cifar_root)
    _, held = stratified_split(data.y_train[:80], 30, 4)
    trained, val = seen["train"][0], seen["predict"][1]              # predicts test, then val
    assert len(trained) == 50 and np.array_equal(val, data.x_train[:80][held])
    rows = {image.tobytes() for image in trained}
    assert not rows & {image.tobytes() for image in val}               # disjoint
    assert rows | {image.tobytes() for image in val} == {image.tobytes() for image in data.x_train[:80]}


def test_a_run_without_a_split_has_no_validation_columns(cifar_root, tmp_path):
    metrics = run(config(f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20"), tmp_path)
    assert list(metrics.columns) == COLUMNS


def test_resume_refuses_another_split(cifar_root, tmp_path):
    args = [f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20", "data.val_size=20"]
    run(config(*args), tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"data\.split_seed: checkpoint 0, this run 1"):
        run(config(*args, "data.split_seed=1", "train.epochs=2"), tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"data\.val_size: checkpoint 20, this run 10"):
        run(config(*args, "data.val_size=10", "train.epochs=2"), tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"data\.val_size: checkpoint 20, this run None"):
        run(config(*args, "data.val_size=0", "train.epochs=2"), tmp_path)
    assert len(run(config(*args, "train.epochs=2"), tmp_path)) == 2


@pytest.mark.parametrize("value, limit, message", [
    ("-1", "null", r"data\.val_size must be a finite number >= 0, got -1"),
    ("2.5", "null", r"setting data\.val_size: Value '2\.5' of type 'float' could not be converted"),
    ("abc", "null", r"setting data\.val_size: Value 'abc' of type 'str' could not be converted"),
    ("50000", "null", r"data\.val_size must be below the 50000 training images"),
    ("64", "64", r"data\.val_size must be below the 64 training images \(data\.train_limit=64\)"),
])
def test_a_bad_split_size_is_refused_before_any_data_is_read(tmp_path, value, limit, message):
    cfg = config(f"data.root={tmp_path / 'nothing here'}", f"data.val_size={value}",
                 f"data.train_limit={limit}", "progress=false")
    with pytest.raises(SettingsError, match=message):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_split_as_large_as_the_data_is_refused_before_training(cifar_root, tmp_path):
    cfg = config(f"data.root={cifar_root}", *SMALL_MODEL, "data.val_size=100")   # 100 images there
    with pytest.raises(SettingsError, match=r"data\.val_size must be below the 100 training images"):
        run(cfg, tmp_path)
    assert not (tmp_path / "metrics.csv").exists()


def test_the_table_takes_the_test_error_at_the_validation_best_epoch(cifar_root, tmp_path):
    args = [f"data.root={cifar_root}", *SMALL_MODEL, "data.test_limit=20", "train.epochs=4",
            "method.sigma_v=3"]
    split = run(config(*args, "data.val_size=40"), tmp_path / "runs" / "split")
    run(config(*args), tmp_path / "runs" / "whole")
    report = table_report([tmp_path / "runs"], tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("run")
    best = split["val_error"].idxmin()                                  # first lowest
    assert runs.loc["split", "val_best_epoch"] == split["epoch"][best]
    assert runs.loc["split", "error_at_val_best"] == pytest.approx(split["test_error"][best])
    assert np.isnan(runs.loc["whole", "val_best_epoch"]) and np.isnan(runs.loc["whole", "error_at_val_best"])
    assert "error at val-best epoch (epoch)" in report
    cells = [line.split("|")[7].strip() for line in report.splitlines() if line.startswith("| small")]
    chosen = f"{100 * split['test_error'][best]:.2f} % ({split['epoch'][best]})"
    assert sorted(cells) == sorted(["–", chosen])
