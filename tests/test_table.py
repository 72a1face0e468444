"""The results table compares like with like: real main-job runs on tiny data, the real table script."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments import aggregate, methods, table
from experiments.report import fill_page
from experiments.runs import gather, wall_seconds
from experiments.train import run
from run_support import config, interrupt_in_epoch, poison_after_step

FULL = ["backend=numpy", "progress=false", "train.batch_size=8"]    # all of the 100 + 20 tiny images
TINY = ["data.test_limit=8", *FULL]


def table_script(runs, out, capsys):
    """python -m experiments.table RUNS --out OUT -> (printed markdown, table.csv)."""
    table.main([str(runs), "--out", str(out)])
    return capsys.readouterr().out, pd.read_csv(out / "table.csv", keep_default_na=False)


def test_runs_differing_in_a_setting_are_never_pooled(cifar_root, tmp_path, capsys):
    for folder, settings in [("a", ["seed=0", "data.train_limit=16"]),
                             ("b", ["seed=0", "data.train_limit=16"]),        # seed 0 again
                             ("c", ["seed=1", "data.train_limit=16"]),
                             ("d", ["seed=0", "data.train_limit=32"]),
                             ("e", ["seed=0", "data.train_limit=16", "debug=on", "train.epochs=1"])]:
        run(config(f"data.root={cifar_root}", *TINY, *settings), tmp_path / "runs" / folder)
    text, rows = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert len(rows) == 3                                                  # 16, 32, and the debug run
    rows = rows.set_index("settings")
    assert set(rows.index) == {"train_limit=16", "train_limit=32", "train_limit=16, debug"}
    same = rows.loc["train_limit=16"]
    assert same["seeds"] == 2 and same["runs"] == 3                       # seeds 0, 0 and 1: two seeds
    assert "repeated seed 0 (used once)" in same["note"]
    assert rows.loc["train_limit=32", "seeds"] == 1 and rows.loc["train_limit=32", "runs"] == 1
    assert "| train_limit=32 " in text
    assert "limited data: no Δ" in same["note"] and same["diff_e1"] == "" and same["diff_e"] == ""


def test_an_epoch_1_run_is_not_compared_with_the_published_epoch_50(cifar_root, tmp_path, capsys,
                                                                      monkeypatch):
    run(config(f"data.root={cifar_root}", *FULL, "train.epochs=1"), tmp_path / "runs" / "one")
    text, rows = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["epochs"] == 1 and row["published_epochs"] == 50
    assert row["note"] == "published E not reached (ran 1)"
    assert row["diff_e"] == ""                                             # no Δ between epochs 1 and 50
    assert float(row["diff_e1"]) == pytest.approx(float(row["error_e1"]) - 0.5271)   # epoch 1 vs 1
    assert "published E not reached (ran 1)" in text
    # a diverged and an unfinished run beside it are listed apart, not averaged in
    poison_after_step(monkeypatch, after=2)
    with pytest.raises(FloatingPointError):
        run(config(f"data.root={cifar_root}", *FULL, "train.epochs=1", "seed=5"), tmp_path / "runs" / "nan")
    monkeypatch.undo()
    interrupt_in_epoch(monkeypatch, methods.TagiMethod, 2)
    with pytest.raises(KeyboardInterrupt):
        run(config(f"data.root={cifar_root}", *FULL, "train.epochs=2", "seed=6"), tmp_path / "runs" / "cut")
    text, rows = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert rows["seeds"].tolist() == [1] and rows["runs"].tolist() == [1]
    apart = text.split("Not in the table (diverged or unfinished):")[1]
    assert "nan " in apart and "diverged" in apart and "epoch 1, step 3" in apart
    assert "cut " in apart and "unfinished" in apart and "1 of 2" in apart


def test_debug_runs_get_folders_of_their_own():
    real = config("experiment=quick", hydra=True).hydra
    debug = config("experiment=quick", "debug=on", hydra=True).hydra
    assert real.sweep.dir == "multirun/quick" and debug.sweep.dir == "multirun/debug/quick"
    assert config("debug=on", hydra=True).hydra.run.dir.startswith("outputs/debug/")


def test_fixture_summary_without_settings_keys_by_what_it_has(tmp_path):
    """Runs written before the settings were recorded still group by the fields they hold."""
    folder = tmp_path / "old"
    folder.mkdir()
    pd.DataFrame({"epoch": [1], "test_error": [0.5], "test_nll": [1.0]}).to_csv(folder / "metrics.csv")
    (folder / "summary.json").write_text(json.dumps({"method": "bp", "model": "m", "seed": 0, "epochs": 1,
                                                     "planned_epochs": 2, "batch_size": 4}))
    gathered, _ = gather([tmp_path])
    assert gathered["status"].tolist() == ["unfinished"]


def test_settings_column_names_differences_within_a_method_only():
    """A TAGI row and a BP row differ in their methods' settings by nature: not shown; a setting
    shared by both methods, or one that differs between two runs of one method, is."""
    tagi = {"model": "m", "method": "tagi", "train_limit": None, "method.sigma_v": 1.0, "method.lr": None}
    bp = {"model": "m", "method": "bp", "train_limit": None, "method.sigma_v": None, "method.lr": 0.05}
    assert aggregate.differing([tagi, bp]) == ["", ""]
    small_bp = {**bp, "train_limit": 500, "method.lr": 0.1}
    assert aggregate.differing([tagi, bp, small_bp]) == ["train_limit=None", "train_limit=None, method.lr=0.05",
                                                "train_limit=500, method.lr=0.1"]


def test_zoo_table_has_a_row_per_network_and_method(cifar_root, tmp_path, capsys):
    """Runs of several networks: one row per (network, method), a network column, no published
    columns (no figure is published for these), and the BP recipes' differences between networks
    not listed as settings."""
    for model, method in [("pytorch_tutorial", "tagi"), ("pytorch_tutorial", "bp"), ("keras_tutorial", "bp")]:
        run(config(f"data.root={cifar_root}", *TINY, f"model={model}", f"method={method}"),
            tmp_path / "runs" / f"{model}-{method}")
    text, rows = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert [tuple(r) for r in rows[["model", "method"]].to_numpy()] == [
        ("keras_tutorial", "bp"), ("pytorch_tutorial", "tagi"), ("pytorch_tutorial", "bp")]
    header = text.splitlines()[0]
    assert header.split("|")[1].strip() == "network" and "published" not in header and "Δ" not in header
    assert "settings" not in header and (rows["settings"] == "").all()
    assert rows["test_nll"].gt(0).all() and rows["test_ece"].between(0, 1).all()


def test_a_table_of_unfinished_runs_only_lists_them(cifar_root, tmp_path, capsys, monkeypatch):
    """A protocol part-way through (no run has finished yet) still gets its table: no rows, the
    unfinished runs listed apart."""
    interrupt_in_epoch(monkeypatch, methods.TagiMethod, 2)
    with pytest.raises(KeyboardInterrupt):
        run(config(f"data.root={cifar_root}", *FULL, "train.epochs=2"), tmp_path / "runs" / "cut")
    text, rows = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert len(rows) == 0 and text.startswith("(no finished runs)")
    assert "cut " in text and "unfinished" in text and "1 of 2" in text
    assert (tmp_path / "out" / "curves.png").exists()
    every = pd.read_csv(tmp_path / "out" / "runs.csv")                    # its line in the per-run table
    assert every[["run", "status", "epochs", "planned_epochs"]].values.tolist() == [["cut", "unfinished", 1, 2]]
    assert every["train_seconds"].gt(0).all() and every["wall_seconds"].isna().all()   # no train.log
    assert "| 1 of 2 (unfinished) |" in text.split("Every run:")[1]


def test_wall_time_counts_each_epoch_of_every_launch_from_the_run_log(tmp_path):
    """Two launches of one run (the second resumes after epoch 2) and a third launch refused at
    the start, its line among the first launch's: the wall time is each epoch's time from the
    previous epoch's line or from its launch's "run folder" record, the pause between launches
    and the refused launch left out."""
    log = tmp_path / "train.log"
    stamp = "[2026-12-01 {}][__main__][INFO] - {}"
    log.write_text("\n".join([
        stamp.format("10:00:00,000", "CPU threads capped at 1"),
        stamp.format("10:00:01,500", "Sequential(\n  Linear(4, 2),\n)"),
        "100 train / 20 test images, run folder /runs/a",
        stamp.format("10:01:41,500", "epoch 1: test error 0.5000, test NLL 1.0000, train error 0.5"),
        stamp.format("10:02:00,000", "CPU threads capped at 1"),              # refused: folder held
        stamp.format("10:03:01,750", "epoch 2: test error 0.4000, test NLL 0.9000, train error 0.4"),
        stamp.format("12:00:00,000", "CPU threads capped at 1"),
        stamp.format("12:00:02,000", "Sequential(\n  Linear(4, 2),\n)\n100 train / 20 test images, "
                                     "run folder /runs/a"),
        stamp.format("12:00:02,100", "resumed from /runs/a/checkpoint.npz after epoch 2"),
        stamp.format("12:01:32,000", "epoch 3: test error 0.3000, test NLL 0.8000, train error 0.3"),
    ]) + "\n")
    assert wall_seconds(log, 3) == pytest.approx(100.0 + 80.25 + 90.0)
    assert wall_seconds(log, 2) == pytest.approx(180.25)
    assert np.isnan(wall_seconds(log, 4))                                  # epoch 4 not logged
    assert np.isnan(wall_seconds(tmp_path / "none.log", 1))


@pytest.mark.parametrize("fault", ["truncated summary", "non-UTF-8 metrics", "empty metrics",
                                   "summary not an object"])
def test_a_run_with_an_unreadable_file_is_named_and_listed_apart(cifar_root, tmp_path, capsys, fault):
    for seed in (0, 1, 2):
        run(config(f"data.root={cifar_root}", *TINY, "data.train_limit=16", f"seed={seed}"),
            tmp_path / "runs" / f"seed={seed}")
    bad = tmp_path / "runs" / "seed=2"
    name, content, said = {
        "truncated summary": ("summary.json", (bad / "summary.json").read_bytes()[:100],
                              "not complete JSON (truncated?)"),
        "non-UTF-8 metrics": ("metrics.csv", b"epoch,test_error\n1,\xff\xfe0.5\n", "not UTF-8 text"),
        "empty metrics": ("metrics.csv", b"", "empty"),
        "summary not an object": ("summary.json", b"[1, 2]", "not a JSON object but a list")}[fault]
    (bad / name).write_bytes(content)
    text, rows = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert len(rows) == 1 and rows.loc[0, "seeds"] == 2                      # the table of the others
    unread = text.split("Not in the table (files unreadable):")[1].split("Every run:")[0]
    assert f"{bad / name}: {said}" in unread
    assert "seed=2" not in text.split("Every run:")[1]


def test_a_folder_of_unreadable_runs_only_lists_them(tmp_path, capsys):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "summary.json").write_text('{"status": "fini')
    text, rows = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert len(rows) == 0 and "(no finished runs)" in text
    assert f"{tmp_path / 'runs' / 'a' / 'summary.json'}: not complete JSON (truncated?)" in text


def test_the_table_fills_the_marked_blocks_of_the_experiments_page(cifar_root, tmp_path, capsys):
    """The page in --out gets the table and the per-run lines between its markers; the prose
    around them stays as written, and a second run of the script changes nothing."""
    for seed in (0, 1):
        run(config(f"data.root={cifar_root}", *TINY, "data.train_limit=16", f"seed={seed}"),
            tmp_path / "runs" / f"seed={seed}")
    page = tmp_path / "out" / "README.md"
    page.parent.mkdir()
    prose = ["# An experiment", "Before.", "Between.", "After, with <!-- a comment -->."]
    page.write_text(f"{prose[0]}\n\n{prose[1]}\n\n<!-- table:begin -->\nold table\n<!-- table:end -->\n\n"
                    f"{prose[2]}\n\n<!-- runs:begin -->\n<!-- runs:end -->\n\n{prose[3]}\n")
    text, _ = table_script(tmp_path / "runs", tmp_path / "out", capsys)
    written = page.read_text()
    table_part, runs_part = text.rstrip("\n").split("\n\nEvery run:\n\n")
    assert written == (f"{prose[0]}\n\n{prose[1]}\n\n<!-- table:begin -->\n\n{table_part}\n\n"
                       f"<!-- table:end -->\n\n{prose[2]}\n\n<!-- runs:begin -->\n\n{runs_part}\n\n"
                       f"<!-- runs:end -->\n\n{prose[3]}\n")
    assert "old table" not in written and "± " in table_part and "seed=1" not in table_part
    table_script(tmp_path / "runs", tmp_path / "out", capsys)
    assert page.read_text() == written
    # --page: another page (the project's README) gets the same table; a missing one stops the script
    other = tmp_path / "other.md"
    other.write_text("Headline:\n<!-- table:begin -->\n<!-- table:end -->\n")
    table.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--page", str(other)])
    assert other.read_text() == f"Headline:\n<!-- table:begin -->\n\n{table_part}\n\n<!-- table:end -->\n"
    with pytest.raises(FileNotFoundError, match="no page .*missing.md"):
        table.main([str(tmp_path / "runs"), "--out", str(tmp_path / "new"), "--page", str(tmp_path / "missing.md")])
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("page, fault", [
    ("<!-- tables:begin -->\n<!-- tables:end -->", "no block 'tables' to write"),
    ("<!-- table:begin -->\nno end", "<!-- table:begin --> without its <!-- table:end -->"),
    ("<!-- table:end -->", "<!-- table:end --> without its <!-- table:begin -->"),
    ("<!-- table:begin -->\n<!-- runs:begin -->\n<!-- runs:end -->\n<!-- table:end -->",
     "<!-- runs:begin --> inside the table block")])
def test_a_page_with_broken_markers_is_refused_by_name(page, fault):
    with pytest.raises(ValueError, match=f"^exp/README.md: {fault}"):
        fill_page(page, {"table": "T", "runs": "R"}, "exp/README.md")
    assert fill_page("no markers here\n", {"table": "T"}) == ("no markers here\n", 0)


def test_the_table_command_line_imports_no_hydra():
    """The Hydra callbacks live in experiments.callbacks: the table (and zoo) scripts run without it."""
    code = "import sys, experiments.table, experiments.zoo; print('hydra' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_runs_before_the_prior_gains_were_settings_pool_with_later_runs_at_gain_one():
    """A TAGI run recorded before method.gain_w/gain_b existed had gain 1: it shares its key with
    a later run at gain 1, never with one at another gain."""
    from experiments.runs import run_key
    method = {"name": "tagi", "sigma_v": 1.0, "batch_size": 16}
    before = {"method": "tagi", "config": {"method": method}}
    at_one = {"method": "tagi", "config": {"method": {**method, "gain_w": 1.0, "gain_b": 1.0}}}
    at_half = {"method": "tagi", "config": {"method": {**method, "gain_w": 0.5, "gain_b": 1.0}}}
    assert run_key(before) == run_key(at_one)
    assert run_key(before) != run_key(at_half)
