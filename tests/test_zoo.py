"""The zoo page from fixture runs: one row per network, width and method beside the source's
stated accuracy, and the two width plots."""
import json

import numpy as np
import pandas as pd
import pytest

from experiments import zoo
from experiments.zoo import report_zoo, source_figures, zoo_table
from experiments.runs import gather


def write_run(folder, model, method, errors, width=None, seconds=10.0, preprocess="standardize",
              init="He", batch_size=16):
    """A finished full-data run folder as the main job writes it, with chosen numbers."""
    folder.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(errors) + 1), "test_error": errors, "test_nll": 1.0,
                  "train_error": 0.5, "sigma_v": 1.0, "seconds": seconds}).to_csv(folder / "metrics.csv", index=False)
    summary = {"status": "finished", "method": method, "model": model, "seed": 0,
               "epochs": len(errors), "planned_epochs": len(errors), "batch_size": batch_size,
               "train_limit": None, "test_limit": None, "dtype": "float32", "debug_run": False,
               "preprocess": preprocess, "init": init, "width": width,
               "test_error": errors[-1], "test_nll": 1.0, "test_ece": 0.05, "error_e1": errors[0],
               "train_seconds": seconds * len(errors),
               "config": {"method": {"name": method}, "model": {"layers": None, "width": width}}}
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def zoo_runs(tmp_path):
    runs = tmp_path / "runs"
    for width, tagi_error, bp_error in [(30, 0.40, 0.30), (90, 0.38, 0.2758)]:
        write_run(runs / f"tagi-{width}", "pytorch_tutorial_width", "tagi", [0.5, 0.45, tagi_error],
                  width=width, seconds=width * 2.0)
        write_run(runs / f"bp-{width}", "pytorch_tutorial_width", "bp", [0.5, 0.4, bp_error], width=width,
                  seconds=width / 10, preprocess="normalize_half", init="torch_default", batch_size=4)
    write_run(runs / "bp-fc", "fc_3072_128", "bp", [0.6, 0.58, 0.57, 0.56, 0.55], preprocess="normalize_half",
              init="torch_default", batch_size=100)
    write_run(runs / "bp-4", "cnn4_leaky_dropout", "bp", [0.4, 0.3], preprocess="centered_unit",
              init="glorot_uniform", batch_size=32)
    return runs


def test_source_figures_are_the_stated_accuracies():
    figures = source_figures()
    widths = figures[figures["model"] == "pytorch_tutorial_width"]
    assert widths["width"].tolist() == list(range(30, 171, 20))
    np.testing.assert_allclose(100 * widths["stated_accuracy"],
                               [70.73, 71.15, 67.49, 71.42, 71.00, 70.44, 70.49, 70.61])
    stated = dict(zip(figures["model"], 100 * figures["stated_accuracy"]))
    assert stated["pytorch_tutorial_3conv"] == pytest.approx(70.49)
    assert stated["pytorch_tutorial_4conv"] == pytest.approx(61.33)
    assert stated["fc_3072_128"] == pytest.approx(46.0) and np.isnan(stated["cnn4_leaky_dropout"])
    assert figures["source"].str.fullmatch(r"00\d_[0-9a-f]{16}\.txt").all()


def test_zoo_table_rows_gaps_and_order(zoo_runs):
    table = zoo_table(*gather([zoo_runs]), source_figures())
    assert table["network"].tolist() == [
        "fc_3072_128", "cnn4_leaky_dropout", "pytorch_tutorial_width (n=30)",
        "pytorch_tutorial_width (n=30)", "pytorch_tutorial_width (n=90)", "pytorch_tutorial_width (n=90)"]
    assert table["method"].tolist() == ["bp", "bp", "tagi", "bp", "tagi", "bp"]
    row = table.iloc[5]                                         # BP at width 90: 71.42 % stated
    assert (row["preprocess"], row["init"], row["epochs"], row["batch_size"]) == (
        "normalize_half", "torch_default", 3, 4)
    assert row["accuracy"] == pytest.approx(0.7242) and row["gap"] == pytest.approx(0.01)
    assert table.iloc[4]["gap"] == pytest.approx(0.62 - 0.7142)   # TAGI against the same figure
    assert table.iloc[0]["gap"] == pytest.approx(0.45 - 0.46)
    assert np.isnan(table.iloc[1]["stated_accuracy"]) and np.isnan(table.iloc[1]["gap"])


def test_no_gap_without_the_full_data_and_the_sources_epochs(tmp_path):
    """A run cut short of the source's epochs, or on part of the data, keeps the stated accuracy
    beside it but gets no gap, and its note says why."""
    write_run(tmp_path / "short", "pytorch_tutorial_3conv", "bp", [0.5, 0.4])          # 2 of 4 epochs
    write_run(tmp_path / "small", "pytorch_tutorial_4conv", "bp", [0.5, 0.4, 0.4, 0.4])
    summary = json.loads((tmp_path / "small" / "summary.json").read_text())
    (tmp_path / "small" / "summary.json").write_text(json.dumps({**summary, "train_limit": 500}))
    table = zoo_table(*gather([tmp_path]), source_figures()).set_index("model")
    assert table.loc["pytorch_tutorial_3conv", "stated_accuracy"] == pytest.approx(0.7049)
    assert np.isnan(table.loc["pytorch_tutorial_3conv", "gap"]) and np.isnan(table.loc["pytorch_tutorial_4conv", "gap"])
    assert table.loc["pytorch_tutorial_3conv", "note"] == "the source's 4 epochs not run (ran 2): no gap"
    assert table.loc["pytorch_tutorial_4conv", "note"] == "limited data: no gap"


def test_zoo_page_files(zoo_runs, tmp_path):
    text = report_zoo([zoo_runs], tmp_path / "page")
    header = [cell.strip() for cell in text.splitlines()[0].split("|")[1:-1]]
    assert header == ["network", "method", "preprocessing", "initialisation", "E", "B", "error", "NLL",
                      "ECE", "accuracy", "source's accuracy (BP)", "gap", "note"]
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): [cell.strip() for cell in line.split("|")[1:-1]]
            for line in text.splitlines()[2:]}
    assert rows[("pytorch_tutorial_width (n=90)", "BP")] == [
        "pytorch_tutorial_width (n=90)", "BP", "normalize_half", "torch_default", "3", "4", "27.58 %",
        "1.000", "0.050", "72.42 %", "71.42 %", "+1.00 pt", ""]
    assert rows[("fc_3072_128", "BP")][-4:] == ["45.00 %", "46.00 %", "-1.00 pt", ""]
    assert rows[("cnn4_leaky_dropout", "BP")][-3:] == ["–", "–", ""]
    for name in ("zoo.md", "zoo.csv", "accuracy_vs_width.png", "seconds_vs_width.png"):
        assert (tmp_path / "page" / name).stat().st_size > 0


def test_width_plots_draw_what_the_runs_hold(zoo_runs, tmp_path, monkeypatch):
    """The accuracy plot draws each method's accuracy per width and the source's eight figures;
    the cost plot each method's training seconds per epoch per width."""
    drawn = {}
    real_save = zoo.save_figure

    def save_figure(fig, path):
        drawn[path.name] = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
                            for line in fig.axes[0].get_lines()}
        return real_save(fig, path)
    monkeypatch.setattr(zoo, "save_figure", save_figure)
    report_zoo([zoo_runs], tmp_path / "page")
    accuracy = drawn["accuracy_vs_width.png"]
    assert accuracy["BP (this code)"][0] == [30, 90]
    np.testing.assert_allclose(accuracy["BP (this code)"][1], [70.0, 72.42])
    np.testing.assert_allclose(accuracy["TAGI (this code)"][1], [60.0, 62.0])
    assert len(accuracy["source (BP, PyTorch)"][0]) == 8
    seconds = drawn["seconds_vs_width.png"]
    np.testing.assert_allclose(seconds["TAGI"][1], [60.0, 180.0])
    np.testing.assert_allclose(seconds["BP"][1], [3.0, 9.0])
