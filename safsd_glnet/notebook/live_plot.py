"""The live training plot of a notebook: a training callback that redraws the training curves
after every epoch, one figure updated in place (notebooks 02 and 04)."""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt

from ..training.epoch_selection import choose_epoch
from .plots import plot_history


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
