"""Data exploration helpers: statistics on a hand-made corpus, the dialogue views, the browser."""
import numpy as np
import pytest

from safsd_glnet.notebook import explore
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


def test_browser_without_a_kernel_hides_its_dropdowns_and_says_so(corpus):
    """Reopened on a new kernel, the browser is drawn from its saved state and nothing answers
    its dropdowns: ipywidgets then marks the views "jupyter-widgets-disconnected", and the rules
    in the browser's view hide the dropdowns and show a note (checked in JupyterLab by
    tests/notebook/test_browser.py)."""
    browser = explore.dialogue_browser({"toy": corpus})
    assert "safsd-browser" in browser._dom_classes
    view = browser.children[3].value
    hidden = ".safsd-browser.jupyter-widgets-disconnected .widget-dropdown {display: none}"
    assert hidden in view and "run this cell to browse" in view
    browser.children[2].value = "d1"  # the view is rebuilt with its rules
    assert hidden in browser.children[3].value and "no sentences" in browser.children[3].value


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


# --------------------------------------------------------------------------- sentences as DATA

def meld_folder(path):
    """The three MELD CSVs with two dialogues each (the release's layout)."""
    from table_fixtures import MELD_HEADER, write_csv

    path.mkdir()
    for k, name in enumerate(("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv")):
        rows = [[i, f"Sentence {k} {d} {u}.", f"P{u % 2}", ("joy", "anger", "neutral")[(d + u) % 3], "neutral", d, u,
                 1, 1, "0", "0"] for d in range(2) for u in range(3) for i in [d * 3 + u]]
        write_csv(path / name, rows, header=MELD_HEADER)
    return path


def test_open_corpus_encodes_sentences_once_then_reads_the_cache(tmp_path, monkeypatch):
    """A MELD folder as DATA: one text feature per utterance, in dialogue order, encoded the first
    time and read from the cache the second; the notebook is told which."""
    import hashlib

    from safsd_glnet.features import text as features

    calls = []

    class Fake:
        def get_sentence_embedding_dimension(self):
            return 4

        def encode(self, texts, **kw):
            calls.append(list(texts))
            return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:4], dtype=np.uint8) / 255.0
                             for t in texts]).astype(np.float32)

    monkeypatch.setattr(features, "load_encoder", lambda encoder="minilm", device="auto": Fake())
    folder = meld_folder(tmp_path / "meld")
    said = []
    corpus = explore.open_corpus(str(folder), {"t": 9}, 3, cache_dir=str(tmp_path / "cache"), log=said.append)
    assert corpus.name == "meld" and corpus.feature_sizes == {"t": 4} and corpus.modalities == ("t",)
    assert {s: len(v) for s, v in corpus.splits.items()} == {"train": 2, "valid": 2, "test": 2}
    d = corpus.dialogues["valid_1"]
    assert d.texts == ["Sentence 1 1 0.", "Sentence 1 1 1.", "Sentence 1 1 2."]
    np.testing.assert_allclose(d.features["t"][2], np.frombuffer(hashlib.sha256(b"Sentence 1 1 2.").digest()[:4],
                                                                 dtype=np.uint8) / 255.0, rtol=1e-6)
    assert len(calls) == 1 and len(calls[0]) == 18 and "being encoded now" in said[0]
    again = explore.open_corpus(str(folder), cache_dir=str(tmp_path / "cache"), log=said.append)
    assert len(calls) == 1 and "read from the cache" in said[1]
    np.testing.assert_array_equal(again.dialogues["valid_1"].features["t"], d.features["t"])


def test_data_specs_for_sentences(tmp_path):
    from safsd_glnet.data import check_data_spec, default_cache_dir, is_meld_folder, load_data

    folder = meld_folder(tmp_path / "meld")
    assert is_meld_folder(folder) and not is_meld_folder(tmp_path)
    check_data_spec(str(folder))
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="not the MELD text release.*safsd-glnet data meld"):
        check_data_spec(str(tmp_path / "other"), where="DATA")
    with pytest.raises(DataError, match="file not found"):
        check_data_spec(str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="not the MELD text release"):
        load_data(str(tmp_path / "other"))
    with pytest.raises(DataError, match="cannot tell the format.*utterance table"):
        load_data(str(tmp_path / "x.txt"))
    assert default_cache_dir().endswith(".cache/safsd-glnet")
