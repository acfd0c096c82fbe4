"""Mixed precision of the model (``train.amp``): the setting, what it picks on each device, and
that training, evaluation and prediction run in the precision the run records.

Tests marked ``cuda`` need a GPU and skip without one; ``benchmarks/gpu_check.sh`` runs them
(``pytest -m cuda``)."""
import json

import pytest
import torch

from safsd_glnet.cli import commands as cli
from safsd_glnet.model import precision
from safsd_glnet.training import train as train_module
from safsd_glnet.config import Config, ModelConfig, preset
from safsd_glnet.data import make_synthetic
from safsd_glnet.model.network import MaskedGCN, Packing

SIZES = {"t": 16, "a": 12, "v": 8}


def on_cuda(test):
    """Mark ``test`` as a GPU test (``pytest -m cuda`` selects it) that skips without CUDA."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


@pytest.fixture(scope="module")
def corpus():
    return make_synthetic("iemocap", seed=0, feature_sizes=SIZES, num_dialogues=24)


def tiny(**train):
    return preset("tiny").replace(train={"epochs": 1, **train})


# ----------------------------------------------------------------------------- the setting

@pytest.mark.parametrize("raw, value", [("auto", "auto"), ("bf16", "bf16"), ("true", "auto"), ("false", False),
                                        ("True", "auto"), ('"auto"', "auto")])
def test_amp_reads_auto_bf16_true_false_from_the_command_line(raw, value):
    assert preset("tiny").override(f"train.amp={raw}").train.amp == value


@pytest.mark.parametrize("raw", ["fp16", "1", "none", "yes"])
def test_other_amp_values_are_refused_naming_the_field(raw):
    with pytest.raises(ValueError, match=r"TrainConfig: amp=.*expected 'auto', 'bf16', true or false"):
        preset("tiny").override(f"train.amp={raw}")


def test_amp_defaults_to_auto_and_old_configs_read_true_as_auto():
    assert preset("paper").train.amp == "auto" and Config().train.amp == "auto"
    old = preset("tiny").to_dict()
    old["train"]["amp"] = True  # every config.json and checkpoint written before "auto" existed
    assert Config.from_dict(json.loads(json.dumps(old))).train.amp == "auto"
    with pytest.raises(ValueError, match="amp=1 should be bool | str"):
        Config.from_dict({"train": {"amp": 1}})


@pytest.mark.parametrize("amp, device, units, hidden, expected", [
    ("auto", "cpu", True, 1024, "bf16"), ("auto", "cpu", True, None, "bf16"), ("auto", "cpu", False, 1024, "fp32"),
    ("auto", "cpu", True, 256, "fp32"),  # narrow models are not faster in bf16 on a CPU
    ("bf16", "cpu", True, 16, "bf16"), ("bf16", "cpu", False, 1024, "bf16"),  # asked for: bf16 anyway
    (False, "cpu", True, 1024, "fp32"),
    ("auto", "cuda", True, 16, "bf16"), ("auto", "cuda", False, 1024, "fp32"),
    (False, "cuda", True, 1024, "fp32"),
    ("auto", "mps", True, 1024, "fp32"),  # MPS keeps fp32 (not measured there)
    ("fp32", "cpu", True, 1024, "fp32"),  # a precision name, as the benchmarks give it
])
def test_train_precision_on_each_device(monkeypatch, amp, device, units, hidden, expected):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("amx_bf16",) if units else ())
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: units)
    assert precision.train_precision(amp, device, hidden) == expected


def test_bf16_is_refused_on_mps():
    with pytest.raises(ValueError, match="not on mps"):
        precision.train_precision("bf16", "mps", 1024)


def test_bf16_units_follow_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    for flags, expected in [((), False), (("avx512_bf16",), True), (("amx_bf16", "avx512_bf16"), True)]:
        monkeypatch.setattr(precision, "cpu_bf16_flags", lambda flags=flags: flags)
        assert precision.bf16_supported("cpu") is expected
        assert precision.train_precision("auto", "cpu") == ("bf16" if expected else "fp32")


def test_fp32_switches_autocast_off_inside_an_outer_autocast():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        with precision.autocast("cpu", "fp32"):
            assert layer(x).dtype == torch.float32
        with precision.autocast("cpu", "bf16"):
            assert layer(x).dtype == torch.bfloat16


# ----------------------------------------------------------------------------- runs

def _spy_forward_precision(monkeypatch):
    """Record, for every forward pass of the model that ``train`` builds, the precision it ran
    in: "bf16" under bf16 autocast, "fp32" with autocast off."""
    seen = []
    build = train_module.build_model

    def spying_build(*args, **kwargs):
        model = build(*args, **kwargs)

        def hook(module, inputs):
            device = next(module.parameters()).device.type
            on = torch.is_autocast_enabled(device)
            seen.append(str(torch.get_autocast_dtype(device)).replace("torch.bfloat16", "bf16") if on else "fp32")
        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(train_module, "build_model", spying_build)
    return seen


@pytest.mark.parametrize("amp, units, min_hidden, expected", [
    ("auto", True, 0, "bf16"), ("auto", False, 0, "fp32"), ("auto", True, 512, "fp32"),  # tiny: H = 16
    ("bf16", False, 512, "bf16"), (False, True, 0, "fp32"), (True, True, 0, "bf16")])  # true (0.x configs) reads as auto
def test_training_and_evaluation_run_in_the_recorded_precision(corpus, monkeypatch, amp, units, min_hidden, expected):
    """Every forward pass of a run (training steps, validation, test, the final scoring) runs in
    one precision, and ``metrics.json`` says which; ``true`` (0.x configs) reads as ``auto``."""
    monkeypatch.setattr(precision, "bf16_supported", lambda device: units and torch.device(device).type == "cpu")
    monkeypatch.setattr(precision, "CPU_BF16_MIN_HIDDEN", min_hidden)
    seen = _spy_forward_precision(monkeypatch)
    run = train_module.train(tiny(amp=amp), corpus)
    assert run.metrics["precision"] == expected
    steps = -(-len(corpus.split("train")) // 8)
    eval_batches = sum(-(-len(corpus.split(s)) // 8) for s in ("valid", "test"))
    assert len(seen) == steps + 2 * eval_batches and set(seen) == {expected}


def test_a_run_folder_records_the_precision_and_the_cli_evaluates_in_it(tmp_path, monkeypatch, capsys):
    """``train.amp=true`` (an old run's setting, read as ``auto``) on a model too narrow for bf16
    to pay trains and scores in fp32 on the CPU; the CLI scores its checkpoint the same way, even
    where the CPU has bf16 units."""
    monkeypatch.setattr(precision, "bf16_supported", lambda device: torch.device(device).type == "cpu")
    out = tmp_path / "run"
    assert cli.main(["train", "--preset", "tiny", "--sizes", "t=16,a=12,v=8", "--epochs", "1", "--device", "cpu",
                     "--set", "train.amp=true", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["precision"] == "fp32" and config["train"]["amp"] == "auto"
    used = []
    real = precision.autocast
    monkeypatch.setattr(precision, "autocast", lambda device, p: used.append(p) or real(device, p))
    assert cli.main(["evaluate", "--checkpoint", str(out / "checkpoint_best.pt"), "--data", "synthetic:iemocap",
                     "--sizes", "t=16,a=12,v=8", "--device", "cpu", "--out", str(tmp_path / "eval.json")]) == 0
    assert used and set(used) == {"fp32"}
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["weighted_f1"] == pytest.approx(metrics["test"]["weighted_f1"])


def test_auto_on_a_bf16_cpu_trains_and_predicts_in_bf16(corpus, monkeypatch):
    monkeypatch.setattr(precision, "bf16_supported", lambda device: torch.device(device).type == "cpu")
    monkeypatch.setattr(precision, "CPU_BF16_MIN_HIDDEN", 16)  # the tiny preset counts as wide
    run = train_module.train(tiny(amp="auto"), corpus)
    assert run.metrics["precision"] == "bf16"
    for record in run.metrics["history"]:
        assert all(torch.isfinite(torch.tensor(v)) for v in record["loss"].values())
    used = []
    real = precision.autocast
    monkeypatch.setattr(precision, "autocast", lambda device, p: used.append(p) or real(device, p))
    p = train_module.predict(run.model, corpus.split("test"), amp="auto")
    off = train_module.predict(run.model, corpus.split("test"), amp=False)
    assert used == ["bf16", "fp32"]  # one autocast region per call: the weights are cast once
    assert abs(p.probs - off.probs).max() < 0.05  # the same model in two precisions


# ----------------------------------------------------------------------------- on a GPU

@on_cuda
@pytest.mark.parametrize("window", [(None, None), (2, 1)])
def test_dense_gcn_equals_pyg_under_autocast_on_cuda(window):
    from safsd_glnet.model.kernels import DenseMaskedGCN

    cfg = ModelConfig(hidden=64, heads=2, gcn_layers=3, window_past=window[0], window_future=window[1])
    torch.manual_seed(1)
    gcn = MaskedGCN(cfg, has_text=True, num_speakers=3).cuda().eval()
    for conv in gcn.convs:
        torch.nn.init.normal_(conv.gate.weight, std=0.2)
    lengths = torch.tensor([5, 1, 30, 12], device="cuda")
    n = int(lengths.max())
    packing = Packing(torch.arange(n, device="cuda")[None] < lengths[:, None])
    speakers = torch.randint(0, 3, (int(lengths.sum()),), device="cuda")
    nodes = torch.randn(3, int(lengths.sum()), 64, device="cuda", requires_grad=True)
    runs = {}
    for cls in (DenseMaskedGCN, MaskedGCN):
        gcn.__class__ = cls
        gcn.zero_grad()
        nodes.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = gcn(nodes, speakers, lengths, packing)
        (out.float() * torch.linspace(-1, 1, out.shape[-1], device="cuda")).sum().backward()
        runs[cls] = (out.detach().float(), nodes.grad.clone(), [c.gate.weight.grad.clone() for c in gcn.convs])
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    dense, pyg = runs[DenseMaskedGCN], runs[MaskedGCN]
    assert rel(dense[0], pyg[0]) < 0.03 and rel(dense[1], pyg[1]) < 0.05
    for gd, gp in zip(dense[2], pyg[2]):
        assert rel(gd, gp) < 0.25


@on_cuda
def test_one_epoch_on_cuda_trains_in_bf16(corpus, monkeypatch):
    seen = _spy_forward_precision(monkeypatch)
    run = train_module.train(tiny(device="cuda"), corpus)
    expected = "bf16" if precision.bf16_supported("cuda") else "fp32"
    assert run.metrics["precision"] == expected and run.metrics["device"].startswith("cuda")
    assert set(seen) == {expected}
    for record in run.metrics["history"]:
        assert all(torch.isfinite(torch.tensor(v)) for v in record["loss"].values())


@on_cuda
def test_amp_off_is_honoured_by_evaluation_on_cuda(corpus, monkeypatch):
    seen = _spy_forward_precision(monkeypatch)
    run = train_module.train(tiny(device="cuda", amp=False), corpus)
    assert run.metrics["precision"] == "fp32" and set(seen) == {"fp32"}
    seen.clear()
    with torch.autocast("cuda", dtype=torch.bfloat16):  # an outer autocast does not leak in
        train_module.evaluate(run.model, corpus.split("test"), corpus.class_names, amp=False)
    assert set(seen) == {"fp32"}


@pytest.mark.parametrize("variable", ["ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"])
@pytest.mark.parametrize("preset_value, expected", [(None, "128"), ("7", "7")])
def test_import_bounds_onednn_primitive_cache_before_torch_loads(variable, preset_value, expected):
    """``import safsd_glnet`` bounds oneDNN's primitive cache and ideep's per-shape cache (the causes of
    bf16's extra memory on MELD-shaped batches, benchmarks/bf16_memory.py and bf16_memory_profile.py)
    before torch is loaded, and keeps a user's value."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != variable}
    if preset_value is not None:
        env[variable] = preset_value
    code = ("import sys, os, safsd_glnet; "
            f"print('torch' in sys.modules, os.environ['{variable}'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", expected]


_HEAP_PROBE = """
import ctypes, sys
if sys.argv[1] == "kit":
    import safsd_glnet  # noqa: F401
libc = ctypes.CDLL(None)
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(8 << 20))  # glibc's default: the threshold rises to this freed block's size
before = libc.mallinfo2().hblkhd
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblkhd - before >= 2 << 20)  # the 2 MiB block has its own mapping
"""


@pytest.mark.parametrize("how, setting, mapped", [("kit", "compact", "True"), ("plain", "compact", "False"),
                                                  ("kit", None, "False"), ("kit", "glibc", "False")])
def test_compact_heap_keeps_large_blocks_in_their_own_mappings(how, setting, mapped):
    """With SAFSD_GLNET_MALLOC=compact, ``import safsd_glnet`` fixes glibc's mmap threshold at 1 MiB:
    after an 8 MiB block was freed, a 2 MiB block still gets its own mapping (returned to the system
    on free), where glibc by default serves it from the heap (the growth of resident memory on
    MELD-shaped batches, benchmarks/bf16_memory.py). Without the setting the kit leaves glibc alone
    (the compact heap is much slower)."""
    import ctypes
    import os
    import subprocess
    import sys

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("not glibc 2.33 or later: no mallinfo2 to read the mappings")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "SAFSD_GLNET_MALLOC"}
    if setting:
        env["SAFSD_GLNET_MALLOC"] = setting
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, how], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == [mapped]
