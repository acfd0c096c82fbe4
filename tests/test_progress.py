"""Training progress: a text bar drawn by hand, and the notebook line updated in place."""
import IPython.display
import pytest

from safsd_glnet import progress


def test_text_bar_and_clock():
    assert progress.text_bar(0, 4, width=8) == "|        |"
    assert progress.text_bar(1, 4, width=8) == "|██      |"
    assert progress.text_bar(4, 4, width=8) == "|████████|"
    # 5/16 of 8 cells = 2.5 cells: two full cells and a half one (4 eighths)
    assert progress.text_bar(5, 16, width=8) == "|██▌     |"
    assert progress.text_bar(3, 0, width=2) == "|██|"  # nothing to do counts as done
    assert [progress.clock(s) for s in (7, 74.6, 3723)] == ["0:07", "1:15", "1:02:03"]


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
    terminal = progress.EpochProgress(epochs=2, steps=3)
    assert list(terminal.epoch(iter([1, 2, 3]), 1)) == [1, 2, 3]
    terminal.close()
    assert front_end.displays == []
    assert "epoch 1/2" in capsys.readouterr().err  # tqdm on stderr


def test_outside_a_kernel_is_not_a_notebook():
    assert progress.in_notebook() is False  # pytest runs without an IPython kernel
