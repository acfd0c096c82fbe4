"""Padded batches of dialogues.

Shape letters: b dialogues in the batch, n the longest dialogue, d_m feature size.

Dialogues are padded to the longest in the batch. ``real[i, j]`` is True for real
utterances (the padding mask; the model's other mask, the GCN's random feature mask, is
``MaskedGCN.node_dropout``); padded labels are ``-1`` and padded features and speakers are 0. The model drops
padding before any head ("transfer to node features"), so padding never reaches a loss or a
metric: every loss and metric reads the flat tensors of real utterances
(``labels[real]``, in dialogue-major order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from .corpus import Dialogue

PAD_LABEL = -1


@dataclass
class Batch:
    features: dict[str, torch.Tensor]  # modality -> (b, n, d_m) float32
    speakers: torch.Tensor  # (b, n) int64, 0 at padding
    labels: torch.Tensor  # (b, n) int64, PAD_LABEL at padding
    real: torch.Tensor  # (b, n) bool, True on real utterances, False on padding
    lengths: torch.Tensor  # (b,) int64
    dialogue_ids: list[str]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            {m: x.to(device, non_blocking=True) for m, x in self.features.items()},
            self.speakers.to(device), self.labels.to(device), self.real.to(device),
            self.lengths.to(device), self.dialogue_ids,
        )

    @property
    def real_labels(self) -> torch.Tensor:
        """(N,) labels of the real utterances, dialogue-major: the order of the model outputs."""
        return self.labels[self.real]

    def __len__(self) -> int:
        return len(self.dialogue_ids)


def collate(dialogues: Sequence[Dialogue], modalities: Sequence[str] | None = None) -> Batch:
    """Pad ``dialogues`` into one :class:`Batch` (features of ``modalities``, default all)."""
    if not dialogues:
        raise ValueError("collate: no dialogues")
    modalities = list(modalities if modalities is not None else dialogues[0].features)
    lengths = [len(d) for d in dialogues]
    b, n = len(dialogues), max(lengths)
    feats = {}
    for m in modalities:
        size = dialogues[0].features[m].shape[1]
        x = np.zeros((b, n, size), dtype=np.float32)
        for i, d in enumerate(dialogues):
            x[i, : lengths[i]] = d.features[m]
        feats[m] = torch.from_numpy(x)
    speakers = np.zeros((b, n), dtype=np.int64)
    labels = np.full((b, n), PAD_LABEL, dtype=np.int64)
    mask = np.zeros((b, n), dtype=bool)
    for i, d in enumerate(dialogues):
        speakers[i, : lengths[i]] = d.speakers
        labels[i, : lengths[i]] = d.labels
        mask[i, : lengths[i]] = True
    return Batch(feats, torch.from_numpy(speakers), torch.from_numpy(labels),
                 torch.from_numpy(mask), torch.tensor(lengths, dtype=torch.int64),
                 [d.id for d in dialogues])


def iterate_batches(dialogues: Sequence[Dialogue], batch_size: int, *, shuffle: bool = False,
                    generator: torch.Generator | None = None,
                    modalities: Sequence[str] | None = None, alone_above: int | None = None) -> Iterator[Batch]:
    """Yield padded batches; with ``shuffle`` the order comes from ``generator`` (repeatable).

    ``alone_above``: a dialogue longer than this many utterances gets a batch of its own, so
    that no short dialogue is padded to its length (the batches still follow the order, so the
    outputs do too; prediction uses it with :data:`safsd_glnet.model.long_dialogues.BLOCKED_ABOVE`)."""
    order = (torch.randperm(len(dialogues), generator=generator).tolist() if shuffle
             else list(range(len(dialogues))))
    if alone_above is None:
        for start in range(0, len(order), batch_size):
            yield collate([dialogues[i] for i in order[start: start + batch_size]], modalities)
        return
    group: list[Dialogue] = []
    for i in order:
        d = dialogues[i]
        if len(d) > alone_above or len(group) == batch_size:
            if group:
                yield collate(group, modalities)
            group = []
        if len(d) > alone_above:
            yield collate([d], modalities)
        else:
            group.append(d)
    if group:
        yield collate(group, modalities)


def num_batches(num_dialogues: int, batch_size: int) -> int:
    return (num_dialogues + batch_size - 1) // batch_size
