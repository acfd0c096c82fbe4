"""Fine-tuned text features: input construction, training, cross-fitting, the cache key,
re-encoding new dialogues, and the rule that the test split is never read for a choice.

Every test builds a tiny random BERT (word-level vocabulary, hidden 32, 2 layers) and its
tokenizer in ``tmp_path``: no network, and a fine-tuning takes well under a second. One word is
one token, so expected inputs can be worked out by hand.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safsd_glnet.features import finetune as ft  # noqa: E402
from safsd_glnet.model import precision  # noqa: E402
from safsd_glnet.data.corpus import DataError  # noqa: E402
from safsd_glnet.data.kit_format import load_corpus, save_corpus  # noqa: E402
from safsd_glnet.data.tables import read_table  # noqa: E402
from safsd_glnet.features.utterance_inputs import assemble, build_examples, context_tokens, special_layout  # noqa: E402

from text_fixtures import CLASSES, CUES, HEADER, WORDS, tiny_bert, write_table  # noqa: E402,F401

@pytest.fixture
def table(tmp_path):
    return read_table(write_table(tmp_path / "talks.csv"), class_names=",".join(CLASSES))


def config(tiny_bert, **changes) -> ft.FinetuneConfig:
    base = dict(encoder=str(tiny_bert), epochs=2, lr=5e-3, batch_size=4, warmup=0.0, max_length=48,
                precision="fp32")
    base.update(changes)
    return ft.FinetuneConfig(**base).check()


def tokens(tokenizer, example) -> list[str]:
    return tokenizer.convert_ids_to_tokens(example.ids)


# ---------------------------------------------------------------------- input construction

def test_context_tokens_nearest_first_and_cut():
    past, future = [[1, 2], [3, 4, 5]], [[6], [7, 8]]  # past oldest first, future nearest first
    # room 6: previous-1 (3), next-1 (1), previous-2 (2) fit whole; next-2 finds no room
    assert context_tokens(past, future, 6, 99) == [1, 2, 3, 4, 5, 99, 6]
    # room 5: previous-2 is cut to its last token (the end nearest the utterance)
    assert context_tokens(past, future, 5, 99) == [2, 3, 4, 5, 99, 6]
    # room 2: previous-1 is cut to its end; nothing farther
    assert context_tokens(past, future, 2, 99) == [4, 5, 99]
    # a future piece is cut to its start
    assert context_tokens([], [[6, 7, 8], [9]], 2, None) == [6, 7]
    assert context_tokens([], [], 10, 99) == [] and context_tokens(past, future, 0, 99) == []


def test_inputs_of_a_hand_worked_dialogue(tiny_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    layout = special_layout(tok)
    dialogue = [[("F", "hi"), ("M", "hello there"), ("F", "how are you"), ("M", "fine thanks a lot")]]
    got = build_examples(dialogue, tok, layout, context_past=2, context_future=1, max_length=20)
    assert [tokens(tok, e) for e in got] == [
        # first utterance: no past, so only the marker and the next utterance
        "[CLS] f : hi [SEP] [SEP] m : hello there [SEP]".split(),
        "[CLS] m : hello there [SEP] f : hi [SEP] f : how are you [SEP]".split(),
        # room 20 - 3 specials - 5 - 1 marker = 11: previous-1 (4), next-1 (6), then previous-2 "f : hi" cut to "hi"
        "[CLS] f : how are you [SEP] hi m : hello there [SEP] m : fine thanks a lot [SEP]".split(),
        # last utterance: no future, the marker closes the past
        "[CLS] m : fine thanks a lot [SEP] m : hello there f : how are you [SEP] [SEP]".split(),
    ]
    assert [len(e.ids) for e in got][2] == 20
    # pooling span: the utterance's own tokens, speaker included, specials excluded
    e = got[2]
    assert tok.convert_ids_to_tokens(e.ids[e.start:e.end]) == "f : how are you".split()
    assert e.types == [0] * 7 + [1] * 13
    # past only: no marker; no speakers: the text alone
    past_only = build_examples(dialogue, tok, layout, context_past=1, speakers=False, max_length=20)
    assert tokens(tok, past_only[1]) == "[CLS] hello there [SEP] hi [SEP]".split()
    assert tokens(tok, past_only[0]) == "[CLS] hi [SEP]".split()  # no context at all: one segment
    # an utterance longer than max_length alone loses its end and gets no context
    cut = build_examples(dialogue, tok, layout, context_past=2, context_future=1, max_length=6)
    assert tokens(tok, cut[3]) == "[CLS] m : fine thanks [SEP]".split()
    # the utterance alone (the default window 0 / 0)
    alone = build_examples(dialogue, tok, layout, max_length=20)
    assert tokens(tok, alone[1]) == "[CLS] m : hello there [SEP]".split()


def test_layout_reproduces_the_tokenizers_own_pairs(tiny_bert):
    """BERT and RoBERTa put their special tokens differently; the layout read from each must
    rebuild what the tokenizer itself makes of a pair."""
    from transformers import AutoTokenizer, RobertaTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz:")
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *chars, *("\u0120" + c for c in chars), "\u0120"]
    roberta = RobertaTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[])
    for tok in (AutoTokenizer.from_pretrained(tiny_bert), roberta):
        layout = special_layout(tok)
        a = tok("how are you", add_special_tokens=False)["input_ids"]
        b = tok("fine thanks", add_special_tokens=False)["input_ids"]
        assert assemble(layout, a, b).ids == tok("how are you", "fine thanks")["input_ids"]
        assert assemble(layout, a).ids == tok("how are you")["input_ids"]
    assert special_layout(roberta).middle == (2, 2) and not special_layout(roberta).uses_types


# ------------------------------------------------------------------------------- training

def train_loss(model, tok, examples, labels) -> float:
    tools = ft.Tools(tok, special_layout(tok), "cpu", "fp32", progress=False)
    probs, _ = ft.run_classifier(model, examples, tools, 16, features=False)
    return float(-np.log(probs[np.arange(len(labels)), labels]).mean())


@pytest.mark.integration  # fine-tuning
def test_one_epoch_lowers_the_training_loss_and_saves_a_loadable_encoder(tiny_bert, table, tmp_path):
    from transformers import AutoTokenizer

    cfg = config(tiny_bert, epochs=1)
    result = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "run", progress=False)
    folder = tmp_path / "run" / "encoder"
    info = result.corpus.feature_info["t"]
    assert info["kind"] == "finetuned" and info["encoder_dir"] == str(folder.resolve())
    assert info["fingerprint"] == ft.content_fingerprint(folder)

    # The training loss before (the base encoder with the head the run started from) and after
    # (the encoder loaded back from its folder), computed here from the classifier's outputs.
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    examples = build_examples(ft.table_dialogues(table), tok, special_layout(tok), max_length=48)
    train = [i for i, d in enumerate(d for d in table.dialogues for _ in d.labels) if d.split == "train"]
    labels = np.array([y for d in table.dialogues for y in d.labels])[train]
    ft._seed(cfg.seed)
    before = ft._build_classifier(ft._load_model(str(tiny_bert), True), 3, cfg.dropout, cfg.pooling, cfg.layer)
    _, after, saved = ft.load_encoder_folder(folder, "cpu")
    loss0 = train_loss(before, tok, [examples[i] for i in train], labels)
    loss1 = train_loss(after, tok, [examples[i] for i in train], labels)
    assert loss1 < loss0 - 0.05, (loss0, loss1)
    assert saved["chosen_epoch"] == 1 and saved["trained_on"] == table.splits["train"]

    # The corpus round-trips through the kit's format with its provenance.
    save_corpus(result.corpus, tmp_path / "c.npz")
    again = load_corpus(tmp_path / "c.npz")
    assert again.feature_info == result.corpus.feature_info
    run = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert run["encoders"][0]["history"][0]["train_loss"] > 0 and run["classifier"]["test"]["label"] == ft.TEST_LABEL
    assert not (tmp_path / "run" / ft.UNFINISHED).exists()


@pytest.mark.integration  # fine-tuning
def test_training_settings_take_effect(tiny_bert, table, tmp_path):
    # freeze_below=1: the embeddings and layer 0 keep their weights, layer 1 moves
    result = ft.finetune_corpus(table, config(tiny_bert, freeze_below=1, epochs=1), run_dir=tmp_path / "r",
                                progress=False)
    _, model, _ = ft.load_encoder_folder(Path(result.corpus.feature_info["t"]["encoder_dir"]))
    base = ft._load_model(str(tiny_bert), True).state_dict()
    tuned = model.encoder.state_dict()
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"):
        assert torch.equal(base[name], tuned[name]), name
    assert not torch.equal(base["encoder.layer.1.attention.self.query.weight"],
                           tuned["encoder.layer.1.attention.self.query.weight"])
    # layer "mean2" pools the mean of the two layers' states; "cls" reads the first token
    assert ft.layer_indices("mean2", 2) == [1, 2] and ft.layer_indices("-1", 2) == [2]
    assert ft.layer_indices("-3", 2) == [0] and ft.layer_indices("last", 6) == [6]
    with pytest.raises(ValueError, match="has 2 layers"):
        ft.layer_indices("mean3", 2)


# ------------------------------------------------------------------------------ cross-fitting

@pytest.mark.integration  # fine-tuning
@pytest.mark.parametrize("heldout", ["full", "fold-mean"])
def test_cross_fitting_never_encodes_an_utterance_with_an_encoder_that_saw_its_dialogue(tiny_bert, table, tmp_path,
                                                                                       heldout):
    cfg = config(tiny_bert, folds=3, heldout=heldout, epochs=1)
    result = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "run", progress=False)
    info = result.info
    folds = info["folds"]["assignment"]
    assert sorted(folds) == sorted(table.splits["train"]) and set(folds.values()) == {0, 1, 2}
    encoders = {e["name"]: e for e in info["encoders"]}
    assert set(encoders) == {"fold0", "fold1", "fold2"} | ({"encoder"} if heldout == "full" else set())
    heldout_ids = table.splits["valid"] + table.splits["test"]
    for d in table.dialogues:
        by = [name for name, e in encoders.items() if d.id in e["encodes"]]
        for name in by:
            assert d.id not in encoders[name]["trained_on"], (d.id, name)
        if d.split == "train":
            assert by == [f"fold{folds[d.id]}"]
    for k in range(3):
        assert encoders[f"fold{k}"]["trained_on"] == [i for i in table.splits["train"] if folds[i] != k]
    if heldout == "full":
        assert encoders["encoder"]["trained_on"] == table.splits["train"]
        assert encoders["encoder"]["encodes"] == heldout_ids

    # The record matches what the saved encoders compute: a fold's training utterances are its
    # encoder's vectors; valid / test are the held-out encoder's (or the fold encoders' mean).
    dialogues = {d.id: list(zip(d.speaker_labels, d.texts)) for d in table.dialogues}

    def encode(name, ids):
        tok, model, _ = ft.load_encoder_folder(tmp_path / "run" / name)
        ex = build_examples([dialogues[i] for i in ids], tok, special_layout(tok), max_length=48)
        return ft.run_classifier(model, ex, ft.Tools(tok, special_layout(tok), "cpu", "fp32", False), 8)[1]

    got = lambda ids: np.concatenate([result.corpus.dialogues[i].features["t"] for i in ids])  # noqa: E731
    for k in range(3):
        own = [i for i in table.splits["train"] if folds[i] == k]
        np.testing.assert_allclose(got(own), encode(f"fold{k}", own), atol=1e-5)
    if heldout == "full":
        expected = encode("encoder", heldout_ids)
    else:
        expected = np.mean([encode(f"fold{k}", heldout_ids) for k in range(3)], axis=0)
    np.testing.assert_allclose(got(heldout_ids), expected, atol=1e-5)
    assert not np.allclose(encode("fold0", heldout_ids), encode("fold1", heldout_ids), atol=1e-3)
    assert info["classifier"]["train"]["label"].startswith("out-of-fold")


def test_fold_assignment_is_balanced_and_seeded():
    ids = [f"d{i}" for i in range(10)]
    a = ft.fold_assignment(ids, 3, seed=0)
    assert sorted(np.bincount(list(a.values()))) == [3, 3, 4]
    assert a == ft.fold_assignment(ids, 3, seed=0) and a != ft.fold_assignment(ids, 3, seed=1)
    with pytest.raises(DataError, match="only 2 training dialogues"):
        ft.fold_assignment(ids[:2], 3, seed=0)


# --------------------------------------------------------------------------------- the cache

# A value different from the base config's for every field: a new field must be added here.
OTHER = {"encoder": "other-model", "context_past": 2, "context_future": 1, "speakers": False, "max_length": 40,
         "lr": 1e-4, "epochs": 3, "batch_size": 8, "warmup": 0.2, "weight_decay": 0.0, "grad_clip": None,
         "dropout": 0.2, "class_weights": True, "pooling": "cls", "layer": "mean2", "freeze_below": 1,
         "folds": 3, "heldout": "fold-mean", "seed": 1, "precision": "bf16"}


def test_cache_key_changes_with_every_setting_and_the_data(tiny_bert, table, tmp_path):
    base = config(tiny_bert, folds=2)
    assert set(OTHER) == {f.name for f in dataclasses.fields(ft.FinetuneConfig)}
    key = ft.cache_key(table, base, "fp32", "identity-a")
    assert key == ft.cache_key(table, config(tiny_bert, folds=2), "fp32", "identity-a")  # nothing changed
    keys = {key}
    for name, value in OTHER.items():
        assert getattr(base, name) != value, name
        k = ft.cache_key(table, base.replace(**{name: value}), "fp32", "identity-a")
        assert k not in keys, f"changing {name} did not change the key"
        keys.add(k)
    assert ft.cache_key(table, base, "bf16", "identity-a") != key  # the precision actually used
    assert ft.cache_key(table, base, "fp32", "identity-b") != key  # the encoder's identity
    # the data: a sentence, a label, a speaker, a split
    for change in ("text", "label", "speaker", "split"):
        rows = list(csv.reader(open(tmp_path / "talks.csv")))
        row = rows[3]
        row[{"text": 5, "label": 4, "speaker": 3, "split": 0}[change]] = {
            "text": "no no no", "label": "sad" if row[4] != "sad" else "happy",
            "speaker": "M" if row[3] != "M" else "F", "split": "valid"}[change]
        if change == "split":  # a whole dialogue moves, so its rows stay in one split
            for r in rows[1:]:
                if r[1] == row[1]:
                    r[0] = "valid"
        path = tmp_path / f"{change}.csv"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        other = read_table(path, class_names=",".join(CLASSES))
        assert ft.cache_key(other, base, "fp32", "identity-a") != key, change


@pytest.mark.integration  # fine-tuning
def test_a_finished_run_is_read_and_a_changed_setting_runs_again(tiny_bert, table, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = ft.finetune_corpus(table, config(tiny_bert, epochs=1), cache_dir=cache, progress=False)
    assert not first.reused and first.run_dir.parent == cache.resolve()
    calls = []
    real_fit = ft.fit
    monkeypatch.setattr(ft, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    again = ft.finetune_corpus(table, config(tiny_bert, epochs=1), cache_dir=cache, progress=False)
    assert again.reused and calls == [] and again.run_dir == first.run_dir
    for k, d in first.corpus.dialogues.items():
        np.testing.assert_array_equal(again.corpus.dialogues[k].features["t"], d.features["t"])
    other = ft.finetune_corpus(table, config(tiny_bert, epochs=1, dropout=0.2), cache_dir=cache, progress=False)
    assert calls == [1] and other.run_dir != first.run_dir
    # a run folder holding another run is refused; a user's folder is never emptied
    with pytest.raises(ValueError, match="other settings"):
        ft.finetune_corpus(table, config(tiny_bert, epochs=2), run_dir=first.run_dir, progress=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a fine-tuning run folder"):
        ft.finetune_corpus(table, config(tiny_bert), run_dir=mine, progress=False)
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.integration  # fine-tuning
def test_an_interrupted_cross_fit_keeps_its_finished_encoders(tiny_bert, table, tmp_path, monkeypatch):
    cfg = config(tiny_bert, folds=2, epochs=1)
    real_fit, trained = ft.fit, []

    def fit_then_stop(*a, name="encoder", **k):
        if name == "fold1":
            raise KeyboardInterrupt
        trained.append(name)
        return real_fit(*a, name=name, **k)
    monkeypatch.setattr(ft, "fit", fit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune_corpus(table, cfg, run_dir=tmp_path / "run", progress=False)
    assert trained == ["fold0"] and not (tmp_path / "run" / "finetune.json").exists()
    monkeypatch.setattr(ft, "fit", lambda *a, name="encoder", **k: trained.append(name) or real_fit(*a, name=name, **k))
    result = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "run", progress=False)
    assert trained == ["fold0", "fold1", "encoder"] and not result.reused


# ------------------------------------------------------------------------- new dialogues

@pytest.mark.integration  # fine-tuning
@pytest.mark.parametrize("heldout", ["full", "fold-mean"])
def test_encode_dialogues_reproduces_finetuned_features(tiny_bert, table, tmp_path, heldout):
    cfg = config(tiny_bert, context_past=1, context_future=1, layer="mean2", folds=2, heldout=heldout, epochs=1)
    corpus = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "run", progress=False).corpus
    ids = corpus.splits["valid"] + corpus.splits["test"]
    source = {d.id: list(zip(d.speaker_labels, d.texts)) for d in table.dialogues}
    got = ft.encode_dialogues(corpus.feature_info["t"], [source[i] for i in ids], batch_size=3)
    for i, x in zip(ids, got):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, corpus.dialogues[i].features["t"], atol=1e-5)
    # a changed encoder folder is refused, unless asked not to check
    folder = Path(corpus.feature_info["t"]["encoder_dirs"][0])
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    with pytest.raises(ValueError, match="content differs"):
        ft.encode_dialogues(corpus.feature_info["t"], [source[ids[0]]])
    assert ft.encode_dialogues(corpus.feature_info["t"], [source[ids[0]]], strict=False)[0].shape[0] == len(source[ids[0]])


def test_encode_dialogues_reproduces_frozen_features(tiny_bert, table, tmp_path):
    pytest.importorskip("sentence_transformers")
    from safsd_glnet.features.text import build_text_corpus

    corpus = build_text_corpus(table, str(tiny_bert), cache_dir=None, device="cpu", progress=False)
    info = corpus.feature_info["t"]
    assert info["kind"] == "sentence-encoder" and info["encoder"] == str(tiny_bert.resolve())
    dialogues = [list(zip(d.speaker_labels, d.texts)) for d in table.dialogues]
    got = ft.encode_dialogues(info, dialogues, device="cpu")
    for d, x in zip(table.dialogues, got):
        np.testing.assert_allclose(x, corpus.dialogues[d.id].features["t"], atol=1e-5)
    with pytest.raises(ValueError, match="kind 'pickle'"):
        ft.encode_dialogues({"kind": "pickle"}, dialogues)
    with pytest.raises(ValueError, match="dialogue 0, utterance 1"):
        ft.encode_dialogues(info, [[("M", "hi"), "no speaker"]])
    from safsd_glnet.training.train import data_signature
    assert data_signature(corpus)["feature_info"] == corpus.feature_info


# ------------------------------------------------------------------- no choice reads test

@pytest.mark.integration  # fine-tuning
def test_test_labels_are_never_read_for_a_choice(tiny_bert, tmp_path):
    """Replacing every test label changes the test report and nothing else: not the chosen
    epochs, not the validation curves, not the weights, not the features."""
    runs = []
    for name, test_labels in (("real", None), ("scrambled", lambda n: ["angry"] * n)):
        t = read_table(write_table(tmp_path / f"{name}.csv", test_labels=test_labels), class_names=",".join(CLASSES))
        runs.append(ft.finetune_corpus(t, config(tiny_bert, epochs=3, folds=2), run_dir=tmp_path / name,
                                       progress=False))
    a, b = runs
    assert a.info["key"] != b.info["key"]  # the labels are part of the data: two separate runs
    assert a.info["classifier"]["test"] != b.info["classifier"]["test"]
    for ea, eb in zip(a.info["encoders"], b.info["encoders"]):
        assert ea["chosen_epoch"] == eb["chosen_epoch"]
        assert [h["valid_weighted_f1"] for h in ea["history"]] == [h["valid_weighted_f1"] for h in eb["history"]]
    for k, d in a.corpus.dialogues.items():
        np.testing.assert_array_equal(b.corpus.dialogues[k].features["t"], d.features["t"])
    from safetensors.torch import load_file
    for name in ("encoder", "fold0", "fold1"):
        wa = load_file(str(a.run_dir / name / "model.safetensors"))
        wb = load_file(str(b.run_dir / name / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.integration  # fine-tuning
def test_the_epoch_is_chosen_on_validation(tiny_bert, table, tmp_path, monkeypatch):
    """Feed the selection a validation curve that peaks at epoch 2 of 3: epoch 2's weights are kept."""
    scores = [40.0, 70.0, 55.0]  # the three epochs' validation scores; later calls score for real
    real = ft.compute_metrics

    def fake_metrics(labels, preds, class_names):
        m = real(labels, preds, class_names)
        if scores and len(labels) == sum(len(d) for d in table.dialogues if d.split == "valid"):
            m["weighted_f1"] = scores.pop(0)
        return m
    snapshots = []
    real_run = ft.run_classifier

    def spy(model, *a, features=True, **k):
        if not features:  # the validation pass after each epoch
            snapshots.append({k2: v.clone() for k2, v in model.head.state_dict().items()})
        return real_run(model, *a, features=features, **k)
    monkeypatch.setattr(ft, "compute_metrics", fake_metrics)
    monkeypatch.setattr(ft, "run_classifier", spy)
    result = ft.finetune_corpus(table, config(tiny_bert, epochs=3), run_dir=tmp_path / "run", progress=False)
    assert result.info["encoders"][0]["chosen_epoch"] == 2
    _, model, _ = ft.load_encoder_folder(tmp_path / "run" / "encoder")
    assert torch.equal(model.head.weight, snapshots[1]["weight"])
    assert not torch.equal(model.head.weight, snapshots[2]["weight"])


# ------------------------------------------------------------------- settings, errors, CLI

def test_settings_are_checked_and_parsed():
    with pytest.raises(ValueError, match="pooling"):
        ft.FinetuneConfig(pooling="max").check()
    with pytest.raises(ValueError, match="layer"):
        ft.FinetuneConfig(layer="first").check()
    with pytest.raises(ValueError, match="heldout"):
        ft.FinetuneConfig(heldout="fold-mean").check()  # without folds
    assert ft.parse_setting("lr", "1e-5") == 1e-5 and ft.parse_setting("freeze_below", "none") is None
    assert ft.parse_setting("class_weights", "yes") is True and ft.parse_setting("layer", "-2") == "-2"
    with pytest.raises(ValueError, match="expected int"):
        ft.parse_setting("epochs", "two")
    grid = ft.grid_configs(ft.FinetuneConfig(), {"lr": [1e-5, 2e-5], "epochs": [1, 2]})
    assert [(c.lr, c.epochs) for c in grid] == [(1e-5, 1), (1e-5, 2), (2e-5, 1), (2e-5, 2)]


def test_a_table_without_validation_is_refused(tiny_bert, tmp_path):
    path = write_table(tmp_path / "t.csv")
    rows = [r for r in csv.reader(open(path)) if r[0] != "valid"]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    t = read_table(path, class_names=",".join(CLASSES))
    with pytest.raises(DataError, match="needs 'valid' dialogues"):
        ft.finetune_corpus(t, config(tiny_bert), run_dir=tmp_path / "run", progress=False)


def test_precision_choice():
    flags = set()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        line = next((ln for ln in info.read_text().splitlines() if ln.startswith("flags")), "")
        flags = set(line.partition(":")[2].split())
        expected = bool(flags & {"amx_bf16", "avx512_bf16"}) and torch.backends.mkldnn.is_available()
        assert precision.bf16_supported("cpu") == expected
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if precision.bf16_supported("cpu") else "fp32")
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="not on mps"):
        precision.resolve_precision("bf16", "mps")
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("fp16", "cpu")
    with precision.autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with precision.autocast("cpu", "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.integration  # fine-tuning
def test_cli_finetune_writes_a_corpus_and_reports_errors(tiny_bert, tmp_path, capsys):
    from safsd_glnet.cli.commands import main

    path = write_table(tmp_path / "t.csv")
    out = tmp_path / "out.npz"
    args = ["finetune", "--table", str(path), "--classes", ",".join(CLASSES), "--encoder", str(tiny_bert),
            "--epochs", "1", "--lr", "5e-3", "--batch-size", "4", "--max-length", "48", "--precision", "fp32",
            "--context-past", "1", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "classifier test" in text and "report only" in text and "wrote" in text
    # --no-progress drops the bars, not the line per epoch (its numbers are those of finetune.json)
    epoch_lines = [x for x in text.splitlines() if " epoch 1/1: train loss " in x]
    encoder = load_corpus(out).feature_info["t"]
    assert len(epoch_lines) == 1 and text.count("fine-tuning ") == 1, text
    import json as _json
    from pathlib import Path as _Path
    history = _json.loads((_Path(encoder["run_dir"]) / "finetune.json").read_text())["encoders"][0]["history"]
    assert epoch_lines[0].endswith(f"valid w-F1 {history[0]['valid_weighted_f1']:.2f} "
                                   f"({history[0]['seconds']:.0f} s)"), epoch_lines
    corpus = load_corpus(out)
    assert corpus.feature_info["t"]["kind"] == "finetuned" and corpus.feature_info["t"]["context_past"] == 1
    assert main(args) == 0 and "read, not trained" in capsys.readouterr().out
    assert main([*args, "--grid", "dropout=0.1,0.3"]) == 0
    text = capsys.readouterr().out
    assert "grid: 2 settings" in text and text.count("<- chosen") == 1
    assert main([*args, "--no-test-score", "--run-dir", str(tmp_path / "blind")]) == 0
    text = capsys.readouterr().out
    assert "classifier test: (not scored" in text and "report only" not in text
    assert main([*args[:-2], "--layer", "first", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("safsd-glnet finetune: error:") and "layer" in err and err.count("\n") == 1


@pytest.mark.integration  # fine-tuning
def test_reading_out_another_layer_equals_a_run_with_that_layer(tiny_bert, table, tmp_path):
    """Training does not depend on the feature layer, so re-encoding a finished run's encoders at
    "mean2" must give what a whole new run with layer="mean2" gives (same seed, deterministic CPU)."""
    cfg = config(tiny_bert, folds=2, heldout="fold-mean", context_past=1, epochs=1)
    first = ft.finetune_corpus(table, cfg, run_dir=tmp_path / "last", progress=False)
    readout = ft.reencode_layer(table, first.run_dir, "mean2", progress=False)
    fresh = ft.finetune_corpus(table, cfg.replace(layer="mean2"), run_dir=tmp_path / "mean2", progress=False).corpus
    for k, d in fresh.dialogues.items():
        np.testing.assert_allclose(readout.dialogues[k].features["t"], d.features["t"], atol=1e-5)
        assert not np.allclose(first.corpus.dialogues[k].features["t"], d.features["t"], atol=1e-3)
    assert readout.feature_info["t"]["layer"] == "mean2"
    source = {d.id: list(zip(d.speaker_labels, d.texts)) for d in table.dialogues}
    ids = table.splits["test"]
    for i, x in zip(ids, ft.encode_dialogues(readout.feature_info["t"], [source[i] for i in ids])):
        np.testing.assert_allclose(x, readout.dialogues[i].features["t"], atol=1e-5)
    other = read_table(write_table(tmp_path / "other.csv", seed=5), class_names=",".join(CLASSES))
    with pytest.raises(DataError, match="not the data of the run"):
        ft.reencode_layer(other, first.run_dir, "mean2", progress=False)


def test_feature_info_in_the_kit_format(tmp_path):
    """Old files (no meta.feature_info) load with {}; a malformed entry is a one-line DataError."""
    from safsd_glnet.data.corpus import Corpus, Dialogue
    from safsd_glnet.data import kit_format

    d = Dialogue("a", np.array([0, 0]), np.array([1, 0]), {"t": np.ones((2, 3), np.float32)}, ["x", "y"])
    corpus = Corpus("c", ["p", "q"], ["s"], {"t": 3}, {"a": d}, {"train": ["a"]})
    save_corpus(corpus, tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as z:
        assert "feature_info" not in json.loads(z["meta"].tobytes())  # nothing new written without info
    assert load_corpus(tmp_path / "old.npz").feature_info == {}
    corpus.feature_info = {"t": {"kind": "sentence-encoder", "encoder": "minilm", "identity": "x"}}
    save_corpus(corpus, tmp_path / "new.npz")
    assert load_corpus(tmp_path / "new.npz").feature_info == corpus.feature_info
    assert corpus.with_modalities(("t",)).feature_info == corpus.feature_info
    with np.load(tmp_path / "new.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    for bad in ([1, 2], {"a": {"kind": "x"}}, {"t": "text"}):
        meta["feature_info"] = bad
        arrays["meta"] = kit_format._encode_meta(meta)
        with open(tmp_path / "bad.npz", "wb") as f:
            np.savez(f, **arrays)
        with pytest.raises(DataError, match="feature_info"):
            load_corpus(tmp_path / "bad.npz")
