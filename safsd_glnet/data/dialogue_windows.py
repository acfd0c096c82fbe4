"""Long training dialogues: the limit that refuses a corpus whose worst training batch does not fit
the memory budget, and the way around it, overlapping windows (``--split-dialogues LEN[:OVERLAP]``).

The memory estimate and the budget are the model's (:mod:`safsd_glnet.model.long_dialogues`, which
also runs dialogues of any length at inference); this module applies them to a corpus."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from ..model.long_dialogues import TRAIN_MEMORY_ENV, longest_trainable, train_budget_bytes, training_bytes
from .corpus import DataError, Dialogue


def check_trainable(corpus, config) -> None:
    """Refuse to train on ``corpus`` when its longest training dialogue makes a batch that does
    not fit the budget (:func:`training_bytes`), with one line naming the dialogue, its length,
    the estimate, and the options that work around it or raise the budget."""
    train = corpus.splits.get("train", [])
    if not train:
        return
    key = max(train, key=lambda k: len(corpus.dialogues[k]))
    length = len(corpus.dialogues[key])
    batch = min(config.train.batch_size, len(train))
    need, budget = training_bytes(length, batch, config.model), train_budget_bytes()
    if need <= budget:
        return
    fits = longest_trainable(config.train.batch_size, config.model, budget)  # windows fill whole batches
    raise DataError(f"{corpus.source}: training dialogue {key!r} has {length:,} utterances; a training batch of "
                    f"{batch} padded to it needs about {need / (1 << 30):.2g} GiB for attention and the graph, more "
                    f"than the {budget / (1 << 30):.2g} GiB budget; split the long training dialogues into overlapping "
                    f"windows with --split-dialogues {_round_down(fits)} (split_dialogues; validation and test "
                    f"are evaluated whole), lower --batch-size, or raise ${TRAIN_MEMORY_ENV}")


def _round_down(n: int) -> int:
    step = 10 ** max(0, len(str(n)) - 2)
    return max(1, n // step * step)


def split_dialogues(corpus, length: int, overlap: int | None = None, splits: Sequence[str] = ("train",)):
    """A copy of ``corpus`` whose dialogues in ``splits`` longer than ``length`` utterances are
    cut into windows of ``length``, each starting ``length - overlap`` after the last (default
    overlap ``length // 4``; the last window ends with the dialogue). Window k of dialogue
    ``d`` is ``d#k``. Utterances in an overlap are trained on once per window they are in, each
    time with the context of that window; other splits are kept whole (evaluation reads any
    length, :mod:`safsd_glnet.model.long_dialogues`)."""
    overlap = length // 4 if overlap is None else overlap
    if length < 2 or not 0 <= overlap < length:
        raise DataError(f"split_dialogues: windows of {length} utterances overlapping by {overlap}: expected a "
                        f"length of at least 2 and an overlap from 0 to length - 1")
    dialogues = dict(corpus.dialogues)
    new_splits = {s: list(ids) for s, ids in corpus.splits.items()}
    step = length - overlap
    for split in splits:
        ids = []
        for key in corpus.splits.get(split, []):
            d = corpus.dialogues[key]
            if len(d) <= length:
                ids.append(key)
                continue
            del dialogues[key]
            starts = list(range(0, len(d) - length, step)) + [len(d) - length]
            for k, a in enumerate(starts):
                wid = f"{key}#{k}"
                if wid in dialogues:
                    raise DataError(f"{corpus.source}: the window id {wid!r} of dialogue {key!r} is taken by "
                                    f"another dialogue")
                part = slice(a, a + length)
                dialogues[wid] = Dialogue(wid, d.speakers[part], d.labels[part],
                                          {m: x[part] for m, x in d.features.items()},
                                          d.texts[part] if d.texts is not None else None)
                ids.append(wid)
        new_splits[split] = ids
    # replace(): every other field of the corpus (names, sizes, feature info, validation record) is kept
    return dataclasses.replace(corpus, dialogues=dialogues, splits=new_splits).validate()


def parse_split(text: str) -> tuple[int, int | None]:
    """``"500"`` -> (500, None); ``"500:100"`` -> (500, 100): ``--split-dialogues LEN[:OVERLAP]``."""
    length, sep, overlap = str(text).partition(":")
    try:
        n, o = int(length), (int(overlap) if sep else None)
    except ValueError:
        raise ValueError(f"--split-dialogues {text!r}: expected LEN or LEN:OVERLAP, e.g. 500 or 500:100") from None
    if n < 2 or (o is not None and not 0 <= o < n):
        raise ValueError(f"--split-dialogues {text!r}: LEN must be at least 2 and OVERLAP from 0 to LEN - 1")
    return n, o
