"""The helpers and the decision rule of experiments/saf_study.py, on hand-made run logs. The
study's training runs are not part of the test run."""
import numpy as np
import pytest

from experiments import saf_study as study
from safsd_glnet.data.synthetic import make_synthetic
from safsd_glnet.dataset_facts import SIMILAR_EMOTIONS


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


def test_validation_only_drops_every_test_dialogue():
    corpus = make_synthetic("iemocap", seed=1, feature_sizes={"t": 4}, num_dialogues=30)
    kept = study.validation_only(corpus)
    assert not set(corpus.splits["test"]) & set(kept.dialogues)
    assert kept.splits["test"] == kept.splits["valid"] == corpus.splits["valid"]
    assert kept.splits["train"] == corpus.splits["train"]
    assert kept.validation == corpus.validation and kept.class_names == corpus.class_names


def _record(f1, student=1.0, loss=None):
    return {"valid_weighted_f1": f1, "valid_students_weighted_f1": f1 / 2, "valid_pair_confusion": 10.0,
            "loss_first": {"teacher_ce": 2.0, "student_t": student}, "student_weight": 1.0, "cpu_seconds": 60.0,
            "loss_config": {**study.INTERIM, **(loss or {})}}


def _log(scores, seeds=study.EXPLORATORY_SEEDS, datasets=("a", "b")):
    """Runs in which each variant scores its given offset over ce_scaled, on every dataset and seed
    (plus a seed-dependent wobble shared by all variants, so paired differences are exact)."""
    runs = {}
    for data in datasets:
        for s in seeds:
            base = 50.0 + 3 * s
            runs[f"{data}/ce/seed{s}"] = _record(base, 2.0, {"use_saf": False})
            runs[f"{data}/saf_soft_0.1/seed{s}"] = _record(base + scores.get("saf_soft_0.1", 0.0), 1.5)
            runs[f"{data}/ce_scaled/seed{s}"] = _record(base, 1.5, {"use_saf": False, "student_weight": 0.75})
            for name, offset in scores.items():
                if name != "saf_soft_0.1":
                    runs[f"{data}/{name}/seed{s}"] = _record(base + offset, 1.0, study.STAGE1.get(name, {}))
    return runs


def test_scale_ratio_and_the_control_weight():
    runs = _log({})
    assert study.scale_ratio(runs, "a") == pytest.approx(0.75)  # 1.5 / 2.0
    assert study.control_definition(runs, "a") == {"use_saf": False, "student_weight": 0.75}
    variants, seeds = study.stage_variants(1, "a", runs)
    assert variants["ce_scaled"]["student_weight"] == 0.75 and seeds == study.EXPLORATORY_SEEDS
    assert "reference" not in variants and "reference" in study.stage_variants(1, "iemocap", runs)[0]
    assert "ce_scaled" not in study.stage_variants(1, "a", {})[0]  # waits for ce and saf_soft_0.1


def test_stages_pick_the_best_of_each_family_and_break_ties_by_simplicity():
    runs = _log({"saf_soft_0.1": 0.5, "saf_soft_0.05": 0.52, "saf_soft_0.2": 0.1, "saf_penalty_0.5": -1.0,
                 "saf_penalty_1": 0.2, "saf_penalty_2": 0.4, "focal": 0.0})
    assert study.selection_score(runs, "saf_penalty_2") == pytest.approx(0.4)
    stage2, _ = study.stage_variants(2, "a", runs)
    # soft: 0.52 vs 0.50 is a tie (within 0.05), won by the interim default (no change)
    assert set(stage2) == {"saf_soft_0.1_beta0", "saf_soft_0.1_beta1", "saf_penalty_2_beta0", "saf_penalty_2_beta1"}
    assert stage2["saf_penalty_2_beta1"] == {"saf_mode": "penalty", "saf_lambda": 2.0, "saf_beta": 1.0}


def test_decision_follows_the_plan():
    scores = {"saf_soft_0.1": 0.1, "saf_penalty_1": 1.0, "focal": 0.0}
    runs = _log(scores)
    assert study.chosen_variant(runs) == "saf_penalty_1"
    assert study.decision(runs)["final"] is False  # no confirmation runs yet
    helps = {**runs, **_log(scores, seeds=study.CONFIRMATION_SEEDS)}
    d = study.decision(helps)
    assert d["final"] and d["saf_helps"] and d["default"] == "saf_penalty_1"
    assert d["pooled_mean"] == pytest.approx(1.0) and d["confirmation_pairs"] == 10
    # a chosen variant that loses on the fresh seeds: the next one that does not lose is the default
    loses = {**runs, **_log({**scores, "saf_penalty_1": -1.0}, seeds=study.CONFIRMATION_SEEDS)}
    for k in list(loses):
        if "seed5" in k or "seed7" in k:
            loses[k] = dict(loses[k], valid_weighted_f1=loses[k]["valid_weighted_f1"] + (0.3 if "penalty" in k else 0))
    d = study.decision(loses)
    assert d["final"] and not d["saf_helps"] and d["pooled_mean"] < 0
    assert d["default"] == "saf_soft_0.1"


def test_unknown_data_is_refused():
    with pytest.raises(SystemExit, match="unknown dataset"):
        study.load("nothing", None)
