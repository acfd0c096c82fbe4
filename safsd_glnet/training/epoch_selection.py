"""The rule that chooses the reported epoch, in one place.

Honest protocol (SPEC.md): read the validation weighted F1 epoch by epoch, keep the epoch
with the best *strictly higher* score so far (ties go to the earlier epoch), and, with
early stopping, stop once ``patience`` epochs in a row have not beaten it. Training
(:func:`safsd_glnet.training.train.train`), the live plot of a notebook and the research studies all
read their epoch through :class:`BestEpoch` or :func:`choose_epoch`.

The reference protocol (labelled, for comparison with published numbers only) is the epoch
of the best *test* score, :func:`reference_epoch`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass
class BestEpoch:
    """The best epoch so far of a validation curve read in order.

    ``epoch`` is 0 before any score; ``since`` counts the epochs since the last improvement."""

    epoch: int = 0
    score: float = -math.inf
    since: int = 0

    def update(self, epoch: int, score: float) -> bool:
        """Read epoch ``epoch``'s score; True when it is the new best (strictly higher)."""
        if score > self.score:
            self.epoch, self.score, self.since = epoch, float(score), 0
            return True
        self.since += 1
        return False

    def exhausted(self, patience: int | None) -> bool:
        """Early stopping: ``patience`` epochs in a row without a better score (None: never)."""
        return patience is not None and self.since >= patience

    def to_dict(self) -> dict[str, Any]:
        """The form run checkpoints store (``best`` and ``since_best``)."""
        return {"epoch": self.epoch, "valid_weighted_f1": self.score if self.epoch else -1.0}

    @classmethod
    def from_dict(cls, best: dict[str, Any], since: int) -> "BestEpoch":
        epoch = int(best.get("epoch", 0))
        return cls(epoch, float(best.get("valid_weighted_f1", -math.inf)) if epoch else -math.inf, int(since))


def choose_epoch(valid_curve: Sequence[float], window: int = 1, patience: int | None = None) -> int:
    """The epoch (1-based) the honest rule picks from a validation curve, as training picks it.

    Epoch e scores s_e = mean(v[max(1, e - window + 1) .. e]) (a trailing mean; window 1 is the
    raw curve, which is what training uses), then :class:`BestEpoch` reads the scores in order
    and stops early after ``patience`` epochs without improvement."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not len(valid_curve):
        raise ValueError("empty validation curve")
    best = BestEpoch()
    for e in range(1, len(valid_curve) + 1):
        if best.exhausted(patience):
            break
        window_scores = valid_curve[max(0, e - window):e]
        best.update(e, float(sum(window_scores) / len(window_scores)))
    return best.epoch


def reference_epoch(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The record of ``history`` with the best test weighted F1 (ties: the earlier epoch): the
    reference protocol of SDT, M3Net and the SAFSD-GLNet code. Optimistic by construction."""
    return max(history, key=lambda r: (r["test"]["weighted_f1"], -r["epoch"]))
