"""The speed kernels (safsd_glnet/model/kernels.py) equal the readable modules they replace.

Each kernel is checked against the readable module or the plain PyTorch operation it stands
for: CPU dropout in distribution and in its gradient, packing, written-out attention, gate
terms, the dense and banded GCN layouts against the PyG edge-list layer, and the whole model
with and without kernels, forward and backward. In fp32 they agree to float error; under bf16
autocast (where the kernels keep the activations in bf16 and the readable model does not) to
bf16's error, and each path in bf16 agrees with itself in fp32 on the same weights.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from safsd_glnet.model import kernels
from safsd_glnet.config import ModelConfig
from safsd_glnet.data.batching import collate
from safsd_glnet.data.corpus import Dialogue
from safsd_glnet.model.kernels import (DenseMaskedGCN, FastAttentionLayer, FastPacking, _GateTerms, dense_high_frequency,
                                 dropout, padded_graph)
from safsd_glnet.model.network import AttentionLayer, MaskedGCN, Packing, SAFSDGLNet


def _rounded(p: float) -> float:
    """p as the CPU dropout's mask applies it: a multiple of 2^-16."""
    return round(p * 65536) / 65536


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_keeps_one_minus_p_and_rescales(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(400, 500, dtype=dtype)
    y = dropout(x, p, True)
    assert y.dtype == dtype
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)
    scale = torch.tensor(1 / (1 - _rounded(p)), dtype=dtype)  # the exact scale, rounded to dtype once
    assert torch.equal(y[kept], scale.expand(int(kept.sum())))
    assert y.float().mean().item() == pytest.approx(1.0, abs=0.03)  # unbiased, as F.dropout


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_keep_mask_is_unbiased_and_keeps_exactly_one_minus_q(p):
    """Over 2^22 draws the share kept is within 5 standard errors of 1 - q, and the mask's
    mean within 5 standard errors of 1: for a p that 2^-16 does not divide (16-bit lanes)
    and for 0.5 (8-bit lanes)."""
    torch.manual_seed(3)
    n = 1 << 22
    q = _rounded(p)
    mask = kernels.keep_mask((n,), p, torch.float64)
    kept = (mask != 0).double().mean().item()
    se = (q * (1 - q) / n) ** 0.5
    assert abs(kept - (1 - q)) < 5 * se
    assert abs(mask.mean().item() - 1.0) < 5 * se / (1 - q)
    assert torch.equal(mask.unique(), torch.tensor([0.0, 1 / (1 - q)], dtype=torch.float64))


@pytest.mark.parametrize("p, bits", [(0.37, 16), (0.75, 8), (0.25, 8), (0.1, 16)])
def test_keep_mask_reads_each_lane_once(p, bits):
    """Element i is kept iff the i-th lane of the int64 words (little-endian, signed; 8-bit
    lanes where p is a multiple of 2^-8, else 16-bit) is at or above p 2^bits - 2^(bits-1)
    (p rounded): read back here with numpy from the same random words."""
    n = 1001
    torch.manual_seed(11)
    mask = kernels.keep_mask((7, 11, 13), p, torch.float32)
    torch.manual_seed(11)
    words = torch.empty(-(-n * bits // 64), dtype=torch.int64).random_(-2**63, 2**63 - 1).numpy()
    lanes = words.astype("<i8").view(f"<i{bits // 8}")[:n].astype(np.int64)
    expected = (lanes + 2 ** (bits - 1) >= round(p * 2**bits)).reshape(7, 11, 13)
    np.testing.assert_array_equal(mask.numpy() != 0, expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_mask_of_p_one_half_is_one_random_bit_per_element(dtype):
    """p = 0.5 keeps element i iff bit i % 8 of the (i // 8)-th random byte (little-endian)
    is set, and a kept element is exactly 2.0: read back with numpy from the same words."""
    n = 999
    torch.manual_seed(12)
    mask = kernels.keep_mask((27, 37), 0.5, dtype)
    assert mask.dtype == dtype
    torch.manual_seed(12)
    words = torch.empty(-(-n // 64), dtype=torch.int64).random_(-2**63, 2**63 - 1).numpy()
    bits = np.unpackbits(words.astype("<i8").view(np.uint8), bitorder="little")[:n]
    np.testing.assert_array_equal(mask.double().numpy().reshape(-1), 2.0 * bits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_gradient_uses_the_same_mask(dtype):
    torch.manual_seed(1)
    x = torch.randn(50, 40, dtype=dtype, requires_grad=True)
    y = dropout(x, 0.3, True)
    (y.float() * 2).sum().backward()
    scale = torch.where(y != 0, torch.tensor(1 / (1 - _rounded(0.3)), dtype=dtype), 0).float()
    torch.testing.assert_close(x.grad.float(), (2 * scale).to(dtype).float())


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


def _readable_attention(layer, queries, keys_values, packing):
    """The readable layer's attention of packed rows: pad, ``AttentionLayer.attend``, pack."""
    b, n = packing.real.shape
    hidden = queries.shape[-1]
    h, dh = layer.heads, hidden // layer.heads
    q = packing.pad(queries).view(b, n, h, dh).transpose(1, 2)
    k, v = packing.pad(keys_values).view(b, n, 2, h, dh).permute(2, 0, 3, 1, 4)
    attn = AttentionLayer.attend(layer, q, k, v, packing.real)
    return packing.pack(attn.transpose(1, 2).reshape(b, n, hidden))


@pytest.mark.parametrize("bf16", [False, True])
def test_head_major_attention_equals_the_readable_attention(bf16):
    """FastAttentionLayer.attend_rows (eval: no dropout) against pad + fused attention + pack,
    forward and gradients: to float error in fp32, to bf16's error under autocast."""
    torch.manual_seed(3)
    layer = AttentionLayer(hidden=32, heads=4, ff_width=32, dropout=0.5).eval()
    layer.__class__ = FastAttentionLayer
    lengths = torch.tensor([6, 2, 3, 1])
    packing = Packing(torch.arange(6)[None] < lengths[:, None])
    dtype = torch.bfloat16 if bf16 else torch.float32
    queries = torch.randn(12, 32).to(dtype).requires_grad_()
    keys_values = torch.randn(12, 64).to(dtype).requires_grad_()
    runs = []
    for attend in (layer.attend_rows, lambda *a: _readable_attention(layer, *a)):
        with _bf16(bf16):
            out = attend(queries, keys_values, packing)
        weight = torch.linspace(-1, 1, out.numel()).view(out.shape)
        grads = torch.autograd.grad((out.float() * weight).sum(), (queries, keys_values))
        runs.append((out, {"queries": grads[0], "keys_values": grads[1]}))
    if bf16:
        _close_in_bf16(runs[0], runs[1], "head-major vs readable attention, bf16")
    else:
        torch.testing.assert_close(runs[0][0], runs[1][0], atol=1e-5, rtol=1e-5)
        for name in ("queries", "keys_values"):
            torch.testing.assert_close(runs[0][1][name], runs[1][1][name], atol=1e-5, rtol=1e-5)


def test_head_major_attention_drops_weights_without_bias():
    """In training the attention weights pass :func:`dropout`: the output changes from draw to
    draw, and (being linear in the weights) averages to the eval output over many draws."""
    torch.manual_seed(4)
    layer = AttentionLayer(hidden=16, heads=2, ff_width=16, dropout=0.5)
    layer.__class__ = FastAttentionLayer
    packing = Packing(torch.arange(5)[None] < torch.tensor([5, 3])[:, None])
    queries, keys_values = torch.randn(8, 16), torch.randn(8, 32)
    with torch.no_grad():
        expected = layer.eval().attend_rows(queries, keys_values, packing)
        layer.train()
        draws = torch.stack([layer.attend_rows(queries, keys_values, packing) for _ in range(4000)])
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), expected, atol=0.06, rtol=0.05)


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


@pytest.mark.parametrize("num_mod", [1, 3])
@pytest.mark.parametrize("window", [(None, None), (2, 1)])
def test_written_out_dense_layer_equals_autograd(num_mod, window):
    """:class:`_DenseLayer` (packed rows, hand-written backward) against autograd through
    ``h + dense_high_frequency(h * mask, ...)`` in padded layout, with a feature mask, in
    float64: the same output and gradients on the real rows, and ``gradcheck`` passes."""
    torch.manual_seed(6)
    lengths = torch.tensor([6, 1, 4])
    n, hidden = int(lengths.max()), 5
    packing = Packing(torch.arange(n)[None] < lengths[:, None])
    graph = padded_graph(lengths, n, num_mod, *window)
    graph = type(graph)(graph.norm.double(), graph.inv_deg.double())
    inv_deg = graph.inv_deg.reshape(-1)[packing.index]
    h = torch.randn(num_mod, int(lengths.sum()), hidden, dtype=torch.double, requires_grad=True)
    weight = torch.randn(1, 2 * hidden, dtype=torch.double, requires_grad=True)
    mask = kernels.keep_mask(h.shape, 0.3, torch.double)

    def layer(h, weight):
        return kernels._DenseLayer.apply(h, mask, weight, graph.norm, inv_deg, packing.index)

    written = layer(h, weight)
    padded_h = packing.pad(h)
    reference = packing.pack(padded_h + dense_high_frequency(padded_h * packing.pad(mask), weight, graph))
    torch.testing.assert_close(written, reference)
    w = torch.randn_like(written)
    torch.testing.assert_close(torch.autograd.grad((written * w).sum(), (h, weight)),
                               torch.autograd.grad((reference * w).sum(), (h, weight)))
    assert torch.autograd.gradcheck(layer, (h, weight))


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
    assert model.packing_class is Packing and type(model.gcn or model.teacher).__module__ != "safsd_glnet.model.kernels"


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
        from safsd_glnet.model.network import sinusoidal_positions

        pe = sinusoidal_positions(4, 16)
        expected = x(feats, spk, pe)
        for fast in (False, True):
            (kernels.install if fast else kernels.uninstall)(model)
            x.train()
            draws = torch.stack([x(feats, spk, pe) for _ in range(4000)]).mean(0)
            torch.testing.assert_close(draws, expected, atol=0.08, rtol=0.05)


# ----------------------------------------------------------------------------- bf16 autocast
# bf16 keeps 8 significant bits (a relative step of 2^-8 = 0.4%). Tolerances below: outputs
# to 3% of their norm, all gradients together to 5%, each parameter's gradient to 25% (the
# gradients of attention queries are small differences and lose most digits); a kernel that
# dropped or doubled a term misses these by far.

def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _bf16(enabled=True):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def _close_in_bf16(got, expected, what, out_tol=0.03):
    """Outputs and gradients of two runs (``(output, {name: grad})``) within bf16 tolerances."""
    assert _rel(got[0], expected[0]) < out_tol, (what, "output", _rel(got[0], expected[0]))
    names = [n for n, g in expected[1].items() if g.norm() > 0]
    flat = [torch.cat([r[1][n].flatten().float() for n in names]) for r in (got, expected)]
    assert _rel(*flat) < 0.05, (what, "all gradients", _rel(*flat))
    for n in names:
        assert _rel(got[1][n], expected[1][n]) < 0.25, (what, n, _rel(got[1][n], expected[1][n]))


def _model_run(model, batch, bf16):
    model.train()
    model.zero_grad()
    with _bf16(bf16):
        out = model(batch)
    assert out.teacher_logits.dtype == torch.float32  # the losses read float32 logits
    loss = out.teacher_logits.logsumexp(-1).sum() + sum(s.logsumexp(-1).sum() for s in out.student_logits.values())
    loss.backward()
    return out.teacher_logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("overrides", [{}, {"use_gcn": False}, {"use_transformer": False},
                                       {"modalities": "ta"}, {"window_past": 2, "window_future": 1}])
def test_bf16_autocast_equals_fp32_and_kernels_equal_the_readable_model(overrides):
    """Same weights, dropout and mask off: (1) the kernels against the readable model, both
    under bf16 autocast; (2) each of them in bf16 against itself in fp32."""
    cfg = ModelConfig(**{"hidden": 32, "heads": 4, "gcn_layers": 2, "dropout": 0.0, "use_mask": False, **overrides})
    torch.manual_seed(0)
    model = SAFSDGLNet(cfg, {m: SIZES[m] for m in cfg.modalities}, 6, 3)
    batch = collate(_dialogues([5, 1, 9, 3]))
    runs = {}
    for fast in (False, True):
        (kernels.install if fast else kernels.uninstall)(model)
        for bf16 in (False, True):
            runs[fast, bf16] = _model_run(model, batch, bf16)
    _close_in_bf16(runs[True, True], runs[False, True], "kernels vs readable, both bf16")
    _close_in_bf16(runs[True, True], runs[True, False], "kernels, bf16 vs fp32")
    _close_in_bf16(runs[False, True], runs[False, False], "readable, bf16 vs fp32")
    # and in fp32 the two paths agree to float error (the kernels' casts are no-ops there)
    torch.testing.assert_close(runs[True, False][0], runs[False, False][0], atol=1e-5, rtol=1e-5)


def test_kernels_keep_bf16_activations_under_autocast():
    """Under bf16 autocast the kernel model's streams are bf16 end to end (no conversions
    between layers): encoders, every attention layer (residuals and layer norms) and the GCN.
    The readable model adds float32 position and speaker terms, so its residual streams and
    its GCN run in float32. Logits leave as float32 in both; the weights stay float32."""
    cfg = ModelConfig(hidden=16, heads=2, gcn_layers=2, dropout=0.1)
    torch.manual_seed(0)
    model = SAFSDGLNet(cfg, SIZES, 6, 3).train()
    batch = collate(_dialogues([4, 2]))
    seen = []
    watched = [*model.encoders.values(), *model.attention.modules(), model.gcn]
    for module in watched:
        if isinstance(module, (nn.LayerNorm, AttentionLayer)) or module in (model.gcn, *model.encoders.values()):
            module.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    outputs = {}
    for fast in (False, True):
        (kernels.install if fast else kernels.uninstall)(model)
        seen.clear()
        with _bf16():
            outputs[fast] = model(batch)
        outputs[fast] = (outputs[fast], set(seen))
    assert outputs[False][1] == {torch.float32} and outputs[True][1] == {torch.bfloat16}
    assert outputs[False][0].teacher_features.dtype == torch.float32
    assert outputs[True][0].teacher_features.dtype == torch.bfloat16
    assert outputs[True][0].teacher_logits.dtype == outputs[False][0].teacher_logits.dtype == torch.float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("window", [(None, None), (2, 1)])
@pytest.mark.parametrize("node_dtype", [torch.float32, torch.bfloat16])
def test_dense_gcn_equals_pyg_layer_under_autocast(window, node_dtype):
    """Under bf16 autocast the dense layer and the PyG edge-list layer agree to bf16 error,
    fed float32 nodes (the readable model's streams) or bf16 nodes (the kernels')."""
    cfg = ModelConfig(hidden=16, heads=2, gcn_layers=3, window_past=window[0], window_future=window[1])
    torch.manual_seed(1)
    gcn = MaskedGCN(cfg, has_text=True, num_speakers=3).eval()
    for conv in gcn.convs:
        torch.nn.init.normal_(conv.gate.weight, std=0.5)
    lengths = torch.tensor([5, 1, 8, 3])
    n = int(lengths.max())
    packing = Packing(torch.arange(n)[None] < lengths[:, None])
    speakers = torch.randint(0, 3, (int(lengths.sum()),))
    nodes = torch.randn(3, int(lengths.sum()), 16).to(node_dtype).requires_grad_()
    runs = {}
    for cls in (DenseMaskedGCN, MaskedGCN):
        gcn.__class__ = cls
        gcn.zero_grad()
        nodes.grad = None
        with _bf16():
            out = gcn(nodes, speakers, lengths, packing)
        (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads = {"nodes": nodes.grad.clone(), "speaker": gcn.speaker.weight.grad.clone(),
                 **{f"conv{k}": c.gate.weight.grad.clone() for k, c in enumerate(gcn.convs)}}
        runs[cls] = (out.detach(), grads)
    _close_in_bf16(runs[DenseMaskedGCN], runs[MaskedGCN], "dense vs PyG under autocast")


def test_banded_layer_equals_dense_layer_in_bf16():
    torch.manual_seed(4)
    lengths = torch.tensor([11, 1, 7, 4])
    n, hidden = int(lengths.max()), 8
    weight = torch.randn(1, 2 * hidden, requires_grad=True)
    x = torch.randn(3, len(lengths), n, hidden).bfloat16().requires_grad_()
    runs = []
    for graph in (padded_graph(lengths, n, 3, 2, 1), padded_graph(lengths, n, 3, 2, 1, chunk=3)):
        with _bf16():
            out = dense_high_frequency(x, weight, graph)
        assert out.dtype == torch.bfloat16
        gx, gw = torch.autograd.grad((out.float() * torch.linspace(-1, 1, hidden)).sum(), (x, weight))
        runs.append((out, {"x": gx, "weight": gw}))
    _close_in_bf16(runs[1], runs[0], "banded vs dense, bf16")


def test_gate_terms_in_bf16_match_a_double_product():
    torch.manual_seed(2)
    x = torch.randn(300, 64, dtype=torch.double)
    w = torch.randn(2, 64, dtype=torch.double)
    xb, wb = x.bfloat16().requires_grad_(), w.bfloat16().requires_grad_()
    got = _GateTerms.apply(xb, wb)
    assert got.dtype == torch.bfloat16
    assert _rel(got, xb.double() @ wb.double().t()) < 0.01
    g = torch.randn(300, 2, dtype=torch.double)
    gx, gw = torch.autograd.grad(got, (xb, wb), g.bfloat16())
    assert _rel(gx, g @ wb.double()) < 0.01 and _rel(gw, g.t() @ xb.double()) < 0.01


# ----------------------------------------------------------------------------- training mode, the same draws
# In training the two paths draw their randomness differently: the readable model through
# torch's dropout (``nn.Dropout``, and ``scaled_dot_product_attention``'s dropout on the
# attention weights), the kernels through :func:`kernels.keep_mask` (random bit lanes). To
# compare them with the randomness on, the readable run records where it draws (the random
# state and the shape before each draw), the masks are rebuilt from those states (torch's CPU
# dropout is ``x * (bernoulli(1 - p) / (1 - p))``, so dropping out a tensor of ones under the
# same state gives its mask exactly), and the kernels' run gets them, in the same order, in
# place of ``keep_mask``'s draws. Nothing in the production path changes; were a mask rebuilt
# wrongly or fed in another layout, the two runs would disagree and the test fail.


def _record_readable_draws(module, monkeypatch):
    """Record, in call order, every dropout draw of the readable ``module`` in training:
    ``(kind, random state, shape, p)``; kind ``"weights"`` for the attention weights
    (b, heads, n, n), ``"rows"`` for an ``nn.Dropout``. Returns the list it fills."""
    draws = []

    def before_dropout(m, args):
        if m.training and m.p > 0:
            draws.append(("rows", torch.get_rng_state(), args[0].shape, m.p))

    for m in module.modules():
        if type(m) is nn.Dropout:
            m.register_forward_pre_hook(before_dropout)
    readable_attend = AttentionLayer.attend

    def attend(self, q, k, v, key_real):
        if self.training and self.attn_dropout > 0:
            draws.append(("weights", torch.get_rng_state(), (*q.shape[:3], k.shape[2]), self.attn_dropout))
        return readable_attend(self, q, k, v, key_real)

    monkeypatch.setattr(AttentionLayer, "attend", attend)
    return draws


def _rebuilt_masks(draws):
    """The readable run's masks: dropout of ones under each recorded random state."""
    masks = []
    with torch.random.fork_rng(devices=[]):
        for kind, state, shape, p in draws:
            torch.set_rng_state(state)
            masks.append((kind, torch.dropout(torch.ones(shape), p, True), p))
    return masks


def _feed_masks(masks, monkeypatch, packing=None):
    """Make the kernels take ``masks`` in order instead of drawing (:func:`kernels.keep_mask`
    is where all of them draw on the CPU): the attention weights' (b, h, n, n) mask becomes
    the kernel's head-major (h b, n, n); a GCN mask of (M N, H) rows becomes (M, N, H), or the
    padded (M, b, n, H) of the banded layout through ``packing``. Returns the queue left."""
    queue = list(masks)

    def keep_mask(shape, p, dtype, device="cpu"):
        assert queue, "the kernels drew more masks than the readable model"
        kind, mask, drawn_p = queue.pop(0)
        assert p == drawn_p, (kind, p, drawn_p)
        if kind == "weights":
            mask = mask.transpose(0, 1)  # (h, b, n, n): heads first, as the kernel's blocks
        elif packing is not None and len(shape) == 4:
            mask = packing.pad(mask.view(shape[0], -1, shape[-1]))
        return mask.reshape(shape).to(dtype)

    monkeypatch.setattr(kernels, "keep_mask", keep_mask)
    return queue


def _math_sdpa():
    """The math backend of ``scaled_dot_product_attention``, whose dropout is torch's CPU
    dropout (a fused backend would draw its own way)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def _assert_runs_close(got, expected, atol, rtol):
    torch.testing.assert_close(got[0], expected[0], atol=atol, rtol=rtol)
    assert got[1].keys() == expected[1].keys()
    for name, grad in expected[1].items():
        torch.testing.assert_close(got[1][name], grad, atol=10 * atol, rtol=10 * rtol, msg=name)


@pytest.mark.parametrize("p", [0.3, 0.5])
@pytest.mark.parametrize("bf16", [False, True])
def test_attention_layer_in_training_equals_the_readable_layer_with_the_same_draws(p, bf16, monkeypatch):
    """A whole attention layer in training (dropout on the attention weights, after the output
    projection, inside and after the feed-forward): the kernel fed the readable layer's four
    masks gives its output and gradients (inputs and every parameter): to float error in fp32,
    to bf16's error under autocast."""
    torch.manual_seed(7)
    layer = AttentionLayer(hidden=32, heads=4, ff_width=48, dropout=p).train()
    lengths = torch.tensor([6, 2, 3, 1])
    packing = Packing(torch.arange(6)[None] < lengths[:, None])
    x = torch.randn(12, 32, requires_grad=True)
    context = torch.randn(12, 32, requires_grad=True)
    weight = torch.linspace(-1, 1, 12 * 32).view(12, 32)

    def run():
        layer.zero_grad()
        with _bf16(bf16):
            out = layer(x, context, packing)
        grads = torch.autograd.grad((out.float() * weight).sum(), (x, context, *layer.parameters()))
        names = ["x", "context", *(n for n, _ in layer.named_parameters())]
        return out.detach().float(), dict(zip(names, grads))

    draws = _record_readable_draws(layer, monkeypatch)
    torch.manual_seed(8)
    with _math_sdpa():
        readable = run()
    assert [d[0] for d in draws] == ["weights", "rows", "rows", "rows"]
    kernels.install(layer)
    assert type(layer) is FastAttentionLayer
    left = _feed_masks(_rebuilt_masks(draws), monkeypatch)
    fast = run()
    assert not left, f"{len(left)} masks of the readable layer were not used"
    layer.eval()
    with torch.no_grad(), _bf16(bf16):
        assert _rel(layer(x, context, packing), readable[0]) > 0.05  # the draws did change the output
    if bf16:
        _close_in_bf16(fast, readable, "attention layer in training, bf16")
    else:
        _assert_runs_close(fast, readable, atol=1e-5, rtol=1e-5)


_GCN_CASES = [
    {"window": (None, None), "num_mod": 3, "p": 0.5, "lengths": [5, 1, 8, 3]},
    {"window": (None, None), "num_mod": 1, "p": 0.3, "lengths": [5, 1, 8, 3]},
    {"window": (2, 1), "num_mod": 3, "p": 0.3, "lengths": [5, 1, 8, 3]},
    {"window": (3, 2), "num_mod": 3, "p": 0.5, "lengths": [150, 40, 97]},  # the banded layout
]


# bf16 for the three-modality cases only: with one modality and p = 0.3 the gates' gradients
# are differences of nearly equal sums, and the readable layer in bf16 is itself 14% (all
# gradients) from its own fp32 result on the same masks, so bf16 tolerances could not tell a
# fault from rounding there; fp32 checks that case to float error.
@pytest.mark.parametrize("case, bf16", [(c, False) for c in _GCN_CASES] +
                         [(c, True) for c in _GCN_CASES if c["num_mod"] == 3])
def test_dense_gcn_in_training_equals_the_pyg_layer_with_the_same_masks(case, bf16, monkeypatch):
    """The masked GCN in training (a feature mask before each of the K layers): the dense
    kernel (the written-out layer, or the banded layout for a short window on long dialogues)
    fed the PyG layer's masks gives its output and its gradients (nodes, gates, speaker
    embedding): to float error in fp32, to bf16's error under autocast."""
    past, future = case["window"]
    cfg = ModelConfig(hidden=8, heads=2, gcn_layers=3, window_past=past, window_future=future,
                      modalities="tav"[:case["num_mod"]], mask_prob=case["p"])
    torch.manual_seed(1)
    gcn = MaskedGCN(cfg, has_text=True, num_speakers=3).train()
    for conv in gcn.convs:  # larger gates than the default init make tanh's sign matter
        torch.nn.init.normal_(conv.gate.weight, std=0.5)
    lengths = torch.tensor(case["lengths"])
    n = int(lengths.max())
    banded = padded_graph(lengths, n, case["num_mod"], past, future).chunk is not None
    assert banded == (n > 100)
    packing = Packing(torch.arange(n)[None] < lengths[:, None])
    speakers = torch.randint(0, 3, (int(lengths.sum()),))
    nodes = torch.randn(case["num_mod"], int(lengths.sum()), 8, requires_grad=True)

    def run():
        gcn.zero_grad()
        with _bf16(bf16):
            out = gcn(nodes, speakers, lengths, packing)
        grads = torch.autograd.grad((out.float() * torch.linspace(-1, 1, out.shape[-1])).sum(),
                                    (nodes, *gcn.parameters()))
        return out.detach().float(), dict(zip(["nodes", *(n for n, _ in gcn.named_parameters())], grads))

    draws = _record_readable_draws(gcn, monkeypatch)
    torch.manual_seed(2)
    readable = run()
    assert len(draws) == cfg.gcn_layers
    kernels.install(gcn)
    assert type(gcn) is DenseMaskedGCN
    left = _feed_masks(_rebuilt_masks(draws), monkeypatch, packing)
    fast = run()
    assert not left, f"{len(left)} masks of the PyG layer were not used"
    with torch.no_grad(), _bf16(bf16):
        assert _rel(gcn.eval()(nodes, speakers, lengths, packing), readable[0]) > 0.05  # the masks matter
    if bf16:
        _close_in_bf16(fast, readable, "GCN in training, bf16")
    else:
        _assert_runs_close(fast, readable, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"modalities": "ta", "dropout": 0.5}, {"use_transformer": False},
                                       {"window_past": 2, "window_future": 1, "mask_prob": 0.3}])
@pytest.mark.parametrize("bf16", [False, True])
def test_the_model_in_training_with_kernels_equals_the_readable_model_with_the_same_draws(overrides, bf16,
                                                                                          monkeypatch):
    """The whole model in training, dropout and the feature mask on: with the readable model's
    draws fed to the kernels (encoders, every attention layer, the GCN, the students' heads),
    the same logits and the same gradients of every parameter: to float error in fp32, to
    bf16's error under autocast."""
    cfg = ModelConfig(**{"hidden": 16, "heads": 2, "gcn_layers": 2, "dropout": 0.3, **overrides})
    torch.manual_seed(0)
    model = SAFSDGLNet(cfg, {m: SIZES[m] for m in cfg.modalities}, 6, 3)
    batch = collate(_dialogues([5, 1, 9, 3]))
    draws = _record_readable_draws(model, monkeypatch)
    torch.manual_seed(3)
    with _math_sdpa():
        readable = _model_run(model, batch, bf16)
    kinds = [d[0] for d in draws]
    layers = sum(isinstance(m, AttentionLayer) for m in model.modules())
    assert kinds.count("weights") == layers and len(kinds) == 2 * len(cfg.modalities) + 4 * layers + \
        (cfg.gcn_layers if cfg.use_gcn else 0)
    kernels.install(model)
    left = _feed_masks(_rebuilt_masks(draws), monkeypatch)
    fast = _model_run(model, batch, bf16)
    assert not left, f"{len(left)} masks of the readable model were not used"
    model.eval()
    with torch.no_grad(), _bf16(bf16):
        assert _rel(model(batch).teacher_logits, readable[0]) > 0.05  # the draws did change the logits
    if bf16:
        _close_in_bf16(fast, readable, "the model in training, bf16")
    else:
        _assert_runs_close(fast, readable, atol=1e-5, rtol=1e-5)
