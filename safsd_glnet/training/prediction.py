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
  model does not know is an error that suggests the closest known names (``Monica`` -> did you
  mean ``Monica Geller``?); it is never silently mapped to another speaker.
* ``"dialogue"``: the first person to speak in a dialogue is speaker 0, the second 1, ...
  (MELD). A dialogue with more speakers than the model has slots is an error.

``unknown_speakers="generic"`` (``predict --unknown-speakers generic``) instead gives every
unknown name (or slot beyond the model's) one generic speaker whose embedding is the mean of
the trained ones, ``e_generic = (1/K) sum_k E[k]`` over the K known rows of each speaker
embedding table; :attr:`Predictor.generic` then lists who was mapped, and the command line says
so in one line.

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
UNKNOWN_SPEAKERS = ("error", "generic")  # what a speaker the model never learnt becomes
GENERIC_SPEAKER = "<generic speaker>"


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

    def __init__(self, checkpoint: str | Path, device: str = "auto", *, encoder_dir: str | Path | None = None,
                 unknown_speakers: str = "error"):
        from .train import load_model, select_device

        if unknown_speakers not in UNKNOWN_SPEAKERS:
            raise ValueError(f"unknown_speakers={unknown_speakers!r}, expected one of {UNKNOWN_SPEAKERS}")
        self.unknown_speakers = unknown_speakers
        self.generic: list[str] = []  # the speakers the last prediction mapped to the generic speaker
        self._generic_model = None

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
        vocabulary = self._vocabulary()
        if fmt is not None or path.suffix.lower() in TABLE_SUFFIXES:
            return read_table(path, columns, fmt, labelled=False, delimiter=delimiter, encoding=encoding,
                              **vocabulary)
        return read_dialogue_text(path, encoding=encoding, **vocabulary)

    # ------------------------------------------------------------------ predicting

    def predict_pairs(self, dialogues: Sequence[Sequence[tuple[str, str]]] | Mapping[str, Sequence[tuple[str, str]]]
                      ) -> list[UtterancePrediction]:
        """Predictions for dialogues given as lists of ``(speaker, sentence)`` pairs."""
        table = table_from_pairs(dialogues, **self._vocabulary())
        return self.predict_table(table)

    def _vocabulary(self) -> dict[str, Any]:
        """How the readers number speakers: by the model's names (unknown ones are an error there),
        or, for ``generic``, freely; :meth:`_speakers` then maps them to the model's indices."""
        names = None if self.unknown_speakers == "generic" else self.speaker_names
        return dict(speaker_mode=self.speaker_mode, speaker_names=names)

    def _speakers(self, table: Table) -> list[np.ndarray]:
        """Per dialogue, (n,) indices into the model's speakers; index K (= the number of known
        speakers) is the generic speaker. Sets :attr:`generic` to who was mapped to it."""
        known = len(self.speaker_names)
        index = {name: i for i, name in enumerate(self.speaker_names)}
        generic: dict[str, None] = {}
        out = []
        for d in table.dialogues:
            if self.speaker_mode == "corpus":
                ids = [index.get(name, known) for name in d.speaker_labels]
            else:  # slots in order of appearance; the model learnt `known` of them
                ids = [min(int(i), known) for i in d.speakers]
            for name, i in zip(d.speaker_labels, ids):
                if i == known:
                    if self.unknown_speakers != "generic":
                        from ..data.tables import unknown_speaker_hint

                        what = (f"speaker {name!r} is unknown to the model; {unknown_speaker_hint(name, self.speaker_names)}"
                                if self.speaker_mode == "corpus" else
                                f"speaker {name!r} is beyond the {known} per-dialogue speakers the model knows")
                        raise DataError(f"{table.source}: dialogue {d.id!r}: {what}")
                    generic[name] = None
            out.append(np.asarray(ids, dtype=np.int64))
        self.generic = list(generic)
        return out

    def _model_with_generic(self):
        """A copy of the model whose speaker embedding tables have one more row at index K: the
        mean of the K trained rows (rows after K, padding, move down by one)."""
        if self._generic_model is None:
            import copy

            import torch

            model = copy.deepcopy(self.model)
            known = len(self.speaker_names)
            for parent in model.modules():
                old = getattr(parent, "speaker", None)
                if not isinstance(old, torch.nn.Embedding):
                    continue
                w = old.weight.detach()
                pad = old.padding_idx
                new = torch.nn.Embedding(w.shape[0] + 1, w.shape[1], padding_idx=None if pad is None else pad + 1)
                with torch.no_grad():
                    new.weight.copy_(torch.cat([w[:known], w[:known].mean(0, keepdim=True), w[known:]]))
                parent.speaker = new.to(w.device)
            self._generic_model = model.eval()
        return self._generic_model

    def predict_table(self, table: Table, batch_size: int = 16) -> list[UtterancePrediction]:
        """Predictions for every utterance of ``table`` (labels, where it has them, are ignored)."""
        from ..features.finetune import encode_dialogues
        from .train import predict

        speakers = self._speakers(table)  # before encoding: an unknown name fails fast
        pairs = [list(zip(d.speaker_labels, d.texts)) for d in table.dialogues]
        vectors = encode_dialogues(self.feature_info, pairs, device=str(self.device), encoder_dir=self.encoder_dir)
        size = self.signature["feature_sizes"]["t"]
        dialogues = []
        for d, x, ids in zip(table.dialogues, vectors, speakers):
            if x.shape != (len(d), size):
                raise DataError(f"{table.source}: dialogue {d.id!r}: the encoder gave {x.shape}, the model reads "
                                f"({len(d)}, {size})")
            dialogues.append(Dialogue(d.id, ids, np.zeros(len(d), dtype=np.int64), {"t": x}, list(d.texts)))
        names, model = self.speaker_names, self.model
        if self.generic:
            names, model = [*self.speaker_names, GENERIC_SPEAKER], self._model_with_generic()
        corpus = Corpus(table.name, self.class_names, names, {"t": size},
                        {d.id: d for d in dialogues}, {"test": [d.id for d in dialogues]}, table.source).validate()
        p = predict(model, corpus.split("test"), batch_size, self.device, amp=self.config.train.amp)
        speakers = [s for d in table.dialogues for s in d.speaker_labels]
        texts = [t for d in table.dialogues for t in d.texts]
        return [UtterancePrediction(p.dialogue_ids[i], int(p.positions[i]), speakers[i], texts[i],
                                    self.class_names[int(p.preds[i])],
                                    {c: float(p.probs[i, k]) for k, c in enumerate(self.class_names)})
                for i in range(len(p.preds))]


def describe_generic(names: Sequence[str], known: int) -> str:
    """The one line that says who was mapped to the generic speaker."""
    shown = ", ".join(repr(n) for n in names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    return (f"unknown speakers mapped to a generic speaker (the mean of the model's {known} speaker "
            f"embeddings): {shown}")


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
