"""The committed result tables are what ``experiments.table`` computes from the committed runs.

Each folder under experiments/results that commits a table.md beside runs (summary.json) is
taken from the last commit (``git archive HEAD``, so runs still going on in this checkout do
not count), its table computed again, and compared with the committed table.md line by line.
"""
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from experiments import table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "experiments/results"


def _committed(pattern):
    try:
        out = subprocess.run(["git", "ls-files", "--", f"{RESULTS}/{pattern}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return out.split()


TABLES = sorted({Path(p).parent for p in _committed("*/table.md")
                 if _committed(f"{Path(p).parent.name}/*/summary.json")})


@pytest.mark.skipif(not TABLES, reason="not a git checkout, or no committed result tables")
@pytest.mark.parametrize("folder", TABLES, ids=lambda p: p.name)
def test_a_committed_table_is_computed_from_the_committed_runs(folder, tmp_path, monkeypatch):
    archive = subprocess.run(["git", "archive", "HEAD", "--", str(folder)], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    monkeypatch.chdir(tmp_path)
    table.report([folder], tmp_path / "again")
    committed = (tmp_path / folder / "table.md").read_text().splitlines()
    assert (tmp_path / "again" / "table.md").read_text().splitlines() == committed
