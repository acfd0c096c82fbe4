"""benchmarks/kernel_starts.py runs end to end: one start per transport, appended to its JSON."""
import pytest

from benchmarks import kernel_starts
from safsd_glnet.data.atomic_files import read_json

pytestmark = pytest.mark.integration  # starts Jupyter kernels


def test_kernel_starts_records_each_transport(tmp_path, capsys):
    out = tmp_path / "starts.json"
    assert kernel_starts.main(["--workers", "1", "--starts", "1", "--out", str(out)]) == 0
    assert kernel_starts.main(["--transports", "kit", "--workers", "1", "--starts", "2", "--out", str(out)]) == 0
    entries = read_json(out)
    assert [(e["transport"], e["starts"], e["failed"]) for e in entries] == [("tcp", 1, 0), ("kit", 1, 0), ("kit", 2, 0)]
    assert "kit: 0 of 2 starts failed" in capsys.readouterr().out
