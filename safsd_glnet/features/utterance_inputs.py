r"""Transformer inputs for one utterance in its dialogue: the utterance with its speaker, and a
window of past and future utterances (with their speakers) as a second segment.

Layout, shown for a BERT tokenizer (RoBERTa writes ``<s> A </s></s> B </s>``), with
``context_past = 2`` and ``context_future = 1``::

    [CLS] F: how are you [SEP] F: hi M: hello [SEP] M: fine [SEP]
          \_ segment A _/      \_ past, oldest  /  ^ marker \_ future, nearest first
                                  first _______/

* Segment A is ``"Speaker: text"`` (``"text"`` with ``speakers=False``).
* Segment B holds the context: the past utterances, oldest first, then the tokenizer's
  separator as a marker of where the utterance sits (only when both windows are on, and
  then always, so its side is never ambiguous, even at a dialogue's start or end), then
  the future utterances in order. Each context piece is ``"Speaker: text"`` tokenized with
  a leading space, as words inside running text are (this matters for BPE tokenizers).
* Truncation, ``max_length`` tokens in all. The utterance is never shortened to make room
  for context: an utterance longer than ``max_length`` on its own loses its end, and then
  gets no context. The room left after the special tokens, segment A and the marker is
  filled nearest first (previous 1, next 1, previous 2, next 2, ...): whole utterances
  while they fit; the first one that does not fit is cut to the room left (a past utterance
  keeps its end and a future one its start, the parts nearest the utterance) and everything
  farther away is dropped.
* No context tokens at all (a one-utterance dialogue, a window of 0/0, or no room left):
  the single-segment layout ``[CLS] A [SEP]``.

Nothing here needs torch: the functions map sentences to token ids, one :class:`Example`
per utterance, dialogue-major.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

PROBE = ("hello there", "good morning")  # any two short texts; used to read the tokenizer's layout


@dataclass(frozen=True)
class SpecialLayout:
    """Where a tokenizer puts its special tokens around one segment or two.

    Read from the tokenizer itself (:func:`special_layout`), so any Hugging Face tokenizer
    works without knowing its family.
    """

    prefix: tuple[int, ...]  # before A in the pair layout, e.g. ([CLS],)
    middle: tuple[int, ...]  # between A and B, e.g. ([SEP],) or (</s>, </s>)
    suffix: tuple[int, ...]  # after B, e.g. ([SEP],)
    single_prefix: tuple[int, ...]  # before A when there is no B
    single_suffix: tuple[int, ...]  # after A when there is no B
    marker: int  # between past and future context: the tokenizer's separator
    type_a: int  # token type of prefix, A and middle (0 where the model has no token types)
    type_b: int  # token type of B and suffix
    uses_types: bool  # whether the model reads token_type_ids

    @property
    def pair_specials(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @property
    def single_specials(self) -> int:
        return len(self.single_prefix) + len(self.single_suffix)


@dataclass(frozen=True)
class Example:
    """One utterance's input: token ids, token types and the span of segment A's tokens."""

    ids: list[int]
    types: list[int]
    start: int  # ids[start:end] are the utterance's own tokens (mean pooling reads these)
    end: int


def _split_probe(ids: list[int], special: list[int], lengths: Sequence[int], name: str) -> list[list[int]]:
    """Cut ``ids`` into special / segment / special / ... parts using the segment lengths."""
    parts, i = [], 0
    for n in lengths:
        j = i
        while j < len(ids) and special[j]:
            j += 1
        parts += [ids[i:j], ids[j:j + n]]
        if any(special[j:j + n]) or j + n > len(ids):
            raise ValueError(f"tokenizer {name}: cannot read its special-token layout from {ids}")
        i = j + n
    if not all(special[i:]):
        raise ValueError(f"tokenizer {name}: cannot read its special-token layout from {ids}")
    return parts + [ids[i:]]


def special_layout(tokenizer: Any) -> SpecialLayout:
    """Read the special-token layout of a Hugging Face tokenizer by encoding two probe texts,
    and check that assembling the probe by hand gives exactly the tokenizer's own output."""
    name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in PROBE)
    pair = tokenizer(*PROBE, return_special_tokens_mask=True, return_token_type_ids=True)
    single = tokenizer(PROBE[0], return_special_tokens_mask=True)
    prefix, got_a, middle, got_b, suffix = _split_probe(list(pair["input_ids"]),
                                                         list(pair["special_tokens_mask"]), (len(a), len(b)), name)
    single_prefix, got_a1, single_suffix = _split_probe(list(single["input_ids"]),
                                                        list(single["special_tokens_mask"]), (len(a),), name)
    if got_a != a or got_b != b or got_a1 != a:
        raise ValueError(f"tokenizer {name}: segments tokenize differently inside a pair; "
                         f"cannot build context inputs for it")
    marker = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if marker is None:
        raise ValueError(f"tokenizer {name} has neither a separator nor an end token to mark the "
                         f"utterance's place in its context")
    types = list(pair.get("token_type_ids") or [0] * len(pair["input_ids"]))
    cut = len(prefix) + len(a) + len(middle)
    type_a, type_b = types[0], types[cut]
    if types != [type_a] * cut + [type_b] * (len(types) - cut):
        raise ValueError(f"tokenizer {name}: unexpected token types {types} for a pair")
    layout = SpecialLayout(tuple(prefix), tuple(middle), tuple(suffix), tuple(single_prefix),
                           tuple(single_suffix), int(marker), int(type_a), int(type_b),
                           "token_type_ids" in getattr(tokenizer, "model_input_names", ()))
    if assemble(layout, a, b).ids != list(pair["input_ids"]):  # the last word: the layout reproduces it
        raise ValueError(f"tokenizer {name}: the special-token layout does not reproduce its output")
    return layout


def assemble(layout: SpecialLayout, a: list[int], b: list[int] | None = None) -> Example:
    """Token ids and types for segment ``a`` alone (``b`` None or empty) or the pair (a, b)."""
    if b:
        ids = [*layout.prefix, *a, *layout.middle, *b, *layout.suffix]
        cut = len(layout.prefix) + len(a) + len(layout.middle)
        start = len(layout.prefix)
    else:
        ids = [*layout.single_prefix, *a, *layout.single_suffix]
        cut = len(ids)
        start = len(layout.single_prefix)
    types = [layout.type_a] * cut + [layout.type_b] * (len(ids) - cut)
    return Example(ids, types, start, start + len(a))


def context_tokens(past: Sequence[list[int]], future: Sequence[list[int]], room: int,
                   marker: int | None) -> list[int]:
    """Segment B from the context pieces, filling ``room`` tokens nearest first.

    Args:
        past: token ids of the previous utterances in the window, oldest first.
        future: token ids of the next utterances in the window, nearest first.
        room: tokens available for the pieces (the marker is not counted here).
        marker: the id placed between past and future, or None (only one window is on).

    Returns:
        past pieces (oldest first), the marker, future pieces; [] when nothing fits.
    """
    order = []
    for d in range(max(len(past), len(future))):
        if d < len(past):
            order.append(("past", past[len(past) - 1 - d]))
        if d < len(future):
            order.append(("future", future[d]))
    kept: dict[str, list[list[int]]] = {"past": [], "future": []}  # nearest first
    for side, piece in order:
        if room <= 0:
            break
        if len(piece) <= room:
            kept[side].append(list(piece))
            room -= len(piece)
        else:  # cut to the room left, keeping the end nearest the utterance; nothing farther fits
            kept[side].append(list(piece[len(piece) - room:]) if side == "past" else list(piece[:room]))
            break
    if not kept["past"] and not kept["future"]:
        return []
    segment = [t for piece in reversed(kept["past"]) for t in piece]
    if marker is not None:
        segment.append(marker)
    return segment + [t for piece in kept["future"] for t in piece]


def piece_text(speaker: str, text: str, speakers: bool) -> str:
    """``"Speaker: text"`` (or ``text`` alone with ``speakers=False``)."""
    return f"{speaker}: {text}" if speakers else text


def build_examples(dialogues: Sequence[Sequence[tuple[str, str]]], tokenizer: Any, layout: SpecialLayout, *,
                   context_past: int = 0, context_future: int = 0, speakers: bool = True,
                   max_length: int = 128) -> list[Example]:
    """One :class:`Example` per utterance of ``dialogues`` (lists of (speaker, text)), dialogue-major.

    See the module notes for the layout and the truncation rule.
    """
    if max_length < layout.pair_specials + 2:
        raise ValueError(f"max_length={max_length} leaves no room for text after the "
                         f"{layout.pair_specials} special tokens")
    texts = [piece_text(s, t, speakers) for d in dialogues for s, t in d]
    if not texts:
        return []
    own = tokenizer(texts, add_special_tokens=False)["input_ids"]
    windowed = context_past > 0 or context_future > 0
    ctx = tokenizer([" " + t for t in texts], add_special_tokens=False)["input_ids"] if windowed else None
    marker = layout.marker if context_past > 0 and context_future > 0 else None
    out: list[Example] = []
    start = 0
    for d in dialogues:
        n = len(d)
        for i in range(n):
            a = list(own[start + i])
            segment: list[int] = []
            if windowed:
                room = max_length - layout.pair_specials - len(a) - (marker is not None)
                past = [ctx[start + j] for j in range(max(0, i - context_past), i)]
                future = [ctx[start + j] for j in range(i + 1, min(n, i + 1 + context_future))]
                segment = context_tokens(past, future, room, marker)
            if not segment:
                a = a[:max_length - layout.single_specials]
            out.append(assemble(layout, a, segment))
        start += n
    return out
