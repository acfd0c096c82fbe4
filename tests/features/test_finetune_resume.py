"""An interrupted fine-tuning job continues after its last finished epoch and ends exactly where an
uninterrupted run ends (safsd_glnet/features/finetune_resume.py), on the tiny random BERT."""
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from safsd_glnet.features import finetune as ft
from safsd_glnet.features import finetune_resume as resume

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_fixtures import tiny_bert, write_table  # noqa: E402,F401
from test_finetune import config, table  # noqa: E402,F401

pytestmark = pytest.mark.integration  # fine-tuning


def stop_in_epoch(monkeypatch, n):
    """Make the validation pass of epoch ``n`` raise KeyboardInterrupt (epochs before it finish)."""
    real, calls = ft.run_classifier, []

    def spy(model, *a, features=True, **k):
        if not features:
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
        return real(model, *a, features=features, **k)
    monkeypatch.setattr(ft, "run_classifier", spy)


def test_a_job_stopped_in_its_third_epoch_ends_as_an_uninterrupted_one(tiny_bert, table, tmp_path, monkeypatch):
    cfg = config(tiny_bert, epochs=4, dropout=0.3)  # dropout: the random state must carry over too
    whole = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "whole", progress=False)
    with monkeypatch.context() as m:
        stop_in_epoch(m, 3)
        with pytest.raises(KeyboardInterrupt):
            ft.finetune_corpus(table, cfg, run_dir=tmp_path / "cut", progress=False)
    saved = resume.progress_path(tmp_path / "cut", "encoder")
    assert saved.is_file() and torch.load(saved, weights_only=True)["epoch"] == 2
    again = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "cut", progress=False)
    assert not saved.exists()  # removed once the encoder is saved
    (a,), (b,) = whole.info["encoders"], again.info["encoders"]
    assert b["continued_after_epoch"] == 2 and "continued_after_epoch" not in a
    keys = ("epoch", "train_loss", "valid_weighted_f1", "valid_loss", "lr_end")
    assert [{k: h[k] for k in keys} for h in a["history"]] == [{k: h[k] for k in keys} for h in b["history"]]
    assert a["chosen_epoch"] == b["chosen_epoch"]
    np.testing.assert_array_equal(whole.corpus.dialogues[table.dialogues[0].id].features["t"],
                                  again.corpus.dialogues[table.dialogues[0].id].features["t"])
    _, m1, _ = ft.load_encoder_folder(tmp_path / "whole" / "encoder")
    _, m2, _ = ft.load_encoder_folder(tmp_path / "cut" / "encoder")
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v1, v2), k


def test_the_comparison_can_fail_a_resume_without_the_random_state_differs(tiny_bert, table, tmp_path, monkeypatch):
    """The check above is not vacuous: continuing with the weights but a fresh random state (other
    dropout masks and batch order) ends elsewhere."""
    cfg = config(tiny_bert, epochs=3, dropout=0.3)
    whole = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "whole", progress=False)
    with monkeypatch.context() as m:
        stop_in_epoch(m, 3)
        with pytest.raises(KeyboardInterrupt):
            ft.finetune_corpus(table, cfg, run_dir=tmp_path / "cut", progress=False)
    # restore the weights, the optimiser and the schedule, but not the shuffling or dropout's random state
    monkeypatch.setattr(resume, "restore", lambda state, shuffle, **k: (
        k["model"].load_state_dict(state["model"]), k["optimizer"].load_state_dict(state["optimizer"]),
        k["scheduler"].load_state_dict(state["scheduler"])))
    again = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "cut", progress=False)
    (a,), (b,) = whole.info["encoders"], again.info["encoders"]
    assert b["continued_after_epoch"] == 2
    assert [h["train_loss"] for h in a["history"][:2]] == [h["train_loss"] for h in b["history"][:2]]
    assert a["history"][2]["train_loss"] != b["history"][2]["train_loss"]


@pytest.mark.parametrize("content", [b"not a torch file", "other key"])
def test_a_corrupt_or_foreign_progress_file_is_set_aside(tiny_bert, table, tmp_path, monkeypatch, caplog, content):
    cfg = config(tiny_bert, epochs=2)
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_in_epoch(m, 2)
        with pytest.raises(KeyboardInterrupt):
            ft.finetune_corpus(table, cfg, run_dir=run_dir, progress=False)
    path = resume.progress_path(run_dir, "encoder")
    if content == "other key":
        state = torch.load(path, weights_only=True)
        state["key"] = "0" * 64
        torch.save(state, path)
    else:
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=resume.__name__):
        result = ft.finetune_corpus(table, cfg, run_dir=run_dir, progress=False)
    assert "starts from its first epoch" in caplog.text and str(path) in caplog.text
    assert "continued_after_epoch" not in result.info["encoders"][0] and not path.exists()


def test_a_progress_file_that_would_run_code_is_refused(tmp_path, caplog):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))
    path = tmp_path / "encoder.progress.pt"
    torch.save({"format": resume.FORMAT, "version": resume.VERSION, "key": "k", "x": Payload()}, path)
    with caplog.at_level(logging.WARNING, logger=resume.__name__):
        assert resume.load_progress(path, "k") is None
    assert "unreadable" in caplog.text
