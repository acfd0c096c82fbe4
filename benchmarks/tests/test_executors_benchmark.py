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


@pytest.mark.integration  # a notebook kernel per run
def test_overhead_phases_add_up_on_the_local_executor(tmp_path):
    """The phases follow each other (submitted, task start, first cell, last cell, task end,
    returned), so none is negative and the four of them fit inside the run; what is left is the
    notebook's own two cells. How long any phase takes depends on the machine and is not judged."""
    phases = bench.overhead("local", 1, tmp_path)
    parts = phases["task start"] + phases["kernel start"] + phases["kernel stop"] + phases["result return"]
    assert phases["runs"] == 1 and phases["kernel start"] > 0
    assert all(v >= 0 for k, v in phases.items() if k != "runs"), phases
    # each phase is a mean rounded to 0.01 s: four roundings of at most 0.005 s each, and the total's
    assert parts <= phases["run total"] + 0.025, phases
