"""The synthetic IEMOCAP- and MELD-shaped corpora."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from safsd_glnet.data.synthetic import PROFILES, make_synthetic

SMALL = {"t": 64, "a": 48, "v": 32}
IEMOCAP_COUNTS = {"happy": 648, "sad": 1084, "neutral": 1708, "angry": 1103, "excited": 1041,
                  "frustrated": 1849}
MELD_COUNTS = {"neutral": 6436, "surprise": 1636, "fear": 358, "sadness": 1002, "joy": 2308,
               "disgust": 361, "anger": 1607}


@pytest.fixture(scope="module")
def iemocap_small():
    return make_synthetic("iemocap", seed=0, feature_sizes=SMALL)


@pytest.fixture(scope="module")
def meld_small():
    return make_synthetic("meld", seed=0, feature_sizes=SMALL)


def _all_labels(corpus):
    return np.concatenate([d.labels for d in corpus.dialogues.values()])


def test_standard_sizes_and_names():
    for profile, sizes, speakers in (("iemocap", {"t": 1024, "a": 1582, "v": 342}, ["M", "F"]),
                                     ("meld", {"t": 1024, "a": 300, "v": 342},
                                      [f"speaker{i}" for i in range(9)])):
        c = make_synthetic(profile, seed=0, num_dialogues=6)  # default sizes, few dialogues
        assert c.feature_sizes == sizes
        assert c.name == f"synthetic-{profile}" and c.source == f"synthetic:{profile}:seed0"
        assert c.speaker_names == speakers
        for d in c.dialogues.values():
            assert d.texts is None
            for m, x in d.features.items():
                assert x.dtype == np.float32 and x.shape == (len(d), sizes[m])


def test_determinism(iemocap_small):
    again = make_synthetic("iemocap", seed=0, feature_sizes=SMALL)
    other = make_synthetic("iemocap", seed=1, feature_sizes=SMALL)
    assert list(again.dialogues) == list(iemocap_small.dialogues)
    assert again.splits == iemocap_small.splits
    for key, d in iemocap_small.dialogues.items():
        e = again.dialogues[key]
        assert np.array_equal(d.labels, e.labels) and np.array_equal(d.speakers, e.speakers)
        for m in SMALL:
            assert np.array_equal(d.features[m], e.features[m])
    assert not np.array_equal(_all_labels(other)[:500], _all_labels(iemocap_small)[:500])
    first = next(iter(other.dialogues))
    assert not np.array_equal(other.dialogues[first].features["t"][:1],
                              iemocap_small.dialogues[first].features["t"][:1])


def test_dropping_a_modality_leaves_the_rest_unchanged(iemocap_small):
    text_only = make_synthetic("iemocap", seed=0, feature_sizes={"t": 64})
    assert text_only.modalities == ("t",)
    for key, d in text_only.dialogues.items():
        assert np.array_equal(d.labels, iemocap_small.dialogues[key].labels)
        assert np.array_equal(d.features["t"], iemocap_small.dialogues[key].features["t"])


def test_iemocap_profile_shape(iemocap_small):
    c = iemocap_small
    assert c.class_names == list(IEMOCAP_COUNTS)
    assert {k: len(v) for k, v in c.splits.items()} == {"train": 108, "valid": 12, "test": 31}
    lengths = np.array([len(d) for d in c.dialogues.values()])
    assert 44 <= lengths.mean() <= 55 and lengths.min() >= 8 and lengths.max() <= 110
    assert abs(c.num_utterances() - 7433) / 7433 < 0.1
    share = np.bincount(_all_labels(c), minlength=6) / c.num_utterances()
    real = np.array(list(IEMOCAP_COUNTS.values())) / 7433
    np.testing.assert_allclose(share, real, atol=0.03)
    # frustrated and neutral lead, happy is rarest, as in IEMOCAP.
    order = np.argsort(-share)
    assert {c.class_names[i] for i in order[:2]} == {"frustrated", "neutral"}
    assert c.class_names[order[-1]] == "happy"
    for d in c.dialogues.values():
        assert set(np.unique(d.speakers)) <= {0, 1}


def test_meld_profile_shape(meld_small):
    c = meld_small
    assert c.class_names == list(MELD_COUNTS)
    assert {k: len(v) for k, v in c.splits.items()} == {"train": 1038, "valid": 114, "test": 280}
    lengths = np.array([len(d) for d in c.dialogues.values()])
    assert 8.5 <= lengths.mean() <= 11 and lengths.min() >= 1 and lengths.max() <= 24
    share = np.bincount(_all_labels(c), minlength=7) / c.num_utterances()
    real = np.array(list(MELD_COUNTS.values())) / 13708
    np.testing.assert_allclose(share, real, atol=0.03)
    name = dict(zip(c.class_names, share))
    assert name["neutral"] > 0.4 and name["neutral"] > name["joy"]
    assert name["joy"] > name["surprise"] and name["joy"] > name["anger"]
    assert min(name["surprise"], name["anger"]) > name["sadness"]
    assert name["sadness"] > max(name["disgust"], name["fear"])
    # Speakers: up to 9 per dialogue, numbered by appearance, a few dominant.
    per_dialogue = [len(np.unique(d.speakers)) for d in c.dialogues.values()]
    assert max(per_dialogue) <= 9 and max(per_dialogue) >= 5
    assert 2 <= np.mean(per_dialogue) <= 4
    for d in c.dialogues.values():
        seen = list(dict.fromkeys(d.speakers.tolist()))
        assert seen == list(range(len(seen)))
    counts = np.bincount(np.concatenate([d.speakers for d in c.dialogues.values()]), minlength=9)
    assert counts[0] == counts.max() and counts[:2].sum() > 0.6 * counts.sum()


def test_overrides():
    c = make_synthetic("meld", seed=2, feature_sizes={"t": 5, "a": 3, "v": 2}, num_dialogues=40)
    assert len(c.dialogues) == 40 and c.feature_sizes == {"t": 5, "a": 3, "v": 2}
    n = {k: len(v) for k, v in c.splits.items()}
    assert n["train"] + n["valid"] + n["test"] == 40
    assert n == {"train": 29, "valid": 3, "test": 8}  # 1038/114/280 proportions
    tiny = make_synthetic("iemocap", feature_sizes={"t": 2}, num_dialogues=3)
    assert {k: len(v) for k, v in tiny.splits.items()} == {"train": 1, "valid": 1, "test": 1}
    scaled = make_synthetic("iemocap", feature_sizes={"t": 2}, scale=0.2)
    assert len(scaled.dialogues) == round(151 * 0.2)
    assert all(len(v) >= 1 for v in scaled.splits.values())
    with pytest.raises(ValueError, match="at least 3"):
        make_synthetic("iemocap", feature_sizes={"t": 2}, num_dialogues=2)
    with pytest.raises(ValueError, match="profile"):
        make_synthetic("friends")
    with pytest.raises(ValueError, match="modality"):
        make_synthetic("iemocap", feature_sizes={"x": 3})


def _same_speaker_agreement(corpus):
    """Fraction of a speaker's consecutive turns (within a dialogue) with the same label."""
    same = total = 0
    for d in corpus.dialogues.values():
        last = {}
        for s, y in zip(d.speakers.tolist(), d.labels.tolist()):
            if s in last:
                total += 1
                same += last[s] == y
            last[s] = y
    return same / total


@pytest.mark.parametrize("profile", ["iemocap", "meld"])
def test_emotional_inertia(profile, iemocap_small, meld_small):
    c = iemocap_small if profile == "iemocap" else meld_small
    share = np.bincount(_all_labels(c), minlength=c.num_classes) / c.num_utterances()
    chance = float((share ** 2).sum())  # agreement if labels were drawn from the prior alone
    assert _same_speaker_agreement(c) > chance + 0.25


@pytest.mark.parametrize("profile", ["iemocap", "meld"])
def test_similar_pairs_are_closer(profile, iemocap_small, meld_small):
    c = iemocap_small if profile == "iemocap" else meld_small
    x = np.vstack([d.features["t"] for d in c.dialogues.values()])
    y = _all_labels(c)
    means = np.stack([x[y == k].mean(axis=0) for k in range(c.num_classes)])
    index = {n: i for i, n in enumerate(c.class_names)}
    similar = {frozenset((index[a], index[b])) for a, b in PROFILES[profile].similar_pairs}
    dist = {frozenset((i, j)): float(np.linalg.norm(means[i] - means[j]))
            for i, j in itertools.combinations(range(c.num_classes), 2)}
    near = max(dist[p] for p in similar)
    far = min(v for p, v in dist.items() if p not in similar)
    assert near < far, (near, far)


def _xy(corpus, split, m):
    ds = corpus.split(split)
    return np.vstack([d.features[m] for d in ds]), np.concatenate([d.labels for d in ds])


def _probe(corpus, m, extra=None):
    """Test accuracy of a logistic regression trained on the train split."""
    xtr, ytr = _xy(corpus, "train", m)
    xte, yte = _xy(corpus, "test", m)
    if extra is not None:
        xtr = np.hstack([xtr, extra(corpus, "train")])
        xte = np.hstack([xte, extra(corpus, "test")])
    scaler = StandardScaler().fit(xtr)
    # One BLAS thread: on a busy 2-core machine threaded BLAS makes this fit 100x slower.
    with threadpool_limits(1):
        model = LogisticRegression(max_iter=300).fit(scaler.transform(xtr), ytr)
    return model.score(scaler.transform(xte), yte), float(np.mean(yte == np.bincount(ytr).argmax()))


def test_text_beats_audio_beats_visual(iemocap_small):
    acc = {m: _probe(iemocap_small, m) for m in "tav"}
    majority = acc["t"][1]
    t, a, v = acc["t"][0], acc["a"][0], acc["v"][0]
    assert majority + 0.2 < t < 0.8  # learnable, not trivial
    assert t > a + 0.08 and a > v + 0.04 and v > majority + 0.05, acc


def _previous_label_of_speaker(corpus, split):
    """One-hot of the same speaker's previous label in the dialogue (last slot: none yet)."""
    rows = []
    for d in corpus.split(split):
        last = {}
        for s, y in zip(d.speakers.tolist(), d.labels.tolist()):
            row = np.zeros(corpus.num_classes + 1)
            row[last.get(s, corpus.num_classes)] = 1.0
            rows.append(row)
            last[s] = y
    return np.array(rows)


def test_context_adds_information(iemocap_small):
    alone, _ = _probe(iemocap_small, "t")
    with_context, _ = _probe(iemocap_small, "t", extra=_previous_label_of_speaker)
    assert with_context > alone + 0.05, (alone, with_context)
