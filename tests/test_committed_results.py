"""The committed results are what the table script computes from the committed runs.

Each folder under experiments/results that commits runs (summary.json) is taken from the last
commit (``git archive HEAD``, so runs still going on in this checkout do not count) and its
table computed again (``experiments.report.report``): its table.md must equal the committed
one line by line, and its page (README.md) must come out of the script unchanged, that is,
every block between the page's markers must be what the script writes there. Every such
folder must have a page, and every page must mark its results table. The project's README
shows the headline experiment's table, checked the same way.
"""
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from experiments.report import PAGE, report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "experiments/results"
HEADLINE = Path(RESULTS) / "cifar10_3conv"      # the experiment whose table the README shows


def _committed(pattern):
    try:
        out = subprocess.run(["git", "ls-files", "--", f"{RESULTS}/{pattern}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return out.split()


FOLDERS = sorted({Path(RESULTS) / Path(p).relative_to(RESULTS).parts[0]
                  for p in _committed("*/*/summary.json")})


def _recomputed(folder, tmp_path, monkeypatch, pages=()):
    """The committed ``folder`` and ``pages`` extracted under ``tmp_path``, the folder's committed
    page copied into tmp_path/again, and the table script run over the extracted runs into
    tmp_path/again, filling the extracted ``pages`` too."""
    archive = subprocess.run(["git", "archive", "HEAD", "--", str(folder), *map(str, pages)], cwd=ROOT,
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    monkeypatch.chdir(tmp_path)
    again = tmp_path / "again"
    again.mkdir()
    if (tmp_path / folder / PAGE).exists():
        (again / PAGE).write_bytes((tmp_path / folder / PAGE).read_bytes())
    report([folder], again, pages)
    return tmp_path / folder, again


@pytest.mark.skipif(not FOLDERS, reason="not a git checkout, or no committed runs")
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_a_committed_table_is_computed_from_the_committed_runs(folder, tmp_path, monkeypatch):
    committed, again = _recomputed(folder, tmp_path, monkeypatch)
    assert (committed / "table.md").exists(), f"{folder} commits runs but no table.md"
    assert (again / "table.md").read_text().splitlines() == (committed / "table.md").read_text().splitlines()


@pytest.mark.skipif(not FOLDERS, reason="not a git checkout, or no committed runs")
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_a_committed_page_holds_the_tables_the_script_writes(folder, tmp_path, monkeypatch):
    committed, again = _recomputed(folder, tmp_path, monkeypatch)
    assert (committed / PAGE).exists(), f"{folder} commits runs but no page ({PAGE})"
    page = (committed / PAGE).read_text(encoding="utf-8")
    assert "<!-- table:begin -->" in page, f"{folder / PAGE} marks no results table"
    assert (again / PAGE).read_text(encoding="utf-8").splitlines() == page.splitlines(), \
        f"{folder / PAGE}: a marked table differs from what python -m experiments.table computes"


@pytest.mark.skipif(HEADLINE not in FOLDERS, reason="not a git checkout, or no committed headline runs")
def test_the_readme_shows_the_headline_table_the_script_writes(tmp_path, monkeypatch):
    committed = subprocess.run(["git", "show", f"HEAD:{PAGE}"], cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout
    assert "<!-- table:begin -->" in committed, "the README marks no results table"
    _recomputed(HEADLINE, tmp_path, monkeypatch, pages=[Path(PAGE)])
    assert (tmp_path / PAGE).read_text(encoding="utf-8").splitlines() == committed.splitlines(), \
        f"the README's table differs from what python -m experiments.table computes for {HEADLINE}"
