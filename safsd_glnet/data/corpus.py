"""The in-memory conversation corpus every loader produces and every consumer reads.

Shape letters: n utterances in a dialogue, d_m feature size of modality m.

A :class:`Corpus` holds dialogues keyed by id, the class names (their order is the label
index), the speaker names (``Dialogue.speakers`` indexes them), the modalities present with
their feature sizes, and the splits ``train`` / ``valid`` / ``test`` as lists of dialogue ids, and which validation
split it carries (:attr:`Corpus.validation`, a record of :mod:`safsd_glnet.data.validation`).
``Corpus.validate`` checks everything a model relies on and raises :class:`DataError` naming
the source file, the dialogue and the field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..config import MODALITIES

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Bad input data. The message names the file, the dialogue and the field."""


@dataclass
class Dialogue:
    id: str
    speakers: np.ndarray  # (n,) int64, index into Corpus.speaker_names
    labels: np.ndarray  # (n,) int64, index into Corpus.class_names
    features: dict[str, np.ndarray]  # modality -> (n, d_m) float32
    texts: list[str] | None = None  # the sentences, where the corpus has them

    def __len__(self) -> int:
        return int(len(self.labels))


@dataclass
class Corpus:
    name: str
    class_names: list[str]
    speaker_names: list[str]
    feature_sizes: dict[str, int]  # modality -> d_m, in t/a/v order
    dialogues: dict[str, Dialogue]
    splits: dict[str, list[str]] = field(default_factory=dict)
    source: str = "<memory>"  # file it came from, for error messages
    # modality -> JSON-able description of how its features were made (encoder, settings),
    # e.g. {"t": {"kind": "sentence-encoder", ...}}; see safsd_glnet.features.finetune.encode_dialogues
    feature_info: dict[str, dict] = field(default_factory=dict)
    # which validation split ``splits["valid"]`` is, e.g. {"kind": "official-dev"}: the kinds and
    # their fields are safsd_glnet.data.validation's; a corpus built in code has not said
    validation: dict[str, Any] = field(default_factory=lambda: {"kind": "unknown"})

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.feature_sizes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_speakers(self) -> int:
        return len(self.speaker_names)

    def split(self, name: str) -> list[Dialogue]:
        if name not in self.splits:
            raise KeyError(f"corpus {self.name!r} has no split {name!r} (has {sorted(self.splits)})")
        return [self.dialogues[i] for i in self.splits[name]]

    def num_utterances(self, split: str | None = None) -> int:
        dialogues = self.dialogues.values() if split is None else self.split(split)
        return sum(len(d) for d in dialogues)

    def unseen_speakers(self) -> dict[str, float]:
        """{split: share of its utterances whose speaker never speaks in train}: see
        :func:`unseen_speaker_shares`."""
        return unseen_speaker_shares({s: [d.speakers for d in self.split(s)] for s in self.splits})

    def class_counts(self, split: str = "train") -> np.ndarray:
        """(C,) int64 count of each label over the split's utterances."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for d in self.split(split):
            counts += np.bincount(d.labels, minlength=self.num_classes)
        return counts

    def with_modalities(self, modalities: tuple[str, ...]) -> "Corpus":
        """A view of this corpus restricted to ``modalities`` (arrays are shared, not copied)."""
        missing = [m for m in modalities if m not in self.feature_sizes]
        if missing:
            raise DataError(f"{self.source}: corpus {self.name!r} has no modality {missing} "
                            f"(has {list(self.modalities)})")
        dialogues = {
            k: Dialogue(d.id, d.speakers, d.labels, {m: d.features[m] for m in modalities}, d.texts)
            for k, d in self.dialogues.items()
        }
        sizes = {m: self.feature_sizes[m] for m in MODALITIES if m in modalities}
        info = {m: v for m, v in self.feature_info.items() if m in modalities}
        return Corpus(self.name, self.class_names, self.speaker_names, sizes, dialogues,
                      self.splits, self.source, info, self.validation)

    def validate(self) -> "Corpus":
        """Check the corpus and return it; raise :class:`DataError` on the first fault."""
        src = self.source
        if not self.class_names:
            raise DataError(f"{src}: corpus {self.name!r} has no class names")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError(f"{src}: duplicated class names {self.class_names}")
        if not self.feature_sizes:
            raise DataError(f"{src}: corpus {self.name!r} has no modality features")
        for m in self.feature_sizes:
            if m not in MODALITIES:
                raise DataError(f"{src}: unknown modality {m!r} (expected t, a, v)")
        for m, info in self.feature_info.items():
            if m not in self.feature_sizes or not isinstance(info, dict):
                raise DataError(f"{src}: field 'feature_info' must map modalities of the corpus "
                                f"({list(self.feature_sizes)}) to dicts; got key {m!r} -> "
                                f"{type(info).__name__}")
        for split, ids in self.splits.items():
            if split not in SPLITS:
                raise DataError(f"{src}: unknown split {split!r} (expected {SPLITS})")
            for i in ids:
                if i not in self.dialogues:
                    raise DataError(f"{src}: split {split!r} names unknown dialogue {i!r}")
        seen: dict[str, str] = {}
        for split, ids in self.splits.items():
            for i in ids:
                if i in seen:
                    raise DataError(f"{src}: dialogue {i!r} is in both split {seen[i]!r} and {split!r}")
                seen[i] = split
        for key, d in self.dialogues.items():
            validate_dialogue(d, self, key)
        return self


def unseen_speaker_shares(speakers: Mapping[str, Iterable[Sequence[int]]]) -> dict[str, float]:
    """The share of each non-training split's utterances whose speaker index never occurs in train.

    ``speakers`` maps a split to its dialogues' speaker indices. With S the set of indices that
    speak at least once in ``train``, split s gets ``|{u in s : speaker(u) not in S}| / |s|``.
    Such an utterance reads a speaker embedding that no gradient ever reached (its random
    initial value), which is worth knowing before trusting a test score. Splits without
    utterances, and every split when there is no ``train``, are left out.
    """
    if "train" not in speakers:
        return {}
    seen = {int(i) for d in speakers["train"] for i in np.asarray(d).ravel()}
    shares = {}
    for split, dialogues in speakers.items():
        if split == "train":
            continue
        flat = [int(i) for d in dialogues for i in np.asarray(d).ravel()]
        if flat:
            shares[split] = sum(i not in seen for i in flat) / len(flat)
    return shares


def describe_unseen_speakers(shares: Mapping[str, float]) -> str | None:
    """One line for the logs (``unseen speakers: valid 3.1%, test 12.0% of utterances ...``), or
    None when there is nothing to report (no split besides train)."""
    if not shares:
        return None
    parts = ", ".join(f"{s} {100 * v:.1f}%" for s, v in shares.items())
    return (f"unseen speakers: {parts} of utterances have a speaker never seen in train (their speaker "
            f"embedding is untrained; see docs/speakers.md)")


def validate_dialogue(d: Dialogue, corpus: Corpus, key: str) -> None:
    src = f"{corpus.source}: dialogue {key!r}"
    n = len(d.labels)
    if n == 0:
        raise DataError(f"{src}: field 'labels' is empty (a dialogue needs at least one utterance)")
    labels = np.asarray(d.labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{src}: field 'labels' must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    bad = labels[(labels < 0) | (labels >= corpus.num_classes)]
    if bad.size:
        raise DataError(f"{src}: field 'labels' holds {int(bad[0])}, outside the "
                        f"{corpus.num_classes} classes {corpus.class_names}")
    if d.id != key:
        raise DataError(f"{src}: field 'id' is {d.id!r}, but the dialogue is stored under {key!r}")
    speakers = np.asarray(d.speakers)
    if speakers.size and not np.issubdtype(speakers.dtype, np.integer):
        raise DataError(f"{src}: field 'speakers' must hold integer indices, got {speakers.dtype}")
    if speakers.shape != (n,):
        raise DataError(f"{src}: field 'speakers' has length {speakers.shape}, labels have {n}")
    if speakers.size and (speakers.min() < 0 or speakers.max() >= corpus.num_speakers):
        raise DataError(f"{src}: field 'speakers' holds an index outside the "
                        f"{corpus.num_speakers} speakers")
    if d.texts is not None and len(d.texts) != n:
        raise DataError(f"{src}: field 'texts' has {len(d.texts)} sentences, labels have {n}")
    if set(d.features) != set(corpus.feature_sizes):
        raise DataError(f"{src}: field 'features' has modalities {sorted(d.features)}, "
                        f"corpus has {sorted(corpus.feature_sizes)}")
    for m, x in d.features.items():
        x = np.asarray(x)
        field_name = f"features[{m!r}]"
        if x.ndim != 2:
            raise DataError(f"{src}: field {field_name} must be 2-D (utterances, size), got shape {x.shape}")
        if x.shape[0] != n:
            raise DataError(f"{src}: field {field_name} has {x.shape[0]} utterances, labels have {n}")
        if x.shape[1] != corpus.feature_sizes[m]:
            raise DataError(f"{src}: field {field_name} has size {x.shape[1]}, "
                            f"expected {corpus.feature_sizes[m]}")
        if not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x))[0][0])
            raise DataError(f"{src}: field {field_name} holds NaN or inf (utterance {row})")
