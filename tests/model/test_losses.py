"""Tests of safsd_glnet.model.losses against slow per-sample loops and hand-worked numbers."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from safsd_glnet.config import LossConfig
from safsd_glnet.model.losses import (
    IEMOCAP_CLASSES, MELD_CLASSES, NRC_VAD, PRIOR_IEMOCAP, REFERENCE_ALPHA_IEMOCAP, LossComputer,
    class_feature_sums, class_frequency_weights, distillation_kl, focal_loss, prototype_similarity,
    reference_alpha, saf_class_weights, saf_loss, saf_target, similar_shares, similarity_matrix, total_loss,
    weighted_ce,
)


def _random_case(n=7, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, c, (n,), generator=g)
    alpha = torch.rand(c, generator=g, dtype=torch.float64) + 0.1
    sim = torch.rand(c, c, generator=g, dtype=torch.float64)  # deliberately asymmetric
    sim.fill_diagonal_(1.0)
    return logits, labels, alpha, sim


def _slow_saf(logits, labels, sim, alpha, gamma, mode, lam, eps):
    """SPEC.md's amended SAF, one sample and one class at a time on 0-d tensors (so autograd can
    differentiate it), written from the formulas independently of the vectorised code."""
    out = []
    c_count = logits.shape[1]
    for i in range(logits.shape[0]):
        y = int(labels[i])
        row = logits[i]
        z = torch.logsumexp(row, 0)
        p = [torch.exp(row[c] - z) for c in range(c_count)]

        def focal(c):
            return (1 - p[c]) ** gamma * -(row[c] - z)

        if mode == "reference":
            out.append(sum(sim[y, c] * alpha[c] * focal(c) for c in range(c_count)))
            continue
        off = [float(sim[y, c]) if c != y else 0.0 for c in range(c_count)]
        total = sum(off)
        shat = [v / total if total > 0 else 0.0 for v in off]
        if mode == "soft":
            q = [eps * shat[c] for c in range(c_count)]
            q[y] = 1 - eps if total > 0 else 1.0
            out.append(alpha[y] * sum(q[c] * focal(c) for c in range(c_count)))
        else:
            mass = sum(shat[c] * p[c] for c in range(c_count) if c != y)
            out.append(alpha[y] * focal(y) * (1 + lam * mass))
    return torch.stack(out)


# ---------------------------------------------------------------- SAF / focal


@pytest.mark.parametrize("mode", ["soft", "penalty"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_saf_with_identity_is_class_weighted_focal_loss(mode, gamma):
    logits, labels, alpha, _ = _random_case(seed=1)
    eye = torch.eye(logits.shape[1], dtype=torch.float64)
    saf = saf_loss(logits, labels, eye, alpha, gamma=gamma, mode=mode, eps=0.3, lam=2.0, reduction="none")
    torch.testing.assert_close(saf, focal_loss(logits, labels, alpha, gamma=gamma, reduction="none"))


@pytest.mark.parametrize("mode", ["soft", "penalty"])
def test_saf_identity_gamma0_beta0_is_cross_entropy(mode):
    logits, labels, _, _ = _random_case(seed=2)
    counts = np.bincount(labels.numpy(), minlength=logits.shape[1]) + 3
    weights = saf_class_weights(counts, beta=0.0)
    assert torch.equal(weights, torch.ones(logits.shape[1]))
    eye = torch.eye(logits.shape[1], dtype=torch.float64)
    torch.testing.assert_close(saf_loss(logits, labels, eye, weights, gamma=0.0, mode=mode),
                               F.cross_entropy(logits, labels))
    torch.testing.assert_close(focal_loss(logits, labels, None, gamma=0.0), F.cross_entropy(logits, labels))


@pytest.mark.parametrize("mode", ["soft", "penalty", "reference"])
@pytest.mark.parametrize("gamma", [0.0, 1.5, 2.0])
def test_saf_matches_slow_loop_forward_and_gradient(mode, gamma):
    logits, labels, alpha, sim = _random_case(n=9, c=6, seed=3)
    sim[2, [0, 1, 3, 4, 5]] = 0.0  # one row with no off-diagonal mass
    labels[0] = 2
    slow_logits = logits.clone().requires_grad_()
    fast_logits = logits.clone().requires_grad_()
    want = _slow_saf(slow_logits, labels, sim, alpha, gamma, mode, 0.7, 0.2)
    got = saf_loss(fast_logits, labels, sim, alpha, gamma=gamma, mode=mode, lam=0.7, eps=0.2, reduction="none")
    torch.testing.assert_close(got, want)
    want.mean().backward()
    got.mean().backward()
    torch.testing.assert_close(fast_logits.grad, slow_logits.grad)
    for reduction, reduce in (("sum", torch.sum), ("mean", torch.mean)):
        torch.testing.assert_close(saf_loss(logits, labels, sim, alpha, gamma=gamma, mode=mode, lam=0.7, eps=0.2,
                                            reduction=reduction), reduce(want.detach()))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(4))
def test_soft_saf_minimiser_favours_the_true_class(gamma, seed):
    """For random S, class counts and eps < 0.5, the distribution that minimises a sample's soft
    SAF (found numerically, by gradient descent on free logits) has its true class on top."""
    g = torch.Generator().manual_seed(100 + seed)
    c = 6
    sim = torch.rand(c, c, generator=g, dtype=torch.float64) ** 0.5
    sim.fill_diagonal_(1.0)
    counts = torch.randint(5, 500, (c,), generator=g).numpy()
    weights = saf_class_weights(counts, beta=1.0).double()
    eps = 0.45 * float(torch.rand(1, generator=g))
    labels = torch.arange(c)
    logits = torch.zeros(c, c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logits], lr=0.5, max_iter=400, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = saf_loss(logits, labels, sim, weights, gamma=gamma, mode="soft", eps=eps, reduction="sum")
        loss.backward()
        return loss

    opt.step(closure)
    p = torch.softmax(logits.detach(), dim=1)
    assert torch.equal(p.argmax(dim=1), labels), (eps, p)
    if gamma == 0.0:  # at gamma 0 the minimiser is the target itself (Gibbs' inequality)
        np.testing.assert_allclose(p.numpy(), saf_target(sim, "soft", eps).numpy(), atol=1e-5)


# Hand-worked two-class examples: logits = log p, so softmax(logits) = p exactly.
# p = (0.8, 0.2), y = 0, gamma = 2; S = [[1, 0.5], [0.5, 1]]; class weights (0.9, 1.4);
# with two classes Shat_0 = (0, 1): the whole similar share goes to class 1.
HAND_LOGITS = [[math.log(0.8), math.log(0.2)]]
HAND_S = [[1.0, 0.5], [0.5, 1.0]]
HAND_W = [0.9, 1.4]


def _hand(mode, **kw):
    logits = torch.tensor(HAND_LOGITS, dtype=torch.float64)
    return saf_loss(logits, torch.tensor([0]), torch.tensor(HAND_S, dtype=torch.float64),
                    torch.tensor(HAND_W, dtype=torch.float64), gamma=2.0, mode=mode, **kw).item()


def test_saf_soft_hand_worked():
    # eps = 0.1: q = (0.9, 0.1)
    #   c=0: 0.9 * 0.2^2 * ln(1/0.8) = 0.9 * 0.04 * 0.2231436 = 0.0080332
    #   c=1: 0.1 * 0.8^2 * ln(1/0.2) = 0.1 * 0.64 * 1.6094379 = 0.1030040
    #   times abar_0 = 0.9: 0.9 * 0.1110372 = 0.0999335
    want = 0.9 * (0.9 * 0.04 * math.log(1 / 0.8) + 0.1 * 0.64 * math.log(5))
    assert want == pytest.approx(0.0999335, abs=1e-6)
    assert _hand("soft", eps=0.1) == pytest.approx(want, rel=1e-12)


def test_saf_penalty_hand_worked():
    # lambda = 1.5: focal_y = 0.04 * ln(1.25) = 0.0089257; similar mass = Shat_0[1] * p_1 = 0.2
    #   factor 1 + 1.5 * 0.2 = 1.3; times abar_0 = 0.9: 0.9 * 0.0089257 * 1.3 = 0.0104431
    want = 0.9 * 0.04 * math.log(1.25) * 1.3
    assert want == pytest.approx(0.0104431, abs=1e-6)
    assert _hand("penalty", lam=1.5) == pytest.approx(want, rel=1e-12)


def test_saf_reference_hand_worked():
    # the reference formula reads S unnormalised and the weights inside the sum:
    #   c=0: 1.0 * 0.9 * 0.04 * ln 1.25 = 0.0080332
    #   c=1: 0.5 * 1.4 * 0.64 * ln 5    = 0.7210282
    #   SAF = 0.7290614 (the similar class' term dominates the true one's: the first SPEC's flaw)
    want = 0.9 * 0.04 * math.log(1.25) + 0.5 * 1.4 * 0.64 * math.log(5)
    assert want == pytest.approx(0.7290614, abs=1e-6)
    assert _hand("reference") == pytest.approx(want, rel=1e-12)


def test_penalty_exceeds_focal_when_mass_sits_on_similar_class():
    sim = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    alpha = torch.ones(3)
    y = torch.tensor([0])
    on_similar = torch.tensor([[0.2, 0.7, 0.1]]).log()  # mass on class 1, similar to the true 0
    on_other = torch.tensor([[0.2, 0.1, 0.7]]).log()  # same p_y, mass on dissimilar class 2
    fl = focal_loss(on_similar, y, alpha, 2.0)
    pen_similar = saf_loss(on_similar, y, sim, alpha, mode="penalty", lam=1.0)
    pen_other = saf_loss(on_other, y, sim, alpha, mode="penalty", lam=1.0)
    assert pen_similar > fl
    assert pen_similar > pen_other
    # with p_y equal the focal part is equal; Shat_0 = (0, 1, 0), so the factors are
    # 1 + 1 * 0.7 = 1.7 and 1 + 1 * 0.1 = 1.1
    assert (pen_similar / pen_other).item() == pytest.approx(1.7 / 1.1, rel=1e-5)


def test_similar_shares_normalise_off_diagonal_rows():
    sim = torch.tensor([[1.0, 0.3, 0.1], [0.0, 1.0, 0.0], [0.5, 0.5, 1.0]], dtype=torch.float64)
    shares, has_mass = similar_shares(sim)
    torch.testing.assert_close(shares, torch.tensor([[0.0, 0.75, 0.25], [0.0, 0.0, 0.0], [0.5, 0.5, 0.0]],
                                                    dtype=torch.float64))
    assert has_mass.tolist() == [True, False, True]


@pytest.mark.parametrize("gamma", [0.3, 2.0])
def test_gradients_finite_with_extreme_logits(gamma):
    logits = torch.tensor([[50.0, -50.0, 0.0], [-50.0, 50.0, -50.0], [50.0, -50.0, 50.0]], requires_grad=True)
    labels = torch.tensor([0, 2, 1])  # confident right, confident wrong, tie of wrong ones
    sim = similarity_matrix("vad", ["happy", "sad", "angry"])
    alpha = torch.tensor([0.2, 0.3, 0.5])
    teacher = (-logits.detach()).requires_grad_()
    terms = [saf_loss(logits, labels, sim, alpha, gamma=gamma, mode=mode) for mode in ("soft", "penalty", "reference")]
    terms += [focal_loss(logits, labels, alpha, gamma), weighted_ce(logits, labels, alpha),
              distillation_kl(logits, teacher, 2.0)]
    for t in terms:
        assert torch.isfinite(t)
        logits.grad = None
        t.backward(retain_graph=True)
        assert torch.isfinite(logits.grad).all()


def test_empty_batch_gives_zero_with_gradient_path():
    logits = torch.zeros(0, 4, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.long)
    sim, alpha = torch.eye(4), torch.ones(4)
    for loss in (*(saf_loss(logits, labels, sim, alpha, mode=m) for m in ("soft", "penalty", "reference")),
                 saf_loss(logits, labels, sim, alpha, reduction="sum"), focal_loss(logits, labels),
                 weighted_ce(logits, labels), distillation_kl(logits, logits)):
        assert loss.item() == 0.0 and loss.requires_grad and loss.grad_fn is not None
        loss.backward()
        assert logits.grad is not None and logits.grad.shape == (0, 4)
    assert saf_loss(logits, labels, sim, alpha, reduction="none").shape == (0,)


def test_saf_invalid_arguments():
    logits, labels, alpha, sim = _random_case(n=3, c=4)
    with pytest.raises(ValueError, match="saf_loss.*mode"):
        saf_loss(logits, labels, sim, alpha, mode="hard")
    with pytest.raises(ValueError, match="saf_loss.*similarity"):
        saf_loss(logits, labels, sim[:3, :3], alpha)
    with pytest.raises(ValueError, match="saf_loss.*labels must lie"):
        saf_loss(logits, torch.tensor([0, -1, 2]), sim, alpha)
    with pytest.raises(ValueError, match="saf_loss.*gamma"):
        saf_loss(logits, labels, sim, alpha, gamma=-1.0)
    with pytest.raises(ValueError, match="saf_loss.*reduction"):
        saf_loss(logits, labels, sim, alpha, reduction="avg")
    with pytest.raises(ValueError, match="saf_loss.*alpha"):
        saf_loss(logits, labels, sim, alpha[:2])
    for eps in (0.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"saf_loss: eps=.* must lie in \[0, 0.5\)"):
            saf_loss(logits, labels, sim, alpha, eps=eps)
    with pytest.raises(ValueError, match="focal_loss.*rows"):
        focal_loss(logits, labels[:2])


# ---------------------------------------------------------------- CE and KL


def test_weighted_ce_matches_formula():
    logits, labels, weights, _ = _random_case(n=8, c=4, seed=5)
    num = den = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        lse = math.log(sum(math.exp(v) for v in row))
        num += weights[y].item() * (lse - row[y])
        den += weights[y].item()
    assert weighted_ce(logits, labels, weights).item() == pytest.approx(num / den, rel=1e-9)
    assert weighted_ce(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-12)


def _slow_kl(student, teacher, t):
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        q = [math.exp(v / t) for v in t_row]
        q = [v / sum(q) for v in q]
        p = [math.exp(v / t) for v in s_row]
        p = [v / sum(p) for v in p]
        total += sum(qc * math.log(qc / pc) for qc, pc in zip(q, p))
    return total / len(student)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kl_matches_slow_loop_with_t_squared(temperature):
    student, _, _, _ = _random_case(n=6, c=5, seed=6)
    teacher, _, _, _ = _random_case(n=6, c=5, seed=7)
    got = distillation_kl(student, teacher, temperature).item()
    assert got == pytest.approx(temperature ** 2 * _slow_kl(student, teacher, temperature), rel=1e-9)
    assert got > 0


def test_kl_zero_when_equal():
    logits, _, _, _ = _random_case(seed=8)
    assert distillation_kl(logits, logits.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-12)
    # shifting all logits of a row by a constant leaves the distribution unchanged
    assert distillation_kl(logits, logits + 5.0).item() == pytest.approx(0.0, abs=1e-10)


def test_detach_teacher_controls_teacher_gradient():
    base, _, _, _ = _random_case(n=5, c=4, seed=9)
    for detach, expect_grad in ((True, False), (False, True)):
        student = base.clone().requires_grad_()
        teacher = (base * 0.5 + 1.0).detach().requires_grad_()
        distillation_kl(student, teacher, 2.0, detach_teacher=detach).backward()
        assert student.grad is not None and student.grad.abs().sum() > 0
        got_grad = teacher.grad is not None and teacher.grad.abs().sum().item() > 0
        assert got_grad == expect_grad


# ---------------------------------------------------------------- similarity


def test_every_source_has_unit_diagonal():
    feats = torch.randn(30, 8)
    labels = torch.arange(30) % 6
    for source in ("identity", "prior", "vad", "prototype"):
        s = similarity_matrix(source, IEMOCAP_CLASSES, features=feats, labels=labels)
        assert s.shape == (6, 6) and s.dtype == torch.float32
        assert torch.equal(torch.diagonal(s), torch.ones(6))
    assert torch.equal(similarity_matrix("identity", MELD_CLASSES), torch.eye(7))


def test_prior_follows_class_names_order():
    s = similarity_matrix("prior", IEMOCAP_CLASSES)
    assert s.tolist() == [[pytest.approx(v) for v in row] for row in PRIOR_IEMOCAP]
    # not symmetric: S[happy, neutral] = 0.4, S[neutral, happy] = 0.2
    assert s[0, 2].item() == pytest.approx(0.4) and s[2, 0].item() == pytest.approx(0.2)
    names = ["Frustrated", "neutral", "happy", "excited", "sad", "angry"]
    p = similarity_matrix("prior", names)
    # frustrated row of the published matrix: (.3, .8, .3, .5, .4, 1) over happy..frustrated
    assert p[0].tolist() == pytest.approx([1.0, 0.3, 0.3, 0.4, 0.8, 0.5])
    assert p[1, 2].item() == pytest.approx(0.2)  # neutral -> happy
    assert p[2, 1].item() == pytest.approx(0.4)  # happy -> neutral
    assert p[4, 0].item() == pytest.approx(0.6)  # sad -> frustrated


def test_prior_rejects_meld():
    with pytest.raises(ValueError, match="similarity_matrix.*only for the IEMOCAP.*vad"):
        similarity_matrix("prior", MELD_CLASSES)


def test_vad_values():
    s = similarity_matrix("vad", ["happy", "sad", "EXCITED"], sigma=0.5)
    # happy (1, .735, .772) vs sad (.225, .333, .149):
    #   ||d||^2 = .775^2 + .402^2 + .623^2 = .600625 + .161604 + .388129 = 1.150358
    #   S = exp(-1.150358 / .25) = exp(-4.601432) = .0100375
    # happy vs excited (.908, .931, .709):
    #   ||d||^2 = .092^2 + .196^2 + .063^2 = .008464 + .038416 + .003969 = .050849
    #   S = exp(-.203396) = .815955
    assert s[0, 1].item() == pytest.approx(math.exp(-1.150358 / 0.25), rel=1e-5)
    assert s[0, 2].item() == pytest.approx(math.exp(-0.050849 / 0.25), rel=1e-5)
    assert s[0, 2] > s[0, 1]
    assert torch.allclose(s, s.T)
    wide = similarity_matrix("vad", ["happy", "sad"], sigma=2.0)
    assert wide[0, 1].item() == pytest.approx(math.exp(-1.150358 / 4.0), rel=1e-5)
    # every MELD name is in the lexicon
    assert similarity_matrix("vad", MELD_CLASSES).shape == (7, 7)
    assert len(NRC_VAD) == 17


def test_similarity_errors():
    with pytest.raises(ValueError, match="similarity_matrix.*'bored'"):
        similarity_matrix("vad", ["happy", "bored"])
    with pytest.raises(ValueError, match="similarity_matrix.*source"):
        similarity_matrix("learned", IEMOCAP_CLASSES)
    with pytest.raises(ValueError, match="similarity_matrix.*sigma"):
        similarity_matrix("vad", IEMOCAP_CLASSES, sigma=0.0)
    with pytest.raises(ValueError, match="similarity_matrix.*prototype.*features"):
        similarity_matrix("prototype", IEMOCAP_CLASSES)
    with pytest.raises(ValueError, match="similarity_matrix.*repeated"):
        similarity_matrix("identity", ["happy", "happy"])


def test_prototype_equals_direct_cosine():
    """S is the cosine of class means minus the overall mean, as a slow loop computes it; a large
    shared offset (as ReLU / LayerNorm features have) changes nothing."""
    rng = np.random.default_rng(0)
    c = 5
    feats = rng.normal(size=(40, 6)) + 25.0  # a common component far larger than the class signal
    labels = rng.integers(0, 4, size=40)  # class 4 has no samples
    labels[:4] = [0, 1, 2, 3]
    want = np.eye(c)
    overall = feats.mean(axis=0)  # count-weighted: the mean of all samples
    means = [feats[labels == k].mean(axis=0) - overall for k in range(4)]
    for a in range(4):
        for b in range(4):
            if a != b:
                cos = float(means[a] @ means[b] / (np.linalg.norm(means[a]) * np.linalg.norm(means[b])))
                want[a, b] = min(max(cos, 0.0), 1.0)
    got = similarity_matrix("prototype", ["a", "b", "c", "d", "e"], features=torch.tensor(feats),
                            labels=torch.tensor(labels))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert (want[:4, :4] == 0).sum() > 0  # some cosine was negative and got clamped
    # accumulating over chunks (as a trainer does over an epoch) gives the same matrix
    sums = counts = None
    for chunk in np.array_split(np.arange(40), 3):
        sums, counts = class_feature_sums(torch.tensor(feats[chunk]), torch.tensor(labels[chunk]), c, sums, counts)
    np.testing.assert_allclose(prototype_similarity(sums, counts).numpy(), want, atol=1e-6)
    assert counts.tolist() == [float((labels == k).sum()) for k in range(c)]
    # Uncentred, the offset would put every off-diagonal near 1: the degenerate S this avoids.
    raw = [feats[labels == k].mean(axis=0) for k in range(4)]
    assert min(float(raw[a] @ raw[b] / np.linalg.norm(raw[a]) / np.linalg.norm(raw[b]))
               for a in range(4) for b in range(4)) > 0.99


# ---------------------------------------------------------------- class weights


def test_class_frequency_weights():
    # counts 10, 30, 60 -> f = .1, .3, .6 -> 1/f = 10, 3.333, 1.667 (mean 5) -> w = 2, .6667, .3333
    w = class_frequency_weights([10, 30, 60], "inverse")
    assert w.tolist() == pytest.approx([2.0, 2 / 3, 1 / 3], rel=1e-6)
    assert class_frequency_weights([10, 30, 60], "none").tolist() == [1.0, 1.0, 1.0]
    # a zero count takes the largest present weight: 1/f = 5, 5 (for the absent), 1.25 -> mean 3.75
    z = class_frequency_weights([20, 0, 80], "inverse")
    assert z.tolist() == pytest.approx([5 / 3.75, 5 / 3.75, 1.25 / 3.75], rel=1e-6)
    with pytest.raises(ValueError, match="class_frequency_weights.*kind"):
        class_frequency_weights([1, 2], "sqrt")
    with pytest.raises(ValueError, match="class_frequency_weights.*all zero"):
        class_frequency_weights([0, 0], "inverse")
    with pytest.raises(ValueError, match="class_frequency_weights.*>= 0"):
        class_frequency_weights([3, -1], "inverse")


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_saf_class_weights_have_mean_one_over_the_training_labels(beta):
    counts = np.array([10, 30, 60, 0])
    w = saf_class_weights(counts, beta)
    # abar_c = f_c^-beta / sum_k f_k^(1 - beta), f = (0.1, 0.3, 0.6, 0)
    f = counts / counts.sum()
    raw = [fc ** -beta if fc > 0 else None for fc in f]
    raw = [r if r is not None else max(x for x in raw if x is not None) for r in raw]
    norm = sum(fc * r for fc, r in zip(f, raw))
    assert w.tolist() == pytest.approx([r / norm for r in raw], rel=1e-6)
    labels = np.repeat(np.arange(4), counts)
    assert w[labels].double().mean().item() == pytest.approx(1.0, rel=1e-6)


def test_saf_class_weights_by_hand():
    # f = (0.1, 0.3, 0.6); beta = 1: abar = 1 / (C f) = (10/3, 10/9, 5/9); beta = 0: ones
    assert saf_class_weights([10, 30, 60], 1.0).tolist() == pytest.approx([10 / 3, 10 / 9, 5 / 9], rel=1e-6)
    assert saf_class_weights([10, 30, 60], 0.0).tolist() == [1.0, 1.0, 1.0]
    for beta in (-0.5, float("inf"), True):
        with pytest.raises(ValueError, match="saf_class_weights: beta"):
            saf_class_weights([10, 30], beta)
    with pytest.raises(ValueError, match="saf_class_weights: counts are all zero"):
        saf_class_weights([0, 0], 0.5)


def test_reference_alpha_follows_class_names_and_refuses_other_corpora():
    assert reference_alpha(IEMOCAP_CLASSES).tolist() == pytest.approx(list(REFERENCE_ALPHA_IEMOCAP))
    shuffled = reference_alpha(["sad", "happy", "frustrated", "neutral", "angry", "excited"])
    assert shuffled.tolist() == pytest.approx([0.1707, 0.1807, 0.1506, 0.1585, 0.1667, 0.1725])
    with pytest.raises(ValueError, match="reference_alpha.*IEMOCAP.*'soft' or 'penalty'"):
        reference_alpha(MELD_CLASSES)


# ---------------------------------------------------------------- total loss


def _outputs(n=6, c=4, seed=10):
    g = torch.Generator().manual_seed(seed)
    mk = lambda: torch.randn(n, c, generator=g, dtype=torch.float64).requires_grad_()
    return SimpleNamespace(teacher_logits=mk(), student_logits={"t": mk(), "a": mk(), "v": mk()}), \
        torch.randint(0, c, (n,), generator=g)


def test_total_loss_combines_terms_with_weights():
    out, y = _outputs()
    w = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    sim = similarity_matrix("vad", ["happy", "sad", "angry", "neutral"]).double()
    cfg = LossConfig(teacher_weight=0.5, student_weight=2.0, distill_weight=3.0, saf_mode="penalty",
                     gamma=1.5, saf_lambda=0.8, temperature=2.0)
    total, terms = total_loss(out, y, cfg, w, alpha, sim)
    assert set(terms) == {"teacher_ce", "student_t", "student_a", "student_v", "kl_t", "kl_a", "kl_v", "total"}
    t = out.teacher_logits
    teacher_ce = weighted_ce(t, y, w)
    students = [saf_loss(out.student_logits[m], y, sim, alpha, 1.5, "penalty", 0.8) for m in "tav"]
    kls = [distillation_kl(out.student_logits[m], t, 2.0) for m in "tav"]
    want = 0.5 * teacher_ce + 2.0 * sum(students) + 3.0 * sum(kls)
    assert total.item() == pytest.approx(want.item(), rel=1e-12)
    assert terms["teacher_ce"].item() == pytest.approx(teacher_ce.item())
    assert terms["student_a"].item() == pytest.approx(students[1].item())
    assert terms["kl_v"].item() == pytest.approx(kls[2].item())
    assert terms["total"].item() == pytest.approx(total.item()) and not terms["total"].requires_grad
    assert total.requires_grad
    total.backward()
    assert all(out.student_logits[m].grad is not None for m in "tav")


def test_total_loss_switches():
    out, y = _outputs(seed=11)
    w = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    # use_saf False: student terms are the teacher's weighted CE; alpha/similarity not needed
    cfg = LossConfig(use_saf=False)
    total, terms = total_loss(out, y, cfg, w)
    for m in "tav":
        assert terms[f"student_{m}"].item() == pytest.approx(weighted_ce(out.student_logits[m], y, w).item())
    # use_distillation False: no KL keys and total = g1 CE + g2 sum(students)
    cfg = LossConfig(use_saf=False, use_distillation=False, teacher_weight=2.0, student_weight=0.25)
    total, terms = total_loss(out, y, cfg, w)
    assert not any(k.startswith("kl_") for k in terms)
    want = 2.0 * terms["teacher_ce"] + 0.25 * sum(terms[f"student_{m}"] for m in "tav")
    assert total.item() == pytest.approx(want.item(), rel=1e-12)
    # g3 = 0 keeps KL in the report but not in the total
    cfg = LossConfig(use_saf=False, distill_weight=0.0)
    total, terms = total_loss(out, y, cfg, w)
    assert "kl_t" in terms and terms["kl_t"] > 0
    assert total.item() == pytest.approx((terms["teacher_ce"] + sum(terms[f"student_{m}"] for m in "tav")).item())
    with pytest.raises(ValueError, match="total_loss.*alpha and similarity"):
        total_loss(out, y, LossConfig(), w)
    with pytest.raises(ValueError, match="total_loss.*teacher_logits"):
        total_loss(SimpleNamespace(student_logits={}), y, LossConfig(use_saf=False))


def test_loss_computer_from_counts_and_prototypes():
    counts = [10, 20, 30, 40, 50, 60]
    lc = LossComputer.from_counts(LossConfig(similarity="prototype", saf_mode="reference"), counts, IEMOCAP_CLASSES)
    assert torch.equal(lc.similarity, torch.eye(6))
    assert lc.alpha.tolist() == pytest.approx(list(REFERENCE_ALPHA_IEMOCAP))
    soft = LossComputer.from_counts(LossConfig(similarity="prototype", saf_beta=1.0), counts, IEMOCAP_CLASSES)
    torch.testing.assert_close(soft.alpha, saf_class_weights(counts, 1.0))
    feats = torch.randn(24, 5)
    labels = torch.arange(24) % 6
    sums, counts = class_feature_sums(feats, labels, 6)
    s = lc.set_prototypes(sums, counts)
    torch.testing.assert_close(s, similarity_matrix("prototype", IEMOCAP_CLASSES, features=feats, labels=labels))
    out = SimpleNamespace(teacher_logits=torch.randn(24, 6), student_logits={"t": torch.randn(24, 6)})
    total, terms = lc(out, labels)
    assert torch.isfinite(total) and "kl_t" in terms
    with pytest.raises(ValueError, match="LossComputer.set_prototypes"):
        LossComputer.from_counts(LossConfig(), [1] * 7, MELD_CLASSES).set_prototypes(sums, counts)
    with pytest.raises(ValueError, match="reference_alpha.*IEMOCAP"):
        LossComputer.from_counts(LossConfig(saf_mode="reference"), [1] * 7, MELD_CLASSES)


def test_saf_target_by_hand_and_by_minimising_the_loss():
    """Two classes, S = [[1, 0.5], [0.5, 1]]: soft mode with eps 0.2 teaches (0.8, 0.2) and
    (0.2, 0.8); penalty teaches the one-hot target; the reference formula with alpha (0.2, 0.8)
    has weights (1 * 0.2, 0.5 * 0.8) = (0.2, 0.4) for y = 0, so its target (1/3, 2/3) favours
    class 1. The reference target also comes out of minimising its gamma-0 loss over free logits."""
    s = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(saf_target(s, "soft", 0.2).numpy(), [[0.8, 0.2], [0.2, 0.8]], rtol=1e-12)
    np.testing.assert_allclose(saf_target(s, "penalty").numpy(), np.eye(2))
    np.testing.assert_allclose(saf_target(s, "reference", alpha=[0.2, 0.8]).numpy(), [[1 / 3, 2 / 3], [1 / 9, 8 / 9]],
                               rtol=1e-12)
    assert torch.equal(saf_target(torch.eye(3), "soft", 0.3), torch.eye(3, dtype=torch.float64))

    s3 = torch.tensor([[1.0, 0.6, 0.1], [0.3, 1.0, 0.7], [0.2, 0.9, 1.0]], dtype=torch.float64)
    a3 = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    logits = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = saf_loss(logits, torch.arange(3), s3, a3, gamma=0.0, mode="reference", reduction="sum")
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(torch.softmax(logits, 1).detach().numpy(),
                               saf_target(s3, "reference", alpha=a3).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="saf_target: alpha must have shape"):
        saf_target(s3, "reference", alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="saf_target: eps"):
        saf_target(s3, "soft", 0.6)


def test_saf_target_rows_mark_a_target_that_favours_another_class():
    """IEMOCAP classes, vad S: the reference formula with the reference alpha (nearly flat) and
    the unnormalised vad row puts less than half of a class's target on it; the amended soft
    mode keeps 1 - eps on every true class."""
    from safsd_glnet.notebook.saf_comparison import format_saf_target_rows, saf_target_rows
    from safsd_glnet.dataset_facts import IEMOCAP_CLASSES

    corpus = SimpleNamespace(class_names=list(IEMOCAP_CLASSES))
    soft = saf_target_rows(corpus, LossConfig(saf_mode="soft", saf_eps=0.1))
    assert all(r["favoured"] == r["class"] and r["p_true"] == pytest.approx(0.9) for r in soft)
    reference = {r["class"]: r for r in saf_target_rows(corpus, LossConfig(saf_mode="reference", similarity="prior"))}
    assert all(r["p_true"] < 0.5 for r in reference.values())
    cells = format_saf_target_rows(list(reference.values()))
    assert sum("not the true class" in c["target's most likely class"] for c in cells) == \
        sum(r["favoured"] != r["class"] for r in reference.values())
