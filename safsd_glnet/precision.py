"""Mixed precision: where bf16 autocast pays, and the autocast context that uses it.

bf16 keeps fp32's exponent range, so autocast needs no loss scaling; weights, gradients and
the optimiser state stay fp32 and only the matrix products run in bf16.

* CUDA: every GPU that ``torch.cuda.is_bf16_supported()`` accepts (Ampere and later).
* CPU: only CPUs with bf16 matrix units. Autocast on other CPUs still runs, but oneDNN
  then emulates bf16 with conversions around fp32 arithmetic, which is slower than plain
  fp32. The units are the ``amx_bf16`` (Intel AMX, Sapphire Rapids and later) and
  ``avx512_bf16`` (Cooper Lake, Zen 4) instruction sets, read from ``/proc/cpuinfo`` on Linux
  and from torch's own CPU probe elsewhere; oneDNN (``torch.backends.mkldnn``) must be built
  in, as it is in the standard wheels.
* MPS and anything else: off (MPS bf16 autocast depends on the macOS version; fp32 is the
  safe default there).
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
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
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
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


def autocast(device: str | torch.device, precision: str):
    """A bf16 autocast context for ``precision == "bf16"`` on ``device``, else a no-op."""
    device = torch.device(device)
    if precision == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
