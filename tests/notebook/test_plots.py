"""Figures: each plotting function draws what it says, with labels, and files are written."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from safsd_glnet.notebook import plots
from safsd_glnet.notebook import live_plot  # noqa: E402
from safsd_glnet.model.metrics import similar_pair_confusion  # noqa: E402

IEMOCAP = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(epochs=3, modalities="tav", students=None):
    """A training history; ``students(e)`` gives the students' weighted F1 at epoch e (default:
    5 points under the teacher's)."""
    out = []
    for e in range(1, epochs + 1):
        loss = {"teacher_ce": 2.0 / e, **{f"student_{m}": 1.0 / e for m in modalities},
                **{f"kl_{m}": 0.1 / e for m in modalities}, "total": 5.0 / e}
        student = (lambda base: base - 5) if students is None else (lambda base: students(e))
        split = lambda base: {"accuracy": base, "weighted_f1": base, "macro_f1": base,  # noqa: E731
                              "students": {m: {"accuracy": student(base), "weighted_f1": student(base) + k}
                                           for k, m in enumerate(modalities)}}
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
    assert len([ax for ax in fig.axes if ax.axison]) == 3  # the fourth slot holds the loss legend
    t = texts(fig)
    for label in ("teacher CE", "student text", "KL to audio student", "total", "chosen epoch 2",
                  "valid weighted F1", "test weighted F1", "visual student"):
        assert label in t, label
    assert len(plots.plot_history(history(), 1).axes) == 2
    with plots.profile("paper"):
        assert len(plots.plot_history(history(), 1, students=True).axes) == 3  # one row


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


def test_architecture_names_every_stage_and_the_loss():
    """The diagram names SPEC.md's stages in the data's order (left to right) and the loss."""
    fig = plots.plot_architecture()
    fig.canvas.draw()
    found = {t.get_text(): t for t in fig.axes[0].texts}
    left = {name: found[name].get_window_extent().x0 for name in found}
    order = ["text x_t", "Linear(d_m, H)\n+ position + speaker", "modality-hybrid\nattention", "masked GCN", "teacher"]
    for name in order:
        assert name in found, name
    assert [left[n] for n in order] == sorted(left[n] for n in order), "the stages run left to right"
    assert {"audio x_a", "visual x_v", "students", "loss: SAF", "loss: CE_w"} <= set(found)
    assert any("T^2 KL(teacher || student_m)" in t and "SAF(student_m)" in t for t in found)
    assert fig.texts == [] and "SAFSD-GLNet" in texts(fig)  # the title, in the notebook drawing only
    with plots.profile("paper"):
        assert "SAFSD-GLNet" not in texts(plots.plot_architecture())


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
    live = live_plot.LiveHistory()
    for record in history(2):
        live(record["epoch"], record)
    out = capsys.readouterr().out
    assert "epoch   1: loss 5.000" in out and "epoch   2" in out
    assert "valid weighted F1" in out and "test" not in out  # no test score to choose by
    assert len(live.history) == 2


# --------------------------------------------------------------------------- profiles

MELD = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]


def every_figure(class_names):
    """One call of every figure function, with data of the given classes (MELD's are the most:
    seven classes, nine speakers), as the notebooks call them."""
    c = len(class_names)
    rng = np.random.default_rng(0)
    k = rng.integers(0, 60, (c, c)) + np.eye(c, dtype=int) * 150
    m = normalise_rows_like(k)
    counts = {s: rng.integers(20, 900, c) for s in ("train", "valid", "test")}
    stats = {"utterances_per_speaker": {f"speaker{i}": int(900 / (i + 1)) for i in range(9)},
             "speakers_per_dialogue": rng.integers(1, 10, 300), "turn_lengths": rng.integers(1, 30, 900),
             "switch_rate": 0.77}
    rates = {"SAF (soft, vad)": similar_pair_confusion(k, class_names),
             "no SAF (CE students)": similar_pair_confusion(k.T, class_names)}
    xy = rng.standard_normal((300, 2))
    heads = {"teacher": xy, "text student": xy, "audio student": xy, "visual student": xy}
    long = "synthetic-iemocap, test set, seed 0: a long title as the notebooks write them (736 utterances)"
    rows = [{"label": lab, "n": 2, "corpus": "toy", "weighted_f1_mean": v, "weighted_f1_std": 1.0,
             "weighted_f1_values": [v - 1, v + 1], "reference_weighted_f1_mean": v + 2}
            for lab, v in (("full model", 57.0), ("w/o SAF (CE students)", 55.0), ("w/o GCN", 56.0),
                           ("w/o Transformer", 50.0), ("w/o self-distillation", 56.5))]
    seeds = [{"label": "SAF (soft, vad)", "valid_values": [55.0, 56.5, 57.0], "test_values": [52.0, 53.1, 51.2]},
             {"label": "no SAF (CE students)", "valid_values": [56.0, 57.3, 59.1], "test_values": [55.0, 54.2, 56.0]}]
    return {
        "class_distribution": lambda: plots.plot_class_distribution(counts, class_names, title=long),
        "dialogue_lengths": lambda: plots.plot_dialogue_lengths({s: rng.integers(1, 100, 50) for s in counts}, title=long),
        "speaker_turns": lambda: plots.plot_speaker_stats(stats, title=long),
        "transitions": lambda: plots.plot_transitions({"same": m, "other": m.T}, class_names, title=long),
        "similarity": lambda: plots.plot_similarity_matrices({"prior": m, "vad": m, "prototype": m}, class_names,
                                                             title=long),
        "training_curves": lambda: plots.plot_history(history(30), 12, students=True, title=long),
        "live_curves": lambda: plots.plot_history(history(30), 12, title=long, test=False),
        # students that learn little: their curves run along the bottom, where a legend would sit
        "training_curves_low_students": lambda: plots.plot_history(history(16, students=lambda e: 20 + 0.1 * e), 12,
                                                                    students=True, title=long),
        "confusion": lambda: plots.plot_confusion(k, class_names, title=long),
        "confusions": lambda: plots.plot_confusions({"SAF (soft, vad)": k, "no SAF (CE students)": k.T}, class_names,
                                                    title=long),
        "per_class_f1": lambda: plots.plot_per_class_f1({"SAF (soft, vad)": {n: 55.5 for n in class_names},
                                                         "no SAF (CE students)": {n: 45.1 for n in class_names}},
                                                        class_names, support={n: 1000 for n in class_names}, title=long),
        "similar_pairs": lambda: plots.plot_similar_pairs(rates, title=long),
        "embeddings": lambda: plots.plot_embeddings({"SAF (soft, vad)": heads, "no SAF (CE students)": heads},
                                                    rng.integers(0, c, 300), class_names,
                                                    pairs=[(class_names[0], class_names[1])], method="LDA", title=long),
        "ablation": lambda: plots.plot_ablation(rows),
        "seeds": lambda: plots.plot_seed_comparison(seeds, title=long),
        "architecture": lambda: plots.plot_architecture(),
    }


def normalise_rows_like(k):
    return k / k.sum(axis=1, keepdims=True)


def text_sizes(fig):
    """(font size in points, text) of every visible, non-empty text of a drawn figure."""
    from matplotlib.text import Text

    fig.canvas.draw()
    return [(t.get_fontsize(), t.get_text()) for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.integration  # draws and measures every notebook figure: 10-25 s
@pytest.mark.parametrize("classes", [IEMOCAP, MELD], ids=["iemocap", "meld"])
def test_every_notebook_figure_is_readable_at_1280_px(classes):
    """Drawn for the notebook, every figure fits JupyterLab's output column at 1280 px with the
    file browser open (so it is shown at full size), and its smallest text is at least 9 px on
    screen, even where the column were 950 px and the image scaled to it."""
    with plots.profile("notebook"):
        for name, draw in every_figure(classes).items():
            fig = draw()
            fig.canvas.draw()
            # as the inline backend saves it: the tight box plus 0.1 inch on each side
            width_px = (fig.get_tightbbox(fig.canvas.get_renderer()).width + 0.2) * fig.dpi
            assert fig.dpi == 100 and width_px <= plots.NOTEBOOK_COLUMN_PX, (name, width_px)
            assert plots.shown_width(fig) <= plots.NOTEBOOK_COLUMN_PX, name
            smallest, text = min(text_sizes(fig))
            # the same number by hand: points -> pixels at 100 dpi, times the scale to fit 950 px
            px = smallest * 100 / 72 * min(1.0, 950 / width_px)
            assert px >= 9.0, (name, text, px)
            assert plots.smallest_text(fig, 950)[0] >= 9.0, name
            plt.close(fig)


@pytest.mark.integration  # draws and measures every notebook figure: 10-25 s
def test_paper_figures_fit_a_page_and_keep_their_text():
    with plots.profile("paper"):
        for name, draw in every_figure(MELD).items():
            fig = draw()
            width = fig.get_tightbbox(fig.canvas.get_renderer()).width
            assert width <= 7.0 + 0.05, (name, width)  # two columns of a paper, at most
            assert min(text_sizes(fig))[0] >= 6.5, name
            plt.close(fig)
    assert plots.current_profile().name == "notebook", "the profile returns after the block"
    with pytest.raises(ValueError, match="unknown profile"):
        plots.use_profile("poster")


def test_the_old_layout_would_have_failed_the_readability_check():
    """The check measures something: a 3-panel figure 18 inches wide, as the notebooks drew
    before the profiles, is scaled to under half its size and its 7-point numbers to 4 px."""
    fig, axes = plt.subplots(1, 3, figsize=(18.6, 5.2), dpi=100)
    axes[0].text(0.5, 0.5, "0.82", fontsize=7)
    px, scale, text = plots.smallest_text(fig, 848)
    width_px = (fig.get_tightbbox(fig.canvas.get_renderer()).width + 0.2) * 100
    assert scale == pytest.approx(848 / width_px) and scale < 0.6
    assert px == pytest.approx(7 * 100 / 72 * scale) and px < 6 and text == "0.82"


def test_figure_writer_draws_png_for_the_screen_and_pdf_for_a_paper(tmp_path):
    m = np.full((6, 6), 1 / 6)
    writer = plots.FigureWriter(tmp_path / "out", "01_")
    fig = writer("transitions", plots.plot_transitions, {"same": m, "other": m}, IEMOCAP, title="t")
    assert [p.name for p in writer.written] == ["01_transitions.png", "01_transitions.pdf"]
    assert fig.get_figwidth() <= plots.NOTEBOOK_WIDTH and fig.texts[0].get_text() == "t"  # the shown figure
    from PIL import Image

    with Image.open(tmp_path / "out" / "01_transitions.png") as png:  # the notebook drawing, at 150 dpi
        # savefig's tight box adds 0.1 inch on each side
        assert abs(png.size[0] / 150 - fig.get_tightbbox(fig.canvas.get_renderer()).width - 0.2) < 0.1
    pdf = (tmp_path / "out" / "01_transitions.pdf").read_bytes()
    box = [float(v) for v in pdf.split(b"/MediaBox [")[1].split(b"]")[0].split()]
    assert (box[2] - box[0]) / 72 <= 7.05, "the PDF is the paper drawing"
    # drawing again writes the same bytes (no dates, fixed layout)
    again = plots.FigureWriter(tmp_path / "again", "01_")
    again("transitions", plots.plot_transitions, {"same": m, "other": m}, IEMOCAP, title="t")
    for name in ("01_transitions.png", "01_transitions.pdf"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
    assert plots.FigureWriter(None)("t", plots.plot_transitions, {"same": m}, IEMOCAP) is not None


def label_faults(fig, class_names):
    """Where the class labels of a drawn embedding figure crowd: pairs of labels closer than
    plots.LABEL_GAP_PX (1 px of rounding allowed), and labels over a centroid dot."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    faults = []
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_text() in class_names]
        boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in labels]  # without the leader line
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                gap = max(b.x0 - a.x1, a.x0 - b.x1, b.y0 - a.y1, a.y0 - b.y1)
                if gap < plots.LABEL_GAP_PX - 1:
                    faults.append((ax.get_title(), labels[i].get_text(), labels[j].get_text(), round(gap, 1)))
        dots = [c for c in ax.collections if len(c.get_offsets()) == 1]  # the centroids: one point each
        for dot in dots:
            x, y = dot.get_offset_transform().transform(dot.get_offsets())[0]
            radius = np.sqrt(dot.get_sizes()[0]) / 2 * fig.dpi / 72
            for t, b in zip(labels, boxes):
                if b.x0 - radius < x < b.x1 + radius and b.y0 - radius < y < b.y1 + radius:
                    faults.append((ax.get_title(), t.get_text(), "covers a dot at", (round(x), round(y))))
    return faults


@pytest.mark.integration  # draws every embedding map: 5 s each
@pytest.mark.parametrize("classes", [IEMOCAP, MELD], ids=["iemocap", "meld"])
def test_embedding_labels_keep_clear_of_each_other_and_of_the_dots(classes):
    """03's maps are 2 runs x 4 heads; where the class centroids crowd, the labels used to touch
    each other and to hide other classes' dots. Here the centroids crowd in the middle of every
    panel (and all sit at one point in one panel); each label keeps a gap to the others and to
    every dot, and a leader line joins it to its own dot."""
    rng = np.random.default_rng(3)
    c = len(classes)
    labels = np.repeat(np.arange(c), 30)
    heads = {}
    for k, head in enumerate(("teacher", "text student", "audio student", "visual student")):
        spread = 0.0 if k == 0 else 0.35  # the class means within a third of the points' spread
        means = rng.normal(0, spread, (c, 2))
        heads[head] = means[labels] + rng.normal(0, 1.0, (len(labels), 2))
    fig = plots.plot_embeddings({"SAF (soft eps 0.1, vad)": heads, "no SAF (CE students, g2 0.696)": heads}, labels,
                                classes, pairs=[(classes[0], classes[4])], method="LDA", title="t")
    assert label_faults(fig, classes) == []
    ax = fig.axes[0]
    inside = ax.get_window_extent()
    boxes = [t.get_bbox_patch().get_window_extent() for t in ax.texts if t.get_text() in classes]
    assert len(boxes) == c and all(inside.x0 - 1 <= b.x0 and b.x1 <= inside.x1 + 1 for b in boxes)


def test_the_label_check_sees_labels_that_touch():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter([0.5], [0.5], s=84)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    for text, y in (("happy", 0.5), ("sad", 0.55)):
        ax.annotate(text, (0.5, y), bbox={"boxstyle": "round,pad=0.15", "fc": "white"})
    faults = label_faults(fig, ["happy", "sad"])
    assert ("", "happy", "sad") in [f[:3] for f in faults] and "covers a dot at" in [f[2] for f in faults]


def test_lda_map_separates_classes_it_learned_elsewhere():
    """'lda' learns its two directions on one set and maps another: three classes that differ in
    two of 20 dimensions come out in three clusters, which PCA of the noise-dominated features
    does not show."""
    rng = np.random.default_rng(1)

    def draw(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(0, 1.0, (n, 20))
        x[:, 0] += np.array([0, 3, 0])[y]
        x[:, 1] += np.array([0, 0, 3])[y]
        x[:, 2:] *= 4.0
        return x, y

    (fx, fy), (x, y) = draw(600), draw(300)
    lda = plots.embed_2d(x, "lda", fit_features=fx, fit_labels=fy)

    def separation(z):
        centres = np.stack([z[y == k].mean(0) for k in range(3)])
        spread = np.mean([z[y == k].std(0).mean() for k in range(3)])
        return min(np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)) / spread

    assert separation(lda) > 2.0 > separation(plots.embed_2d(x, "pca"))
    with pytest.raises(ValueError, match="fit_features"):
        plots.embed_2d(x, "lda")


def covered_by_legends(fig):
    """What the legends of a drawn figure cover: the data points of lines and scatters and the
    numbers written on the plots (as ``(axes title, what)`` pairs). A legend drawn over the last
    epochs of a curve, or over a bar's count, hides what the reader came to see."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    boxes = [legend.get_window_extent(renderer) for legend in legends]
    covered = []
    for ax in fig.axes:
        if not ax.has_data():
            continue
        # each artist in its own coordinates (a vertical line's y runs in axes units)
        points = [line.get_transform().transform(line.get_xydata()) for line in ax.get_lines()
                  if len(line.get_xdata())]
        points += [c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections
                   if len(c.get_offsets())]
        texts = [t for t in ax.texts if t.get_visible() and t.get_text().strip()]
        for box in boxes:
            for xy in points:
                inside = (xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1)
                if inside.any():
                    covered.append((ax.get_title(), f"{int(inside.sum())} data points"))
            covered += [(ax.get_title(), f"the text {t.get_text()!r}") for t in texts
                        if t.get_window_extent(renderer).overlaps(box)]
    return covered


@pytest.mark.integration  # draws and measures every notebook figure: 10-25 s
@pytest.mark.parametrize("classes", [IEMOCAP, MELD], ids=["iemocap", "meld"])
def test_no_legend_hides_data_or_numbers(classes):
    """Every figure, drawn for the notebook and for a paper: no legend sits over a curve's
    points, a scatter's points or a number written on a bar (01's class-distribution legend hid
    a bar count, 02's students-vs-teacher legend the last epochs)."""
    for medium in ("notebook", "paper"):
        with plots.profile(medium):
            for name, draw in every_figure(classes).items():
                if name == "embeddings":  # the maps' legend sits below the panels; their labels are tested above
                    continue
                fig = draw()
                assert covered_by_legends(fig) == [], (medium, name)
                plt.close(fig)


def test_the_legend_check_sees_a_legend_over_the_data():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(range(10), [50 + k for k in range(10)], marker="o", label="students")
    ax.legend(loc="upper left", bbox_to_anchor=(0.6, 0.9))  # over the last points of the curve
    assert covered_by_legends(fig) and "data points" in covered_by_legends(fig)[0][1]


def test_titles_leave_no_word_alone_on_a_line():
    """02's confusion matrix was titled "...: test set at the chosen epoch" / "15": a title a little
    too long for a narrow figure now widens it, and a long one wraps into lines of even length."""
    m = np.eye(6, dtype=int) * 30 + 2
    short = "synthetic-iemocap: test set at the chosen epoch 15"
    fig = plots.plot_confusion(m, IEMOCAP, title=short)
    assert fig.texts[0].get_text() == short and "\n" not in fig.texts[0].get_text()
    fig.canvas.draw()
    title_box = fig.texts[0].get_window_extent(fig.canvas.get_renderer())
    assert title_box.x0 >= 0 and title_box.x1 <= fig.bbox.x1, "the title fits in the figure"
    long = "synthetic-iemocap, test set, seed 0: " + "a title much longer than any figure is wide " * 3 + "(15)"
    lines = plots.plot_confusion(m, IEMOCAP, title=long).texts[0].get_text().split("\n")
    assert len(lines) > 1 and min(map(len, lines)) >= 0.6 * max(map(len, lines)), lines
    assert " ".join(lines) == " ".join(long.split())
