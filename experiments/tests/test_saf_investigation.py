"""The helpers of experiments/saf_investigation.py: the label confusion of the similar pairs and
the report's paired differences. The study's training runs are not part of the test run."""
import json

import numpy as np
import pytest

from experiments import saf_investigation as study
from safsd_glnet.data.synthetic import make_synthetic
from safsd_glnet.facts import SIMILAR_EMOTIONS


def test_confusion_moves_labels_only_between_similar_partners_at_about_the_rate():
    corpus = make_synthetic("iemocap", seed=3, feature_sizes={"t": 8, "a": 4, "v": 4}, num_dialogues=60)
    confused = study.confuse_similar_pairs(corpus, 0.2, seed=7)
    again = study.confuse_similar_pairs(corpus, 0.2, seed=7)
    names = corpus.class_names
    partners = {}
    for a, b in SIMILAR_EMOTIONS["iemocap"]:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    moved = kept = 0
    for key, d in corpus.dialogues.items():
        new = confused.dialogues[key]
        np.testing.assert_array_equal(new.labels, again.dialogues[key].labels)  # seeded
        for m in d.features:
            assert new.features[m] is d.features[m]  # features untouched
        for old_y, new_y in zip(d.labels, new.labels):
            old_name, new_name = names[int(old_y)], names[int(new_y)]
            if old_name not in partners:
                assert new_y == old_y
                continue
            if new_y != old_y:
                assert new_name in partners[old_name]
                moved += 1
            else:
                kept += 1
    share = moved / (moved + kept)
    assert 0.15 < share < 0.25  # 0.2 in expectation over about a thousand utterances
    assert confused.splits == corpus.splits


def test_the_report_pairs_runs_by_seed(tmp_path):
    def record(f1):
        return {"valid_weighted_f1": f1, "valid_students_weighted_f1": f1 / 2, "valid_pair_confusion": 10.0,
                "loss_first": {"teacher_ce": 2.0, "student_t": 1.0}, "student_weight": 1.0, "cpu_seconds": 60.0}

    runs = {"toy/no_saf/seed0": record(50.0), "toy/no_saf/seed1": record(60.0),
            "toy/saf_vad/seed0": record(52.0), "toy/saf_vad/seed1": record(66.0)}
    path = tmp_path / "log.json"
    path.write_text(json.dumps({"runs": runs}))
    text = study.report([str(path)])
    row = next(line for line in text.splitlines() if line.startswith("| saf_vad |"))
    # paired differences +2 and +6: mean +4, standard error std([2, 6]) / sqrt(2) = 2
    assert "+4.00 ± 2.00" in row and "59.00 ± 9.90" in row
    assert "0.50" in row  # g2 x student term / teacher CE = 1.0 / 2.0
    assert "4 runs, 4.0 CPU minutes" in text


def test_unknown_data_is_refused():
    with pytest.raises(SystemExit, match="unknown --data"):
        study.load("nothing", None)
