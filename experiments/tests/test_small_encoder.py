"""Rule 1 of the small-encoder plan over stages A and B (experiments/small_encoder.py), on hand-made numbers."""
import math

import pytest

from experiments import small_encoder as se


def results(scores, dataset="iemocap", seconds=None):
    """Per candidate, the five seeds' validation w-F1 (and what its features cost)."""
    return {"dataset": dataset, "features": {n: {"seconds": (seconds or {}).get(n, 60.0)} for n in scores},
            "glnet": {n: {str(s): {"valid_weighted_f1": v} for s, v in zip(se.SEEDS, vals)}
                      for n, vals in scores.items()}}


F = [60.0, 61.0, 59.0, 62.0, 58.0]


def test_a_steady_gain_over_the_margin_is_adopted_with_its_paired_se():
    jitter = [0.3, -0.3, 0.1, -0.1, 0.0]
    a1 = [x + 1.5 + j for x, j in zip(F, jitter)]
    d = se.decide(results({"F": F, "A1": a1, "A2": F}))
    se_by_hand = math.sqrt(sum(j ** 2 for j in jitter) / 4) / math.sqrt(5)  # sd (ddof 1) / sqrt 5
    assert d["best"] == "A1" and abs(d["paired_difference"] - 1.5) < 1e-9 and abs(d["paired_se"] - se_by_hand) < 1e-9
    assert d["decision"] == "adopt A1"
    assert d["rows"]["A1"]["seeds"] == a1 and abs(d["rows"]["F"]["mean"] - 60.0) < 1e-9
    assert abs(d["rows"]["F"]["std"] - math.sqrt(2.5)) < 1e-9  # 1 + 1 + 0 + 4 + 4 over 4


def test_the_margin_is_per_corpus_and_the_default_is_v1_on_meld():
    small = [x + 0.7 for x in F]  # steady (SE 0), above MELD's 0.5, under IEMOCAP's 1.0
    assert se.decide(results({"F": F, "A1": small, "A2": F}))["decision"] == "keep F"
    d = se.decide(results({"V1": F, "A1": F, "A2": small}, dataset="meld"))
    assert d["best"] == "A2" and d["decision"] == "adopt A2"


def test_a_noisy_gain_under_two_standard_errors_is_not_adopted():
    noisy = [x + dx for x, dx in zip(F, [6.0, -4.0, 5.0, -3.0, 3.0])]  # mean +1.4, SE 2.0
    d = se.decide(results({"F": F, "A1": noisy, "A2": F}))
    assert abs(d["paired_difference"] - 1.4) < 1e-9 and d["paired_se"] > 0.7 and d["decision"] == "keep F"


def test_scores_within_a_tenth_go_to_the_cheaper_and_missing_seeds_wait():
    scores = {"F": F, "A1": [x + 2.0 for x in F], "A2": [x + 2.08 for x in F]}
    assert se.decide(results(scores, seconds={"A1": 100.0, "A2": 150.0}))["best"] == "A1"
    assert se.decide(results(scores, seconds={"A1": 150.0, "A2": 100.0}))["best"] == "A2"
    scores["A2"] = [x + 2.2 for x in F]  # more than a tenth ahead: the better one, whatever it costs
    assert se.decide(results(scores, seconds={"A1": 100.0, "A2": 150.0}))["best"] == "A2"
    partial = results({"F": F, "A1": F})
    partial["glnet"]["A2"] = {"0": {"valid_weighted_f1": 70.0}}  # one seed only
    assert se.decide(partial)["decision"] == "incomplete"


def test_the_report_says_interim_and_shows_every_seed():
    d = se.decide(results({"F": F, "A1": [x + 1.5 for x in F], "A2": F}))
    text = se.report([d], [{"cpu_model": "cpu", "cpu_count": 2, "amx_bf16": True}], ["r.json"])
    assert "**iemocap** interim: stages still to run" in text and "Interim decision: **adopt A1**" in text
    assert "| A1 | frozen MiniLM read out at `mean4` | 61.50 ± 1.58 | +1.50 ± 0.00 |  | 61.50, 62.50, 60.50, 63.50, 59.50 | ?/?, ?/?, ?/?, ?/?, ?/? | 60 |" in text
    assert "| A2 | frozen MiniLM read out at layer `-2` | 60.00 ± 1.58 | +0.00 ± 0.00 | -1.50 ± 0.00 |" in text
    assert "amx_bf16 present" in text and "test" not in text.split("## iemocap")[1].split("## What remains")[0].lower()


def test_stages_a_and_b_one_rule_the_best_is_tested_against_the_default_not_a1():
    steady = [0.3, -0.3, 0.1, -0.1, 0.0]
    a1 = [x + 1.5 + j for x, j in zip(F, steady)]
    b1 = [x + 2.5 for x in F]
    d = se.decide(results({"F": F, "A1": a1, "A2": F, "B1": b1, "B2": F, "B1m": F, "B2m": F, "C1": F},
                          seconds={"B1": 1200.0, "B1m": 1230.0}))
    assert d["best"] == "B1" and d["decision"] == "adopt B1" and d["missing"] == []
    assert abs(d["paired_difference"] - 2.5) < 1e-9 and abs(d["paired_se"]) < 1e-9
    # information only: B1 - A1 per seed is 1.0 - jitter
    diff_a1 = [1.0 - j for j in steady]
    sd = math.sqrt(sum((x - 1.0) ** 2 for x in diff_a1) / 4)
    assert abs(d["rows"]["B1"]["diff_a1"] - 1.0) < 1e-9 and abs(d["rows"]["B1"]["se_a1"] - sd / math.sqrt(5)) < 1e-9
    assert "diff_a1" not in d["rows"]["A1"] and d["rows"]["B1"]["stage"] == "B"
    # the best-scoring candidate is the one tested: a noisy B1 ahead of a steady A1 keeps F,
    # although A1 alone would have been adopted (no fall-back to the runner-up)
    noisy = [x + dx for x, dx in zip(F, [9.0, -4.0, 8.0, -3.0, 2.0])]  # mean +2.4, SE about 2.6
    d = se.decide(results({"F": F, "A1": a1, "A2": F, "B1": noisy, "B2": F, "B1m": F, "B2m": F, "C1": F}))
    assert d["best"] == "B1" and d["decision"] == "keep F"


def test_a_fine_tuned_tie_goes_to_the_cheaper_frozen_read_out_and_unscored_b_waits():
    a1 = [x + 2.0 for x in F]
    b2m = [x + 2.06 for x in F]  # within 0.1 of A1, but fine-tuning costs minutes
    scores = {"F": F, "A1": a1, "A2": F, "B1": F, "B2": F, "B1m": F, "B2m": b2m, "C1": F}
    d = se.decide(results(scores, seconds={"A1": 41.0, "B2m": 840.0}))
    assert d["best"] == "A1" and d["decision"] == "adopt A1"
    scores["B2m"] = [x + 2.2 for x in F]  # clearly ahead: it wins whatever it costs
    assert se.decide(results(scores, seconds={"A1": 41.0, "B2m": 840.0}))["best"] == "B2m"
    partial = results({"F": F, "A1": a1, "A2": F, "B2": F})
    partial["glnet"]["B1"] = {"0": {"valid_weighted_f1": 90.0}}  # one seed only: left out, listed
    partial["stage_b_notes"] = {"B1": "stopped at the deadline"}
    d = se.decide(partial)
    assert d["missing"] == ["B2m", "B1", "B1m", "C1"] and d["best"] == "A1" and "B1" not in d["rows"]
    text = se.report([d], [{}], ["r.json"])
    assert "Not scored (no five seeds): B2m, B1, B1m, C1" in text and "Best candidate of stages A-C: **A1**" in text
    assert "- iemocap: B2m, B1, B1m, C1 not scored yet; B1: stopped at the deadline (" in text
    meld = se.decide(results({"V1": F, "A1": a1, "A2": F, "B1": [x + 9 for x in F], "C2": F}, dataset="meld"))
    assert meld["best"] == "A1" and meld["missing"] == [] and "B1" not in meld["rows"]  # B is IEMOCAP's only


def test_c3_is_owed_when_a_new_fine_tuned_variant_leads_and_only_then_are_the_features_decided():
    steady = [0.3, -0.3, 0.1, -0.1, 0.0]
    base = {"F": F, "A1": F, "A2": F, "B1": F, "B2": F, "B1m": F, "B2m": F, "C1": F}
    led = results({**base, "C1": [x + 2.0 + j for x, j in zip(F, steady)]})
    d = se.decide(led)
    assert d["best"] == "C1" and d["decision"] == "adopt C1" and d["c3_owed"]
    with pytest.raises(SystemExit, match="not scored yet: C3"):
        se.adopted_features(led)
    assert "C3, the best candidate C1 cross-fitted" in se.report([d], [{}], ["r.json"])
    assert se.adopted_features(results({**base, "A1": [x + 2.0 + j for x, j in zip(F, steady)]})) == "A1"
    assert se.adopted_features(results(base)) == "F"  # nothing clears the rule: the default stays
    with pytest.raises(SystemExit, match="not scored yet: C1"):
        se.adopted_features(results({k: v for k, v in base.items() if k != "C1"}))
    meld = results({"V1": F, "A1": F, "A2": F, "C2": [x + 1.0 + j for x, j in zip(F, steady)]}, dataset="meld")
    assert se.decide(meld)["c3_owed"]


def d_results(scores, dataset="iemocap"):
    r = results({"F": F}, dataset=dataset)
    r["stage_d"] = {"features": "A1", "glnet": {n: {str(s): {"valid_weighted_f1": v} for s, v in zip(se.SEEDS, vals)}
                                               for n, vals in scores.items()}}
    return r


def test_stage_d_grid_and_rule_two():
    assert len(se.D_GRID) == 8 and se.D_GRID["p0.3-L1-w4"] == (
        "model.dropout=0.3", "model.transformer_layers=1", "model.window_past=4", "model.window_future=4")
    assert se.shipped_setting("iemocap") == "p0.5-L2-all" and se.shipped_setting("meld") == "p0.5-L1-all"
    assert se.rt.glnet_config("meld", "glnet", 0).model.transformer_layers == 2  # MELD's rule 2 replaced it since
    # every cell is a config change that lands on top of the corpus's settings
    for name, overrides in se.D_GRID.items():
        m = se.rt.glnet_config("iemocap", "glnet", 0, overrides=overrides).model
        window = "all" if m.window_past is None else f"w{m.window_past}"
        assert f"p{m.dropout}-L{m.transformer_layers}-{window}" == name and m.window_future == m.window_past
    flat = {n: F for n in se.D_GRID}
    steady = [0.3, -0.3, 0.1, -0.1, 0.0]
    d = se.decide_settings(d_results({**flat, "p0.3-L1-w4": [x + 1.5 + j for x, j in zip(F, steady)]}))
    assert d["best"] == "p0.3-L1-w4" and d["decision"] == "adopt p0.3-L1-w4"
    assert d["overrides"] == list(se.D_GRID["p0.3-L1-w4"]) and abs(d["paired_difference"] - 1.5) < 1e-9
    d = se.decide_settings(d_results({**flat, "p0.3-L1-w4": [x + 0.8 for x in F]}))  # under IEMOCAP's margin
    assert d["decision"] == "keep p0.5-L2-all" and d["overrides"] == []
    # ties: the shipped cell among the best keeps it; otherwise fewer layers, then the window
    up = [x + 2.0 for x in F]
    assert se.decide_settings(d_results({**flat, "p0.5-L2-all": up, "p0.3-L1-all": up}))["best"] == "p0.5-L2-all"
    d = se.decide_settings(d_results({**flat, "p0.3-L2-w4": up, "p0.3-L1-all": up, "p0.5-L1-w4": up}))
    assert d["best"] == "p0.5-L1-w4" and d["decision"] == "adopt p0.5-L1-w4"
    del flat["p0.3-L1-all"]
    assert se.decide_settings(d_results(flat))["decision"] == "incomplete"


def test_the_ensemble_averages_the_seeds_probabilities():
    from sklearn.metrics import f1_score

    labels = [0, 1, 2, 1]
    a = [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]]
    b = [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.4, 0.3], [0.1, 0.8, 0.1]]
    m = se.ensemble([{"test_probs": a, "test_labels": labels}, {"test_probs": b, "test_labels": labels}],
                    ["x", "y", "z"])
    # by hand: the means' argmax is 1, 1, 2, 1 (the first: 0.4 / 0.5 / 0.1)
    by_hand = 100 * f1_score(labels, [1, 1, 2, 1], average="weighted")
    assert abs(m["weighted_f1"] - by_hand) < 1e-9
    with pytest.raises(ValueError, match="same utterance order"):
        se.ensemble([{"test_probs": a, "test_labels": labels}, {"test_probs": b, "test_labels": [1, 0, 2, 1]}],
                    ["x", "y", "z"])


def test_the_report_shows_stage_d_and_the_test_reading_with_the_targets():
    steady = [0.3, -0.3, 0.1, -0.1, 0.0]
    r = results({"F": F, "A1": [x + 2.0 + j for x, j in zip(F, steady)], "A2": F, "B1": F, "B2": F, "B1m": F,
                 "B2m": F, "C1": F})
    r["stage_d"] = d_results({n: F for n in se.D_GRID})["stage_d"]
    d = se.decide(r)
    assert d["settings"]["decision"] == "keep p0.5-L2-all"
    d["test"] = {"dataset": "iemocap", "features": "A1", "settings": "keep p0.5-L2-all",
                 "models": {"lr": [{"weighted_f1": 60.0, "accuracy": 61.0}],
                            "glnet": [{"weighted_f1": v, "accuracy": 60.0} for v in (62.0, 63.0, 64.0, 63.0, 63.0)]},
                 "ensemble": {"weighted_f1": 64.5, "accuracy": 65.0}}
    text = se.report([d], [{}], ["r.json"])
    assert "| p0.5-L2-all (shipped) | 60.00 ± 1.58 |" in text and "Rule 2: **keep p0.5-L2-all**" in text
    assert "| glnet | 63.00 ± 0.71 | 60.00 | 5 |" in text and "| lr | 60.00 | 61.00 | deterministic |" in text
    assert "test w-F1 >= 62.8: **met** (63.00)" in text and "by >= 1.5: **met** (+3.00)" in text
    assert "ensemble (mean of the seeds' class probabilities) scores test w-F1 64.50" in text
    assert "**iemocap** final: its decisions are made" in text and "Decision: **adopt A1**" in text
    assert "Nothing: every corpus's decisions are made" in text and "interim adoption" not in text
    interim = dict(d)
    del interim["test"]
    assert "Nothing:" not in se.report([interim], [{}], ["r.json"])
    d["test"]["models"]["lr"] = [{"weighted_f1": 62.0, "accuracy": 61.0}]
    assert "by >= 1.5: **missed** (+1.00)" in se.report([d], [{}], ["r.json"])


def test_c3_cross_fits_the_leading_fine_tuned_variant_at_the_epochs_it_chose():
    steady = [0.3, -0.3, 0.1, -0.1, 0.0]
    r = results({"V1": F, "A1": F, "A2": F, "C2": [x + 0.2 + j for x, j in zip(F, steady)]}, dataset="meld")
    r["features"]["C2"].update(settings={"lr": 2e-5, "epochs": 3, "context_past": 50, "context_future": 50},
                               chosen_epoch=2)
    settings, source = se.finetune_settings("C3", r)
    assert source == "C2" and settings == {"lr": 2e-5, "epochs": 2, "context_past": 50, "context_future": 50,
                                           "folds": 5, "heldout": "fold-mean"}
    se.finetune_config(settings)  # a valid fine-tuning configuration
    r["glnet"]["A1"] = r["glnet"].pop("C2")  # now a frozen read-out leads: nothing to cross-fit
    r["glnet"]["C2"] = {str(s): {"valid_weighted_f1": v} for s, v in zip(se.SEEDS, F)}
    with pytest.raises(SystemExit, match="C3 is not owed"):
        se.finetune_settings("C3", r)


def test_encoder_record_of_one_encoder_and_of_cross_fitted_folds():
    """One encoder: its own epoch and scores. Five folds (C3): the epochs joined, the per-epoch scores
    averaged over the folds by hand, each fold kept."""
    one = {"name": "all", "chosen_epoch": 2, "valid_weighted_f1": 51.0,
           "history": [{"valid_weighted_f1": 48.0}, {"valid_weighted_f1": 51.0}]}
    rec = se.encoder_record([one])
    assert rec == {"chosen_epoch": 2, "classifier_valid_wf1_per_epoch": [48.0, 51.0], "classifier_valid_wf1": 51.0}
    folds = [{"name": f"fold{k}", "chosen_epoch": 1 + (k % 2), "valid_weighted_f1": 50.0 + k,
              "history": [{"valid_weighted_f1": 40.0 + k}, {"valid_weighted_f1": 50.0 + k}]} for k in range(5)]
    rec = se.encoder_record(folds)
    assert rec["chosen_epoch"] == "1, 2, 1, 2, 1"
    assert rec["classifier_valid_wf1_per_epoch"] == [42.0, 52.0]  # (40+41+42+43+44)/5, (50+...+54)/5
    assert rec["classifier_valid_wf1"] == 52.0
    assert rec["folds"]["fold3"] == {"chosen_epoch": 2, "valid_wf1": 53.0}
