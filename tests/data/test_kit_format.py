"""The kit's .npz corpus format: exact round trip, atomic writes, clear errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from safsd_glnet.data.corpus import Corpus, DataError, Dialogue
from safsd_glnet.data.kit_format import FORMAT_NAME, load_corpus, save_corpus
from safsd_glnet.data.sdt_pickle import load_sdt_pickle
from safsd_glnet.data.synthetic import make_synthetic
from sdt_fixtures import write_sdt_pickle


def _assert_same_corpus(a: Corpus, b: Corpus) -> None:
    assert a.name == b.name
    assert a.class_names == b.class_names
    assert a.speaker_names == b.speaker_names
    assert a.feature_sizes == b.feature_sizes
    assert list(a.dialogues) == list(b.dialogues)
    assert a.splits == b.splits
    for key, d in a.dialogues.items():
        e = b.dialogues[key]
        assert d.id == e.id
        assert d.texts == e.texts
        for name in ("labels", "speakers"):
            x, y = getattr(d, name), getattr(e, name)
            assert y.dtype == np.int64 and np.array_equal(x, y)
        assert set(d.features) == set(e.features)
        for m in d.features:
            assert e.features[m].dtype == np.float32
            assert np.array_equal(d.features[m], e.features[m])


def _sdt_corpus(tmp_path):
    path = tmp_path / "iemocap.pkl"
    write_sdt_pickle(path, "iemocap", num_dialogues=9, sizes={"t": 5, "a": 4, "v": 3}, seed=2)
    return load_sdt_pickle(path)


def test_round_trip_with_texts(tmp_path):
    corpus = _sdt_corpus(tmp_path)
    # Non-ASCII text and one dialogue without sentences must survive too.
    first, second = list(corpus.dialogues.values())[:2]
    first.texts[0] = "ça va? — 很好 🙂"
    second.texts = None
    path = tmp_path / "corpus.npz"
    save_corpus(corpus, path)
    back = load_corpus(path)
    _assert_same_corpus(corpus, back)
    assert back.source == str(path)
    assert back.dialogues[first.id].texts[0] == "ça va? — 很好 🙂"
    assert back.dialogues[second.id].texts is None


def test_round_trip_synthetic_without_texts_and_subset_of_modalities(tmp_path):
    corpus = make_synthetic("meld", seed=1, feature_sizes={"t": 6, "v": 3}, num_dialogues=12)
    path = tmp_path / "meld.npz"
    save_corpus(corpus, path)
    back = load_corpus(path)
    _assert_same_corpus(corpus, back)
    assert back.modalities == ("t", "v")


def test_file_is_plain_npz_with_json_meta(tmp_path):
    corpus = _sdt_corpus(tmp_path)
    path = tmp_path / "c.npz"
    save_corpus(corpus, path)
    with np.load(path, allow_pickle=False) as z:  # no pickle anywhere in the file
        assert sorted(z.files) == ["features_a", "features_t", "features_v", "labels", "lengths",
                                   "meta", "speakers"]
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
        n = corpus.num_utterances()
        assert z["features_a"].shape == (n, 4) and z["features_a"].dtype == np.float32
        assert z["lengths"].tolist() == [len(d) for d in corpus.dialogues.values()]
        labels = np.concatenate([d.labels for d in corpus.dialogues.values()])
        assert np.array_equal(z["labels"], labels)
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == 1
    assert meta["dialogue_ids"] == list(corpus.dialogues)
    assert meta["splits"] == corpus.splits


def test_path_is_used_as_given(tmp_path):
    corpus = make_synthetic("iemocap", feature_sizes={"t": 4}, num_dialogues=3)
    path = tmp_path / "no_suffix"
    save_corpus(corpus, path)
    assert os.listdir(tmp_path) == ["no_suffix"]  # numpy would have appended ".npz"
    _assert_same_corpus(corpus, load_corpus(path))


def test_interrupted_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    old = make_synthetic("iemocap", seed=0, feature_sizes={"t": 4}, num_dialogues=4)
    new = make_synthetic("iemocap", seed=1, feature_sizes={"t": 4}, num_dialogues=4)
    path = tmp_path / "c.npz"
    save_corpus(old, path)
    before = path.read_bytes()

    real_savez = np.savez

    def failing_savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")  # some bytes reach the disk, then it fails
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="simulated"):
        save_corpus(new, path)
    monkeypatch.setattr(np, "savez", real_savez)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]
    _assert_same_corpus(old, load_corpus(path))
    # And a save that succeeds replaces the file.
    save_corpus(new, path)
    _assert_same_corpus(new, load_corpus(path))
    assert os.listdir(tmp_path) == ["c.npz"]


def test_invalid_corpus_is_not_written(tmp_path):
    corpus = make_synthetic("iemocap", feature_sizes={"t": 4}, num_dialogues=3)
    next(iter(corpus.dialogues.values())).labels[0] = 99
    with pytest.raises(DataError, match="labels"):
        save_corpus(corpus, tmp_path / "bad.npz")
    assert os.listdir(tmp_path) == []


def _rewrite(src, dst, change_meta=None, change_arrays=None):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    if change_meta:
        change_meta(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    if change_arrays:
        change_arrays(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("change_meta, change_arrays, expected", [
    (lambda m: m.update(format_version=2), None, "format_version"),
    (lambda m: m.update(format="something-else"), None, "not a safsd-glnet-corpus file"),
    (lambda m: m.pop("class_names"), None, "meta.class_names"),
    (None, lambda a: a.update(lengths=a["lengths"] + 1), "labels"),
    (None, lambda a: a.update(features_t=a["features_t"].astype(np.float64)), "features_t"),
    (None, lambda a: a.update(labels=a["labels"] + 50), "labels"),
    (None, lambda a: a.pop("speakers"), "speakers"),
])
def test_bad_contents(tmp_path, change_meta, change_arrays, expected):
    corpus = make_synthetic("iemocap", feature_sizes={"t": 4}, num_dialogues=4)
    good = tmp_path / "good.npz"
    save_corpus(corpus, good)
    bad = tmp_path / "bad.npz"
    _rewrite(good, bad, change_meta, change_arrays)
    with pytest.raises(DataError, match=expected) as info:
        load_corpus(bad)
    assert str(bad) in str(info.value)


def test_version_message_is_helpful(tmp_path):
    corpus = make_synthetic("iemocap", feature_sizes={"t": 4}, num_dialogues=3)
    good = tmp_path / "good.npz"
    save_corpus(corpus, good)
    bad = tmp_path / "future.npz"
    _rewrite(good, bad, lambda m: m.update(format_version=7))
    with pytest.raises(DataError) as info:
        load_corpus(bad)
    assert "7" in str(info.value) and "reads format_version 1" in str(info.value)


def test_corrupted_truncated_and_foreign_files(tmp_path):
    corpus = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 4}, num_dialogues=5)
    good = tmp_path / "good.npz"
    save_corpus(corpus, good)
    data = good.read_bytes()
    flipped = bytearray(data)
    middle = len(data) // 2
    flipped[middle:middle + 16] = bytes(255 - b for b in flipped[middle:middle + 16])
    cases = {"truncated.npz": data[: len(data) // 2], "flipped.npz": bytes(flipped),
             "empty.npz": b"", "text.npz": b"hello, world\n"}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError) as info:
            load_corpus(path)
        assert str(path) in str(info.value), name
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(DataError, match="no 'meta' entry"):
        load_corpus(foreign)
    with pytest.raises(DataError, match="not found"):
        load_corpus(tmp_path / "missing.npz")


def test_dialogue_order_and_ids_are_kept(tmp_path):
    # A hand-built corpus whose dict order is not sorted.
    rng = np.random.default_rng(0)
    dialogues = {}
    for key, n in (("zeta", 2), ("alpha", 3), ("mid", 1)):
        dialogues[key] = Dialogue(key, rng.integers(0, 2, n), rng.integers(0, 3, n),
                                  {"a": rng.standard_normal((n, 2)).astype(np.float32)},
                                  [f"s{i}" for i in range(n)])
    corpus = Corpus("hand", ["x", "y", "z"], ["p", "q"], {"a": 2}, dialogues,
                    {"train": ["zeta", "mid"], "test": ["alpha"]})
    path = tmp_path / "hand.npz"
    save_corpus(corpus, path)
    back = load_corpus(path)
    assert list(back.dialogues) == ["zeta", "alpha", "mid"]
    _assert_same_corpus(corpus, back)
