"""Emotions for conversations nobody has labelled (``safsd-glnet predict --dialogues FILE``).

A checkpoint knows how its text features were made: its data signature carries the corpus's
``feature_info`` (the frozen sentence encoder, or the fine-tuned encoder with its context window,
pooling and layer) and the speaker scheme. :class:`Predictor` reads new dialogues, encodes their
sentences exactly as the training corpus's were (:func:`safsd_glnet.features.finetune.encode_dialogues`),
maps the speakers the way the model learnt them, and returns the teacher's emotion and every
class probability per utterance. Standardisation needs nothing here: its statistics are part of
the model (``model.standardise``).

Speakers (``speaker_mode`` of the signature):

* ``"corpus"``: one embedding per name seen in training (IEMOCAP's ``M`` / ``F``). A name the
  model does not know is an error that says so; it is never mapped to another speaker.
* ``"dialogue"``: the first person to speak in a dialogue is speaker 0, the second 1, ...
  (MELD). A dialogue with more speakers than the model has slots is an error.

Input: a plain-text file (``Speaker: sentence`` lines, a blank line between dialogues; see
:func:`safsd_glnet.data.tables.read_dialogue_text`), an unlabelled table (CSV / TSV / JSON
lines, without split or label columns, read by :func:`~safsd_glnet.data.tables.read_table`),
or, in Python, lists of ``(speaker, sentence)`` pairs (:meth:`Predictor.predict_pairs`).
"""
from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..data import atomic_files as files
from ..data.corpus import Corpus, DataError, Dialogue
from ..data.tables import Table, read_dialogue_text, read_table, table_from_pairs

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")


@dataclass
class UtterancePrediction:
    dialogue: str
    position: int
    speaker: str
    text: str
    emotion: str  # the teacher's prediction
    probabilities: dict[str, float]  # class -> teacher softmax


def speaker_mode_of(signature: Mapping[str, Any]) -> str:
    """The speaker scheme a model was trained with; signatures written before the field existed
    are read from their names (:func:`safsd_glnet.training.train.speaker_mode`)."""
    from .train import speaker_mode

    mode = signature.get("speaker_mode")
    return mode if mode in ("corpus", "dialogue") else speaker_mode(signature.get("speaker_names", []))


class Predictor:
    """A trained checkpoint, ready to label new dialogues.

    Raises a one-line :class:`DataError` when the checkpoint cannot predict from sentences: its
    model reads audio or visual features too, or its text features were not made by the kit from
    sentences (the standard SDT / M3Net feature files carry no encoder to rebuild them with).
    """

    def __init__(self, checkpoint: str | Path, device: str = "auto", *, encoder_dir: str | Path | None = None):
        from .train import load_model, select_device

        self.checkpoint = Path(checkpoint)
        self.device = select_device(device)
        self.model, info = load_model(self.checkpoint, self.device)
        self.config = info["config"]
        self.signature = info["data"]
        self.class_names = list(self.signature["class_names"])
        self.speaker_names = list(self.signature["speaker_names"])
        self.speaker_mode = speaker_mode_of(self.signature)
        self.encoder_dir = encoder_dir
        modalities = tuple(self.signature["feature_sizes"])
        if modalities != ("t",):
            raise DataError(f"{self.checkpoint}: the model reads modalities {''.join(modalities)}; predicting from "
                            "sentences builds text features only, so it needs a text-only model (train with "
                            "--modalities t)")
        self.feature_info = (self.signature.get("feature_info") or {}).get("t")
        if not self.feature_info:
            raise DataError(f"{self.checkpoint}: trained on text features that cannot be rebuilt from sentences "
                            f"(corpus {self.signature.get('corpus')!r}: no encoder is recorded, as with the "
                            "standard SDT / M3Net feature files); predict --dialogues needs a model trained on a "
                            "corpus made by safsd-glnet features or finetune")

    # ------------------------------------------------------------------ reading

    def read(self, path: str | Path, *, fmt: str | None = None, columns: Any = None, delimiter: str | None = None,
             encoding: str | None = None) -> Table:
        """Dialogues from a file: a table by its suffix (or ``fmt``), else ``Speaker: sentence`` text."""
        path = Path(path)
        vocabulary = dict(speaker_mode=self.speaker_mode, speaker_names=self.speaker_names)
        if fmt is not None or path.suffix.lower() in TABLE_SUFFIXES:
            return read_table(path, columns, fmt, labelled=False, delimiter=delimiter, encoding=encoding,
                              **vocabulary)
        return read_dialogue_text(path, encoding=encoding, **vocabulary)

    # ------------------------------------------------------------------ predicting

    def predict_pairs(self, dialogues: Sequence[Sequence[tuple[str, str]]] | Mapping[str, Sequence[tuple[str, str]]]
                      ) -> list[UtterancePrediction]:
        """Predictions for dialogues given as lists of ``(speaker, sentence)`` pairs."""
        table = table_from_pairs(dialogues, speaker_mode=self.speaker_mode, speaker_names=self.speaker_names)
        return self.predict_table(table)

    def predict_table(self, table: Table, batch_size: int = 16) -> list[UtterancePrediction]:
        """Predictions for every utterance of ``table`` (labels, where it has them, are ignored)."""
        from ..features.finetune import encode_dialogues
        from .train import predict

        pairs = [list(zip(d.speaker_labels, d.texts)) for d in table.dialogues]
        vectors = encode_dialogues(self.feature_info, pairs, device=str(self.device), encoder_dir=self.encoder_dir)
        size = self.signature["feature_sizes"]["t"]
        dialogues = []
        for d, x in zip(table.dialogues, vectors):
            if x.shape != (len(d), size):
                raise DataError(f"{table.source}: dialogue {d.id!r}: the encoder gave {x.shape}, the model reads "
                                f"({len(d)}, {size})")
            dialogues.append(Dialogue(d.id, np.asarray(d.speakers, dtype=np.int64), np.zeros(len(d), dtype=np.int64),
                                      {"t": x}, list(d.texts)))
        corpus = Corpus(table.name, self.class_names, self.speaker_names, {"t": size},
                        {d.id: d for d in dialogues}, {"test": [d.id for d in dialogues]}, table.source).validate()
        p = predict(self.model, corpus.split("test"), batch_size, self.device, amp=self.config.train.amp)
        speakers = [s for d in table.dialogues for s in d.speaker_labels]
        texts = [t for d in table.dialogues for t in d.texts]
        return [UtterancePrediction(p.dialogue_ids[i], int(p.positions[i]), speakers[i], texts[i],
                                    self.class_names[int(p.preds[i])],
                                    {c: float(p.probs[i, k]) for k, c in enumerate(self.class_names)})
                for i in range(len(p.preds))]


def predict_conversation(checkpoint: str | Path, pairs: Sequence[tuple[str, str]], device: str = "auto"
                         ) -> list[UtterancePrediction]:
    """One conversation, ``[(speaker, sentence), ...]``, labelled by the model in ``checkpoint``."""
    return Predictor(checkpoint, device).predict_pairs([pairs])


# --------------------------------------------------------------------------- output

def write_predictions(path: str | Path, rows: Sequence[UtterancePrediction], class_names: Sequence[str],
                      checkpoint: str | None = None) -> Path:
    """``.json``: an object with the classes and one record per utterance, every text exactly as
    read; anything else CSV with one column per class probability, text cells that a spreadsheet
    would run as a formula neutralised (:func:`safsd_glnet.data.atomic_files.write_csv`). Written atomically."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        files.write_json(path, {"checkpoint": checkpoint, "classes": list(class_names),
                             "utterances": [r.__dict__ for r in rows]})
        return path
    files.write_csv(path, ["dialogue_id", "position", "speaker", "text", "prediction"] + [f"p_{c}" for c in class_names],
                    ([r.dialogue, r.position, r.speaker, r.text, r.emotion]
                     + [r.probabilities[c] for c in class_names] for r in rows))
    return path


def format_predictions(rows: Sequence[UtterancePrediction], width: int | None = None) -> str:
    """A table for the terminal: dialogue, position, speaker, emotion with its probability, and
    the sentence cut to the terminal's width."""
    width = width or shutil.get_terminal_size((100, 20)).columns
    if not rows:
        return "(no utterances)"
    d_w = min(max(len(r.dialogue) for r in rows), 18)
    s_w = min(max(len(r.speaker) for r in rows), 14)
    e_w = max(len(r.emotion) for r in rows) + 7
    head = f"{'dialogue':<{d_w}}  {'#':>3}  {'speaker':<{s_w}}  {'emotion (p)':<{e_w}}  sentence"
    text_w = max(20, width - len(head) + len("sentence"))
    lines = [head, "-" * min(width, len(head) + text_w - len("sentence"))]
    for r in rows:
        emotion = f"{r.emotion} ({r.probabilities[r.emotion]:.2f})"
        sentence = textwrap.shorten(r.text, text_w, placeholder="...")
        lines.append(f"{r.dialogue[:d_w]:<{d_w}}  {r.position:>3}  {r.speaker[:s_w]:<{s_w}}  {emotion:<{e_w}}  {sentence}")
    return "\n".join(lines)
