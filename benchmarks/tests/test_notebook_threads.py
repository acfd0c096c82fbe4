"""benchmarks/notebook_threads.py runs end to end: one short run per setting, appended to its JSON."""
import pytest

from benchmarks import notebook_threads
from safsd_glnet.data.atomic_files import read_json

pytestmark = pytest.mark.integration  # trains in child processes, one per setting


def test_notebook_threads_records_each_setting(tmp_path, capsys):
    out = tmp_path / "threads.json"
    assert notebook_threads.main(["--epochs", "1", "--out", str(out)]) == 0
    (entry,) = read_json(out)
    assert entry["epochs"] == 1 and entry["competitors"] == 0
    rows = {r["setting"]: r for r in entry["runs"]}
    assert list(rows) == ["spinning", "kit", "one-thread"]
    assert rows["one-thread"]["threads"] == 1 and all(r["cpu_s"] > 0 and r["wall_s"] > 0 for r in rows.values())
    # what libgomp got: threads that spin only where torch loaded before the kit
    assert rows["spinning"]["gomp_spincount"] > 0 and rows["kit"]["gomp_spincount"] == 0
    assert "spinning  :" in capsys.readouterr().out
