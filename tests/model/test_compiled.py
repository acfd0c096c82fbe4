"""``train.compile`` (safsd_glnet/model/compiled.py): the decision, and the compiled regions equal eager.

The equality checks compile real code with Inductor (a C++ compiler is needed; each compile
takes seconds to tens of seconds on a 2-core CPU), so they sit in the integration tier; the
decision and the config checks are unit tests.
"""
import pytest
import torch

from safsd_glnet.config import Config, TrainConfig, preset
from safsd_glnet.data import make_synthetic
from safsd_glnet.model import compiled
from safsd_glnet.model.kernels import FastAttentionLayer
from safsd_glnet.model.network import AttentionLayer
from safsd_glnet.training.train import comparable_config, train

CPU = torch.device("cpu")
needs_compiler = pytest.mark.skipif(compiled.toolchain_missing(CPU) is not None,
                                    reason="no C++ compiler: Inductor cannot compile for the CPU here")


# ------------------------------------------------------------------------------ the setting

@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("auto", "auto"), ("AUTO", "auto")])
def test_compile_setting_reads_text_from_set(text, value):
    assert TrainConfig(compile=text).compile == value
    assert preset("tiny").override(f"train.compile={text}").train.compile == value


@pytest.mark.parametrize("bad", ["yes", "max-autotune", ""])
def test_compile_setting_refuses_other_values_in_one_line(bad):
    with pytest.raises(ValueError, match=r"^TrainConfig: compile=.*expected 'auto', true or false$"):
        TrainConfig(compile=bad)


def test_compile_is_runtime_only_for_resuming_and_reuse():
    a, b = preset("tiny").to_dict(), preset("tiny").replace(train={"compile": True}).to_dict()
    assert comparable_config(a) == comparable_config(b)
    assert comparable_config(a) != comparable_config(preset("tiny").replace(train={"amp": False}).to_dict())


def test_configs_written_before_the_field_read_as_auto():
    d = preset("tiny").to_dict()
    del d["train"]["compile"]
    assert Config.from_dict(d).train.compile == "auto"


def test_false_never_compiles_and_true_says_why_it_cannot(monkeypatch):
    assert compiled.decide(False, CPU, 10**6) == (False, "train.compile=false")
    monkeypatch.setattr(compiled, "toolchain_missing", lambda device: "no C++ compiler (c++, g++ or clang++) on PATH")
    with pytest.raises(ValueError, match=r"^train.compile=true: cannot compile on cpu: no C\+\+ compiler"):
        compiled.decide(True, CPU, 10)
    assert compiled.decide("auto", CPU, 10**6)[0] is False


def test_auto_compiles_only_where_measured_and_past_the_break_even(monkeypatch):
    monkeypatch.setattr(compiled, "toolchain_missing", lambda device: None)
    monkeypatch.setattr(compiled, "MEASURED_TO_PAY", {})
    used, why = compiled.decide("auto", CPU, 10**6)
    assert not used and "not measured" in why
    # 30 s of compiling, 0.1 s saved per step: 300 steps break even
    monkeypatch.setattr(compiled, "MEASURED_TO_PAY", {"cpu": {"compile_s": 30.0, "saved_per_step_s": 0.1}})
    assert compiled.decide("auto", CPU, 299)[0] is False
    assert "fewer than the 300" in compiled.decide("auto", CPU, 299)[1]
    assert compiled.decide("auto", CPU, 300)[0] is True
    assert compiled.decide("auto", torch.device("meta"), 10**6)[0] is False


def test_the_measured_table_holds_only_measurements():
    for device_type, measured in compiled.MEASURED_TO_PAY.items():
        assert set(measured) == {"compile_s", "saved_per_step_s"}, device_type
        assert measured["saved_per_step_s"] > 0 and measured["compile_s"] > 0


# ------------------------------------------------------------------------- equal to eager

def _pair(layer_class, p: float, hidden: int = 32):
    """(compiled layer, eager twin with the same weights), in training mode."""
    torch.manual_seed(0)
    layer, twin = layer_class(hidden, 4, 2 * hidden, p), layer_class(hidden, 4, 2 * hidden, p)
    twin.load_state_dict(layer.state_dict())
    holder = torch.nn.Module()
    holder.layer = layer
    assert compiled.compile_regions(holder) == 1
    assert compiled.compile_regions(holder) == 0  # wrapping twice does nothing
    return layer, twin


def _run(layer, x, a, seed):
    x = x.clone().requires_grad_(True)
    a = a.clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = layer.add_and_feed_forward(x, a)
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    # query and key_value are the attention's own, outside the region: no gradient here
    grads = [x.grad, a.grad] + [q.grad.clone() for q in layer.parameters() if q.grad is not None]
    layer.zero_grad()
    return y.detach().float(), [g.float() for g in grads]


@needs_compiler
@pytest.mark.integration
@pytest.mark.parametrize("layer_class", [AttentionLayer, FastAttentionLayer])
@pytest.mark.parametrize("bf16", [False, True])
def test_compiled_region_equals_eager_forward_and_gradients_in_training(layer_class, bf16):
    """Dropout 0.3 on: the compiled region draws the same masks from torch's generator
    (fallback_random), so it equals eager up to rounding, for rows of several sizes without a
    recompile per size. fp32: float error; bf16 autocast: bf16's error (2^-8 relative)."""
    layer, twin = _pair(layer_class, 0.3)
    tol = dict(atol=5e-2, rtol=5e-2) if bf16 else dict(atol=1e-5, rtol=1e-4)
    before = compiled.compile_counts()["variants"]
    for n in (9, 23, 5):
        gen = torch.Generator().manual_seed(n)
        x, a = torch.randn(n, 32, generator=gen), torch.randn(n, 32, generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y, grads = _run(layer, x, a, seed=n)
            y_ref, grads_ref = _run(twin, x, a, seed=n)
        torch.testing.assert_close(y, y_ref, **tol)
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, **tol)
        assert (y == 0).sum() == (y_ref == 0).sum()  # the same dropout pattern reaches the output
    # one new variant at most (the first shape; later sizes reuse it), whatever was compiled before
    assert compiled.compile_counts()["variants"] - before <= 1


@needs_compiler
@pytest.mark.integration
def test_a_seeded_run_with_the_compiler_chooses_the_same_epoch_as_eager():
    data = make_synthetic("iemocap", seed=2, feature_sizes={"t": 16, "a": 12, "v": 8}, num_dialogues=24)
    cfg = preset("tiny").replace(train={"epochs": 4, "batch_size": 6, "progress": False, "patience": None})
    eager = train(cfg.replace(train={"compile": False}), data).metrics
    fused = train(cfg.replace(train={"compile": True}), data).metrics
    assert fused["compile"]["used"] and not eager["compile"]["used"]
    assert fused["compile"]["recompiles"] == 0
    assert fused["chosen_epoch"] == eager["chosen_epoch"]
    for key in ("weighted_f1", "accuracy"):
        assert fused["test"][key] == pytest.approx(eager["test"][key], abs=1e-6)
    for mine, theirs in zip(fused["history"], eager["history"]):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-4)
