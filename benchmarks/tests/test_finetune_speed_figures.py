"""The per-1,000-utterance figures of benchmarks/finetune_speed.py, against hand arithmetic."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "finetune_speed.py"


def load():
    spec = importlib.util.spec_from_file_location("finetune_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_per_1000_is_steps_times_step_time_and_the_encoding_rate():
    fs = load()
    parts = {"train": {"batch_size": 32, "seconds_per_step_mean": 0.8},
             "encode": {"utterances": 640, "seconds": 4.0}}
    # 1000 / 32 = 31.25 steps of 0.8 s = 25 s; 4 s for 640 utterances = 6.25 s per 1000
    assert fs.per_1000(parts) == {"train_epoch_seconds": 25.0, "encode_seconds": 6.2}
    assert fs.per_1000({"train": parts["train"]}) == {"train_epoch_seconds": 25.0}
    line = fs.describe_per_1000({"train_epoch_seconds": 25.0, "encode_seconds": 6.2}, 20.8)
    assert line.startswith("per 1,000 utterances of 21 tokens on average: training epoch a = 25.0 s, encoding b = 6.2 s")
