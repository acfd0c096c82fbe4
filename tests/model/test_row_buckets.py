"""Row buckets (safsd_glnet/model/row_buckets.py): bf16 CPU products see a few row counts, same maths.

The buckets against hand-worked values and their promises (never fewer rows, at most 1.5x, two
per octave); which products are padded (a function mode records what ``F.linear`` receives);
the bucketed layer against a float64 computation by hand, forward and every gradient, so that a
padding row that leaked into the kept rows or the weight's gradient would show; and the kernels'
install putting it in and taking it out without touching the state dict.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from safsd_glnet.config import ModelConfig
from safsd_glnet.model import kernels
from safsd_glnet.model.network import SAFSDGLNet
from safsd_glnet.model.row_buckets import MAX_BUCKETED_ROWS, BucketedLinear, bucket_rows


@pytest.mark.parametrize("n, padded", [(1, 8), (8, 8), (9, 16), (20, 24), (31, 32), (32, 32), (33, 48), (40, 48),
                                       (49, 64), (65, 96), (77, 96), (122, 128), (129, 192), (417, 512)])
def test_bucket_rows_by_hand(n, padded):
    assert bucket_rows(n) == padded


def test_buckets_never_lose_rows_stay_under_one_and_a_half_and_are_two_per_octave():
    for n in range(1, 5000):
        b = bucket_rows(n)
        assert n <= b <= max(1.5 * n, n + 7), n
        assert bucket_rows(b) == b, n  # a bucket is its own bucket
    for k in range(5, 12):
        assert len({bucket_rows(n) for n in range(2 ** k + 1, 2 ** (k + 1) + 1)}) == 2, k


class _LinearInputs(TorchFunctionMode):
    """Records the shape of every input ``F.linear`` receives."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.linear:
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def _products_of(layer, x, autocast):
    with _LinearInputs() as seen, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
    return seen.shapes, y


def test_only_bf16_products_on_the_cpu_see_buckets():
    torch.manual_seed(0)
    layer = BucketedLinear(6, 5)
    x = torch.randn(18, 6)
    assert _products_of(layer, x, autocast=True)[0] == [(24, 6)]
    as_bf16 = BucketedLinear(6, 5).bfloat16()
    assert _products_of(as_bf16, x.bfloat16(), autocast=False)[0] == [(24, 6)]  # a model cast to bf16 too
    assert _products_of(layer, x, autocast=False)[0] == [(18, 6)]  # fp32: the GEMM compiles nothing per shape
    assert _products_of(layer, x[:16], autocast=True)[0] == [(16, 6)]  # already a bucket: no copy
    assert _products_of(layer, x.view(3, 6, 6), autocast=True)[0] == [(3, 6, 6)]  # only packed rows
    many = torch.randn(MAX_BUCKETED_ROWS + 1, 6)
    assert _products_of(layer, many, autocast=True)[0] == [(MAX_BUCKETED_ROWS + 1, 6)]  # large: exact size
    shapes, y = _products_of(layer, x, autocast=True)
    assert y.shape == (18, 5)


@pytest.mark.parametrize("n", [1, 18, 33, 77, 122])
def test_bucketed_layer_equals_the_product_by_hand_in_bf16(n):
    """Forward, input, weight and bias gradients against float64 by hand: y = x W^T + b,
    dx = g W, dW = g^T x, db = sum_i g_i over the n rows only. To bf16's error (inputs rounded
    to 8 significant bits: a few tenths of a percent of each norm); a padding row in the kept
    output, or a nonzero gradient row of padding, misses by far."""
    torch.manual_seed(n)
    layer = BucketedLinear(40, 24)
    x = torch.randn(n, 40, requires_grad=True)
    g = torch.randn(n, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y.backward(g.to(y.dtype))
    w, b, xd, gd = layer.weight.detach().double(), layer.bias.detach().double(), x.detach().double(), g.double()
    expected = {"y": xd @ w.T + b, "dx": gd @ w, "dW": gd.T @ xd, "db": gd.sum(0)}
    got = {"y": y.detach(), "dx": x.grad, "dW": layer.weight.grad, "db": layer.bias.grad}
    for name, want in expected.items():
        rel = ((got[name].double() - want).norm() / want.norm()).item()
        assert rel < 0.01, (name, rel)


def test_bucketed_layer_in_fp32_is_nn_linear_exactly():
    torch.manual_seed(1)
    plain = nn.Linear(7, 3)
    bucketed = BucketedLinear(7, 3)
    bucketed.load_state_dict(plain.state_dict())
    x = torch.randn(19, 7)
    assert torch.equal(bucketed(x), plain(x))


def test_kernels_install_and_uninstall_the_bucketed_layers():
    cfg = ModelConfig(hidden=16, heads=2, gcn_layers=1)
    torch.manual_seed(0)
    model = SAFSDGLNet(cfg, {"t": 12, "a": 10, "v": 8}, 6, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    assert linears
    kernels.install(model)
    assert all(type(m) is BucketedLinear for m in linears)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    kernels.uninstall(model)
    assert all(type(m) is nn.Linear for m in linears)
