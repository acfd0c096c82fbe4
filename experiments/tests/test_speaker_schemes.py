"""experiments/speaker_schemes.py never reads test: its corpus's test split is a copy of validation."""
import numpy as np

from experiments.speaker_schemes import without_test
from safsd_glnet.data import make_synthetic


def test_the_test_split_is_replaced_by_copies_of_validation():
    corpus = make_synthetic("meld", seed=0, feature_sizes={"t": 8, "a": 4, "v": 4}, num_dialogues=30)
    test_ids = set(corpus.splits["test"])
    out = without_test(corpus)
    assert not test_ids & set(out.dialogues)  # the test dialogues are gone, labels and all
    assert out.splits["train"] == corpus.splits["train"] and out.splits["valid"] == corpus.splits["valid"]
    copies = out.split("test")
    assert [d.id for d in copies] == [f"valid-copy-{i}" for i in corpus.splits["valid"]]
    for copy, original in zip(copies, corpus.split("valid")):
        assert np.array_equal(copy.labels, original.labels) and np.array_equal(copy.features["t"], original.features["t"])
