"""Mixed precision: where bf16 autocast pays, and the autocast context that uses it.

Two settings read it: ``FinetuneConfig.precision`` (``auto | fp32 | bf16``, through
:func:`resolve_precision`) and the model's ``train.amp`` (``auto | bf16 | true | false``,
through :func:`train_precision`); the precision a run used is recorded beside its results.

bf16 keeps fp32's exponent range, so autocast needs no loss scaling; weights, gradients and
the optimiser state stay fp32 and only the matrix products run in bf16.

* CUDA: every GPU that ``torch.cuda.is_bf16_supported()`` accepts (Ampere and later).
* CPU: only CPUs with bf16 matrix units. Autocast on other CPUs still runs, but oneDNN
  then emulates bf16 with conversions around fp32 arithmetic, which is slower than plain
  fp32. The units are the ``amx_bf16`` (Intel AMX, Sapphire Rapids and later) and
  ``avx512_bf16`` (Cooper Lake, Zen 4) instruction sets, read from ``/proc/cpuinfo`` on Linux
  and from torch's own CPU probe elsewhere; oneDNN (``torch.backends.mkldnn``) must be built
  in, as it is in the standard wheels.
* MPS and anything else: off. MPS bf16 autocast depends on the macOS version and the chip
  (M2 and later have bf16 units); nobody has measured or tested the kit there, so ``auto``
  keeps fp32 on MPS.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
AMP_SETTINGS = ("auto", "bf16", True, False)  # the values of train.amp
# On a CPU, bf16 pays only for wide enough models: a training step of the text-only model at
# H = 128 ran 1.26x slower in bf16 than in fp32 on an AMX Xeon (weight casts, dropout masks and
# conversions outweigh the faster products), about even at H = 256, 1.45x faster at H = 512
# and 2.2x at H = 1024 (the paper size). "auto" picks bf16 on the CPU from this width on.
CPU_BF16_MIN_HIDDEN = 512
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 matrix instruction sets this CPU has (a subset of :data:`CPU_BF16_FLAGS`)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        flags: set[str] = set()
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
                break  # every core lists the same flags
        return tuple(f for f in CPU_BF16_FLAGS if f in flags)
    # Not Linux: ask torch's (private, so guarded) probes of the same instruction sets.
    found = []
    probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    for flag, fn in probes.items():
        probe = getattr(torch.cpu, fn, None)
        try:
            if probe is not None and probe():
                found.append(flag)
        except Exception:  # a probe that fails says nothing: count the unit as absent
            pass
    return tuple(found)


def bf16_supported(device: str | torch.device) -> bool:
    """True where bf16 autocast runs on hardware bf16 units on ``device`` (see the module notes)."""
    device = torch.device(device)
    if device.type == "cuda":  # native bf16 (Ampere and later), not the emulation of older GPUs
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(cpu_bf16_flags())
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`bf16_supported`, else ``"fp32"``; ``"fp32"`` and
    ``"bf16"`` as given (an explicit ``"bf16"`` also runs where it is emulated)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and torch.device(device).type not in ("cpu", "cuda"):
        raise ValueError(f"precision='bf16': bf16 autocast is offered on cpu and cuda, not on {device}")
    return precision


def train_precision(amp: str | bool, device: str | torch.device, hidden: int | None = None) -> str:
    """The precision of the model's forward passes for the setting ``train.amp`` on ``device``,
    for a model of width ``hidden`` (``model.hidden``; None: wide enough): ``"bf16"`` or ``"fp32"``.

    * ``"auto"`` (the default): bf16 where :func:`bf16_supported` (CUDA GPUs with bf16; CPUs
      with bf16 matrix units, for models of width :data:`CPU_BF16_MIN_HIDDEN` and more, where
      it is faster), else fp32;
    * ``"bf16"``: bf16 autocast on the CPU or CUDA, even where it is slower or emulated;
    * ``False``: fp32 everywhere (``true``, in configurations of 0.x versions, reads as
      ``"auto"``: :class:`~safsd_glnet.config.TrainConfig`).

    ``"fp32"`` is also taken, as :func:`resolve_precision` takes it (benchmarks name both).
    """
    device = torch.device(device)
    if amp == "auto" and device.type == "cpu" and hidden is not None and hidden < CPU_BF16_MIN_HIDDEN:
        return "fp32"
    if isinstance(amp, str):
        if amp in PRECISIONS:
            return resolve_precision(amp, device)
        raise ValueError(f"train.amp={amp!r}: expected auto, bf16 or false")
    if amp is False:
        return "fp32"
    raise ValueError(f"train.amp={amp!r}: expected auto, bf16 or false")


def autocast(device: str | torch.device, precision: str):
    """The autocast context of ``precision`` on ``device``: bf16 autocast for ``"bf16"`` (CPU
    and CUDA); for ``"fp32"`` autocast is switched off (also
    inside an outer autocast region), so that fp32 means fp32."""
    device = torch.device(device)
    if precision == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
