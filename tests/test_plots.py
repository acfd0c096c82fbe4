"""Figures: each plotting function draws what it says, with labels, and files are written."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from safsd_glnet import plots, progress  # noqa: E402
from safsd_glnet.metrics import similar_pair_confusion  # noqa: E402

IEMOCAP = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(epochs=3, modalities="tav"):
    out = []
    for e in range(1, epochs + 1):
        loss = {"teacher_ce": 2.0 / e, **{f"student_{m}": 1.0 / e for m in modalities},
                **{f"kl_{m}": 0.1 / e for m in modalities}, "total": 5.0 / e}
        split = lambda base: {"accuracy": base, "weighted_f1": base, "macro_f1": base,  # noqa: E731
                              "students": {m: {"accuracy": base - 5, "weighted_f1": base - 5} for m in modalities}}
        out.append({"epoch": e, "loss": loss, "valid": split(40.0 + e), "test": split(38.0 + 2 * e), "seconds": 0.1})
    return out


def texts(fig):
    """Every piece of text in a figure: titles, axis labels, tick labels, legend entries."""
    found = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        found += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        found += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() + ax.texts]
        if ax.get_legend():
            found += [t.get_text() for t in ax.get_legend().get_texts()]
    for legend in fig.legends:
        found += [t.get_text() for t in legend.get_texts()]
    return " | ".join(found)


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    written = plots.save_figure(fig, tmp_path / "sub" / "figure")
    assert [p.name for p in written] == ["figure.png", "figure.pdf"]
    assert written[0].read_bytes()[:4] == b"\x89PNG" and written[1].read_bytes()[:4] == b"%PDF"


def test_saved_pdf_does_not_depend_on_when_it_was_written(tmp_path, monkeypatch):
    fig, ax = plt.subplots()
    ax.plot([0, 1, 3])
    pdfs = []
    for k, when in enumerate(("1000000000", "1700000000")):  # matplotlib's clock for the CreationDate
        monkeypatch.setenv("SOURCE_DATE_EPOCH", when)
        pdfs.append(plots.save_figure(fig, tmp_path / f"f{k}", formats=("pdf",))[0].read_bytes())
    assert pdfs[0] == pdfs[1]
    assert b"CreationDate" not in pdfs[0]


def test_class_colors_are_fixed_and_distinct():
    c = plots.class_colors(IEMOCAP)
    assert len(set(c.values())) == 6
    assert c == plots.class_colors(IEMOCAP)
    # the same emotion keeps its colour across corpora, unknown names get unused colours
    assert plots.class_colors(["joy", "anger"])["anger"] == c["angry"]
    odd = plots.class_colors(["happy", "calm", "bored", "glad"])
    assert len(set(odd.values())) == 4


def test_history_marks_the_chosen_epoch_and_names_every_term():
    fig = plots.plot_history(history(), chosen_epoch=2, students=True)
    assert len(fig.axes) == 3
    t = texts(fig)
    for label in ("teacher CE", "student text", "KL to audio student", "total", "chosen epoch 2",
                  "valid weighted F1", "test weighted F1", "visual student"):
        assert label in t, label
    assert len(plots.plot_history(history(), 1).axes) == 2


def test_confusion_plots_share_of_true_class():
    k = np.array([[8, 2], [1, 9]])
    fig = plots.plot_confusion(k, ["a", "b"])
    assert "true emotion" in texts(fig) and "0.80" in texts(fig)
    fig = plots.plot_confusions({"run 1": k, "run 2": k.T}, ["a", "b"], title="two")
    assert "run 1" in texts(fig) and "run 2" in texts(fig)


def test_exploration_figures():
    counts = {"train": np.array([5, 10, 3, 4, 6, 2]), "test": np.array([1, 2, 3, 4, 5, 6])}
    assert "happy" in texts(plots.plot_class_distribution(counts, IEMOCAP))
    fig = plots.plot_dialogue_lengths({"train": np.array([5, 8, 9]), "test": np.array([4, 10])})
    assert "train: 3 dialogues, mean 7.3" in texts(fig)
    stats = {"utterances_per_speaker": {"M": 10, "F": 12, "X": 0}, "speakers_per_dialogue": np.array([2, 2]),
             "turn_lengths": np.array([1, 1, 2, 3]), "switch_rate": 0.75}
    fig = plots.plot_speaker_stats(stats)
    assert "75%" in texts(fig) and "X" not in [t.get_text() for t in fig.axes[0].get_xticklabels()]
    m = np.full((6, 6), 1 / 6)
    fig = plots.plot_transitions({"same": m, "other": m}, IEMOCAP)
    assert "same speaker" in texts(fig) and "other speaker" in texts(fig)
    fig = plots.plot_similarity_matrices({"prior": "no prior for MELD", "vad": np.eye(6)}, IEMOCAP)
    assert "not available" in texts(fig) and "vad (NRC" in texts(fig)


def test_per_class_and_similar_pair_bars():
    f1 = {c: 50.0 for c in IEMOCAP}
    fig = plots.plot_per_class_f1({"SAF": f1, "no SAF": {c: 40.0 for c in IEMOCAP}}, IEMOCAP,
                                  support={c: 10 for c in IEMOCAP})
    assert "happy\n(n=10)" in texts(fig) and "no SAF" in texts(fig)
    k = np.eye(6, dtype=int) * 8
    k[0, 4] = 2
    rates = {"SAF": similar_pair_confusion(k, IEMOCAP), "no SAF": similar_pair_confusion(k.T, IEMOCAP)}
    fig = plots.plot_similar_pairs(rates)
    t = texts(fig)
    assert "happy\nas excited" in t and "excited\nas happy" in t and "20.0" in t


def test_embed_2d_and_embedding_maps():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8))
    xy = plots.embed_2d(x, "pca")
    assert xy.shape == (60, 2)
    with pytest.raises(ValueError, match="method"):
        plots.embed_2d(x, "tsne")
    labels = rng.integers(0, 6, 60)
    fig = plots.plot_embeddings({"SAF": {"teacher": xy, "text student": xy}, "no SAF": {"teacher": xy}},
                                labels, IEMOCAP, pairs=[("happy", "excited")], method="PCA")
    assert len(fig.axes) == 4 and not fig.axes[3].axison  # the missing panel is blank
    t = texts(fig)
    assert "teacher" in t and "no SAF" in t and "similar pair" in t and "frustrated" in t


def test_ablation_chart():
    rows = [{"label": "full", "n": 2, "corpus": "toy", "weighted_f1_mean": 60.0, "weighted_f1_std": 1.0,
             "weighted_f1_values": [59.3, 60.7], "reference_weighted_f1_mean": 62.0},
            {"label": "w/o GCN", "n": 2, "corpus": "toy", "weighted_f1_mean": 55.0, "weighted_f1_std": 0.5,
             "weighted_f1_values": [54.6, 55.4], "reference_weighted_f1_mean": 57.0}]
    fig = plots.plot_ablation(rows)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0  # bars start at zero
    t = texts(fig)
    assert "toy: ablations, test weighted F1 (2 seeds per variant)" in t and "reference protocol" in t
    assert "60.0" in t and "w/o GCN" in t


def test_live_history_prints_each_epoch(capsys):
    live = progress.LiveHistory()
    for record in history(2):
        live(record["epoch"], record)
    out = capsys.readouterr().out
    assert "epoch   1: loss 5.000" in out and "epoch   2" in out
    assert "valid weighted F1" in out and "test" not in out  # no test score to choose by
    assert len(live.history) == 2


def test_the_old_home_of_live_history_still_works_and_warns():
    with pytest.warns(DeprecationWarning, match="progress.LiveHistory"):
        old = plots.LiveHistory
    assert old is progress.LiveHistory
