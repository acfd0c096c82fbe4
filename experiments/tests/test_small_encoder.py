"""Rule 1 of the small-encoder plan over stages A and B (experiments/small_encoder.py), on hand-made numbers."""
import math

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
    assert "INTERIM" in text and "stage B" in text.replace("Stage B", "stage B")
    assert "| A1 | frozen MiniLM read out at `mean4` | 61.50 ± 1.58 | +1.50 ± 0.00 |  | 61.50, 62.50, 60.50, 63.50, 59.50 | ?/?, ?/?, ?/?, ?/?, ?/? | 60 |" in text
    assert "| A2 | frozen MiniLM read out at layer `-2` | 60.00 ± 1.58 | +0.00 ± 0.00 | -1.50 ± 0.00 |" in text
    assert "amx_bf16 present" in text and "test" not in text.split("## iemocap")[1].split("## What remains")[0].lower()


def test_stages_a_and_b_one_rule_the_best_is_tested_against_the_default_not_a1():
    steady = [0.3, -0.3, 0.1, -0.1, 0.0]
    a1 = [x + 1.5 + j for x, j in zip(F, steady)]
    b1 = [x + 2.5 for x in F]
    d = se.decide(results({"F": F, "A1": a1, "A2": F, "B1": b1, "B2": F, "B1m": F, "B2m": F},
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
    d = se.decide(results({"F": F, "A1": a1, "A2": F, "B1": noisy, "B2": F, "B1m": F, "B2m": F}))
    assert d["best"] == "B1" and d["decision"] == "keep F"


def test_a_fine_tuned_tie_goes_to_the_cheaper_frozen_read_out_and_unscored_b_waits():
    a1 = [x + 2.0 for x in F]
    b2m = [x + 2.06 for x in F]  # within 0.1 of A1, but fine-tuning costs minutes
    scores = {"F": F, "A1": a1, "A2": F, "B1": F, "B2": F, "B1m": F, "B2m": b2m}
    d = se.decide(results(scores, seconds={"A1": 41.0, "B2m": 840.0}))
    assert d["best"] == "A1" and d["decision"] == "adopt A1"
    scores["B2m"] = [x + 2.2 for x in F]  # clearly ahead: it wins whatever it costs
    assert se.decide(results(scores, seconds={"A1": 41.0, "B2m": 840.0}))["best"] == "B2m"
    partial = results({"F": F, "A1": a1, "A2": F, "B2": F})
    partial["glnet"]["B1"] = {"0": {"valid_weighted_f1": 90.0}}  # one seed only: left out, listed
    partial["stage_b_notes"] = {"B1": "stopped at the deadline"}
    d = se.decide(partial)
    assert d["missing"] == ["B2m", "B1", "B1m"] and d["best"] == "A1" and "B1" not in d["rows"]
    text = se.report([d], [{}], ["r.json"])
    assert "Not scored (no five seeds): B2m, B1, B1m" in text and "Best candidate of stages A-B: **A1**" in text
    assert "- Stage B on iemocap: B2m, B1, B1m not scored yet; B1: stopped at the deadline (" in text
    meld = se.decide(results({"V1": F, "A1": a1, "A2": F, "B1": [x + 9 for x in F]}, dataset="meld"))
    assert meld["best"] == "A1" and meld["missing"] == [] and "B1" not in meld["rows"]  # B is IEMOCAP's only
