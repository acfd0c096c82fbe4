"""Dialogues of any length (safsd_glnet/model/long_dialogues.py).

Inference in blocks equals the unblocked kernels and the readable model (PyG edge list, plain
attention) on dialogues short enough for both: blocks of a few rows on 300 utterances, so that
every dialogue spans many blocks, windows included. Training refuses a dialogue too long for
its memory budget with one line, and the windows that work around it cover the dialogue.
The peak memory of a long dialogue in a fresh process is in tests/data/safe/test_hostile_files.py; the
20,000-utterance figure in benchmarks/long_dialogues.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from safsd_glnet.data import dialogue_windows
from safsd_glnet.model import kernels, long_dialogues
from safsd_glnet.config import ModelConfig, preset
from safsd_glnet.data.batching import collate, iterate_batches
from safsd_glnet.data.corpus import Corpus, DataError, Dialogue
from safsd_glnet.dataset_facts import IEMOCAP_CLASSES
from safsd_glnet.model.network import MaskedGCN, Packing, SAFSDGLNet

SIZES = {"t": 12, "a": 10, "v": 8}
SMALL_BLOCKS = dict(above=0, elements=3 * 300 * 5)  # 5 rows of 300 keys for 3 heads: ~60 blocks a layer
NO_BLOCKS = dict(above=10 ** 9)


def dialogues(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [Dialogue(f"d{i}", rng.integers(0, 3, n), rng.integers(0, 6, n),
                     {m: rng.normal(size=(n, s)).astype(np.float32) for m, s in SIZES.items()})
            for i, n in enumerate(lengths)]


def model_of(**overrides) -> SAFSDGLNet:
    cfg = ModelConfig(**{"hidden": 12, "heads": 3, "gcn_layers": 2, **overrides})
    torch.manual_seed(0)
    model = SAFSDGLNet(cfg, {m: SIZES[m] for m in cfg.modalities}, 6, 3)
    for conv in (model.gcn.convs if model.gcn is not None else []):  # gates large enough for tanh's sign to matter
        torch.nn.init.normal_(conv.gate.weight, std=0.5)
    return model.eval()


def outputs(model, batch):
    with torch.no_grad():
        out = model(batch)
    return torch.cat([out.teacher_logits, out.teacher_features] + [out.student_logits[m] for m in model.modalities],
                     dim=-1)


@pytest.mark.parametrize("overrides", [{}, {"modalities": "t"}, {"window_past": 4, "window_future": 2},
                                       {"window_past": None, "window_future": 0}, {"window_past": 7},
                                       {"use_gcn": False}, {"use_transformer": False, "modalities": "ta"}])
def test_blocked_inference_equals_the_unblocked_kernels_and_the_readable_model(overrides):
    model = model_of(**overrides)
    batch = collate(dialogues([300, 41, 1, 120]))
    readable = outputs(model, batch)  # PyG edge list, plain attention: an independent computation
    kernels.install(model)
    with long_dialogues.blocking(**NO_BLOCKS):
        unblocked = outputs(model, batch)
    with long_dialogues.blocking(**SMALL_BLOCKS):
        blocked = outputs(model, batch)
    torch.testing.assert_close(unblocked, readable, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(blocked, unblocked, atol=1e-5, rtol=1e-5)


def test_the_blocked_paths_really_run(monkeypatch):
    """The equality above is not vacuous: with small blocks both blocked functions are called,
    many times; with the default threshold a short dialogue never reaches them."""
    calls = {"attention": 0, "gcn": 0}
    real_attention, real_gcn = long_dialogues.attention_in_blocks, long_dialogues.gcn_in_blocks

    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(long_dialogues, "attention_in_blocks", count("attention", real_attention))
    monkeypatch.setattr(long_dialogues, "gcn_in_blocks", count("gcn", real_gcn))
    model = kernels.install(model_of())
    batch = collate(dialogues([300, 20]))
    with long_dialogues.blocking(**SMALL_BLOCKS):
        outputs(model, batch)
    assert calls == {"attention": 9, "gcn": 1}  # 3 x 3 attention blocks (target, source), one graph
    outputs(model, batch)  # 300 utterances: under the default threshold
    assert calls == {"attention": 9, "gcn": 1}
    model.train()  # training never takes the blocked path, even with the threshold at 0
    with long_dialogues.blocking(**SMALL_BLOCKS):
        model(batch)
    assert calls == {"attention": 9, "gcn": 1}


def test_graph_blocks_equal_the_edge_list_layer_on_uneven_blocks():
    """gcn_in_blocks against the readable MaskedGCN (PyG) directly, with block sizes that do not
    divide the dialogue and windows wider than the blocks."""
    for window in [(None, None), (3, 5), (0, 0), (None, 2)]:
        cfg = ModelConfig(hidden=8, heads=2, gcn_layers=3, window_past=window[0], window_future=window[1],
                          modalities="tav")
        torch.manual_seed(1)
        gcn = MaskedGCN(cfg, has_text=True, num_speakers=3).eval()
        for conv in gcn.convs:
            torch.nn.init.normal_(conv.gate.weight, std=0.5)
        lengths = torch.tensor([37, 1, 13, 2])
        packing = Packing(torch.arange(37)[None] < lengths[:, None])
        speakers = torch.randint(0, 3, (int(lengths.sum()),))
        nodes = torch.randn(3, int(lengths.sum()), 8)
        with torch.no_grad():
            expected = gcn(nodes, speakers, lengths, packing)
            h0 = torch.cat([nodes[:1] + gcn.speaker(speakers)[None], nodes[1:]])
            for elements in (3 * 7, 3 * 37 * 4, 10 ** 6):
                with long_dialogues.blocking(above=0, elements=elements):
                    got = long_dialogues.gcn_in_blocks(h0, [c.gate.weight for c in gcn.convs], lengths, *window)
                torch.testing.assert_close(torch.cat([h0, got], -1), expected, atol=1e-5, rtol=1e-5)


def test_degrees_have_the_closed_form_of_the_graph():
    from safsd_glnet.model.graph import dialogue_graph

    lengths = torch.tensor([6, 1, 9])
    for window in [(None, None), (2, 1), (0, 3), (None, 0), (4, None)]:
        for num_mod in (1, 3):
            edges = dialogue_graph(lengths, num_mod, *window)
            n = int(lengths.sum())
            deg = torch.bincount(edges[1], minlength=num_mod * n)[:n].clamp(min=1).float()
            torch.testing.assert_close(long_dialogues.window_degrees(lengths, num_mod, *window), deg)


def test_predict_puts_a_long_dialogue_in_a_batch_of_its_own_and_keeps_the_order():
    ds = dialogues([3, 2, 50, 4, 5, 60, 1])
    batches = list(iterate_batches(ds, 3, alone_above=10))
    assert [b.dialogue_ids for b in batches] == [["d0", "d1"], ["d2"], ["d3", "d4"], ["d5"], ["d6"]]
    assert [b.dialogue_ids for b in iterate_batches(ds, 3)] == [["d0", "d1", "d2"], ["d3", "d4", "d5"], ["d6"]]


def test_predictions_of_a_long_dialogue_equal_the_unblocked_ones():
    """train.predict (what evaluate and predict --dialogues run) on a corpus with one long
    dialogue among short ones: blocked and alone, or unblocked in one padded batch."""
    from safsd_glnet.training.train import predict

    model = kernels.install(model_of())
    ds = dialogues([4, 300, 7, 9])
    with long_dialogues.blocking(above=100, elements=3 * 300 * 5):
        blocked = predict(model, ds, batch_size=16, device="cpu", amp=False)
    with long_dialogues.blocking(**NO_BLOCKS):
        whole = predict(model, ds, batch_size=16, device="cpu", amp=False)
    assert blocked.dialogue_ids == whole.dialogue_ids and np.array_equal(blocked.positions, whole.positions)
    np.testing.assert_allclose(blocked.probs, whole.probs, atol=1e-6)
    assert np.array_equal(blocked.preds, whole.preds)


# ----------------------------------------------------------------------------- training

def corpus_with(lengths_by_split):
    ds, splits = {}, {}
    for split, lengths in lengths_by_split.items():
        made = dialogues(lengths, seed=len(ds))
        for d in made:
            d.id = f"{split}_{d.id}"
            d.texts = [f"{d.id} line {i}" for i in range(len(d))]
            ds[d.id] = d
        splits[split] = [d.id for d in made]
    return Corpus("long", list(IEMOCAP_CLASSES), ["a", "b", "c"], dict(SIZES), ds, splits, "long.npz").validate()


def test_training_refuses_a_dialogue_over_its_budget(monkeypatch):
    from safsd_glnet.training.train import train

    corpus = corpus_with({"train": [5, 400, 6], "valid": [4], "test": [5]})
    config = preset("tiny")
    need = long_dialogues.training_bytes(400, 3, config.model)
    monkeypatch.setenv(long_dialogues.TRAIN_MEMORY_ENV, str(need / 2 / (1 << 30)))
    with pytest.raises(DataError) as err:
        train(config, corpus)
    message = str(err.value)
    assert "\n" not in message and message.startswith("long.npz: training dialogue 'train_d1' has 400 utterances")
    assert "--split-dialogues" in message and long_dialogues.TRAIN_MEMORY_ENV in message
    fits = int(message.split("--split-dialogues ")[1].split()[0])
    assert 0 < fits < 400 and long_dialogues.training_bytes(fits, 3, config.model) <= need / 2
    # The suggested windows train; the long validation and test dialogues stay whole.
    split = dialogue_windows.split_dialogues(corpus_with({"train": [5, 400, 6], "valid": [300], "test": [5]}), fits)
    assert max(len(split.dialogues[k]) for k in split.splits["train"]) <= fits
    assert len(split.dialogues["valid_d0"]) == 300
    run = train(config.replace(train={"epochs": 1}), split)
    assert run.metrics["epochs_run"] == 1


def test_windows_cover_the_dialogue_and_copy_its_slices():
    corpus = corpus_with({"train": [3, 23], "valid": [30], "test": [2]})
    split = dialogue_windows.split_dialogues(corpus, 8, 3)
    long_d = corpus.dialogues["train_d1"]
    ids = [k for k in split.splits["train"] if k.startswith("train_d1#")]
    assert ids == ["train_d1#0", "train_d1#1", "train_d1#2", "train_d1#3"]
    starts = [0, 5, 10, 15]  # every 8 - 3 = 5 utterances; the last window ends with the dialogue (15 + 8 = 23)
    covered = set()
    for k, a in zip(ids, starts):
        w = split.dialogues[k]
        assert len(w) == 8
        for m in SIZES:
            assert np.array_equal(w.features[m], long_d.features[m][a:a + 8])
        assert np.array_equal(w.labels, long_d.labels[a:a + 8]) and w.texts == long_d.texts[a:a + 8]
        covered |= set(range(a, a + 8))
    assert covered == set(range(23))
    assert split.splits["valid"] == ["valid_d0"] and len(split.dialogues["valid_d0"]) == 30
    assert "train_d1" not in split.dialogues and split.splits["train"][0] == "train_d0"
    assert [k for k in dialogue_windows.split_dialogues(corpus, 8, 2).splits["train"] if k.startswith("train_d1")] \
        == ["train_d1#0", "train_d1#1", "train_d1#2", "train_d1#3"]  # starts 0, 6, 12 and 15 (the end)
    with pytest.raises(DataError, match="overlap"):
        dialogue_windows.split_dialogues(corpus, 8, 8)


def test_cli_train_refuses_with_one_line_and_splits_on_request(tmp_path, capsys, monkeypatch):
    from safsd_glnet.cli.commands import main
    from safsd_glnet.data import save_corpus

    data = tmp_path / "long.npz"
    save_corpus(corpus_with({"train": [5, 400, 6, 7], "valid": [4, 5], "test": [5, 6]}), data)
    monkeypatch.setenv(long_dialogues.TRAIN_MEMORY_ENV, "0.1")  # 400 utterances need 0.34 GiB, 100 0.04
    argv = ["train", "--data", str(data), "--preset", "tiny", "--epochs", "1", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "training dialogue 'train_d1' has 400 utterances" in err
    assert not (tmp_path / "a" / "config.json").exists()
    assert main(argv + ["--split-dialogues", "100:20", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "metrics.json").exists()
    assert main(argv + ["--split-dialogues", "1", "--out", str(tmp_path / "c")]) == 2
    assert "--split-dialogues '1'" in capsys.readouterr().err


def test_the_fused_attention_of_other_devices_in_blocks_equals_it_whole():
    """Off the CPU the kernels keep PyTorch's fused attention (AttentionLayer.attend); its blocked
    form (sdpa_in_blocks, through FastAttentionLayer.attend) is checked here on the CPU."""
    from safsd_glnet.model.kernels import FastAttentionLayer
    from safsd_glnet.model.network import AttentionLayer

    torch.manual_seed(2)
    layer = AttentionLayer(12, 3, 12, 0.1).eval()
    q, k, v = (torch.randn(2, 3, 50, 4) for _ in range(3))
    key_real = torch.arange(50)[None] < torch.tensor([50, 17])[:, None]
    with torch.no_grad():
        whole = layer.attend(q, k, v, key_real)
        layer.__class__ = FastAttentionLayer
        with long_dialogues.blocking(above=0, elements=2 * 3 * 50 * 7):  # blocks of 7 query rows
            blocked = layer.attend(q, k, v, key_real)
    torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=1e-6)


def test_windows_keep_every_other_field_of_the_corpus():
    import dataclasses

    corpus = corpus_with({"train": [30], "valid": [3], "test": [2]})
    corpus.feature_info = {"t": {"kind": "sentence-encoder", "encoder": "minilm"}}
    split = dialogue_windows.split_dialogues(corpus, 10)
    for f in dataclasses.fields(corpus):
        if f.name not in ("dialogues", "splits"):
            assert getattr(split, f.name) == getattr(corpus, f.name), f.name
