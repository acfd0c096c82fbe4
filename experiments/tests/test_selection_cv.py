"""The helpers of experiments/selection_cv.py: session folds, the epoch rules and their scoring.
The leave-one-session-out runs themselves are not part of the default test run."""
import numpy as np
import pytest

from experiments import selection_cv as cv
from safsd_glnet.data.corpus import Corpus, Dialogue


def _iemocap_like(per_session: dict[str, int], test_session: str = "Ses05") -> Corpus:
    """Dialogues named like IEMOCAP's: the given sessions in train/valid, one test session."""
    dialogues, train, valid, test = {}, [], [], []
    for session, n in {**per_session, test_session: 3}.items():
        for k in range(n):
            i = f"{session}F_impro{k:02d}"
            dialogues[i] = Dialogue(i, np.zeros(2, dtype=np.int64), np.array([0, 1]),
                                    {"t": np.zeros((2, 3), dtype=np.float32)})
            if session == test_session:
                test.append(i)
            else:
                (valid if k == 0 else train).append(i)
    return Corpus("toy", ["a", "b"], ["F"], {"t": 3}, dialogues, {"train": train, "valid": valid, "test": test})


def test_session_folds_hold_out_each_session_once_and_never_touch_test():
    corpus = _iemocap_like({"Ses01": 6, "Ses02": 7, "Ses03": 5})
    folds = cv.session_folds(corpus, valid_size=4)
    pool = set(corpus.splits["train"]) | set(corpus.splits["valid"])
    assert [f["name"] for f in folds] == ["Ses01", "Ses02", "Ses03"]
    for f in folds:
        assert {cv.session_of(i) for i in f["test"]} == {f["name"]}
        assert len(f["test"]) == {"Ses01": 6, "Ses02": 7, "Ses03": 5}[f["name"]]
        assert len(f["valid"]) == 4
        assert f["name"] not in {cv.session_of(i) for i in f["train"] + f["valid"]}
        parts = [set(f[s]) for s in ("train", "valid", "test")]
        assert set.union(*parts) == pool and sum(map(len, parts)) == len(pool)  # a partition of train+valid
        assert not {i for i in pool if i.startswith("Ses05")}
    assert folds == cv.session_folds(corpus, valid_size=4)  # seeded: the same folds every time
    fc = cv.fold_corpus(corpus, folds[1])
    assert fc.splits["test"] == folds[1]["test"] and set(fc.dialogues) == pool


def test_session_folds_reject_foreign_ids_and_too_few_dialogues():
    with pytest.raises(ValueError, match="not an IEMOCAP id"):
        cv.session_of("dia_0001")
    with pytest.raises(ValueError, match="Ses01: 3 dialogues outside it"):
        cv.session_folds(_iemocap_like({"Ses01": 3, "Ses02": 3}), valid_size=12)
    with pytest.raises(ValueError, match="1 session"):
        cv.session_folds(_iemocap_like({"Ses01": 20}), valid_size=4)


def test_choose_epoch_matches_hand_worked_curves():
    v = [50.0, 60.0, 55.0, 61.0, 40.0, 62.0]
    assert cv.choose_epoch(v) == 6  # raw argmax, no early stopping
    assert cv.choose_epoch(v, patience=1) == 2  # epoch 3 does not beat 60: stop before epoch 4
    assert cv.choose_epoch(v, patience=2) == 6  # 4 beats 60, 6 beats 61
    # trailing 3-epoch means: 50, 55, 55, 58.67, 52, 54.33 -> epoch 4
    assert cv.choose_epoch(v, window=3) == 4
    # trailing 5-epoch means: 50, 55, 55, 56.5, 53.2, 55.6 -> epoch 4 (epoch 6's 55.6 is lower)
    assert cv.choose_epoch(v, window=5) == 4
    assert cv.choose_epoch([3.0, 3.0, 1.0]) == 1  # ties: the first epoch wins
    with pytest.raises(ValueError, match="window"):
        cv.choose_epoch(v, window=0)
    with pytest.raises(ValueError, match="empty"):
        cv.choose_epoch([])


def test_choose_epoch_agrees_with_a_brute_force_reading():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(60, 3, size=int(rng.integers(1, 40))).round(1).tolist()
        window, patience = int(rng.integers(1, 6)), int(rng.integers(1, 10))
        smooth = [np.mean(v[max(0, e - window):e]) for e in range(1, len(v) + 1)]
        # the epochs training would run: stop after `patience` epochs with no new strict best
        last, best_at = len(v), 0
        for e in range(1, len(v) + 1):
            if smooth[e - 1] > smooth[best_at - 1] if best_at else True:
                best_at = e
            elif e - best_at >= patience:
                last = e
                break
        seen = smooth[:last]
        assert cv.choose_epoch(v, window, patience) == int(np.argmax(seen)) + 1


def test_evaluate_scores_each_rule_at_its_epoch():
    runs = {"S1/Ses01/0": {"valid": [1.0, 3.0, 2.0, 2.5], "heldout": [10.0, 20.0, 30.0, 40.0]},
            "S1/Ses02/0": {"valid": [5.0, 1.0, 1.0, 1.0], "heldout": [50.0, 60.0, 70.0, 80.0]}}
    table = cv.evaluate(runs)
    # R0 (raw, patience 15): epochs 2 and 1 -> held-out 20 and 50
    assert table["S1 R0"]["heldout_mean"] == pytest.approx(35.0)
    assert table["S1 R0"]["heldout_std"] == pytest.approx(np.std([20.0, 50.0], ddof=1))
    assert table["S1 R0"]["fold_means"] == {"Ses01": 20.0, "Ses02": 50.0}
    assert table["S1 R0"]["mean_epoch"] == 1.5
    # R1 (3-epoch mean): run 1 means 1, 2, 2, 2.5 -> epoch 4 (40); run 2: 5, 3, 2.33, 1 -> epoch 1 (50)
    assert table["S1 R1"]["heldout_mean"] == pytest.approx(45.0)
    assert table["S1 R2"]["best_epoch_heldout_mean"] == pytest.approx(60.0)


def test_decision_keeps_the_shipped_pair_unless_beaten_by_the_margin():
    def row(setting, rule, mean):
        return {"setting": setting, "rule": rule, "heldout_mean": mean}

    close = {"S1 R0": row("S1", "R0", 56.70), "S3 R1": row("S3", "R1", 56.70 + cv.KEEP_MARGIN)}
    assert "nothing changes" in cv.decision(close)
    far = {"S1 R0": row("S1", "R0", 56.70), "S3 R1": row("S3", "R1", 57.00)}
    text = cv.decision(far)
    assert "S3 R1 is adopted" in text and "difference 0.30" in text
    assert "cannot be taken" in cv.decision({"S2 R0": row("S2", "R0", 50.0)})


def test_paired_difference_pairs_runs_by_fold_and_seed():
    table = {"S1 R0": {"per_run": {"Ses01/0": 50.0, "Ses01/1": 60.0, "Ses02/0": 40.0}},
             "S2 R0": {"per_run": {"Ses01/0": 51.0, "Ses01/1": 63.0, "Ses02/0": 42.0}}}
    mean, se = cv.paired_difference(table, "S2 R0")
    assert mean == pytest.approx(2.0)  # differences 1, 3, 2
    assert se == pytest.approx(1.0 / np.sqrt(3))  # sample std 1 over sqrt(3)
    assert cv.paired_difference(table, "S1 R0") == (0.0, 0.0)
    assert cv.paired_difference({"S2 R0": table["S2 R0"]}, "S2 R0") is None


def test_baselines_fit_on_the_fold_and_score_the_held_out_session():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    corpus = _iemocap_like({"Ses01": 8, "Ses02": 8, "Ses03": 8})
    for d in corpus.dialogues.values():  # learnable features: the label plus noise
        n = 6
        d.labels = rng.integers(0, 2, size=n)
        d.speakers = np.zeros(n, dtype=np.int64)
        d.features["t"] = (d.labels[:, None] + rng.normal(0, 0.8, size=(n, 3))).astype(np.float32)
    scores = cv.baselines(corpus)
    assert set(scores) == {"lr", "lr_context"}
    for fold in cv.session_folds(corpus):
        fit = [corpus.dialogues[i] for i in fold["train"] + fold["valid"]]
        held = [corpus.dialogues[i] for i in fold["test"]]
        clf = LogisticRegression(max_iter=3000, class_weight="balanced")
        clf.fit(np.concatenate([d.features["t"] for d in fit]), np.concatenate([d.labels for d in fit]))
        y = np.concatenate([d.labels for d in held])
        expected = 100 * f1_score(y, clf.predict(np.concatenate([d.features["t"] for d in held])), average="weighted")
        assert scores["lr"][fold["name"]] == pytest.approx(expected, abs=1e-6)
    assert set(scores["lr_context"]) == {"Ses01", "Ses02", "Ses03"}
