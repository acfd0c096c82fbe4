"""The helpers of experiments/real_text.py: the context features of the
logistic regression, and merging result files. The benchmark itself is not run here."""
import json

import numpy as np
import pytest

from experiments import real_text
from safsd_glnet.data import make_synthetic
from safsd_glnet.data.corpus import Corpus, Dialogue


@pytest.fixture(scope="module")
def corpus():
    return make_synthetic("iemocap", seed=4, feature_sizes={"t": 6}, num_dialogues=20)


def test_context_features_match_a_hand_worked_dialogue():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)  # utterance i = [2i, 2i + 1]
    d = Dialogue("d0", np.zeros(5, dtype=np.int64), np.array([0, 1, 0, 1, 0]), {"t": x})
    corpus = Corpus("toy", ["a", "b"], ["s"], {"t": 2}, {"d0": d}, {"train": ["d0"], "valid": [], "test": []})
    feats, labels = real_text.utterance_matrix(corpus, ("train",), context=2)
    assert feats.shape == (5, 6)
    np.testing.assert_array_equal(labels, [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(feats[0], [0, 1, 0, 0, 3, 4])  # no past; next two: mean of u1, u2
    np.testing.assert_array_equal(feats[1], [2, 3, 0, 1, 5, 6])  # past: u0; next: mean of u2, u3
    np.testing.assert_array_equal(feats[3], [6, 7, 3, 4, 8, 9])  # past: mean of u1, u2; next: u4
    np.testing.assert_array_equal(feats[4], [8, 9, 5, 6, 0, 0])  # no future
    alone, _ = real_text.utterance_matrix(corpus, ("train",), context=None)
    np.testing.assert_array_equal(alone, x)


def _result(dataset, commit="abc", seeds=(0, 1)):
    return {"protocol": "p", "command": f"run {dataset}", "encoder": "minilm", "context": 3, "seeds": list(seeds),
            "device": "cpu", "standardise": True, "glnet_settings": {dataset: {"model": {}}}, "overrides": [],
            "machine": {"git_commit": commit, "cpu_count": 2, "processor": "x", "platform": "y", "cuda": False,
                        "torch": "t", "torch_threads": 1, "sklearn": "s", "python": "3"},
            "wall_seconds": 60.0 if dataset == "iemocap" else 90.0,
            "results": {dataset: {"lr": {"summary": {k: {"mean": 50.0, "std": 0.0} for k in
                                                     ("accuracy", "weighted_f1", "macro_f1")},
                                         "seeds": [0], "deterministic": True}}}}


def test_combine_merges_datasets_and_refuses_mismatches(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_result("iemocap")))
    b.write_text(json.dumps(_result("meld")))
    out, md = tmp_path / "all.json", tmp_path / "all.md"
    assert real_text.main(["--combine", str(a), str(b), "--out", str(out), "--md", str(md)]) == 0
    merged = json.loads(out.read_text())
    assert list(merged["results"]) == ["iemocap", "meld"]
    assert merged["commands"] == ["run iemocap", "run meld"]
    assert merged["wall_seconds"] == 90.0
    assert "| iemocap | lr |" in md.read_text() and "| meld | lr |" in md.read_text()

    b.write_text(json.dumps(_result("meld", commit="def")))
    with pytest.raises(ValueError, match="another commit"):
        real_text.main(["--combine", str(a), str(b), "--out", str(out)])
    dirty = _result("meld")
    dirty["machine"]["uncommitted_changes"] = [" M safsd_glnet/model/network.py"]
    b.write_text(json.dumps(dirty))
    with pytest.raises(ValueError, match="uncommitted_changes"):
        real_text.main(["--combine", str(a), str(b), "--out", str(out)])
    b.write_text(json.dumps(_result("meld", seeds=(0, 1, 2))))
    with pytest.raises(ValueError, match="seeds"):
        real_text.main(["--combine", str(a), str(b), "--out", str(out)])
    with pytest.raises(ValueError, match="iemocap / lr is already"):
        real_text.main(["--combine", str(a), str(a), "--out", str(out)])


def test_the_scale_matched_control_trains_ce_students_at_the_control_weight():
    control = real_text.glnet_config("iemocap", "glnet_no_saf_scaled", seed=1, device="cpu")
    plain = real_text.glnet_config("iemocap", "glnet_no_saf", seed=1, device="cpu")
    assert control.loss.student_weight == real_text.CONTROL_WEIGHT["iemocap"] and not control.loss.use_saf
    assert control.replace(loss={"student_weight": 1.0}) == plain
    given = real_text.glnet_config("meld", "glnet_no_saf_scaled", seed=1, device="cpu", control_weight=0.5)
    assert given.loss.student_weight == 0.5
    assert real_text.main(["--datasets", "meld", "--features", "x.npz", "--models", "glnet_no_saf_scaled"]) == 2
