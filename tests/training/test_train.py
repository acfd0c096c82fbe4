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
from safsd_glnet.model.losses import LossComputer
from safsd_glnet.training.train import build_model, load_model, make_optimizer, predict, train

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


def test_a_run_says_and_records_its_validation_split(tmp_path, capsys):
    """A MELD-layout pickle with the official dev block: training prints which split chooses the
    epoch, and metrics.json, both checkpoints and load_model carry the record."""
    from safsd_glnet.data import load_sdt_pickle
    from sdt_fixtures import write_sdt_pickle

    pkl = tmp_path / "meld.pkl"
    write_sdt_pickle(pkl, "meld", sizes={"t": 8, "a": 6, "v": 4}, ids=[*range(12), *range(1039, 1153), 1153, 1154],
                     num_test=2, lengths=(1, 3))
    data = load_sdt_pickle(pkl)
    capsys.readouterr()
    train(tiny(epochs=1), data, tmp_path / "run")
    assert capsys.readouterr().out.splitlines()[0] == "validation: official dev (114 dialogues)"
    expected = {"kind": "official-dev", "dialogues": 114}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"] == expected
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        assert torch.load(tmp_path / "run" / name, weights_only=True)["validation"] == expected, name
    assert load_model(tmp_path / "run" / "checkpoint_best.pt")[1]["validation"] == expected


def test_checkpoints_without_the_validation_record_still_load_and_resume(tmp_path, corpus):
    """Checkpoints written before the record existed: load_model reads them (validation None)
    and a run resumes from one, then records the corpus's validation split."""
    cfg = tiny(epochs=3, save_every_s=0.0)
    _train_interrupted_after(cfg, corpus, tmp_path / "run", 2)
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        path = tmp_path / "run" / name
        old = torch.load(path, weights_only=True)
        del old["validation"]
        torch.save(old, path)
    model, info = load_model(tmp_path / "run" / "checkpoint_best.pt")
    assert info["validation"] is None and info["epoch"] >= 1
    metrics = train(cfg, corpus, tmp_path / "run", resume=True).metrics
    assert metrics["epochs_run"] == 3
    assert metrics["validation"] == {"kind": "synthetic", "seed": 0, "dialogues": len(corpus.splits["valid"])}


def test_seed_summaries_record_the_validation_split(corpus):
    from safsd_glnet.training.train import train_seeds

    summary = train_seeds(tiny(epochs=1), corpus, [0, 1])
    assert summary["validation"] == {"kind": "synthetic", "seed": 0, "dialogues": len(corpus.splits["valid"])}


def _train_interrupted_after(cfg, corpus, out, last_epoch):
    """Train into ``out`` and stop with a KeyboardInterrupt (as Ctrl-C would) after ``last_epoch``."""
    def stop(epoch, record):
        if epoch == last_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, corpus, out, callback=stop)


def test_resume_equals_uninterrupted(tmp_path, corpus):
    cfg = tiny(epochs=4, save_every_s=0.0)  # a resume point after every epoch: resumes from epoch 2
    full = train(cfg, corpus, tmp_path / "full").metrics
    _train_interrupted_after(cfg, corpus, tmp_path / "cut", 2)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train(cfg, corpus, tmp_path / "cut", resume=True).metrics
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(full["history"])
    assert resumed["test"] == full["test"]
    assert resumed["chosen_epoch"] == full["chosen_epoch"]


def _saved_epochs(monkeypatch):
    """Record (file name, epoch) of every checkpoint the training loop writes."""
    import safsd_glnet.training.train as train_module

    saved = []
    real = train_module.files.save_torch
    monkeypatch.setattr(train_module.files, "save_torch",
                        lambda path, obj: saved.append((path.name, obj["epoch"])) or real(path, obj))
    return saved


@pytest.mark.parametrize("every, expected", [
    (0.0, [1, 2, 3, 4]),  # 0: after every epoch
    (1e9, [4]),  # never by time: after the last epoch only
])
def test_the_resume_point_is_written_as_often_as_save_every_s_says(tmp_path, corpus, monkeypatch, every, expected):
    saved = _saved_epochs(monkeypatch)
    run = train(tiny(epochs=4, save_every_s=every), corpus, tmp_path / "run")
    assert [e for name, e in saved if name == "checkpoint_last.pt"] == expected
    # checkpoint_best.pt is written only just before a resume point, with the best epoch so far,
    # so that the pair on disk always agrees; the last one holds the chosen epoch's weights.
    for i, (name, epoch) in enumerate(saved):
        if name == "checkpoint_best.pt":
            assert saved[i + 1][0] == "checkpoint_last.pt" and epoch <= saved[i + 1][1], saved
    best = run.metrics["chosen_epoch"]
    assert [e for name, e in saved if name == "checkpoint_best.pt"][-1] == best
    if every > 0:
        assert saved == [("checkpoint_best.pt", best), ("checkpoint_last.pt", 4)]
    best_ckpt = torch.load(tmp_path / "run" / "checkpoint_best.pt", weights_only=True)
    assert best_ckpt["epoch"] == best
    for name, value in run.model.state_dict().items():
        assert torch.equal(best_ckpt["model"][name].to(value.device), value), name


def test_the_resume_point_is_written_by_time_and_when_early_stopping_ends_the_run(tmp_path, corpus, monkeypatch):
    import safsd_glnet.training.train as train_module

    clock = iter(range(0, 10_000, 25))  # 25 s pass between two readings of the clock
    monkeypatch.setattr(train_module, "_clock", lambda: float(next(clock)))
    saved = _saved_epochs(monkeypatch)
    run = train(tiny(epochs=40, patience=4, save_every_s=60.0), corpus, tmp_path / "run")
    last = [e for name, e in saved if name == "checkpoint_last.pt"]
    assert run.metrics["stopped_early"] and last[-1] == run.metrics["epochs_run"] and len(last) >= 2
    # The clock is read at the start, after each epoch and after each save (each reading 25 s
    # later), so every third epoch is the first at least 60 s after the previous save.
    assert last[:-1] == list(range(3, run.metrics["epochs_run"], 3))


def test_resume_with_no_resume_point_yet_starts_again_and_equals_uninterrupted(tmp_path, corpus):
    cfg = tiny(epochs=4, save_every_s=1e9)
    full = train(cfg, corpus, tmp_path / "full").metrics
    _train_interrupted_after(cfg, corpus, tmp_path / "cut", 2)
    assert not (tmp_path / "cut" / "checkpoint_last.pt").exists()
    epochs = []
    resumed = train(cfg, corpus, tmp_path / "cut", resume=True, callback=lambda e, r: epochs.append(e)).metrics
    assert epochs == [1, 2, 3, 4]
    assert resumed["test"] == full["test"]


def test_a_best_checkpoint_of_another_epoch_is_refused_at_the_end(tmp_path, corpus):
    cfg = tiny(epochs=3, save_every_s=0.0)
    _train_interrupted_after(cfg, corpus, tmp_path / "run", 3)  # after both checkpoints, before metrics.json
    path = tmp_path / "run" / "checkpoint_best.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["epoch"] = ckpt["epoch"] % 3 + 1  # as if written by a replay that went another way
    torch.save(ckpt, path)
    with pytest.raises(DataError, match=r"checkpoint_best.pt: holds epoch \d, not the chosen epoch \d.*--overwrite"):
        train(cfg, corpus, tmp_path / "run", resume=True)


def test_resume_refuses_another_config(tmp_path, corpus):
    train(tiny(epochs=1), corpus, tmp_path / "r")
    with pytest.raises(ValueError, match="another configuration"):
        train(tiny(epochs=2, lr=0.5), corpus, tmp_path / "r", resume=True)


def test_prototype_similarity_is_refreshed_and_sane(tmp_path):
    """After training, S of the "prototype" source has an identity diagonal, spread-out
    off-diagonals (uncentred class means put them all at 0.73-1.00), and each designed similar
    class of the synthetic corpus has its partner as its most similar class."""
    data = make_synthetic("iemocap", seed=0, feature_sizes={"t": 64, "a": 48, "v": 32}, num_dialogues=60)
    cfg = tiny(epochs=6).replace(loss={"similarity": "prototype"})
    train(cfg, data, tmp_path / "run")
    s = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)["similarity"].numpy()
    names = data.class_names
    np.testing.assert_allclose(np.diag(s), 1.0)
    off = s[~np.eye(len(names), dtype=bool)]
    assert off.std() > 0.2 and (off < 0.5).mean() > 0.5, np.round(s, 2)
    pairs = [("happy", "excited"), ("angry", "frustrated"), ("sad", "frustrated")]
    partners = {n: {b if a == n else a for a, b in pairs if n in (a, b)} for n in names}
    for i, name in enumerate(names):
        if partners[name]:
            row = s[i].copy()
            row[i] = -1
            assert names[int(row.argmax())] in partners[name], (name, np.round(s[i], 2))


def test_training_needs_a_validation_split(corpus):
    broken = make_synthetic("iemocap", seed=0, feature_sizes=SMALL_SIZES, num_dialogues=40)
    broken.splits["train"] = broken.splits["train"] + broken.splits.pop("valid")
    with pytest.raises(DataError, match="valid"):
        train(tiny(), broken)


def test_modality_subset_and_ablations_train(corpus):
    run = train(tiny(epochs=1).replace(model={"modalities": "ta"}), corpus)
    assert run.model.modalities == ("t", "a") and set(run.model.encoders) == {"t", "a"}
    assert {k for k in run.metrics["history"][0]["loss"] if k.startswith("student_")} == {"student_t", "student_a"}
    # The visual features are not read: changing them changes no prediction.
    noisy = corpus.with_modalities(("t", "a", "v"))
    for d in noisy.split("test"):
        d.features["v"] = d.features["v"] + 100.0
    assert (predict(run.model, noisy.split("test")).preds == predict(run.model, corpus.split("test")).preds).all()

    run = train(tiny(epochs=1).replace(model={"use_gcn": False, "use_transformer": False}), corpus)
    assert run.model.gcn is None and run.model.attention is None
    assert run.model.teacher.in_features == 3 * run.config.model.hidden

    run = train(tiny(epochs=1).replace(loss={"use_saf": False, "use_distillation": False}), corpus)
    terms = set(run.metrics["history"][0]["loss"])
    assert not any(k.startswith("kl_") for k in terms) and {"teacher_ce", "student_t", "total"} <= terms
    # Without SAF the student terms are the teacher's weighted CE, computed on the same outputs.
    from safsd_glnet.model.losses import weighted_ce

    batch = collate(corpus.split("train")[:3])
    out = run.model.eval()(batch)
    losses = LossComputer.from_counts(run.config.loss, corpus.class_counts("train"), corpus.class_names)
    _, t = losses(out, batch.real_labels)
    torch.testing.assert_close(t["student_a"], weighted_ce(out.student_logits["a"], batch.real_labels,
                                                            losses.class_weights).detach())


def test_early_stopping_inside_train(corpus, monkeypatch):
    """A scripted validation curve: with patience 3 the run stops after three epochs without a
    better validation weighted F1, and the chosen epoch is the best one (ties go to the earlier)."""
    from safsd_glnet.training import train as train_module

    curve = iter([10.0, 30.0, 30.0, 35.0, 25.0, 40.0, 39.0, 40.0, 12.0, 11.0, 50.0, 60.0])
    real_evaluate = train_module.evaluate
    calls = {"n": 0}

    def scripted(model, dialogues, class_names, *args, **kwargs):
        result = real_evaluate(model, dialogues, class_names, *args, **kwargs)
        if calls["n"] % 2 == 0:  # per epoch: validation, then test
            result["weighted_f1"] = next(curve)
        calls["n"] += 1
        return result

    monkeypatch.setattr(train_module, "evaluate", scripted)
    run = train(tiny(epochs=12, patience=3), corpus)
    m = run.metrics
    # best 40.0 at epoch 6; epochs 7, 8 (a tie, not better) and 9 do not improve: stop after 9
    assert [r["epoch"] for r in m["history"]] == list(range(1, 10))
    assert m["chosen_epoch"] == 6 and m["stopped_early"] is True and m["epochs_run"] == 9


def test_evaluation_runs_in_the_precision_of_training(corpus, monkeypatch):
    """``train.amp`` reaches every forward pass: training steps, validation and test scoring."""
    from safsd_glnet.training import train as train_module

    seen = []
    real = train_module._autocast

    def spy(device, enabled, *rest):
        seen.append(enabled)
        return real(device, enabled, *rest)

    monkeypatch.setattr(train_module, "_autocast", spy)
    train(tiny(epochs=1, amp=False), corpus)
    assert seen and not any(seen)
    seen.clear()
    train(tiny(epochs=1, amp=True), corpus)
    assert seen and all(seen)


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


def test_standardisation_uses_training_statistics_and_travels_with_the_checkpoint(tmp_path):
    """model.standardise: mean and std of the training split only (computed here with numpy),
    applied to every split inside the model, stored in the checkpoint and applied by load_model."""
    data = make_synthetic("iemocap", seed=2, feature_sizes={"t": 6, "a": 5, "v": 4}, num_dialogues=20)
    for d in data.dialogues.values():  # scales far from 1, as sentence vectors and openSMILE have
        d.features["t"] = d.features["t"] * 0.05 + 3.0
        d.features["a"] = d.features["a"] * 400.0
    cfg = tiny(epochs=1)
    model = build_model(cfg, data)
    for m in ("t", "a", "v"):
        x = np.concatenate([d.features[m] for d in data.split("train")]).astype(np.float64)
        np.testing.assert_allclose(model.encoders[m].mean.numpy(), x.mean(0), rtol=1e-6)
        np.testing.assert_allclose(model.encoders[m].std.numpy(), x.std(0), rtol=1e-5)
    enc = model.encoders["a"].eval()
    x = torch.from_numpy(data.split("test")[0].features["a"])
    zeros = torch.zeros(len(x), cfg.model.hidden)
    want = ((x - enc.mean) / enc.std) @ enc.proj.weight.t()
    torch.testing.assert_close(enc(x, zeros, zeros), want)
    run = train(cfg, data, tmp_path / "run")
    loaded, info = load_model(tmp_path / "run" / "checkpoint_best.pt")
    assert info["config"].model.standardise is True
    torch.testing.assert_close(loaded.encoders["a"].std, run.model.encoders["a"].std)
    again = predict(loaded, data.split("test"))
    assert (again.preds == predict(run.model, data.split("test")).preds).all()
    # Configurations written before the field existed load as unstandardised.
    from safsd_glnet.config import Config

    old = cfg.to_dict()
    del old["model"]["standardise"]
    assert Config.from_dict(old).model.standardise is False
    assert "encoders.t.mean" not in build_model(Config.from_dict(old), data).state_dict()


def test_the_command_line_equals_the_text_study(tmp_path):
    """`safsd-glnet train` with the study's settings gives the study's numbers on the same corpus
    (experiments/real_text.py runs SAFSD-GLNet through the kit's own configuration)."""
    from experiments import real_text
    from safsd_glnet.cli.commands import main
    from safsd_glnet.data import save_corpus

    data = make_synthetic("meld", seed=3, feature_sizes={"t": 12}, num_dialogues=40).with_modalities(("t",))
    for d in data.dialogues.values():
        d.features["t"] = d.features["t"] * 0.05  # small vectors, as a sentence encoder gives
    save_corpus(data, tmp_path / "text.npz")
    study = real_text.run_glnet(data, "meld", "glnet", seed=1, epochs=3, device="cpu")
    settings = real_text.TEXT_SETTINGS["meld"]
    flags = [f"{s}.{k}={v}" for s, fields in settings.items() for k, v in fields.items()]
    assert main(["train", "--data", str(tmp_path / "text.npz"), "--preset", "small", "--modalities", "t",
                 "--seed", "1", "--epochs", "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "cli"),
                 *[a for f in flags for a in ("--set", f)]]) == 0
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli["test"]["weighted_f1"] == study["weighted_f1"] and cli["chosen_epoch"] == study["chosen_epoch"]
    assert cli["valid"]["weighted_f1"] == study["valid_weighted_f1"]


def test_the_text_study_reads_a_feature_file(tmp_path):
    """experiments/real_text.py --features scores a saved corpus (e.g. fine-tuned features)
    exactly as it scores the corpus itself, and refuses one of another dataset."""
    from experiments import real_text
    from safsd_glnet.data import save_corpus

    data = make_synthetic("meld", seed=4, feature_sizes={"t": 12}, num_dialogues=40).with_modalities(("t",))
    save_corpus(data, tmp_path / "text.npz")
    out = tmp_path / "rt.json"
    assert real_text.main(["--datasets", "meld", "--models", "lr", "lr_context", "--seeds", "1", "--features",
                           str(tmp_path / "text.npz"), "--data-dir", str(tmp_path / "absent"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["features"] == str(tmp_path / "text.npz")
    for model in ("lr", "lr_context"):
        direct = real_text.run_lr(data, "meld", model, 0, 3)
        assert result["results"]["meld"][model]["runs"][0]["weighted_f1"] == pytest.approx(direct["weighted_f1"])
    with pytest.raises(SystemExit, match=r"text.npz: classes .* are not iemocap's"):
        real_text.main(["--datasets", "iemocap", "--models", "lr", "--seeds", "1", "--features",
                        str(tmp_path / "text.npz"), "--out", str(tmp_path / "no.json")])
    assert real_text.main(["--datasets", "iemocap", "meld", "--features", str(tmp_path / "text.npz"),
                           "--out", str(tmp_path / "no.json")]) == 2


def test_unseen_speakers_are_said_at_the_start_and_recorded(tmp_path, corpus, capsys):
    """Every second utterance of the first test dialogue gets a speaker that never speaks in train;
    the share is counted here from the arrays, independently of the kit's function."""
    from dataclasses import replace

    names = [*corpus.speaker_names, "newcomer"]
    new = len(names) - 1
    first = corpus.splits["test"][0]
    speakers = corpus.dialogues[first].speakers.copy()
    speakers[::2] = new
    data = replace(corpus, speaker_names=names,
                   dialogues={**corpus.dialogues, first: replace(corpus.dialogues[first], speakers=speakers)})
    in_train = set(np.concatenate([d.speakers for d in data.split("train")]).tolist())
    expected = {s: float(np.mean([int(i) not in in_train for d in data.split(s) for i in d.speakers]))
                for s in ("valid", "test")}
    assert expected["test"] > 0
    capsys.readouterr()
    train(tiny(epochs=1, progress=False), data, tmp_path / "run")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (f"unseen speakers: valid {100 * expected['valid']:.1f}%, test {100 * expected['test']:.1f}% "
                        "of utterances have a speaker never seen in train (their speaker embedding is untrained; "
                        "see docs/speakers.md)")
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["unseen_speakers"]
    assert recorded == pytest.approx(expected)


def test_seeds_say_one_line_each_without_bars(tmp_path, corpus, capsys):
    from safsd_glnet.training.train import train_seeds

    capsys.readouterr()
    train_seeds(tiny(epochs=1, progress=False), corpus, [3, 5], tmp_path / "s")
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("seed ")]
    assert [x.split(":")[0] for x in lines] == ["seed 3 (1/2)", "seed 5 (2/2)"]
    for seed, line in zip((3, 5), lines):
        m = json.loads((tmp_path / "s" / f"seed{seed}" / "metrics.json").read_text())
        assert line.endswith(f"epoch {m['chosen_epoch']} chosen by validation weighted F1 "
                             f"{m['valid']['weighted_f1']:.2f}; test weighted F1 {m['test']['weighted_f1']:.2f}")
