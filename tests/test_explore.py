"""Data exploration helpers: statistics on a hand-made corpus, the dialogue views, the browser."""
import numpy as np
import pytest

from safsd_glnet import explore
from safsd_glnet.data.corpus import Corpus, DataError, Dialogue

CLASSES = ["happy", "sad", "neutral"]


def dialogue(did, speakers, labels, texts=None):
    n = len(labels)
    feats = {"t": np.arange(n * 2, dtype=np.float32).reshape(n, 2), "a": np.ones((n, 3), dtype=np.float32)}
    return Dialogue(did, np.array(speakers), np.array(labels), feats, texts)


@pytest.fixture
def corpus():
    # d0: A B A B (labels 0 0 1 1) -> same-speaker pairs (0->1, 0->1); other-speaker pairs 0->0, 0->1, 1->1
    # d1: A A B (labels 2 2 0) -> same-speaker 2->2; other-speaker 2->0
    # d2: B (label 1): no pairs
    d = [dialogue("d0", [0, 1, 0, 1], [0, 0, 1, 1], ["hi", "hello", "oh no", "sorry"]),
         dialogue("d1", [0, 0, 1], [2, 2, 0]),
         dialogue("d2", [1], [1])]
    return Corpus("toy", CLASSES, ["A", "B"], {"t": 2, "a": 3}, {x.id: x for x in d},
                  {"train": ["d0", "d1"], "test": ["d2"]}).validate()


def test_transition_counts_same_and_other_speaker(corpus):
    same = explore.transition_counts(corpus, "same")
    expected_same = np.zeros((3, 3), int)
    expected_same[0, 1] = 2  # A: happy -> sad, B: happy -> sad
    expected_same[2, 2] = 1  # A: neutral -> neutral
    np.testing.assert_array_equal(same, expected_same)
    other = explore.transition_counts(corpus, "other")
    expected_other = np.zeros((3, 3), int)
    expected_other[0, 0] = expected_other[0, 1] = expected_other[1, 1] = 1
    expected_other[2, 0] = 1
    np.testing.assert_array_equal(other, expected_other)
    only_test = explore.transition_counts(corpus, "same", split="test")
    assert only_test.sum() == 0


def test_transition_matrix_rows_sum_to_one_or_zero(corpus):
    m = explore.transition_matrix(corpus, "other")
    np.testing.assert_allclose(m.sum(1), [1.0, 1.0, 1.0])
    m = explore.transition_matrix(corpus, "same")
    np.testing.assert_allclose(m.sum(1), [1.0, 0.0, 1.0])  # nobody was sad before speaking again
    with pytest.raises(ValueError, match="relation"):
        explore.transition_counts(corpus, "both")


def test_repeat_rates(corpus):
    r = explore.repeat_rates(corpus)
    assert r["same"] == pytest.approx(1 / 3)
    assert r["other"] == pytest.approx(2 / 4)
    shares = np.array([3, 3, 2]) / 8
    assert r["chance"] == pytest.approx((shares ** 2).sum())


def test_speaker_stats(corpus):
    s = explore.speaker_stats(corpus)
    assert s["utterances_per_speaker"] == {"A": 4, "B": 4}
    np.testing.assert_array_equal(s["speakers_per_dialogue"], [2, 2, 1])
    assert sorted(s["turn_lengths"].tolist()) == [1, 1, 1, 1, 1, 1, 2]
    assert s["switch_rate"] == pytest.approx(4 / 5)  # 3 changes in d0, 1 in d1, over 3 + 2 pairs


def test_counts_lengths_and_summary(corpus):
    counts = explore.class_counts(corpus)
    assert list(counts) == ["train", "test"]  # splits in canonical order, only those present
    np.testing.assert_array_equal(counts["train"], [3, 2, 2])
    lengths = explore.dialogue_lengths(corpus)
    np.testing.assert_array_equal(lengths["train"], [4, 3])
    rows = explore.split_summary(corpus)
    assert rows[0] == {"split": "train", "dialogues": 2, "utterances": 7, "mean length": 3.5,
                       "min length": 3, "max length": 4}


def test_dialogue_rows_and_text_views(corpus):
    rows = explore.dialogue_rows(corpus, "d0")
    assert rows[2] == {"position": 2, "speaker": "A", "emotion": "sad", "text": "oh no"}
    text = explore.format_dialogue(corpus, "d0")
    assert "toy / train / dialogue d0: 4 utterances" in text and "oh no" in text
    no_text = explore.format_dialogue(corpus, "d1", max_rows=1)
    assert "no sentences" in no_text and "... 2 more utterances" in no_text
    html = explore.dialogue_html(corpus, "d0")
    assert html.count("<tr>") == 5 and "sorry" in html
    with pytest.raises(DataError, match="no dialogue 'nope'"):
        explore.dialogue_rows(corpus, "nope")


def test_html_escapes_sentences(corpus):
    corpus.dialogues["d0"].texts[0] = "<script>alert(1)</script>"
    assert "<script>" not in explore.dialogue_html(corpus, "d0")


def test_browser_follows_the_dropdowns(corpus):
    other = Corpus("other", CLASSES, ["A", "B"], {"t": 2, "a": 3},
                   {"x": dialogue("x", [1, 0], [1, 2], ["yes", "no"])}, {"valid": ["x"]}).validate()
    browser = explore.dialogue_browser({"toy": corpus, "other": other})
    pick_corpus, pick_split, pick_dialogue, view = browser.children
    assert pick_split.options == ("train", "test") and pick_dialogue.value == "d0"
    assert "hello" in view.value
    pick_dialogue.value = "d1"
    assert "no sentences" in view.value
    pick_split.value = "test"
    assert pick_dialogue.value == "d2"
    pick_corpus.value = "other"
    assert pick_split.options == ("valid",) and pick_dialogue.value == "x" and "yes" in view.value


def test_html_view_scrolls_in_a_box_under_a_sticky_header(corpus):
    html = explore.dialogue_html(corpus, "d0")
    box = html[html.index("<div"):html.index(">", html.index("<div"))]
    assert "max-height:420px" in box and "overflow-y:auto" in box
    head = html[html.index("<thead>"):html.index("</thead>")]
    assert head.count("<th ") == 4 and head.count("position:sticky;top:0") == 4
    body = html[html.index("<tbody>"):html.index("</tbody>")]
    assert body.count("<td ") == 4 * 4 and body.count("padding:3px 10px") == 4 * 4  # every cell padded
    whole = explore.dialogue_html(corpus, "d0", max_height=None)
    assert "max-height" not in whole and whole.count("<tr>") == html.count("<tr>")


def test_browser_shows_as_its_dialogue_where_widgets_cannot_render(corpus):
    browser = explore.dialogue_browser({"toy": corpus}, text_rows=2)
    bundle = browser._repr_mimebundle_()
    model_id = bundle["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert model_id == browser.model_id
    assert bundle["text/plain"] == explore.format_dialogue(corpus, "d0", max_rows=2)
    browser.children[2].value = "d1"
    assert bundle != browser._repr_mimebundle_()
    assert browser._repr_mimebundle_()["text/plain"] == explore.format_dialogue(corpus, "d1", max_rows=2)
    assert "max-height:420px" in browser.children[3].value


def test_similarity_matrices(corpus):
    sims = explore.similarity_matrices(corpus)
    assert isinstance(sims["prior"], str)  # the prior exists only for the six IEMOCAP classes
    assert sims["vad"].shape == (3, 3)
    np.testing.assert_allclose(np.diag(sims["prototype"]), 1.0)
    assert (sims["prototype"] >= 0).all() and (sims["prototype"] <= 1).all()


def test_input_prototype_similarity_sees_class_structure():
    rng = np.random.default_rng(0)
    centres = np.zeros((3, 10), dtype=np.float32)
    centres[0, [0, 1, 2, 3]] = centres[1, [0, 1, 2, 4]] = centres[2, [5, 6, 7, 8]] = 1.0  # happy ~ sad
    dialogues = {}
    for i in range(30):
        labels = rng.integers(0, 3, 6)
        x = centres[labels] + 0.05 * rng.standard_normal((6, 10)).astype(np.float32)
        dialogues[f"d{i}"] = Dialogue(f"d{i}", np.zeros(6, int), labels, {"t": x})
    c = Corpus("c", CLASSES, ["A"], {"t": 10}, dialogues, {"train": list(dialogues)}).validate()
    s = explore.input_prototype_similarity(c)
    assert s[0, 1] > 0.15 and s[0, 2] < 0.05 and s[1, 2] < 0.05
    np.testing.assert_allclose(s, s.T, atol=1e-6)


def test_open_corpus_synthetic_options():
    c = explore.open_corpus("synthetic:iemocap", {"t": 8, "a": 6}, 9)
    assert c.feature_sizes == {"t": 8, "a": 6} and len(c.dialogues) == 9
    c = explore.open_corpus("synthetic:meld:seed=2", {}, 0)
    assert c.feature_sizes["a"] == 300 and c.source.endswith("seed2")


def test_markdown_table():
    table = explore.markdown_table([{"name": "a|b", "value": 1.23456, "n": 3}])
    assert table.splitlines() == ["| name | value | n |", "|---|---:|---:|", "| a\\|b | 1.23 | 3 |"]
    assert explore.markdown_table([]) == ""
