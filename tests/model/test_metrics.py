"""Tests of safsd_glnet.model.metrics against scikit-learn, numpy and hand-made matrices."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from safsd_glnet.model.metrics import (
    SIMILAR_PAIRS, compute_metrics, confusion_matrix, mean_std, similar_pair_confusion,
    similar_pairs_for, summarise_seeds,
)

NAMES6 = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]


def _check_against_sklearn(y, p, names):
    c = len(names)
    labels = list(range(c))
    got = compute_metrics(y, p, names)
    assert got["accuracy"] == pytest.approx(100 * skm.accuracy_score(y, p), abs=1e-10)
    for avg in ("weighted", "macro"):
        want = 100 * skm.f1_score(y, p, labels=labels, average=avg, zero_division=0)
        assert got[f"{avg}_f1"] == pytest.approx(want, abs=1e-10)
    per = 100 * skm.f1_score(y, p, labels=labels, average=None, zero_division=0)
    assert [got["per_class_f1"][n] for n in names] == pytest.approx(list(per), abs=1e-10)
    assert got["confusion"] == skm.confusion_matrix(y, p, labels=labels).tolist()
    assert [got["support"][n] for n in names] == np.bincount(y, minlength=c).tolist()
    assert got["num_utterances"] == len(y)
    return got


@pytest.mark.parametrize("seed", range(6))
def test_metrics_equal_sklearn_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    c = 6 if seed % 2 else 7
    n = int(rng.integers(5, 200))
    y = rng.integers(0, c, size=n)
    # predictions right about half the time, so F1 values are away from 0 and 1
    p = np.where(rng.random(n) < 0.5, y, rng.integers(0, c, size=n))
    _check_against_sklearn(y, p, [f"c{k}" for k in range(c)])


def test_metrics_with_absent_and_never_predicted_classes():
    rng = np.random.default_rng(42)
    n = 120
    y = rng.choice([0, 1, 2, 3, 5], size=n)  # class 4 never a true label
    p = rng.choice([0, 1, 3, 4, 5], size=n)  # class 2 never predicted, class 4 only predicted
    got = _check_against_sklearn(y, p, NAMES6)
    assert got["support"]["excited"] == 0 and got["per_class_f1"]["neutral"] == 0.0
    # class 6 neither present nor predicted: F1 0, counted in macro, weight 0 in weighted
    names7 = NAMES6 + ["other"]
    got7 = _check_against_sklearn(y, p, names7)
    assert got7["macro_f1"] == pytest.approx(got["macro_f1"] * 6 / 7)
    assert got7["weighted_f1"] == pytest.approx(got["weighted_f1"])
    json.dumps(got7)  # everything is plain Python


def test_metrics_hand_example():
    # true 0 0 1 1 2, predicted 0 1 1 1 0
    # K = [[1,1,0],[0,2,0],[1,0,0]]; F1_0 = 2*1/(2+2) = .5, F1_1 = 2*2/(2+3) = .8, F1_2 = 0
    # weighted = (2*.5 + 2*.8 + 1*0)/5 = .52; macro = 1.3/3; accuracy = 3/5
    got = compute_metrics(torch.tensor([0, 0, 1, 1, 2]), [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert got["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert got["accuracy"] == pytest.approx(60.0)
    assert got["weighted_f1"] == pytest.approx(52.0)
    assert got["macro_f1"] == pytest.approx(130.0 / 3)
    assert got["per_class_f1"] == pytest.approx({"a": 50.0, "b": 80.0, "c": 0.0})
    assert isinstance(got["accuracy"], float) and isinstance(got["confusion"][0][0], int)


def test_confusion_matrix_and_errors():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 5, 50), rng.integers(0, 5, 50)
    np.testing.assert_array_equal(confusion_matrix(y, p, 5), skm.confusion_matrix(y, p, labels=range(5)))
    with pytest.raises(ValueError, match="confusion_matrix.*labels must lie"):
        confusion_matrix([0, -1], [0, 0], 3)
    with pytest.raises(ValueError, match="confusion_matrix.*preds must lie"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="confusion_matrix.*2 labels but 3"):
        confusion_matrix([0, 1], [0, 1, 1], 3)
    with pytest.raises(ValueError, match="confusion_matrix.*integer"):
        confusion_matrix([0.0, 1.0], [0, 1], 3)
    with pytest.raises(ValueError, match="compute_metrics.*no utterances"):
        compute_metrics([], [], ["a", "b"])


def test_mean_std_matches_numpy():
    vals = [74.1, 75.3, 73.8, 76.0, 74.9]
    m, s = mean_std(vals)
    assert m == pytest.approx(np.mean(vals)) and s == pytest.approx(np.std(vals, ddof=1))
    assert mean_std([3.5]) == (3.5, 0.0)
    with pytest.raises(ValueError, match="mean_std"):
        mean_std([])


def test_summarise_seeds():
    runs = [{"accuracy": 70.0, "weighted_f1": 71.0, "macro_f1": 60.0},
            {"accuracy": 72.0, "weighted_f1": 70.0, "macro_f1": 62.0},
            {"accuracy": 74.0, "weighted_f1": 72.0, "macro_f1": 61.0}]
    out = summarise_seeds(runs)
    # accuracy 70, 72, 74: mean 72, sample std sqrt((4 + 0 + 4) / 2) = 2
    assert out["accuracy"]["mean"] == pytest.approx(72.0) and out["accuracy"]["std"] == pytest.approx(2.0)
    assert out["weighted_f1"]["values"] == [71.0, 70.0, 72.0] and out["macro_f1"]["n"] == 3
    assert set(summarise_seeds(runs, keys=("macro_f1",))) == {"macro_f1"}
    with pytest.raises(ValueError, match="summarise_seeds.*'recall'"):
        summarise_seeds(runs, keys=("recall",))


def test_similar_pair_confusion_hand_matrix():
    names = ["happy", "sad", "excited"]
    k = np.array([[6, 1, 3],   # happy: 10 utterances, 3 predicted excited -> 30%
                  [0, 5, 0],   # sad: 5
                  [2, 0, 6]])  # excited: 8 utterances, 2 predicted happy -> 25%
    out = similar_pair_confusion(k, names, [("happy", "excited"), ("sad", "excited")])
    assert out["happy/excited"]["a_as_b"] == pytest.approx(30.0)
    assert out["happy/excited"]["b_as_a"] == pytest.approx(25.0)
    assert out["happy/excited"]["mean"] == pytest.approx(27.5)
    assert out["sad/excited"]["a_as_b"] == 0.0 and out["sad/excited"]["b_as_a"] == 0.0
    # an unsupported true class gives 0, not a division error
    zero_row = similar_pair_confusion(np.array([[0, 0], [4, 1]]), ["joy", "surprise"])
    assert zero_row["joy/surprise"] == pytest.approx({"a": "joy", "b": "surprise", "a_as_b": 0.0,
                                                       "b_as_a": 80.0, "mean": 40.0})
    with pytest.raises(ValueError, match="similar_pair_confusion.*'fear'"):
        similar_pair_confusion(k, names, [("happy", "fear")])
    with pytest.raises(ValueError, match="similar_pair_confusion.*shape"):
        similar_pair_confusion(k[:2], names)


def test_similar_pairs_for():
    assert similar_pairs_for(NAMES6) == SIMILAR_PAIRS["iemocap"]
    meld = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
    assert similar_pairs_for(meld) == SIMILAR_PAIRS["meld"]
    assert similar_pairs_for(["Happy", "Excited", "sad"]) == [("Happy", "Excited")]
    assert similar_pairs_for(["happy", "sad"]) == []
