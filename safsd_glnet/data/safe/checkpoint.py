"""Checks that make loading a checkpoint from elsewhere safe, before and after ``torch.load``.

``torch.load(weights_only=True)`` only builds tensors and plain containers, so a checkpoint
cannot run code. It can still hurt:

* its ``data.pkl`` can nest a tuple a million deep, and the unpickler dies of a segmentation
  fault while hashing it; a storage record can be deflated 1000 : 1;
* a 150 kB checkpoint can claim ``hidden=65536`` in its config, and building the model the
  config describes asks for 16 GiB per square layer before any weight shape is compared;
* its weights can be stride-0 views of a single float with the shapes of a huge model, so
  the shapes match and copying them into the real model fills gigabytes.

:func:`check_archive` runs before ``torch.load``: the file must be a zip archive as
``torch.save`` writes it (one top folder, at most :data:`MAX_MEMBERS` members, none
compressed, so no record is larger than the file), and its ``data.pkl`` goes through the
structural pre-scan of :mod:`~safsd_glnet.data.safe.pickle_scan` (nesting, memo, memory bounds).

:func:`build_checked_model` runs after it: the config's sizes must lie within
:data:`LIMITS` (so that even building the model on torch's ``meta`` device, which allocates
nothing, stays cheap); the data signature must name t / a / v sizes and class and speaker
lists of sane length; the model is built on ``meta`` and every tensor of the file's state dict
must have its key, shape and dtype; the bytes those tensors claim must fit in the file (a
checkpoint stores each weight once); only then is the real model built and the weights
copied in. Each refusal is one line naming the file and the field.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from ...config import MODALITIES, Config
from .pickle_scan import scan_pickle
from .foreign_files import clip, describe_foreign
from ...model.network import SAFSDGLNet, drop_speaker_padding_rows

__all__ = ["check_archive", "build_checked_model", "LIMITS", "MAX_MEMBERS", "MAX_DATA_PKL"]

MAX_MEMBERS = 1 << 16
MAX_DATA_PKL = 256 << 20
"""The largest ``data.pkl`` accepted (a paper-size run's last checkpoint has about 100 kB)."""

LIMITS = {"hidden": 16384, "heads": 1024, "transformer_layers": 64, "ff_width": 65536,
          "gcn_layers": 64, "window_past": 1 << 20, "window_future": 1 << 20,
          "feature_size": 1 << 20, "classes": 4096, "speakers": 1 << 16}
"""Upper bounds of a checkpoint's model sizes (the paper model: hidden 1024, 8 heads, 1
Transformer layer, 4 GCN layers, features of 1024 / 1582 / 342, 6 or 7 classes, 9 speakers)."""


def check_archive(path: str | Path) -> None:
    """Refuse a checkpoint file before ``torch.load`` reads it (see the module docstring).

    Raises:
        ValueError: naming the file, for an empty or foreign file, an archive torch.save
            could not have written, or a ``data.pkl`` the pre-scan refuses.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except PermissionError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror})") from None
    kind = describe_foreign(head)
    if kind != "a zip archive":
        raise ValueError(f"{path}: is {kind or 'not a zip archive'}, not a safsd-glnet checkpoint "
                         f"(torch.save writes a zip archive)")
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if not infos or len(infos) > MAX_MEMBERS:
                raise ValueError(f"{path}: refused to load: {len(infos)} archive members (a "
                                 f"checkpoint has one per tensor storage, plus 6)")
            prefix = infos[0].filename.split("/", 1)[0]
            for info in infos:
                if not info.filename.startswith(prefix + "/"):
                    raise ValueError(f"{path}: member {info.filename[:80]!r} is outside the "
                                     f"archive's folder {prefix!r}; torch.save writes one folder")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{path}: refused to load: member {info.filename[:80]!r} is "
                                     f"compressed; torch.save stores members uncompressed (a "
                                     f"compressed record can inflate a thousandfold)")
                if info.file_size > size:
                    raise ValueError(f"{path}: member {info.filename[:80]!r} declares "
                                     f"{info.file_size} bytes, more than the whole file")
            name = f"{prefix}/data.pkl"
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise ValueError(f"{path}: not a torch checkpoint (no {name!r} in the "
                                 f"archive)") from None
            if info.file_size > MAX_DATA_PKL:
                raise ValueError(f"{path}: refused to load: its data.pkl has {info.file_size} "
                                 f"bytes, more than the {MAX_DATA_PKL >> 20} MiB allowed")
            data = archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable safsd-glnet checkpoint (truncated or "
                         f"corrupted zip archive: {clip(e)})") from None
    try:
        scan_pickle(data, f"{path}: data.pkl", profile="generic")
    except ValueError as e:  # DataError: the scan names the file, the byte and the rule
        raise ValueError(str(e)) from None


def _check_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{where} is {clip(repr(value), 60)}; expected an integer from {low} to {high}")
    return value


def _checked_config(ckpt: dict[str, Any], path: Path) -> Config:
    raw = ckpt.get("config")
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError(f"{path}: field 'config' must be a dict of sections (model, loss, train), "
                         f"got {type(raw).__name__}")
    try:
        config = Config.from_dict(raw)
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise ValueError(f"{path}: field 'config' is not a valid configuration: {clip(e)}") from None
    m = config.model
    for name in ("hidden", "heads", "transformer_layers", "gcn_layers"):
        _check_int(getattr(m, name), f"{path}: field 'config.model.{name}'", 1, LIMITS[name])
    for name in ("ff_width", "window_past", "window_future"):
        if getattr(m, name) is not None:
            _check_int(getattr(m, name), f"{path}: field 'config.model.{name}'", 0, LIMITS[name])
    return config


def _checked_signature(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    sig = ckpt.get("data")
    if not isinstance(sig, dict):
        raise ValueError(f"{path}: field 'data' must be a dict (the data signature), got "
                         f"{type(sig).__name__}")
    sizes = sig.get("feature_sizes")
    if not isinstance(sizes, dict) or not sizes or not set(sizes) <= set(MODALITIES):
        raise ValueError(f"{path}: field 'data.feature_sizes' must map some of t, a, v to sizes, "
                         f"got {clip(repr(sizes), 60)}")
    for m, size in sizes.items():
        _check_int(size, f"{path}: field 'data.feature_sizes.{m}'", 1, LIMITS["feature_size"])
    for name, limit in (("class_names", LIMITS["classes"]), ("speaker_names", LIMITS["speakers"])):
        names = sig.get(name)
        if not isinstance(names, list) or not 1 <= len(names) <= limit or not all(
                isinstance(n, str) for n in names):
            raise ValueError(f"{path}: field 'data.{name}' must be a list of 1 to {limit} strings")
    return sig


def build_checked_model(ckpt: Any, path: str | Path) -> SAFSDGLNet:
    """The model a loaded checkpoint describes, with its weights, after the checks above (CPU).

    ``ckpt`` is what ``torch.load`` returned; its format tag and version are checked by the
    caller. Raises ValueError naming ``path`` and the field.
    """
    path = Path(path)
    config = _checked_config(ckpt, path)
    sig = _checked_signature(ckpt, path)
    state = ckpt.get("model")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{path}: field 'model' must map parameter names to tensors")
    state = drop_speaker_padding_rows(state, len(sig["speaker_names"]))  # checkpoints of 0.x versions
    args = (config.model, sig["feature_sizes"], len(sig["class_names"]), len(sig["speaker_names"]))
    try:
        with torch.device("meta"):  # shapes only: allocates nothing
            expected = SAFSDGLNet(*args).state_dict()
    except (ValueError, TypeError, RuntimeError, KeyError) as e:
        raise ValueError(f"{path}: fields 'config' and 'data' do not describe a model: {clip(e)}") from None
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(f"{path}: field 'model' lacks {missing[0]!r} ({len(missing)} tensors "
                         f"missing for the model its config describes)")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ValueError(f"{path}: field 'model' has {clip(extra[0], 80)!r}, which the model its "
                         f"config describes does not ({len(extra)} unexpected tensors)")
    claimed = 0
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"{path}: field 'model.{key}' is {tuple(got.shape)} {got.dtype}, the "
                             f"config describes {tuple(want.shape)} {want.dtype}")
        claimed += got.numel() * got.element_size()
    size = os.path.getsize(path)
    if claimed > size:
        raise ValueError(f"{path}: refused to load: its weights claim {claimed} bytes but the file "
                         f"has {size} (weights that are views of a few values, not stored "
                         f"weights)")
    model = SAFSDGLNet(*args)
    model.load_state_dict(state)
    return model
