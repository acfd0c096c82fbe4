"""``load_data`` dispatch and the package's public names."""
from __future__ import annotations

import numpy as np
import pytest

import safsd_glnet.data as data
from safsd_glnet.data import DataError, load_data, make_synthetic, save_corpus
from sdt_fixtures import write_sdt_pickle

SMALL = {"t": 4, "a": 3, "v": 2}


def _same_arrays(a, b):
    assert list(a.dialogues) == list(b.dialogues) and a.splits == b.splits
    for key, d in a.dialogues.items():
        e = b.dialogues[key]
        assert np.array_equal(d.labels, e.labels) and np.array_equal(d.speakers, e.speakers)
        for m in d.features:
            assert np.array_equal(d.features[m], e.features[m])


def test_public_names():
    for name in ("Corpus", "Dialogue", "DataError", "Batch", "collate", "iterate_batches",
                 "load_sdt_pickle", "save_corpus", "load_corpus", "make_synthetic", "load_data"):
        assert hasattr(data, name), name


def test_synthetic_specs():
    c = load_data("synthetic:iemocap", feature_sizes=SMALL, num_dialogues=5)
    assert c.name == "synthetic-iemocap" and c.source == "synthetic:iemocap:seed0"
    _same_arrays(c, make_synthetic("iemocap", feature_sizes=SMALL, num_dialogues=5))
    m = load_data("synthetic:meld:seed=3:num_dialogues=6", feature_sizes=SMALL)
    assert m.source == "synthetic:meld:seed3"
    _same_arrays(m, make_synthetic("meld", seed=3, num_dialogues=6, feature_sizes=SMALL))
    s = load_data("synthetic:iemocap:scale=0.05", feature_sizes=SMALL)
    assert len(s.dialogues) == round(151 * 0.05)


@pytest.mark.parametrize("spec, match", [
    ("synthetic:friends", "unknown synthetic profile"),
    ("synthetic:", "unknown synthetic profile"),
    ("synthetic:iemocap:seed", "key=value"),
    ("synthetic:iemocap:colour=red", "key=value"),
    ("synthetic:iemocap:seed=abc", "seed"),
])
def test_bad_synthetic_specs(spec, match):
    with pytest.raises(DataError, match=match):
        load_data(spec)


def test_option_given_twice():
    with pytest.raises(DataError, match="seed"):
        load_data("synthetic:iemocap:seed=1", seed=2, feature_sizes=SMALL)


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".PKL"])
def test_pickle_paths(tmp_path, suffix):
    path = tmp_path / f"meld{suffix}"
    write_sdt_pickle(path, "meld", num_dialogues=6, sizes={"t": 4, "a": 3, "v": 2})
    c = load_data(str(path), text="mean", seed=1)
    assert c.name == "meld" and c.source == str(path)
    assert load_data(path).name == "meld"  # a pathlib.Path works too


def test_npz_path(tmp_path):
    corpus = make_synthetic("iemocap", feature_sizes=SMALL, num_dialogues=4)
    path = tmp_path / "c.npz"
    save_corpus(corpus, path)
    _same_arrays(corpus, load_data(str(path)))


@pytest.mark.parametrize("name", ["missing.pkl", "missing.npz", "missing.pickle"])
def test_missing_file(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(DataError, match="not found") as info:
        load_data(str(path))
    assert str(path) in str(info.value)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "features.xyz"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="cannot tell the format") as info:
        load_data(str(path))
    assert str(path) in str(info.value)


def test_a_table_without_the_utterance_columns_names_them(tmp_path):
    """A .csv is read as an utterance table; one that is something else says what it lacks."""
    path = tmp_path / "features.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['split', 'dialogue_id'") as info:
        load_data(str(path))
    assert str(path) in str(info.value)
