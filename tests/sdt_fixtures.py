"""Small SDT / M3Net feature pickles with exactly the layout of the standard files.

The real files are hundreds of MB on the authors' drives; tests build tiny ones instead:

* IEMOCAP (12-tuple, pickle protocol 2 as a Python-2-era file would be): string dialogue ids
  such as ``"Ses01F_impro00"``, speakers as lists of ``'M'`` / ``'F'``, labels as lists of
  Python ints, every feature field as a list of 1-D float32 numpy arrays.
* MELD (13-tuple, protocol 4): int dialogue ids, speakers as lists of 9-element one-hot
  lists, audio as one 2-D float64 array per dialogue (the other per-dialogue form), the
  other features as lists of 1-D arrays, and a 13th element the loaders ignore.

``make_sdt_fields`` returns the fields as a dict (name -> value) so a test can corrupt one
and compute expected values independently; ``write_sdt_pickle`` pickles them as the tuple.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

FIELD_ORDER = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "roberta2", "roberta3",
               "roberta4", "videoAudio", "videoVisual", "videoSentence", "trainVid", "testVid")
NUM_CLASSES = {"iemocap": 6, "meld": 7}
MELD_SPEAKER_WIDTH = 9


def make_sdt_fields(kind: str = "iemocap", num_dialogues: int = 10,
                    sizes: dict[str, int] | None = None, seed: int = 0, *,
                    lengths: tuple[int, int] = (2, 9), num_test: int | None = None,
                    sentences: bool = True, ids: list[Any] | None = None) -> dict[str, Any]:
    """The fields of a small standard-layout file.

    ``sizes`` maps ``t`` / ``a`` / ``v`` to feature sizes (default 8 / 6 / 4); the four text
    layers share ``sizes["t"]``. Dialogue lengths are drawn uniformly from ``lengths``
    (inclusive). The last ``num_test`` dialogues (default a quarter) form ``testVid``, the
    rest ``trainVid``. MELD's ``"extra"`` key holds the 13th element. ``ids`` gives the dialogue
    ids in file order instead of the default ones (``num_dialogues`` is then their number), e.g.
    MELD's numbering with the official dev block 1039-1152.
    """
    if ids is not None:
        num_dialogues = len(ids)
    sizes = {"t": 8, "a": 6, "v": 4, **(sizes or {})}
    rng = np.random.default_rng(seed)
    num_test = max(1, num_dialogues // 4) if num_test is None else num_test
    fields: dict[str, Any] = {name: {} for name in FIELD_ORDER[:10]}
    given = ids
    ids = []
    for i in range(num_dialogues):
        if given is not None:
            did: Any = given[i]
        else:
            did = f"Ses0{i % 5 + 1}F_impro{i:02d}" if kind == "iemocap" else i
        ids.append(did)
        n = int(rng.integers(lengths[0], lengths[1] + 1))
        fields["videoIDs"][did] = [f"{did}_{j:03d}" for j in range(n)]
        fields["videoLabels"][did] = [int(c) for c in rng.integers(0, NUM_CLASSES[kind], n)]
        if kind == "iemocap":
            fields["videoSpeakers"][did] = [str(s) for s in rng.choice(["M", "F"], n)]
        else:
            who = rng.integers(0, MELD_SPEAKER_WIDTH, n)
            fields["videoSpeakers"][did] = [[1 if k == w else 0 for k in range(MELD_SPEAKER_WIDTH)]
                                            for w in who]
        for name in ("videoText", "roberta2", "roberta3", "roberta4"):
            fields[name][did] = list(rng.standard_normal((n, sizes["t"])).astype(np.float32))
        audio = rng.standard_normal((n, sizes["a"]))
        fields["videoAudio"][did] = audio if kind == "meld" else list(audio.astype(np.float32))
        fields["videoVisual"][did] = list(rng.standard_normal((n, sizes["v"])).astype(np.float32))
        if sentences:
            fields["videoSentence"][did] = [f"utterance {j} of {did}" for j in range(n)]
    fields["trainVid"] = ids[: num_dialogues - num_test]
    fields["testVid"] = ids[num_dialogues - num_test:]
    if kind == "meld":
        fields["extra"] = list(range(num_dialogues))
    return fields


def pack_sdt_fields(fields: dict[str, Any], kind: str) -> tuple:
    """The tuple as stored in the file (12 elements for IEMOCAP, 13 for MELD)."""
    values = [fields[name] for name in FIELD_ORDER]
    if kind == "meld":
        values.append(fields.get("extra"))
    return tuple(values)


def write_sdt_pickle(path: str | Path, kind: str = "iemocap", num_dialogues: int = 10,
                     sizes: dict[str, int] | None = None, seed: int = 0, *,
                     fields: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Write a standard-layout pickle to ``path`` and return its fields.

    ``fields`` (e.g. a corrupted copy of ``make_sdt_fields``' result) is written as given;
    otherwise it is built from the other arguments and ``options`` (see ``make_sdt_fields``).
    """
    if fields is None:
        fields = make_sdt_fields(kind, num_dialogues, sizes, seed, **options)
    protocol = 2 if kind == "iemocap" else 4
    with open(path, "wb") as f:
        pickle.dump(pack_sdt_fields(fields, kind), f, protocol=protocol)
    return fields
