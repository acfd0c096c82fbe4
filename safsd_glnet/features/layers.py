"""Which hidden states a feature read-out pools: the ``layer`` spellings shared by the frozen
encoder (:mod:`safsd_glnet.features.text`) and the fine-tuned one (:mod:`safsd_glnet.features.finetune`).

* ``"last"``: the encoder's last layer (for a frozen encoder: its own pipeline, unchanged);
* ``"-k"``: the k-th layer from the end (``"-1"`` is the last);
* ``"meanK"``: the element-wise mean of the last K layers' states, e.g. ``"mean4"``.

A Hugging Face model with ``output_hidden_states=True`` returns L + 1 tensors of shape
(B, T, H): the embeddings at index 0 and layer l at index l; :func:`layer_indices` maps a
spelling to those indices.
"""
from __future__ import annotations

import re

LAYER = re.compile(r"^(last|-\d+|mean\d+)$")
LAYER_HELP = "expected 'last', '-k' (k >= 1) or 'meanK' (K >= 1)"


def check_layer(layer: str) -> str:
    """``layer`` when it is a valid spelling (any encoder depth), else a ValueError naming it."""
    if not isinstance(layer, str) or not LAYER.match(layer) or layer in ("-0", "mean0"):
        raise ValueError(f"layer={layer!r}: {LAYER_HELP}")
    return layer


def layer_indices(layer: str, num_layers: int) -> list[int]:
    """Indices into ``hidden_states`` (embeddings at 0, layer l at l) that ``layer`` pools.

    ``"last"`` -> [L]; ``"-k"`` -> [L + 1 - k]; ``"meanK"`` -> [L - K + 1, ..., L].
    """
    check_layer(layer)
    if layer == "last":
        return [num_layers]
    if layer.startswith("-"):
        k = int(layer[1:])
        if not 1 <= k <= num_layers + 1:
            raise ValueError(f"layer={layer!r}: the encoder has {num_layers} layers (use -1 .. -{num_layers + 1})")
        return [num_layers + 1 - k]
    k = int(layer[4:])
    if not 1 <= k <= num_layers:
        raise ValueError(f"layer={layer!r}: the encoder has {num_layers} layers (use mean1 .. mean{num_layers})")
    return list(range(num_layers - k + 1, num_layers + 1))
