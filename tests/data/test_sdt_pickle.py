"""The SDT / M3Net pickle loader on small files with the standard layout."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.safe.unpickler import UnsafePickleError
from safsd_glnet.data.sdt_pickle import load_sdt_pickle
from sdt_fixtures import make_sdt_fields, pack_sdt_fields, write_sdt_pickle

SIZES = {"t": 8, "a": 6, "v": 4}
IEMOCAP = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]
MELD = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]


def _sort_key(kind):
    return (lambda k: k) if kind == "iemocap" else int


@pytest.mark.parametrize("kind", ["iemocap", "meld"])
def test_loads_standard_layout(tmp_path, kind):
    path = tmp_path / f"{kind}.pkl"
    fields = write_sdt_pickle(path, kind, num_dialogues=20, sizes=SIZES, seed=1)
    corpus = load_sdt_pickle(path)  # kind detected from the tuple length
    assert corpus.name == kind
    assert corpus.source == str(path)
    assert corpus.class_names == (IEMOCAP if kind == "iemocap" else MELD)
    assert corpus.feature_sizes == SIZES
    assert corpus.speaker_names == (["M", "F"] if kind == "iemocap"
                                    else [f"speaker{i}" for i in range(9)])
    assert len(corpus.dialogues) == 20
    assert corpus.num_utterances() == sum(len(v) for v in fields["videoLabels"].values())
    for key, labels in fields["videoLabels"].items():
        d = corpus.dialogues[str(key)]
        assert d.id == str(key)
        assert d.labels.dtype == np.int64 and d.labels.tolist() == labels
        spk = fields["videoSpeakers"][key]
        expected = ([{"M": 0, "F": 1}[s] for s in spk] if kind == "iemocap"
                    else [row.index(1) for row in spk])
        assert d.speakers.tolist() == expected
        for m, name in (("t", "videoText"), ("a", "videoAudio"), ("v", "videoVisual")):
            x = d.features[m]
            assert x.dtype == np.float32 and x.shape == (len(labels), SIZES[m])
            assert np.array_equal(x, np.array(fields[name][key], dtype=np.float32))
        assert d.texts == fields["videoSentence"][key]
    # The test split is testVid; train + valid is trainVid.
    assert corpus.splits["test"] == [str(k) for k in sorted(fields["testVid"], key=_sort_key(kind))]
    assert set(corpus.splits["train"]) | set(corpus.splits["valid"]) == {str(k) for k in fields["trainVid"]}


@pytest.mark.parametrize("kind", ["iemocap", "meld"])
def test_valid_split_is_seeded_10_percent(tmp_path, kind):
    path = tmp_path / "f.pkl"
    fields = write_sdt_pickle(path, kind, num_dialogues=40, sizes=SIZES, seed=2, num_test=10)
    train_ids = sorted(fields["trainVid"], key=_sort_key(kind))  # 30 dialogues
    a = load_sdt_pickle(path, seed=5)
    assert len(a.splits["valid"]) == 3
    # Independent re-computation of the documented rule.
    pick = np.random.default_rng(5).permutation(len(train_ids))[:3]
    assert set(a.splits["valid"]) == {str(train_ids[i]) for i in pick}
    assert not set(a.splits["valid"]) & set(a.splits["train"])
    assert set(a.splits["valid"]) | set(a.splits["train"]) == {str(k) for k in train_ids}
    b = load_sdt_pickle(path, seed=5)
    assert a.splits == b.splits
    others = [load_sdt_pickle(path, seed=s).splits["valid"] for s in range(6, 10)]
    assert any(set(o) != set(a.splits["valid"]) for o in others)
    assert load_sdt_pickle(path, valid_fraction=0.0).splits["valid"] == []
    assert len(load_sdt_pickle(path, valid_fraction=0.2).splits["valid"]) == 6


def test_explicit_valid_ids(tmp_path):
    path = tmp_path / "meld.pkl"
    fields = write_sdt_pickle(path, "meld", num_dialogues=12, sizes=SIZES, seed=3, num_test=2)
    chosen = fields["trainVid"][-2:]
    corpus = load_sdt_pickle(path, valid_ids=chosen)  # ints as in the file
    assert corpus.splits["valid"] == [str(k) for k in chosen]
    assert not set(corpus.splits["train"]) & set(corpus.splits["valid"])
    with pytest.raises(DataError, match="valid_ids") as info:
        load_sdt_pickle(path, valid_ids=[fields["testVid"][0]])
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", ["iemocap", "meld"])
def test_text_mean_averages_four_layers(tmp_path, kind):
    path = tmp_path / "f.pkl"
    fields = write_sdt_pickle(path, kind, num_dialogues=6, sizes=SIZES, seed=4)
    first = load_sdt_pickle(path, text="first")
    mean = load_sdt_pickle(path, text="mean")
    for key in fields["videoLabels"]:
        layers = [np.array(fields[f][key], dtype=np.float64)
                  for f in ("videoText", "roberta2", "roberta3", "roberta4")]
        expected = (layers[0] + layers[1] + layers[2] + layers[3]) / 4
        got = mean.dialogues[str(key)].features["t"]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        assert np.array_equal(first.dialogues[str(key)].features["t"], layers[0].astype(np.float32))
        assert not np.allclose(got, layers[0])


def test_kind_and_tuple_length(tmp_path):
    path = tmp_path / "iemocap.pkl"
    write_sdt_pickle(path, "iemocap", num_dialogues=4, sizes=SIZES)
    assert load_sdt_pickle(path, kind="iemocap").name == "iemocap"
    with pytest.raises(DataError, match="13-tuple") as info:
        load_sdt_pickle(path, kind="meld")
    assert str(path) in str(info.value)
    short = tmp_path / "short.pkl"
    fields = make_sdt_fields("iemocap", 4, SIZES)
    short.write_bytes(pickle.dumps(pack_sdt_fields(fields, "iemocap")[:11]))
    with pytest.raises(DataError, match="11-tuple") as info:
        load_sdt_pickle(short)
    assert str(short) in str(info.value)
    not_tuple = tmp_path / "dict.pkl"
    not_tuple.write_bytes(pickle.dumps({"videoIDs": {}}))
    with pytest.raises(DataError, match="dict"):
        load_sdt_pickle(not_tuple)


def test_unsafe_file_with_the_right_layout_is_refused(tmp_path):
    fields = make_sdt_fields("iemocap", 4, SIZES)
    fields["videoIDs"] = {k: [os.system] for k in fields["videoIDs"]}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(pack_sdt_fields(fields, "iemocap"), protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_sdt_pickle(path)


# ------------------------------------------------------------------------------------------
# bad inputs: each error names the file, the dialogue and the field


def _first(fields):
    return next(iter(fields["videoLabels"]))


def _wrong_size(f, k):
    f["videoAudio"][k][1] = np.zeros(SIZES["a"] - 1, dtype=np.float32)  # one short row
    return "videoAudio"


def _wrong_size_all_rows(f, k):
    f["videoVisual"][k] = [np.zeros(SIZES["v"] + 2, dtype=np.float32) for _ in f["videoVisual"][k]]
    return "videoVisual"


def _nan(f, k):
    f["videoVisual"][k][1][2] = np.nan
    return "videoVisual"


def _inf(f, k):
    f["videoText"][k][0][0] = np.inf
    return "videoText"


def _label_outside(f, k):
    f["videoLabels"][k][-1] = 6
    return "videoLabels"


def _negative_label(f, k):
    f["videoLabels"][k][0] = -1
    return "videoLabels"


def _fractional_label(f, k):
    f["videoLabels"][k] = [float(v) for v in f["videoLabels"][k]]
    f["videoLabels"][k][0] = 1.5
    return "videoLabels"


def _empty(f, k):
    for name in ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "roberta2", "roberta3",
                 "roberta4", "videoAudio", "videoVisual", "videoSentence"):
        f[name][k] = []
    return "videoLabels"


def _modality_length(f, k):
    f["videoAudio"][k] = f["videoAudio"][k][:-1]
    return "videoAudio"


def _speaker_length(f, k):
    f["videoSpeakers"][k] = f["videoSpeakers"][k][:-1]
    return "videoSpeakers"


def _bad_speaker(f, k):
    f["videoSpeakers"][k][0] = "X"
    return "videoSpeakers"


def _sentence_length(f, k):
    f["videoSentence"][k] = f["videoSentence"][k] + ["extra"]
    return "videoSentence"


def _missing_key(f, k):
    del f["videoVisual"][k]
    return "videoVisual"


def _extra_key(f, k):
    f["videoAudio"]["Ses09M_ghost"] = f["videoAudio"][k]
    return ("videoAudio", "Ses09M_ghost")


def _split_unknown(f, k):
    f["trainVid"] = list(f["trainVid"]) + ["Ses09F_ghost"]
    return ("trainVid", "Ses09F_ghost")


def _split_overlap(f, k):
    f["testVid"] = list(f["testVid"]) + [k]
    return "testVid"


IEMOCAP_FAULTS = [_wrong_size, _wrong_size_all_rows, _nan, _inf, _label_outside, _negative_label,
                  _fractional_label, _empty, _modality_length, _speaker_length, _bad_speaker,
                  _sentence_length, _missing_key, _extra_key, _split_unknown, _split_overlap]


def _check_message(err, path, dialogue, field):
    msg = str(err)
    assert str(path) in msg, msg
    assert repr(str(dialogue)) in msg, msg
    assert repr(field) in msg, msg


@pytest.mark.parametrize("fault", IEMOCAP_FAULTS, ids=lambda f: f.__name__.strip("_"))
def test_iemocap_bad_input(tmp_path, fault):
    fields = make_sdt_fields("iemocap", 8, SIZES, seed=7, lengths=(3, 6))
    key = _first(fields)
    got = fault(fields, key)
    field, dialogue = got if isinstance(got, tuple) else (got, key)
    path = tmp_path / "bad.pkl"
    write_sdt_pickle(path, "iemocap", fields=fields)
    with pytest.raises(DataError) as info:
        load_sdt_pickle(path)
    _check_message(info.value, path, dialogue, field)


def _meld_not_one_hot(f, k):
    f["videoSpeakers"][k][1] = [0] * 9
    return "videoSpeakers"


def _meld_two_maxima(f, k):
    f["videoSpeakers"][k][0] = [1, 1, 0, 0, 0, 0, 0, 0, 0]
    return "videoSpeakers"


def _meld_speaker_width(f, k):
    f["videoSpeakers"][k] = [row[:8] for row in f["videoSpeakers"][k]]
    return "videoSpeakers"


def _meld_label_outside(f, k):
    f["videoLabels"][k][0] = 7
    return "videoLabels"


def _meld_audio_nan(f, k):
    f["videoAudio"][k][0, 0] = np.nan  # a 2-D float64 array in the MELD fixture
    return "videoAudio"


def _meld_roberta_size(f, k):
    f["roberta3"][k] = [np.zeros(SIZES["t"] + 1, dtype=np.float32) for _ in f["roberta3"][k]]
    return "roberta3"


@pytest.mark.parametrize("fault", [_meld_not_one_hot, _meld_two_maxima, _meld_speaker_width,
                                   _meld_label_outside, _meld_audio_nan, _meld_roberta_size],
                         ids=lambda f: f.__name__.strip("_"))
def test_meld_bad_input(tmp_path, fault):
    fields = make_sdt_fields("meld", 8, SIZES, seed=8, lengths=(3, 6))
    key = _first(fields)
    field = fault(fields, key)
    path = tmp_path / "bad_meld.pkl"
    write_sdt_pickle(path, "meld", fields=fields)
    with pytest.raises(DataError) as info:
        load_sdt_pickle(path, text="mean")  # "mean" so that roberta3 is read
    _check_message(info.value, path, key, field)
