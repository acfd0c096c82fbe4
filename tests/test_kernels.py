"""The speed kernels (safsd_glnet/kernels.py) equal the readable modules they replace.

Each kernel is checked against the readable module or the plain PyTorch operation it stands
for: CPU dropout in distribution and in its gradient, packing, written-out attention, gate
terms, the dense and banded GCN layouts against the PyG edge-list layer, and the whole model
with and without kernels, forward and backward.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from safsd_glnet import kernels
from safsd_glnet.config import ModelConfig
from safsd_glnet.data.batching import collate
from safsd_glnet.data.corpus import Dialogue
from safsd_glnet.kernels import (DenseMaskedGCN, FastAttentionLayer, FastPacking, _GateTerms, dense_high_frequency,
                                 dropout, padded_graph)
from safsd_glnet.model import AttentionLayer, MaskedGCN, Packing, SAFSDGLNet


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_cpu_dropout_keeps_one_minus_p_and_rescales(p):
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    y = dropout(x, p, True)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert y.mean().item() == pytest.approx(1.0, abs=0.03)  # unbiased, as F.dropout


def test_cpu_dropout_gradient_uses_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(50, 40, requires_grad=True)
    y = dropout(x, 0.3, True)
    (y * 2).sum().backward()
    scale = torch.where(y != 0, 1 / 0.7, 0.0)
    torch.testing.assert_close(x.grad, 2 * scale)


def test_dropout_is_identity_in_eval_or_at_zero():
    x = torch.randn(5, 7)
    assert dropout(x, 0.5, False) is x
    assert dropout(x, 0.0, True) is x


@pytest.mark.parametrize("packing_class", [Packing, FastPacking])
def test_packing_round_trip_and_gradients(packing_class):
    lengths = torch.tensor([3, 1, 4])
    mask = torch.arange(4)[None] < lengths[:, None]
    packing = packing_class(mask)
    x = torch.randn(2, 3, 4, 5, requires_grad=True)  # leading modality dim, (b, n, F)
    packed = packing.pack(x)
    torch.testing.assert_close(packed, x[:, mask])
    torch.testing.assert_close(packing.positions, torch.tensor([0, 1, 2, 0, 0, 1, 2, 3]))
    padded = packing.pad(packed)
    torch.testing.assert_close(padded, x * mask[None, :, :, None])
    w = torch.randn(2, 3, 4, 5)
    (padded * w).sum().backward()
    torch.testing.assert_close(x.grad, w * mask[None, :, :, None])
    # and straight from packed rows: pad's gradient is pack
    rows = torch.randn(2, 8, 5, requires_grad=True)
    (packing.pad(rows) * w).sum().backward()
    torch.testing.assert_close(rows.grad, w[:, mask])


def test_gate_terms_match_autograd_of_a_plain_product():
    torch.manual_seed(2)
    x = torch.randn(30, 16, dtype=torch.double, requires_grad=True)
    w = torch.randn(2, 16, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(_GateTerms.apply(x, w), x @ w.t())
    assert torch.autograd.gradcheck(_GateTerms.apply, (x, w))


def test_written_out_attention_equals_fused_attention(monkeypatch):
    """Training on the CPU takes the written-out path; with its dropout made the identity it
    must give what scaled_dot_product_attention gives without dropout."""
    torch.manual_seed(3)
    layer = AttentionLayer(hidden=16, heads=4, ff_width=16, dropout=0.5)
    layer.__class__ = FastAttentionLayer
    b, n, h, dh = 3, 5, 4, 4
    q, k, v = (torch.randn(b, h, n, dh, requires_grad=True) for _ in range(3))
    key_mask = torch.arange(n)[None] < torch.tensor([5, 2, 3])[:, None]
    monkeypatch.setattr(kernels, "dropout", lambda x, p, training: x)
    layer.train()
    written = layer.attend(q, k, v, key_mask)
    layer.__class__ = AttentionLayer
    fused = layer.eval().attend(q, k, v, key_mask)  # the readable layer, no dropout
    torch.testing.assert_close(written, fused, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(written.sum(), (q, k, v))
    expected = torch.autograd.grad(fused.sum(), (q, k, v))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- banded GCN


@pytest.mark.parametrize("window", [(2, 1), (0, 3), (4, 4)])
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_banded_layer_equals_dense_layer(window, chunk):
    """The chunked (linear-cost) layout gives the dense layer's output and gradients."""
    torch.manual_seed(4)
    lengths = torch.tensor([11, 1, 7, 4])
    n, hidden = int(lengths.max()), 6
    dense = padded_graph(lengths, n, 3, *window)
    banded = padded_graph(lengths, n, 3, *window, chunk=chunk)
    assert dense.chunk is None and banded.chunk == chunk
    torch.testing.assert_close(banded.inv_deg, dense.inv_deg)
    weight = torch.randn(1, 2 * hidden, requires_grad=True)
    x = torch.randn(3, len(lengths), n, hidden, requires_grad=True)
    results = []
    for graph in (dense, banded):
        out = dense_high_frequency(x, weight, graph)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, hidden)).sum(), (x, weight))
        results.append((out, *grads))
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_long_dialogues_with_a_window_take_the_banded_path_and_equal_pyg():
    """MaskedGCN picks the banded layout by itself when the window is short against the
    dialogues; its output and gradients equal the PyG reference layer's."""
    cfg = ModelConfig(hidden=8, heads=2, gcn_layers=2, window_past=3, window_future=2)
    lengths = torch.tensor([150, 40, 97])
    b, n = len(lengths), int(lengths.max())
    assert padded_graph(lengths, n, 3, 3, 2).chunk is not None
    torch.manual_seed(5)
    gcn = MaskedGCN(cfg, has_text=True, num_speakers=2).eval()
    for conv in gcn.convs:
        torch.nn.init.normal_(conv.gate.weight, std=0.5)
    mask = torch.arange(n)[None] < lengths[:, None]
    packing = Packing(mask)
    speakers = torch.randint(0, 2, (int(lengths.sum()),))
    nodes = torch.randn(3, int(lengths.sum()), 8, requires_grad=True)
    results = {}
    for cls in (DenseMaskedGCN, MaskedGCN):
        gcn.__class__ = cls
        out = gcn(nodes, speakers, lengths, packing)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(),
                                    (nodes, *(c.gate.weight for c in gcn.convs)))
        results[cls] = (out, *grads)
    for got, expected in zip(results[DenseMaskedGCN], results[MaskedGCN]):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("window", [(None, None), (2, 1), (0, 3)])
@pytest.mark.parametrize("num_mod", [1, 3])
def test_dense_gcn_equals_pyg_layer_forward_and_gradients(window, num_mod):
    cfg = ModelConfig(hidden=8, heads=2, gcn_layers=3, window_past=window[0], window_future=window[1],
                      modalities="tav"[:num_mod])
    torch.manual_seed(1)
    gcn = MaskedGCN(cfg, has_text=True, num_speakers=3).eval()
    for conv in gcn.convs:  # larger gates than the default init make tanh's sign matter
        torch.nn.init.normal_(conv.gate.weight, std=0.5)
    lengths = torch.tensor([5, 1, 8, 3])
    n = int(lengths.max())
    packing = Packing(torch.arange(n)[None] < lengths[:, None])
    speakers = torch.randint(0, 3, (int(lengths.sum()),))
    nodes = torch.randn(num_mod, int(lengths.sum()), 8, requires_grad=True)
    results = {}
    for cls in (DenseMaskedGCN, MaskedGCN):
        gcn.__class__ = cls
        gcn.zero_grad()
        nodes.grad = None
        out = gcn(nodes, speakers, lengths, packing)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        results[cls] = (out.detach(), nodes.grad.clone(), [c.gate.weight.grad.clone() for c in gcn.convs],
                        gcn.speaker.weight.grad.clone())
    dense, pyg = results[DenseMaskedGCN], results[MaskedGCN]
    torch.testing.assert_close(dense[0], pyg[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dense[1], pyg[1], atol=1e-5, rtol=1e-5)
    for gd, gp in zip(dense[2], pyg[2]):
        torch.testing.assert_close(gd, gp, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dense[3], pyg[3], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- the whole model

SIZES = {"t": 12, "a": 10, "v": 8}


def _dialogues(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [Dialogue(f"d{i}", rng.integers(0, 3, n), rng.integers(0, 6, n),
                     {m: rng.normal(size=(n, s)).astype(np.float32) for m, s in SIZES.items()})
            for i, n in enumerate(lengths)]


@pytest.mark.parametrize("overrides", [{}, {"use_transformer": False}, {"use_gcn": False},
                                       {"modalities": "ta"}, {"window_past": 2, "window_future": 1}])
def test_the_model_with_kernels_equals_the_readable_model(overrides):
    """Same weights, kernels in or out: equal outputs (eval) and equal gradients (train, with
    dropout and the feature mask at 0 so that both draw nothing random)."""
    cfg = ModelConfig(**{"hidden": 16, "heads": 2, "gcn_layers": 2, "dropout": 0.0, "use_mask": False, **overrides})
    torch.manual_seed(0)
    model = SAFSDGLNet(cfg, {m: SIZES[m] for m in cfg.modalities}, 6, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batch = collate(_dialogues([5, 1, 9, 3]))
    results = {}
    for fast in (False, True):
        if fast:
            kernels.install(model)
            assert isinstance(model.packing_class(batch.real), FastPacking)
        assert model.state_dict().keys() == state.keys()
        model.train()
        model.zero_grad()
        out = model(batch)
        loss = out.teacher_logits.logsumexp(-1).sum() + sum(s.logsumexp(-1).sum() for s in out.student_logits.values())
        loss.backward()
        results[fast] = (out.teacher_logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-5, rtol=1e-5)
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, atol=1e-4, rtol=1e-4, msg=name)
    kernels.uninstall(model)
    assert model.packing_class is Packing and type(model.gcn or model.teacher).__module__ != "safsd_glnet.kernels"


def test_training_dropout_keeps_its_distribution_with_kernels():
    """With dropout on, the kernels draw other random numbers than the readable model, so the
    outputs differ, but their average over many draws is the eval-mode output in both."""
    cfg = ModelConfig(hidden=16, heads=2, gcn_layers=1, dropout=0.3, use_mask=False, use_transformer=False)
    torch.manual_seed(0)
    model = SAFSDGLNet(cfg, SIZES, 6, 3)
    batch = collate(_dialogues([4]))
    x = model.eval().encoders["t"]  # the encoder's dropout is the one draw before the heads' linear layers
    with torch.no_grad():
        feats = batch.features["t"][batch.real]
        spk = model.speaker(batch.speakers[batch.real])
        from safsd_glnet.model import sinusoidal_positions

        pe = sinusoidal_positions(4, 16)
        expected = x(feats, spk, pe)
        for fast in (False, True):
            (kernels.install if fast else kernels.uninstall)(model)
            x.train()
            draws = torch.stack([x(feats, spk, pe) for _ in range(4000)]).mean(0)
            torch.testing.assert_close(draws, expected, atol=0.08, rtol=0.05)
