""".npz archives: sizes and headers checked before anything is allocated.

The hostile archives come from ``tests/hostile_fixtures.py``; each is refused before numpy
reads its data, so loading them in this process is safe.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

import hostile_fixtures as hf
from safsd_glnet.data import load_corpus, make_synthetic, save_corpus
from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.safe.npz import MAX_MEMBERS, MAX_RATIO, RATIO_SLACK, read_npz


def test_reads_what_numpy_writes(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([True, False]),
              "c": np.asfortranarray(np.ones((2, 3), dtype=">f8")), "e": np.zeros((0, 5), np.int64)}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        got = read_npz(path)
        assert set(got) == set(arrays)
        for k, v in arrays.items():
            assert got[k].dtype == v.dtype and np.array_equal(got[k], v)


def _compressed_zeros(tmp_path, nbytes: int):
    path = tmp_path / f"zeros{nbytes}.npz"
    np.savez_compressed(path, x=np.zeros(nbytes // 4, dtype=np.float32))
    return path


def test_ratio_limit(tmp_path):
    ok = _compressed_zeros(tmp_path, RATIO_SLACK // 2)  # within the slack: loads
    assert read_npz(ok)["x"].nbytes == RATIO_SLACK // 2
    bomb = _compressed_zeros(tmp_path, 4 * RATIO_SLACK)  # 4 MiB of zeros in ~4 kB
    with zipfile.ZipFile(bomb) as z:
        info = z.getinfo("x.npy")
    assert info.file_size > MAX_RATIO * info.compress_size + RATIO_SLACK
    with pytest.raises(DataError, match="member 'x.npy' declares .* zip bomb"):
        read_npz(bomb)


@pytest.mark.parametrize("name, words", [
    ("zip_bomb.npz", "member 'features_t.npy' declares"),
    ("npy_huge_shape.npz", "member 'features_t.npy': field 'shape' says \\(100000000000, 8\\)"),
    ("npy_large_shape.npz", "field 'shape' says \\(100000000, 8\\)"),
    ("object_member.npz", "member 'labels.npy': field 'dtype' is object"),
    ("huge_npy_header.npz", "field 'header' is longer than"),
    ("lying_size.npz", "not a readable .npz archive"),
    ("many_members.npz", f"more than the {MAX_MEMBERS}"),
    ("npy_as_npz.npz", "is a single numpy .npy array, not a .npz archive"),
    ("pickle_as_npz.npz", "is a pickle, not a .npz archive"),
    ("text_as_npz.npz", "is a text file, not a .npz archive"),
    ("empty_npz.npz", "is an empty file"),
    ("truncated_npz.npz", "truncated or corrupted"),
    ("deep_meta.npz", "field 'meta': JSON nested 100001 deep"),
])
def test_hostile_archives_are_refused_by_name(tmp_path, name, words):
    hostile = next(h for h in hf.HOSTILE_NPZ if h.filename == name)
    path = hf.build_all(tmp_path, [hostile])[name]
    with pytest.raises(DataError, match=words) as info:
        load_corpus(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "allow_pickle" not in message


def test_a_corpus_round_trips_through_the_checks(tmp_path):
    corpus = make_synthetic("meld", feature_sizes={"t": 6, "a": 3}, num_dialogues=12)
    save_corpus(corpus, tmp_path / "c.npz")
    back = load_corpus(tmp_path / "c.npz")
    assert list(back.dialogues) == list(corpus.dialogues)
    for k, d in corpus.dialogues.items():
        assert np.array_equal(back.dialogues[k].features["t"], d.features["t"])
