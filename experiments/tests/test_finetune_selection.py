"""The decision rule of experiments/finetune_selection.py against hand-worked numbers."""
import math

from experiments import finetune_selection as fs


def results(scores, dataset="iemocap", seconds=None):
    """Per feature set, the five seeds' validation w-F1."""
    return {"dataset": dataset,
            "features": {n: {"seconds": (seconds or {}).get(n, 10.0)} for n in scores},
            "glnet": {n: {str(s): {"valid_weighted_f1": v} for s, v in zip(fs.SEEDS, vals)} for n, vals in scores.items()}}


def test_a_clear_gain_is_adopted_and_a_noisy_one_is_not():
    f = [60.0, 61.0, 59.0, 62.0, 58.0]
    clear = [x + 2.0 + d for x, d in zip(f, [0.1, -0.1, 0.2, -0.2, 0.0])]  # +2.0 every seed
    d = fs.decide(results({"F": f, "V1": clear}))
    assert d["best"] == "V1" and abs(d["paired_difference"] - 2.0) < 1e-9
    se = math.sqrt(sum(x ** 2 for x in [0.1, -0.1, 0.2, -0.2, 0.0]) / 4) / math.sqrt(5)
    assert abs(d["paired_se"] - se) < 1e-9 and d["decision"] == "adopt V1"
    noisy = [x + dx for x, dx in zip(f, [6.0, -4.0, 5.0, -3.0, 2.0])]  # mean +1.2, but se 1.9
    assert fs.decide(results({"F": f, "V1": noisy}))["decision"] == "keep F (frozen MiniLM)"
    small = [x + 0.6 for x in f]  # steady, but under IEMOCAP's 1.0 margin (over MELD's 0.5)
    assert fs.decide(results({"F": f, "V2": small}))["decision"] == "keep F (frozen MiniLM)"
    assert fs.decide(results({"F": f, "V2": small}, dataset="meld"))["decision"] == "adopt V2"


def test_ties_within_a_tenth_go_to_the_cheaper_variant_and_incomplete_sets_wait():
    f = [60.0] * 5
    scores = {"F": f, "V1": [63.0] * 5, "V3": [63.04] * 5}
    d = fs.decide(results(scores, seconds={"V1": 500.0, "V3": 200.0}))
    assert d["best"] == "V3"
    partial = results({"F": f})
    partial["glnet"]["V1"] = {"0": {"valid_weighted_f1": 70.0}}  # one seed only
    assert fs.decide(partial)["decision"] == "incomplete"
