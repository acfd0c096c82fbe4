"""Training loop: learning, protocols, run folder, checkpoints, resume."""
import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from safsd_glnet.config import preset
from safsd_glnet.data import make_synthetic
from safsd_glnet.data.batching import collate
from safsd_glnet.data.corpus import DataError
from safsd_glnet.losses import LossComputer
from safsd_glnet.train import build_model, load_model, make_optimizer, predict, train

SMALL_SIZES = {"t": 32, "a": 24, "v": 16}


@pytest.fixture(scope="module")
def corpus():
    return make_synthetic("iemocap", seed=0, feature_sizes=SMALL_SIZES, num_dialogues=40)


def tiny(**train):
    return preset("tiny").replace(train=train) if train else preset("tiny")


def test_tiny_model_drives_the_loss_down_on_one_batch(corpus):
    cfg = tiny().replace(model={"dropout": 0.0, "use_mask": False})
    torch.manual_seed(0)
    model = build_model(cfg, corpus)
    losses = LossComputer.from_counts(cfg.loss, corpus.class_counts("train"), corpus.class_names)
    batch = collate(corpus.split("train")[:4])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    totals, teacher = [], []
    for _ in range(80):
        loss, terms = losses(model(batch), batch.real_labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
        teacher.append(float(terms["teacher_ce"]))
    # The soft SAF target is smoothed over similar classes, so the total has a floor above 0;
    # the teacher's cross-entropy has none and must collapse on a batch it can memorise.
    assert totals[-1] < 0.5 * totals[0], totals[::10]
    assert teacher[-1] < 0.25 * teacher[0], teacher[::10]


def test_small_model_scores_well_above_chance():
    data = make_synthetic("iemocap", seed=1, feature_sizes=SMALL_SIZES, num_dialogues=60)
    cfg = preset("small").replace(model={"hidden": 32, "heads": 2, "gcn_layers": 2},
                                  train={"epochs": 15, "batch_size": 4, "lr": 3e-3, "progress": False,
                                         "patience": None})
    run = train(cfg, data)
    counts = data.class_counts("test")
    majority = 100 * counts.max() / counts.sum()
    assert run.metrics["test"]["accuracy"] > majority + 15, (run.metrics["test"]["accuracy"], majority)
    assert run.metrics["test"]["weighted_f1"] > 100 / data.num_classes + 20


def test_run_folder_and_protocols(tmp_path, corpus):
    run = train(tiny(epochs=4), corpus, tmp_path / "run")
    out = tmp_path / "run"
    for name in ("config.json", "metrics.json", "checkpoint_best.pt", "checkpoint_last.pt", "test_predictions.csv"):
        assert (out / name).exists(), name
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    m = json.loads((out / "metrics.json").read_text())
    history = m["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    valid = [r["valid"]["weighted_f1"] for r in history]
    assert m["chosen_epoch"] == 1 + int(np.argmax(valid))  # first maximum wins
    assert m["reference_protocol"]["weighted_f1"] == max(r["test"]["weighted_f1"] for r in history)
    # The reported test numbers are those of the chosen epoch.
    assert m["test"]["weighted_f1"] == pytest.approx(history[m["chosen_epoch"] - 1]["test"]["weighted_f1"])
    for r in history:
        assert {"total", "teacher_ce", "student_t", "kl_t"} <= set(r["loss"])
    # Predictions on disk agree with the metrics, computed independently with scikit-learn.
    rows = list(csv.DictReader(open(out / "test_predictions.csv")))
    assert len(rows) == corpus.num_utterances("test")
    y = [r["label"] for r in rows]
    p = [r["prediction"] for r in rows]
    assert m["test"]["weighted_f1"] == pytest.approx(100 * f1_score(y, p, average="weighted"), abs=1e-9)
    # The best checkpoint alone rebuilds the model and reproduces the predictions.
    model, info = load_model(out / "checkpoint_best.pt")
    again = predict(model, corpus.split("test"))
    assert [corpus.class_names[i] for i in again.preds] == p
    assert info["epoch"] == m["chosen_epoch"]


def test_resume_equals_uninterrupted(tmp_path, corpus):
    cfg = tiny(epochs=4)
    full = train(cfg, corpus, tmp_path / "full").metrics

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, corpus, tmp_path / "cut", callback=stop_after_two)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train(cfg, corpus, tmp_path / "cut", resume=True).metrics
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(full["history"])
    assert resumed["test"] == full["test"]
    assert resumed["chosen_epoch"] == full["chosen_epoch"]


def test_resume_refuses_another_config(tmp_path, corpus):
    train(tiny(epochs=1), corpus, tmp_path / "r")
    with pytest.raises(ValueError, match="another configuration"):
        train(tiny(epochs=2, lr=0.5), corpus, tmp_path / "r", resume=True)


def test_prototype_similarity_is_refreshed(corpus):
    cfg = tiny(epochs=2).replace(loss={"similarity": "prototype"})
    run = train(cfg, corpus)
    assert run.metrics["epochs_run"] == 2


def test_training_needs_a_validation_split(corpus):
    broken = make_synthetic("iemocap", seed=0, feature_sizes=SMALL_SIZES, num_dialogues=40)
    broken.splits["train"] = broken.splits["train"] + broken.splits.pop("valid")
    with pytest.raises(DataError, match="valid"):
        train(tiny(), broken)


def test_modality_subset_and_ablations_train(corpus):
    for changes in ({"model": {"modalities": "ta"}}, {"model": {"use_gcn": False, "use_transformer": False}},
                    {"loss": {"use_saf": False, "use_distillation": False}}):
        run = train(tiny(epochs=1).replace(**changes), corpus)
        assert 0 <= run.metrics["test"]["accuracy"] <= 100


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_fused_optimizer_takes_the_default_steps(optimizer):
    """train.py's fused Adam/AdamW follows torch's default update within float error."""
    cfg = preset("tiny").replace(train={"optimizer": optimizer, "lr": 1e-2, "weight_decay": 1e-3})
    torch.manual_seed(0)
    start = [torch.randn(7, 5), torch.randn(11)]
    fused_params = [torch.nn.Parameter(p.clone()) for p in start]
    plain_params = [torch.nn.Parameter(p.clone()) for p in start]
    fused = make_optimizer(cfg.train, fused_params, torch.device("cpu"))
    assert fused.defaults["fused"] is True
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    assert isinstance(fused, cls)
    plain = make_optimizer(cfg.train, plain_params, torch.device("cpu"), fused=False)
    assert isinstance(plain, cls) and not plain.defaults["fused"]
    for step in range(5):
        grads = [torch.randn_like(p) for p in start]
        for params, opt in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    moved = sum((p - s).abs().sum().item() for p, s in zip(fused_params, start))
    assert moved > 0.1  # the steps did something
    for a, b in zip(fused_params, plain_params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
