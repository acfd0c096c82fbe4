"""Training progress that a saved notebook keeps as text.

In a terminal, each epoch gets a tqdm bar on stderr that disappears when the epoch ends, as
before. In a notebook (an IPython kernel with a front end), tqdm would draw an ipywidgets bar
(``tqdm.auto``). A widget lives only as long as its kernel: JupyterLab autosaves the output as
a reference to the widget's model, and a notebook reopened on a new kernel shows "Error
displaying widget: model not found" in its place, once per epoch. Closing the bar does not
help: JupyterLab hides the closed view but still saves the reference.

So in a notebook the progress is one plain-text line (``text/plain`` display data) that is
updated in place through its display id while training runs (a few times per second, at
most) and ends as one final line. The saved notebook holds only that last line::

    epoch  3/16 |██████████▌         |  7/12 batches, 0:02 elapsed, 3.4 batches/s
    epoch  3/16 |████████████████████| 12/12 batches in 0:03; evaluating on valid and test ...
    trained epochs 1-16 of 16 in 0:45 (12 batches per epoch)

A run stopped by an exception leaves the line where it stopped, which is what happened.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from ..text_display import TextLine, clock, in_notebook, text_bar


class EpochProgress:
    """Progress over the batches of every epoch of one training run.

    ``bar = EpochProgress(epochs, steps)``; ``for batch in bar.epoch(batches, e)`` in the
    epoch loop; ``bar.close()`` after it. ``enabled=False`` passes the batches through.
    ``interval`` is the least time between two updates of the notebook line (the first batch
    and the end of an epoch are always shown).
    """

    def __init__(self, epochs: int, steps: int, enabled: bool = True, interval: float = 0.25):
        self.epochs, self.steps, self.enabled, self.interval = epochs, steps, enabled, interval
        self.notebook = enabled and in_notebook()
        self.first = self.last = None
        self.started = None
        self._line = TextLine(interval, enabled=self.notebook)

    def epoch(self, batches: Iterable, epoch: int) -> Iterator:
        """Yield ``batches`` while showing ``epoch``'s progress."""
        if not self.enabled:
            yield from batches
            return
        if self.first is None:
            self.first, self.started = epoch, time.time()
        self.last = epoch
        name = f"epoch {epoch:{len(str(self.epochs))}d}/{self.epochs}"
        if not self.notebook:
            from tqdm import tqdm

            yield from tqdm(batches, total=self.steps, desc=name, leave=False, dynamic_ncols=True)
            return
        t0, done = time.time(), 0

        def head() -> str:
            return f"{name} {text_bar(done, self.steps)} {done:{len(str(self.steps))}d}/{self.steps} batches"

        self._show(head(), force=True)
        for batch in batches:
            yield batch
            done += 1
            elapsed = time.time() - t0
            if done < self.steps:
                self._show(f"{head()}, {clock(elapsed)} elapsed, {done / max(elapsed, 1e-9):.1f} batches/s")
        self._show(f"{head()} in {clock(time.time() - t0)}; evaluating on valid and test ...", force=True)

    def close(self) -> None:
        """Replace the notebook line by its final form (nothing happens in a terminal)."""
        if not self.notebook or self.first is None:
            return
        stopped = "" if self.last >= self.epochs else "; stopped early"
        self._show(f"trained epochs {self.first}-{self.last} of {self.epochs} in {clock(time.time() - self.started)} "
                   f"({self.steps} batches per epoch{stopped})", force=True)

    def _show(self, line: str, force: bool = False) -> None:
        self._line.show(line, force)


class RunLine:
    """A training callback that shows one line per run in a notebook, replaced after every epoch:
    ``seed 1, SAF (soft eps 0.1, vad): epoch 7/16, valid w-F1 55.31 (best 56.10 at epoch 5), 0:12``.

    Only the validation score: the test score of an epoch is never shown while a run trains.
    The saved notebook keeps the line's last form (text, :class:`TextLine`); outside a notebook
    it shows nothing. ``epochs`` is the run's planned number (for "epoch k/n")."""

    def __init__(self, title: str, epochs: int | None = None, interval: float = 0.0):
        self.title, self.epochs = title, epochs
        self.best: tuple[float, int] | None = None
        self.started = time.time()
        self.line = TextLine(interval)
        self.line.show(f"{title}: training, epoch 1{'/' + str(epochs) if epochs else ''} ...", force=True)

    def __call__(self, epoch: int, record: dict[str, Any]) -> None:
        score = record["valid"]["weighted_f1"]
        if self.best is None or score > self.best[0]:  # ties keep the earlier epoch, as the honest protocol
            self.best = (score, epoch)
        of = f"/{self.epochs}" if self.epochs else ""
        self.line.show(f"{self.title}: epoch {epoch}{of}, valid w-F1 {score:.2f} (best {self.best[0]:.2f} at "
                       f"epoch {self.best[1]}), {clock(time.time() - self.started)}", force=True)
