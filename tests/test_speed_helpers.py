"""The speed helpers of the model: CPU dropout, packing, written-out attention, gate terms,
and the banded layout of the dense GCN for windowed graphs.

Each is checked against the plain PyTorch operation it replaces, the banded GCN against the
dense layout and the PyG reference layer (tests/test_model.py checks the whole model and the
two GCN implementations on short dialogues).
"""
import pytest
import torch
import torch.nn.functional as F

from safsd_glnet import model as model_module
from safsd_glnet.config import ModelConfig
from safsd_glnet.graph import padded_graph
from safsd_glnet.model import AttentionLayer, MaskedGCN, Packing, _GateTerms, dense_high_frequency, dropout


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


def test_packing_round_trip_and_gradients():
    lengths = torch.tensor([3, 1, 4])
    mask = torch.arange(4)[None] < lengths[:, None]
    packing = Packing(mask)
    x = torch.randn(2, 3, 4, 5, requires_grad=True)  # leading modality dim, (b, n, F)
    packed = packing.pack(x)
    torch.testing.assert_close(packed, x[:, mask])
    torch.testing.assert_close(packing.positions, torch.tensor([0, 1, 2, 0, 0, 1, 2, 3]))
    padded = packing.pad(packed)
    torch.testing.assert_close(padded, x * mask[None, :, :, None])
    w = torch.randn(2, 3, 4, 5)
    (padded * w).sum().backward()
    torch.testing.assert_close(x.grad, w * mask[None, :, :, None])


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
    b, n, h, dh = 3, 5, 4, 4
    q, k, v = (torch.randn(b, h, n, dh, requires_grad=True) for _ in range(3))
    key_mask = torch.arange(n)[None] < torch.tensor([5, 2, 3])[:, None]
    monkeypatch.setattr(model_module, "dropout", lambda x, p, training: x)
    layer.train()
    written = layer.attention(q, k, v, key_mask)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
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
    speakers = torch.randint(0, 2, (b, n)).masked_fill(~mask, 2)
    streams = torch.randn(3, b, n, 8, requires_grad=True)
    results = {}
    for impl in ("dense", "pyg"):
        out = gcn(streams, speakers, lengths, mask, impl=impl)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(),
                                    (streams, *(c.gate.weight for c in gcn.convs)))
        results[impl] = (out, *grads)
    for got, expected in zip(results["dense"], results["pyg"]):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
