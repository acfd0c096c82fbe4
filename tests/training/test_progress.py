"""Training progress: a text bar drawn by hand, and the notebook line updated in place."""
import IPython.display
import pytest

from safsd_glnet import text_display
from safsd_glnet.notebook import live_plot
from safsd_glnet.training import progress


def test_text_bar_and_clock():
    assert text_display.text_bar(0, 4, width=8) == "|        |"
    assert text_display.text_bar(1, 4, width=8) == "|██      |"
    assert text_display.text_bar(4, 4, width=8) == "|████████|"
    # 5/16 of 8 cells = 2.5 cells: two full cells and a half one (4 eighths)
    assert text_display.text_bar(5, 16, width=8) == "|██▌     |"
    assert text_display.text_bar(3, 0, width=2) == "|██|"  # nothing to do counts as done
    assert [text_display.clock(s) for s in (7, 74.6, 3723)] == ["0:07", "1:15", "1:02:03"]


class FakeFrontEnd:
    """Stands in for IPython.display.display: keeps every version of each display."""

    def __init__(self):
        self.displays = []

    def display(self, bundle, raw=False, display_id=None):
        assert raw and display_id is True
        versions = [bundle["text/plain"]]
        self.displays.append(versions)

        class Handle:
            def update(self, bundle, raw=False):
                assert raw
                versions.append(bundle["text/plain"])

        return Handle()


@pytest.fixture
def front_end(monkeypatch):
    fake = FakeFrontEnd()
    monkeypatch.setattr(IPython.display, "display", fake.display)
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(text_display, "in_notebook", lambda: True)  # TextLine asks it there
    return fake


def test_notebook_progress_is_one_line_updated_in_place(front_end):
    bar = progress.EpochProgress(epochs=3, steps=4, interval=0.0)
    seen = []
    for epoch in (1, 2, 3):
        seen += [(epoch, b) for b in bar.epoch(iter("abcd"), epoch)]
    bar.close()
    assert seen == [(e, b) for e in (1, 2, 3) for b in "abcd"]
    assert len(front_end.displays) == 1, "one display for the whole run"
    lines = front_end.displays[0]
    # per epoch: 0 batches, 1-3 batches (running), the epoch's end; then the summary
    assert len(lines) == 3 * 5 + 1
    assert lines[0] == "epoch 1/3 |" + " " * 20 + "| 0/4 batches"
    assert lines[2].startswith("epoch 1/3 |██████████          | 2/4 batches, 0:00 elapsed, ")
    assert lines[4].startswith("epoch 1/3 |████████████████████| 4/4 batches in 0:00; evaluating")
    assert lines[-1] == "trained epochs 1-3 of 3 in 0:00 (4 batches per epoch)"


def test_notebook_progress_throttles_and_says_when_it_stopped_early(front_end):
    bar = progress.EpochProgress(epochs=10, steps=50, interval=3600.0)
    for epoch in (4, 5):  # resumed at epoch 4, stopped after 5
        assert len(list(bar.epoch(range(50), epoch))) == 50
    bar.close()
    lines = front_end.displays[0]
    # within the interval only the forced updates show: each epoch's start and end, the summary
    assert len(lines) == 5 and lines[0].startswith("epoch  4/10 |")
    assert lines[-1] == "trained epochs 4-5 of 10 in 0:00 (50 batches per epoch; stopped early)"


def test_disabled_and_terminal_progress_display_nothing(front_end, monkeypatch, capsys):
    off = progress.EpochProgress(epochs=2, steps=3, enabled=False)
    assert list(off.epoch(iter([1, 2, 3]), 1)) == [1, 2, 3]
    off.close()
    monkeypatch.setattr(progress, "in_notebook", lambda: False)
    monkeypatch.setattr(text_display, "in_notebook", lambda: False)
    terminal = progress.EpochProgress(epochs=2, steps=3)
    assert list(terminal.epoch(iter([1, 2, 3]), 1)) == [1, 2, 3]
    terminal.close()
    assert front_end.displays == []
    assert "epoch 1/2" in capsys.readouterr().err  # tqdm on stderr


def test_outside_a_kernel_is_not_a_notebook():
    assert text_display.in_notebook() is False  # pytest runs without an IPython kernel


def test_run_line_shows_each_epochs_validation_score_in_one_line(front_end):
    line = progress.RunLine("seed 1, SAF (soft eps 0.1, vad)", epochs=3)
    for epoch, score in ((1, 40.0), (2, 45.5), (3, 44.0)):
        line(epoch, {"epoch": epoch, "valid": {"weighted_f1": score}, "test": {"weighted_f1": 99.0}})
    assert len(front_end.displays) == 1, "one line per run, replaced in place"
    lines = front_end.displays[0]
    assert lines[0] == "seed 1, SAF (soft eps 0.1, vad): training, epoch 1/3 ..."
    assert lines[1].startswith("seed 1, SAF (soft eps 0.1, vad): epoch 1/3, valid w-F1 40.00 (best 40.00 at epoch 1), ")
    assert lines[-1].startswith("seed 1, SAF (soft eps 0.1, vad): epoch 3/3, valid w-F1 44.00 (best 45.50 at epoch 2), ")
    assert not any("99" in text for text in lines), "no test score while a run trains"


def test_live_history_draws_its_figure_above_the_epoch_lines_without_test(monkeypatch):
    """In a notebook the first epoch's line used to sit above the live figure and the others
    below it; and the figure drew the test score of every epoch while the text said it is not
    shown during training."""
    import IPython

    from test_plots import history

    events = []

    class Handle:
        def update(self, fig):
            events.append(("update", fig))

    def fake_display(fig, display_id=False):
        events.append(("figure", fig))
        return Handle()

    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", fake_display)
    monkeypatch.setattr(live_plot, "print", lambda text, **kw: events.append(("line", text)), raising=False)
    live = live_plot.LiveHistory()
    for record in history(3):
        live(record["epoch"], record)
    assert [kind for kind, _ in events] == ["figure", "line", "update", "line", "update", "line"]
    for kind, fig in events:
        if kind != "line":
            labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
            assert "valid weighted F1" in labels and not [t for t in labels if "test" in t], labels


def test_kernel_busy_says_busy_while_the_block_runs_and_stops_after(monkeypatch):
    import threading

    said = []
    beat = threading.Event()

    class Kernel:
        def _publish_status(self, status, channel):
            said.append((status, channel))
            beat.set()

    monkeypatch.setattr(text_display, "_kernel", lambda: Kernel())
    with text_display.kernel_busy(every=0.01):
        assert beat.wait(30), "no busy report while the block ran"
    count = len(said)
    assert not [t for t in threading.enumerate() if t.name == "safsd-glnet-busy"], "the reporter stopped with the block"
    assert set(said) == {("busy", "shell")} and len(said) == count
    monkeypatch.setattr(text_display, "_kernel", lambda: None)
    with text_display.kernel_busy(every=0.01):  # outside a notebook: nothing to report to
        pass
