"""benchmarks/executors.py: the projection against a hand computation, and the overhead
measurement on the local executor end to end (the other executors' runs are in
tests/grids/test_executors.py)."""
import pytest

from benchmarks import executors as bench


def test_projection_counts_waves_of_equal_runs():
    rows = {(r["corpus"], r["gpus"]): r for r in bench.projection(overhead_s=60.0)}
    # IEMOCAP: 16 variants x 5 seeds = 80 runs of 27 min + 1 min overhead
    assert rows["IEMOCAP", 1]["waves"] == 80 and rows["IEMOCAP", 1]["hours"] == pytest.approx(80 * 28 / 60, abs=0.05)
    assert rows["IEMOCAP", 8]["waves"] == 10 and rows["IEMOCAP", 32]["waves"] == 3  # 80 / 32 = 2.5 -> 3
    # MELD: the 5 prior-similarity runs fail at once, 75 runs of 83 min + 1 min
    assert rows["MELD", 32]["runs"] == 75 and rows["MELD", 32]["hours"] == pytest.approx(3 * 84 / 60, abs=0.05)


def test_overhead_phases_add_up_on_the_local_executor(tmp_path):
    phases = bench.overhead("local", 1, tmp_path)
    parts = phases["task start"] + phases["kernel start"] + phases["kernel stop"] + phases["result return"]
    assert phases["runs"] == 1 and phases["kernel start"] > 0
    # the four phases cover the run, leaving only the notebook's own two cells
    assert 0 <= phases["run total"] - parts < 0.5
