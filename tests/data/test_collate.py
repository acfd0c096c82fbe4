"""Padding, masks and label order of ``collate`` / ``iterate_batches`` (batching.py)."""
from __future__ import annotations

import numpy as np
import torch

from safsd_glnet.data import Dialogue, collate, iterate_batches
from safsd_glnet.data.batching import PAD_LABEL


def _dialogues():
    out = []
    for i, n in enumerate((2, 5, 3)):
        base = 100 * (i + 1)
        out.append(Dialogue(
            f"d{i}",
            speakers=np.arange(n, dtype=np.int64) % 2 + 1,  # 1/2 so padding (0) is distinct
            labels=(np.arange(n, dtype=np.int64) + i) % 4,
            features={"t": (base + np.arange(n * 3, dtype=np.float32)).reshape(n, 3),
                      "a": -(base + np.arange(n * 2, dtype=np.float32)).reshape(n, 2)}))
    return out


def test_padding_mask_and_values():
    ds = _dialogues()
    b = collate(ds)
    assert b.dialogue_ids == ["d0", "d1", "d2"] and len(b) == 3
    assert b.lengths.tolist() == [2, 5, 3]
    assert b.features["t"].shape == (3, 5, 3) and b.features["a"].shape == (3, 5, 2)
    assert b.features["t"].dtype == torch.float32
    expected_mask = [[True, True, False, False, False], [True] * 5,
                     [True, True, True, False, False]]
    assert b.real.tolist() == expected_mask
    for i, d in enumerate(ds):
        n = len(d)
        for m in ("t", "a"):
            assert np.array_equal(b.features[m][i, :n].numpy(), d.features[m])
            assert (b.features[m][i, n:] == 0).all()
        assert b.labels[i, :n].tolist() == d.labels.tolist()
        assert (b.labels[i, n:] == PAD_LABEL).all() and PAD_LABEL == -1
        assert b.speakers[i, :n].tolist() == d.speakers.tolist()
        assert (b.speakers[i, n:] == 0).all()


def test_real_labels_are_dialogue_major():
    ds = _dialogues()
    b = collate(ds)
    expected = np.concatenate([d.labels for d in ds])
    assert b.real_labels.tolist() == expected.tolist()
    assert (b.real_labels >= 0).all()


def test_modality_subset_and_device_move():
    b = collate(_dialogues(), modalities=["a"])
    assert list(b.features) == ["a"]
    moved = b.to("cpu")
    assert torch.equal(moved.features["a"], b.features["a"]) and moved.dialogue_ids == b.dialogue_ids


def test_iterate_batches_order_and_shuffle():
    ds = _dialogues() * 3  # 9 dialogues
    plain = list(iterate_batches(ds, 4))
    assert [len(b) for b in plain] == [4, 4, 1]
    assert sum((b.dialogue_ids for b in plain), []) == [d.id for d in ds]
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = [b.dialogue_ids for b in iterate_batches(ds, 4, shuffle=True, generator=g1)]
    c = [b.dialogue_ids for b in iterate_batches(ds, 4, shuffle=True, generator=g2)]
    assert a == c
    assert sorted(sum(a, [])) == sorted(d.id for d in ds)
