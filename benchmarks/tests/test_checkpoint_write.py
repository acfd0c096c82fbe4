"""benchmarks/checkpoint_write.py at toy size: it writes both checkpoints and trains both ways."""
import json

from benchmarks import checkpoint_write


def test_checkpoint_write_times_both_files_and_both_intervals(tmp_path, capsys):
    out = tmp_path / "ckpt.json"
    assert checkpoint_write.main(["--preset", "tiny", "--repeats", "2", "--epochs", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    best, last = result["writes"]["checkpoint_best.pt"], result["writes"]["checkpoint_last.pt"]
    assert len(best["seconds"]) == len(last["seconds"]) == 2
    # The resume point adds Adam's two moments to the weights: about three times the size.
    assert 2.5 < last["mib"] / best["mib"] < 3.5, (best, last)
    assert set(result["training"]) == {"save_every_s=0", "save_every_s=60"}
    assert "2 epochs in" in capsys.readouterr().out
