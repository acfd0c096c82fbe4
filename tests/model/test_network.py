"""The model: shapes, gradients, padding, batching, ablations, the GCN's two implementations."""
import itertools

import numpy as np
import pytest
import torch

from safsd_glnet.config import ModelConfig
from safsd_glnet.data.batching import collate
from safsd_glnet.data.corpus import Dialogue
from safsd_glnet.model.graph import dialogue_graph, symmetric_norm
from safsd_glnet.model import kernels
from safsd_glnet.model.network import SAFSDGLNet

SIZES = {"t": 12, "a": 10, "v": 8}
C, SPEAKERS = 6, 3


def make_dialogues(lengths, seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    return [Dialogue(f"d{i}", rng.integers(0, SPEAKERS, n), rng.integers(0, C, n),
                     {m: rng.normal(size=(n, s)).astype(np.float32) for m, s in sizes.items()})
            for i, n in enumerate(lengths)]


def make_model(seed=0, fast=True, **overrides):
    """A small model; ``fast`` with the speed kernels installed, as the kit trains it."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"hidden": 16, "heads": 2, "dropout": 0.1, "gcn_layers": 2, **overrides})
    sizes = {m: SIZES[m] for m in cfg.modalities}
    model = SAFSDGLNet(cfg, sizes, C, SPEAKERS)
    return kernels.install(model) if fast else model


@pytest.mark.parametrize("overrides", [
    {}, {"modalities": "t"}, {"modalities": "ta"}, {"modalities": "av"},
    {"use_transformer": False}, {"use_gcn": False}, {"use_mask": False},
    {"window_past": 2, "window_future": 1}, {"fast": False}, {"transformer_layers": 2},
])
def test_shapes_and_every_parameter_gets_a_gradient(overrides):
    model = make_model(**overrides).train()
    batch = collate(make_dialogues([5, 1, 7]))
    out = model(batch)
    n_real = 13
    assert out.teacher_logits.shape == (n_real, C)
    assert set(out.student_logits) == set(model.modalities)
    for logits in out.student_logits.values():
        assert logits.shape == (n_real, C)
    loss = out.teacher_logits.logsumexp(-1).sum() + sum(s.logsumexp(-1).sum() for s in out.student_logits.values())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        if "speaker" not in name:  # speaker rows unused in this batch legitimately stay 0
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_teacher_width_follows_ablations():
    assert make_model().teacher.in_features == 3 * 2 * 16
    assert make_model(use_gcn=False).teacher.in_features == 3 * 16
    assert make_model(modalities="ta").teacher.in_features == 2 * 2 * 16


def test_model_refuses_a_modality_the_data_lacks():
    with pytest.raises(ValueError, match="modalities"):
        SAFSDGLNet(ModelConfig(hidden=16, heads=2), {"t": 12}, C, SPEAKERS)


@pytest.mark.parametrize("fast", [True, False])
def test_padding_does_not_change_real_outputs(fast):
    model = make_model(fast=fast).eval()
    short, long_ = make_dialogues([4, 11], seed=3)
    alone = model(collate([short])).teacher_logits
    padded = model(collate([short, long_])).teacher_logits[:4]  # short comes first, padded to 11
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_batch_equals_dialogues_one_by_one(fast):
    model = make_model(fast=fast).eval()
    dialogues = make_dialogues([6, 2, 9, 1], seed=4)
    batched = model(collate(dialogues))
    singles = [model(collate([d])) for d in dialogues]
    torch.testing.assert_close(batched.teacher_logits, torch.cat([s.teacher_logits for s in singles]),
                               atol=1e-5, rtol=1e-5)
    for m in model.modalities:
        torch.testing.assert_close(batched.student_logits[m], torch.cat([s.student_logits[m] for s in singles]),
                                   atol=1e-5, rtol=1e-5)


def test_feature_mask_is_training_only():
    model = make_model(mask_prob=0.5, dropout=0.0)
    batch = collate(make_dialogues([5, 3]))
    model.eval()
    torch.testing.assert_close(model(batch).teacher_logits, model(batch).teacher_logits)
    model.train()
    assert not torch.allclose(model(batch).teacher_logits, model(batch).teacher_logits)
    # With the mask switched off and no dropout, training mode is deterministic again.
    model = make_model(use_mask=False, dropout=0.0).train()
    torch.testing.assert_close(model(batch).teacher_logits, model(batch).teacher_logits)


# ----------------------------------------------------------------------------- graph


def slow_reference_edges(lengths, num_mod, past=None, future=None):
    """Edge set built with plain loops, straight from the definition in SPEC.md."""
    n_utt = sum(lengths)
    edges, start = set(), 0
    for length in lengths:
        for k in range(num_mod):
            for i in range(length):
                for j in range(length):
                    if i == j or (past is not None and j < i - past) or (future is not None and j > i + future):
                        continue
                    edges.add((k * n_utt + start + j, k * n_utt + start + i))  # source j -> target i
        for i in range(length):
            for k_src, k_tgt in itertools.permutations(range(num_mod), 2):
                edges.add((k_src * n_utt + start + i, k_tgt * n_utt + start + i))
        start += length
    return edges


@pytest.mark.parametrize("lengths", [[3], [5, 1, 4], [1, 1], [7, 2, 6, 3]])
@pytest.mark.parametrize("num_mod", [1, 2, 3])
@pytest.mark.parametrize("window", [(None, None), (1, 0), (2, 3), (0, 0)])
def test_graph_edges_equal_slow_reference(lengths, num_mod, window):
    edge_index = dialogue_graph(torch.tensor(lengths), num_mod, *window)
    got = [tuple(e) for e in edge_index.t().tolist()]
    assert len(got) == len(set(got)), "duplicate edges"
    assert set(got) == slow_reference_edges(lengths, num_mod, *window)


def test_symmetric_norm_matches_degrees():
    edges = dialogue_graph(torch.tensor([3, 2]), 2)
    norm = symmetric_norm(edges, 10)
    # utterance in a 3-utterance dialogue: 2 intra + 1 inter neighbours; in a 2-utterance one: 1 + 1.
    deg = {0: 3, 1: 3, 2: 3, 3: 2, 4: 2}
    for (j, i), w in zip(edges.t().tolist(), norm.tolist()):
        expected = 1 / np.sqrt(deg[i % 5] * deg[j % 5])
        assert w == pytest.approx(expected, rel=1e-6)


def test_gcn_layer_on_a_hand_worked_graph():
    """One layer on 2 utterances x 2 modalities, the convention written out by hand:
    x_i is the target, the gate reads [x_i || x_j], norm_ij = 1 / sqrt(d_i d_j).

    Nodes (node k N + u): t0 = 0, t1 = 1, a0 = 2, a1 = 3. Edges: t0 <-> t1, a0 <-> a1 (intra-modal)
    and t0 <-> a0, t1 <-> a1 (inter-modal); every node has in-degree 2, so every norm is 1/2.
    """
    import math

    from safsd_glnet.model.kernels import dense_high_frequency, padded_graph
    from safsd_glnet.model.network import HighFrequencyConv

    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 3.0]])  # t0, t1, a0, a1 (H = 2)
    a, c = [0.5, -1.0], [2.0, 0.25]  # w = [a; c]: a reads the target, c the source
    conv = HighFrequencyConv(2)
    with torch.no_grad():
        conv.gate.weight.copy_(torch.tensor([a + c]))

    def gate(i, j):  # tanh(a . x_i + c . x_j)
        return math.tanh(sum(ak * xk for ak, xk in zip(a, x[i].tolist())) +
                         sum(ck * xk for ck, xk in zip(c, x[j].tolist())))

    neighbours = {0: (1, 2), 1: (0, 3), 2: (3, 0), 3: (2, 1)}
    want = torch.stack([sum(0.5 * gate(i, j) * x[j] for j in neighbours[i]) for i in range(4)])
    edges = dialogue_graph(torch.tensor([2]), 2)
    norm = symmetric_norm(edges, 4)
    torch.testing.assert_close(norm, torch.full_like(norm, 0.5))
    torch.testing.assert_close(conv(x, edges, norm), want)
    # The dense kernel: the same numbers from the padded (M, b, n, H) layout.
    dense = dense_high_frequency(x.view(2, 1, 2, 2), conv.gate.weight, padded_graph(torch.tensor([2]), 2, 2))
    torch.testing.assert_close(dense.view(4, 2), want)
    # Written out for t0: neighbours t1 (2 * tanh(0.5 + 0.5)) and a0 (tanh(0.5 + 2.25)) at norm 1/2.
    t0 = 0.5 * math.tanh(1.0) * torch.tensor([0.0, 2.0]) + 0.5 * math.tanh(2.75) * torch.tensor([1.0, 1.0])
    torch.testing.assert_close(want[0], t0)


def _outputs(model, dialogues):
    with torch.no_grad():
        return model.eval()(collate(dialogues))


def test_cross_attention_reads_the_other_modalities():
    """The text student reads F'_t. With the hybrid attention, F'_t depends on the audio stream
    through the cross-attention block; without it, audio cannot reach the text student."""
    dialogues = make_dialogues([6])
    changed = [Dialogue(d.id, d.speakers, d.labels, {**d.features, "a": d.features["a"] + 3.0}) for d in dialogues]
    for use_transformer, moves in ((True, True), (False, False)):
        model = make_model(use_gcn=False, use_transformer=use_transformer)
        before = _outputs(model, dialogues).student_logits["t"]
        after = _outputs(model, changed).student_logits["t"]
        assert (not torch.allclose(before, after, atol=1e-5)) == moves, use_transformer
    # And the audio student, reading F'_a, moves in both cases.
    model = make_model(use_gcn=False, use_transformer=False)
    assert not torch.allclose(_outputs(model, dialogues).student_logits["a"],
                              _outputs(model, changed).student_logits["a"])


def test_speaker_and_position_embeddings_reach_the_output(monkeypatch):
    """Two utterances with identical features: only the position encoding and the speakers can
    tell them apart, so the teacher's logits differ between them exactly when one of those does."""
    from safsd_glnet.model import network as model_module

    feats = {m: np.tile(np.random.default_rng(1).normal(size=(1, s)).astype(np.float32), (2, 1))
             for m, s in SIZES.items()}
    same = [Dialogue("d", np.array([0, 0]), np.array([0, 1]), feats)]
    other = [Dialogue("d", np.array([0, 1]), np.array([0, 1]), feats)]
    model = make_model()
    logits = _outputs(model, same).teacher_logits
    assert not torch.allclose(logits[0], logits[1], atol=1e-5)  # positions differ
    zeros = lambda length, hidden, device=None: torch.zeros(length, hidden, device=device)  # noqa: E731
    monkeypatch.setattr(model_module, "sinusoidal_positions", zeros)
    logits = _outputs(model, same).teacher_logits
    torch.testing.assert_close(logits[0], logits[1])  # nothing else tells the two apart
    logits = _outputs(model, other).teacher_logits
    assert not torch.allclose(logits[0], logits[1], atol=1e-5)  # the speaker embedding does
