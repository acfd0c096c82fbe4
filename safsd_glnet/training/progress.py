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

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import matplotlib.pyplot as plt

from ..notebook.plots import plot_history
from .epoch_selection import choose_epoch

BAR_WIDTH = 20  # characters of the bar between the pipes
_PARTIAL = " ▏▎▍▌▋▊▉"  # eighths of a character cell


def in_notebook() -> bool:
    """True inside an IPython kernel (JupyterLab, Notebook, VS Code, papermill), where
    ``display`` reaches a front end; False in a terminal or plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _kernel():
    """The running IPython kernel, or None (a terminal, plain Python)."""
    if not in_notebook():
        return None
    from IPython import get_ipython

    return get_ipython().kernel


@contextmanager
def kernel_busy(every: float = 0.5) -> Iterator[None]:
    """Keep the kernel's state "busy" in the front end while the block runs, by saying so again
    every ``every`` seconds on the kernel's IOPub channel (nothing happens outside a notebook).

    A cell that runs for a while can show "Idle" in JupyterLab's status bar: the kernel answers
    requests on its control channel (the debugger's, the front end's) in a thread of its own
    while the cell runs, and reports "idle" after each of them on the same channel that reports
    the cell's state (jupyterlab/jupyterlab#10701, ipython/ipykernel#799). The front end shows
    the latest report. Within the block, the latest report is at most ``every`` seconds old and
    says "busy", which is true; the kernel's own "idle" at the end of the cell comes after the
    block's last report."""
    kernel = _kernel()
    publish = getattr(kernel, "_publish_status", None)
    if publish is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                publish("busy", "shell")
            except Exception:  # a display aid must never break the work it accompanies
                return

    thread = threading.Thread(target=beat, name="safsd-glnet-busy", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def text_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``|█████▌    |``: ``done / total`` of ``width`` cells, to an eighth of a cell."""
    frac = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    cells = "█" * full + (_PARTIAL[part] if part else "")
    return "|" + cells.ljust(width) + "|"


def clock(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TextLine:
    """One ``text/plain`` display in a notebook, replaced in place through its display id: the
    saved notebook keeps its last version as text. ``show(line)`` is throttled to one update per
    ``interval`` seconds unless ``force``; outside a notebook nothing is shown."""

    def __init__(self, interval: float = 0.25, enabled: bool | None = None):
        self.interval = interval
        self.enabled = in_notebook() if enabled is None else enabled
        self.last: str | None = None
        self._handle = None
        self._shown = 0.0

    def show(self, line: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self._shown < self.interval:
            return
        self._shown, self.last = now, line
        from IPython.display import display

        bundle = {"text/plain": line}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


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


class LiveHistory:
    """A training callback that redraws :func:`plot_history` after every epoch in a notebook
    (one figure updated in place) and prints one line per epoch below it.

    Use as ``train(cfg, corpus, out, callback=LiveHistory(every=1))``. Outside IPython it only
    prints. The line and the figure show the validation score only: the test score of every
    epoch is in the history for the reference protocol, but showing it while training invites
    choosing by it (the notebook shows test after training)."""

    def __init__(self, every: int = 1, title: str | None = None, plot: bool = True):
        self.every, self.title, self.plot = max(1, every), title, plot
        self.history: list[dict[str, Any]] = []
        self.handle = None

    def __call__(self, epoch: int, record: dict[str, Any]) -> None:
        self.history.append(record)
        # The figure first: drawn once before the first line, every line then sits below it.
        if self.plot and (self.handle is None or epoch % self.every == 0):
            self._draw()
        loss = record["loss"].get("total", next(iter(record["loss"].values())))
        print(f"epoch {epoch:3d}: loss {loss:.3f}, valid weighted F1 {record['valid']['weighted_f1']:.2f} "
              f"({record['seconds']:.1f} s)", flush=True)

    def _draw(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        best = choose_epoch([r["valid"]["weighted_f1"] for r in self.history])
        fig = plot_history(self.history, best, title=self.title, test=False)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)
