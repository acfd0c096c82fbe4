"""Which validation split a corpus carries, as a small JSON record, and how reports say it.

The honest protocol chooses the epoch on the ``valid`` split, so a result means little without
knowing which dialogues those were (SPEC.md, "Evaluation protocols"). Every loader sets
:attr:`Corpus.validation <safsd_glnet.data.corpus.Corpus.validation>` to one of these records
(``kind`` and the fields that kind needs), the kit's ``.npz`` format stores it, and every run
copies it, with the number of validation dialogues, into ``metrics.json``, its checkpoints and
the seed and ablation summaries:

====================  =======================  ==============================================
kind                  fields                   set by
====================  =======================  ==============================================
``official-dev``      --                       the MELD CSVs; a MELD pickle whose ``trainVid``
                                               holds all of dev ids 1039-1152 (the default),
                                               or ``--valid-ids meld-dev``
``cosmic-12``         --                       an IEMOCAP table whose ``valid`` split is the 12
                                               validation dialogues of COSMIC's split (the
                                               shared ``iemocap_utterances.csv``)
``seeded-fraction``   ``fraction``, ``seed``   a pickle's seeded draw from ``trainVid``
``ids``               ``file`` (or null)       ``--valid-ids FILE`` / ``valid_ids=[...]``
``given``             --                       a table that states its splits (a split column
                                               or one file per split) with other dialogues
``synthetic``         ``seed``                 the synthetic corpus (its own generated block)
``none``              --                       a corpus with no validation dialogues
``unknown``           --                       not recorded: a corpus built in code, a kit
                                               file written before the record existed
====================  =======================  ==============================================
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .corpus import DataError

# kind -> {field: type}; bool is refused where a number is expected (it is an int in Python).
KINDS: dict[str, dict[str, tuple[type, ...]]] = {
    "official-dev": {},
    "cosmic-12": {},
    "seeded-fraction": {"fraction": (float, int), "seed": (int,)},
    "ids": {"file": (str, type(None))},
    "given": {},
    "synthetic": {"seed": (int,)},
    "none": {},
    "unknown": {},
}
MAX_FILE_CHARS = 1000  # a file name in a record (it is printed in every report)


def record(kind: str, **fields: Any) -> dict[str, Any]:
    """The record of ``kind`` with ``fields``, checked (:func:`check`)."""
    return check({"kind": kind, **fields}, "validation record")


def check(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a validation record, or a :class:`DataError` naming ``where``: a JSON object
    with a known ``kind`` and exactly that kind's fields, of their types."""
    if not isinstance(value, Mapping):
        raise DataError(f"{where}: a validation record must be a JSON object, got {type(value).__name__}")
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        shown = repr(kind)[:40] if isinstance(kind, str) else type(kind).__name__
        raise DataError(f"{where}: validation kind {shown} is not one of {sorted(KINDS)}")
    fields = KINDS[kind]
    names = set(value) - {"kind"}
    if names != set(fields):
        raise DataError(f"{where}: validation kind {kind!r} needs the fields {sorted(fields) or 'none'}, "
                        f"got {sorted(str(n)[:40] for n in names) or 'none'}")
    for name, types in fields.items():
        v = value[name]
        if isinstance(v, bool) or not isinstance(v, types):
            raise DataError(f"{where}: validation field {name!r} must be "
                            f"{' or '.join('null' if t is type(None) else t.__name__ for t in types)}, "
                            f"got {type(v).__name__}")
    if kind == "seeded-fraction" and not (math.isfinite(value["fraction"]) and 0 < value["fraction"] < 1):
        raise DataError(f"{where}: validation field 'fraction' must lie in (0, 1), got {value['fraction']!r}")
    if kind == "ids" and value["file"] is not None and len(value["file"]) > MAX_FILE_CHARS:
        raise DataError(f"{where}: validation field 'file' is longer than {MAX_FILE_CHARS} characters")
    return {"kind": kind, **{name: value[name] for name in fields}}


def for_run(corpus) -> dict[str, Any]:
    """What a run records (``metrics.json["validation"]``, its checkpoints): the corpus's
    record plus ``dialogues``, the number of validation dialogues."""
    return {**corpus.validation, "dialogues": len(corpus.splits.get("valid", []))}


def describe(run_record: Mapping[str, Any] | None) -> str:
    """A short phrase for reports, e.g. ``official dev (114 dialogues)``; ``not recorded``
    for a run made before the kit recorded its validation split (``None``)."""
    if not isinstance(run_record, Mapping):
        return "not recorded"
    kind = run_record.get("kind")
    count = run_record.get("dialogues")
    if kind == "official-dev":
        text = "official dev"
    elif kind == "cosmic-12":
        text = "COSMIC's validation dialogues"
    elif kind == "seeded-fraction":
        text = f"{100 * run_record['fraction']:g}% of training dialogues drawn with seed {run_record['seed']}"
    elif kind == "ids":
        text = f"ids from {run_record['file']}" if run_record.get("file") else "ids given in code"
    elif kind == "given":
        text = "the data's own validation split"
    elif kind == "synthetic":
        text = f"the validation dialogues of synthetic data seed {run_record['seed']}"
    elif kind == "none":
        text = "none"
    else:
        text = "not recorded"
    if isinstance(count, int) and not isinstance(count, bool) and kind != "none":
        text += f" ({count} dialogue{'s' if count != 1 else ''})"
    return text


def shared(run_records: Sequence[Any]) -> Any:
    """The record several runs share (the seeds of one corpus), or the list of their distinct
    records when they differ (None entries: runs that did not record one)."""
    distinct: list[Any] = []
    for r in run_records:
        if r not in distinct:
            distinct.append(r)
    return distinct[0] if len(distinct) == 1 else distinct


def describe_shared(value: Any) -> str:
    """:func:`describe` of :func:`shared`'s result: one phrase, or several joined by ``; ``."""
    if isinstance(value, list):
        return "; ".join(describe(v) for v in value) or "not recorded"
    return describe(value)


def of_table_splits(valid_ids: Sequence[str]) -> dict[str, Any]:
    """The record of a table that states its own splits: ``cosmic-12`` when its validation
    dialogues are exactly COSMIC's 12 IEMOCAP ones, ``none`` when it has none, else ``given``."""
    from ..dataset_facts import COSMIC_IEMOCAP_VALID_IDS

    if not valid_ids:
        return record("none")
    if set(valid_ids) == set(COSMIC_IEMOCAP_VALID_IDS) and len(valid_ids) == len(COSMIC_IEMOCAP_VALID_IDS):
        return record("cosmic-12")
    return record("given")
