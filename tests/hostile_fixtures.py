"""Hostile input files: every way we know for a small file to crash, hang or flood the kit.

Each :class:`Hostile` names a file, what it attempts, and the commands it is fed to. The
tests (``tests/data/safe/test_hostile_files.py``) and the benchmark (``benchmarks/hostile_files.py``)
build them with :func:`build_all` and run them through the command line; nothing here loads
them. Sizes are those of the issue that reported them (a 1.2 MB nested pickle, a 1 MB zip
bomb expanding to 1.6 GB, ...) unless building them would be slow.

Kinds: ``pkl`` (an SDT / M3Net feature pickle: ``convert``, ``train``, ``evaluate``,
``predict``, ``features --merge-pickle``), ``npz`` (a kit corpus: ``train``, ``evaluate``,
``predict``), ``pt`` (a checkpoint: ``evaluate``, ``predict``), ``json`` (a config:
``train --config``).
"""
from __future__ import annotations

import copy
import functools
import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sdt_fixtures import make_sdt_fields, pack_sdt_fields

SMALL = {"t": 8, "a": 6, "v": 4}  # feature sizes of the hostile SDT-layout pickles


@dataclass(frozen=True)
class Hostile:
    name: str  # file stem
    kind: str  # pkl, npz, pt, json
    what: str  # what the file attempts, for the benchmark table
    build: Callable[[Path], None]

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.kind}"


# ----------------------------------------------------------------------------- pickle helpers

class _Reduce:
    """Pickles as ``func(*args)`` (with ``state`` set by BUILD when given)."""

    def __init__(self, func: Any, args: tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        if self.state is None:
            return (self.func, self.args)
        return (self.func, self.args, self.state)


def _numpy(submodule: str, name: str) -> Any:
    import importlib

    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(name)


def _sdt_with(path: Path, replace: Callable[[dict], None], protocol: int = 2) -> None:
    """A small standard-layout IEMOCAP pickle with one field changed by ``replace``."""
    fields = make_sdt_fields("iemocap", 4, SMALL, seed=1, lengths=(2, 3))
    replace(fields)
    path.write_bytes(pickle.dumps(pack_sdt_fields(fields, "iemocap"), protocol=protocol))


def _first(fields: dict) -> Any:
    return next(iter(fields["videoLabels"]))


def _set_row(fields: dict, value: Any, field: str = "videoText") -> None:
    fields[field][_first(fields)][0] = value


def _forged_object_array(path: Path) -> None:
    # numpy.ndarray(shape, dtype('O'), buffer): the buffer's bytes become the element pointers
    # (a row of the right length, so that np.asarray reads them).
    n = SMALL["t"]
    _sdt_with(path, lambda f: _set_row(f, _Reduce(np.ndarray, ((n,), np.dtype("O"), b"A" * 8 * n))))


def _object_array_setstate(path: Path) -> None:
    # What pickle writes for a real object array: _reconstruct + BUILD with a list of objects.
    _sdt_with(path, lambda f: _set_row(f, np.array([1.0, "x", None] + [0.0] * (SMALL["t"] - 3),
                                                   dtype=object)))


def _object_scalar(path: Path) -> None:
    # A structured scalar whose field is an object: the bytes become a pointer.
    dt = np.dtype([("a", "O")])
    _sdt_with(path, lambda f: _set_row(f, _Reduce(_numpy("multiarray", "scalar"), (dt, b"AAAAAAAA"))))


def _object_frombuffer(path: Path) -> None:
    fb = _numpy("numeric", "_frombuffer")
    _sdt_with(path, lambda f: _set_row(f, _Reduce(fb, (b"AAAAAAAA", np.dtype("O"), (1,), "C"))))


def _forged_dtype_flags(path: Path) -> None:
    # dtype('V8') whose state sets the flags of an object dtype; numpy trusts them.
    forged = _Reduce(np.dtype, ("V8", False, True), (3, "|", None, None, None, 8, 1, 63))
    fb = _numpy("numeric", "_frombuffer")
    _sdt_with(path, lambda f: _set_row(f, _Reduce(fb, (b"AAAAAAAA", forged, (1,), "C"))))


def _huge_reconstruct(path: Path) -> None:
    # _reconstruct(ndarray, (10**10,), 'b') allocates 10 GB before any state is set.
    rec = _numpy("multiarray", "_reconstruct")
    _sdt_with(path, lambda f: _set_row(f, _Reduce(rec, (np.ndarray, (10**10,), b"b"))))


def _zero_itemsize(path: Path) -> None:
    # A void dtype of size 0: 10**12 elements in no bytes, then converted to float32.
    fb = _numpy("numeric", "_frombuffer")
    _sdt_with(path, lambda f: _set_row(f, _Reduce(fb, (b"", np.dtype("V0"), (10**12,), "C"))))


def _structured_dtype(path: Path) -> None:
    _sdt_with(path, lambda f: _set_row(f, np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])))


def _memo_list_bomb(path: Path) -> None:
    # One list of 10,000 floats referenced 100,000 times through the memo: ~600 KB of file,
    # np.asarray(..., float32) makes 4 GB of it.
    row = [0.5] * 10_000

    def replace(f: dict) -> None:
        f["videoText"][_first(f)] = [row] * 100_000
    _sdt_with(path, replace)


def _string_memo_bomb(path: Path) -> None:
    # One 1 MB string as every label: np.asarray of the list makes a 400 GB string array.
    text = "x" * 1_000_000

    def replace(f: dict) -> None:
        f["videoLabels"][_first(f)] = [text] * 100_000
    _sdt_with(path, replace)


def _ragged_string_labels(path: Path) -> None:
    # Short strings and one long one: numpy pads every label to the longest (20 GB).
    def replace(f: dict) -> None:
        f["videoLabels"][_first(f)] = ["x" * 100_000] + [str(i) for i in range(50_000)]
    _sdt_with(path, replace, protocol=4)


def _tuple_dialogue_id(path: Path) -> None:
    # A dialogue id that is a tuple of shared tuples: str() of it writes 2**40 items.
    t: Any = (0,)
    for _ in range(40):
        t = (t, t)

    def replace(f: dict) -> None:
        f["trainVid"] = list(f["trainVid"]) + [t]
    _sdt_with(path, replace)


def _raw(*parts: bytes) -> bytes:
    return b"".join(parts)


PROTO2, PROTO4, STOP = b"\x80\x02", b"\x80\x04", b"."


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _deep_tuple_key(path: Path) -> None:
    # {((((None,),),)...): None}, a million deep (1 MB): hashing the key recurses in C.
    path.write_bytes(_raw(PROTO2, b"}N", b"\x85" * 1_000_000, b"Ns", STOP))


def _deep_list(path: Path) -> None:
    # [[[[...]]]] a million deep, as MARK ... LIST (2 MB).
    path.write_bytes(_raw(PROTO2, b"(" * 1_000_000, b"N", b"l" * 1_000_000, STOP))


def _exponential_key(path: Path) -> None:
    # T_k = (T_{k-1}, T_{k-1}) through the memo: 80 levels in 500 bytes, a hash of 2**80 steps.
    out = [PROTO2, b"}", b"N\x85q\x000"]  # T_0 = (None,), stored, popped
    for k in range(1, 81):
        out.append(b"h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"\x86q" + bytes([k])
                   + (b"0" if k < 80 else b""))
    out.append(b"Ns" + STOP)
    path.write_bytes(_raw(*out))


def _bytearray_bomb(path: Path) -> None:
    # bytearray(10**10): 10 GB from 40 bytes.
    path.write_bytes(pickle.dumps(_Reduce(bytearray, (10**10,)), protocol=2))


def _memo_index_bomb(path: Path) -> None:
    # LONG_BINPUT 4,294,967,280: the C unpickler grows its memo array to that index.
    path.write_bytes(_raw(PROTO2, b"N", b"r" + struct.pack("<I", 0xFFFFFFF0), STOP))


def _empty_set_flood(path: Path) -> None:
    # 5 million empty sets on the stack (5 MB of file, 1.1 GB of sets).
    path.write_bytes(_raw(PROTO4, b"\x8f" * 5_000_000, STOP))


def _frame_lie(path: Path) -> None:
    # A FRAME claiming 2**62 bytes: the reader allocates the frame before reading it.
    path.write_bytes(_raw(PROTO4, b"\x95" + struct.pack("<Q", 1 << 62), b"N", STOP))


def _colliding_keys(path: Path) -> None:
    # 40,000 int keys with one hash (multiples of 2**61 - 1): each insertion walks them all.
    out = [PROTO2, b"}(" ]
    for i in range(1, 40_001):
        out.append(b"\x8a\x0a" + (i * (2**61 - 1)).to_bytes(10, "little", signed=True) + b"N")
    out.append(b"u" + STOP)
    path.write_bytes(_raw(*out))


def _str_of_shared_list(path: Path) -> None:
    # str() of a list shared a million times: the repr is gigabytes.
    row = [0.25] * 1000
    path.write_bytes(pickle.dumps(_Reduce(str, ([row] * 1_000_000,)), protocol=2))


def _codec_lookup(path: Path) -> None:
    # bytes(text, codec) reaches the codec registry, which imports modules by name.
    path.write_bytes(pickle.dumps(_Reduce(bytes, ("abc", "idna")), protocol=2))


def _runs_code(path: Path) -> None:
    # Would write a file next to itself if the unpickler ran it.
    marker = path.with_suffix(".pwned")
    path.write_bytes(pickle.dumps({"x": _Reduce(Path.write_text, (marker, "pwned"))}, protocol=2))


def _persistent_id(path: Path) -> None:
    path.write_bytes(_raw(PROTO2, b"Pstorage\n", STOP))


def _long_digits(path: Path) -> None:
    # A protocol-0 int of a million digits.
    path.write_bytes(b"I" + b"9" * 1_000_000 + b"\n.")


def _truncated_pickle(path: Path) -> None:
    data = pickle.dumps(pack_sdt_fields(make_sdt_fields("iemocap", 4, SMALL), "iemocap"), protocol=2)
    path.write_bytes(data[: len(data) // 2])


def _zip_as_pickle(path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros(3))
    path.write_bytes(buf.getvalue())


HOSTILE_PICKLES = [
    Hostile("forged_object_array", "pkl", "numpy.ndarray((8,), dtype('O'), b'AAA...'): forged "
            "element pointers", _forged_object_array),
    Hostile("object_array", "pkl", "a real object array (_reconstruct + BUILD with a list)",
            _object_array_setstate),
    Hostile("object_scalar", "pkl", "scalar() of a structured dtype holding an object",
            _object_scalar),
    Hostile("object_frombuffer", "pkl", "_frombuffer(b'AAAAAAAA', dtype('O'), ...)", _object_frombuffer),
    Hostile("forged_dtype_flags", "pkl", "dtype('V8') whose BUILD state sets object flags",
            _forged_dtype_flags),
    Hostile("structured_dtype", "pkl", "a structured array as a feature row", _structured_dtype),
    Hostile("huge_reconstruct", "pkl", "_reconstruct(ndarray, (10**10,), 'b'): 10 GB", _huge_reconstruct),
    Hostile("zero_itemsize", "pkl", "10**12 elements of a 0-byte dtype", _zero_itemsize),
    Hostile("deep_tuple_key", "pkl", "a dict key nested a million deep (1 MB)", _deep_tuple_key),
    Hostile("deep_list", "pkl", "lists nested a million deep (2 MB)", _deep_list),
    Hostile("exponential_key", "pkl", "a dict key whose hash takes 2**80 steps (500 bytes)",
            _exponential_key),
    Hostile("memo_list_bomb", "pkl", "one list of 10,000 floats as 100,000 rows: 4 GB as float32",
            _memo_list_bomb),
    Hostile("string_memo_bomb", "pkl", "one 1 MB string as 100,000 labels", _string_memo_bomb),
    Hostile("ragged_string_labels", "pkl", "labels mixing one 100 kB string and short ones",
            _ragged_string_labels),
    Hostile("tuple_dialogue_id", "pkl", "a dialogue id whose str() has 2**40 items",
            _tuple_dialogue_id),
    Hostile("bytearray_bomb", "pkl", "bytearray(10**10) in 40 bytes", _bytearray_bomb),
    Hostile("memo_index_bomb", "pkl", "memo slot 4,294,967,280 (a 32 GB memo array)", _memo_index_bomb),
    Hostile("empty_set_flood", "pkl", "5 million empty sets (5 MB of file)", _empty_set_flood),
    Hostile("frame_lie", "pkl", "a FRAME claiming 2**62 bytes", _frame_lie),
    Hostile("colliding_keys", "pkl", "40,000 int dict keys with one hash", _colliding_keys),
    Hostile("str_of_shared_list", "pkl", "str() of a list shared a million times", _str_of_shared_list),
    Hostile("codec_lookup", "pkl", "bytes('abc', 'idna'): a codec import", _codec_lookup),
    Hostile("runs_code", "pkl", "Path.write_text(...) as a reduce call", _runs_code),
    Hostile("persistent_id", "pkl", "a persistent id", _persistent_id),
    Hostile("long_digits", "pkl", "a protocol-0 int of a million digits", _long_digits),
    Hostile("truncated_pickle", "pkl", "half of a valid feature pickle", _truncated_pickle),
    Hostile("zip_as_pickle", "pkl", "a .npz archive named .pkl", _zip_as_pickle),
    Hostile("text_as_pickle", "pkl", "a text file named .pkl", _write(b"speaker,label\nM,happy\n")),
    Hostile("empty_pickle", "pkl", "an empty file", _write(b"")),
]


# ----------------------------------------------------------------------------- npz helpers

def _npy(array_header: dict, data: bytes = b"") -> bytes:
    """A .npy member with ``array_header`` written as given (shape, descr, fortran_order)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, array_header)
    return buf.getvalue() + data


@functools.lru_cache(maxsize=1)
def _good_members_cached() -> tuple[tuple[str, bytes], ...]:
    import tempfile

    from safsd_glnet.data import make_synthetic, save_corpus

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "good.npz"
        save_corpus(make_synthetic("iemocap", feature_sizes={"t": 4}, num_dialogues=6), path)
        with zipfile.ZipFile(path) as z:
            return tuple((name, z.read(name)) for name in z.namelist())


def _good_members() -> dict[str, bytes]:
    """The members of a valid 6-dialogue kit corpus, by name (a fresh dict to change)."""
    return dict(_good_members_cached())


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _raw_zip(path: Path, members: list[tuple[str, int, bytes, int, int]]) -> None:
    """A zip written by hand: (name, method, stored bytes, crc, declared size) per member,
    so that the stored bytes need not match the declared size or method."""
    out = io.BytesIO()
    central = []
    for name, method, data, crc, size in members:
        offset = out.tell()
        encoded = name.encode()
        out.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data),
                              size, len(encoded), 0) + encoded + data)
        central.append(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                                   len(data), size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    start = out.tell()
    for c in central:
        out.write(c)
    out.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    path.write_bytes(out.getvalue())


def _deflated_zeros(prefix: bytes, total: int) -> bytes:
    """A raw deflate stream of ``prefix`` and ``total`` zero bytes, built in milliseconds:
    after a full flush the compressor starts afresh, so each 16 MiB block compresses to the
    same bytes and can be repeated."""
    block = 1 << 24
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    body = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    return head + body * (total // block) + c.flush()


def _meta_bytes(members: dict[str, bytes]) -> dict:
    header_end = members["meta.npy"].index(b"\n") + 1
    return json.loads(members["meta.npy"][header_end:].decode())


def _with_meta(meta_text: bytes) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        members = _good_members()
        members["meta.npy"] = _npy({"descr": "|u1", "fortran_order": False,
                                    "shape": (len(meta_text),)}, meta_text)
        _zip(path, members)
    return build


def _deep_meta(path: Path) -> None:
    members = _good_members()
    meta = _meta_bytes(members)
    text = json.dumps(meta)[:-1].encode() + b', "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _with_meta(text)(path)


def _zip_bomb(path: Path) -> None:
    # features_t declared as (390625, 1024) float32: 1.6 GB of zeros in about 1.6 MB.
    members = _good_members()
    n = 390_625
    header = _npy({"descr": "<f4", "fortran_order": False, "shape": (n, 1024)})
    stream = _deflated_zeros(header, n * 4096)
    entries = [(name, 0, data, zlib.crc32(data), len(data)) for name, data in members.items()
               if name != "features_t.npy"]
    entries.append(("features_t.npy", 8, stream, 0, len(header) + n * 4096))
    _raw_zip(path, entries)


def _header_shape(shape: tuple[int, ...]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        members = _good_members()
        members["features_t.npy"] = _npy({"descr": "<f4", "fortran_order": False, "shape": shape},
                                         bytes(64))
        _zip(path, members)
    return build


def _object_member(path: Path) -> None:
    members = _good_members()
    buf = io.BytesIO()
    np.save(buf, np.array([1, "x"], dtype=object), allow_pickle=True)
    members["labels.npy"] = buf.getvalue()
    _zip(path, members)


def _huge_header(path: Path) -> None:
    members = _good_members()
    header = b"\x93NUMPY\x02\x00" + struct.pack("<I", 200_000) + b"{" + b" " * 199_998 + b"\n"
    members["labels.npy"] = header
    _zip(path, members)


def _lying_size(path: Path) -> None:
    # Declared 64 bytes, stored a megabyte of deflated data that inflates further.
    members = _good_members()
    header = _npy({"descr": "<f4", "fortran_order": False, "shape": (16,)})
    stream = _deflated_zeros(header, 1 << 24)
    entries = [(name, 0, data, zlib.crc32(data), len(data)) for name, data in members.items()
               if name != "features_t.npy"]
    entries.append(("features_t.npy", 8, stream, 0, len(header) + 64))
    _raw_zip(path, entries)


def _many_members(path: Path) -> None:
    members = _good_members()
    for i in range(20_000):
        members[f"x{i}.npy"] = b""
    _zip(path, members)


def _npy_as_npz(path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros(4, dtype=np.float32))
    path.write_bytes(buf.getvalue())


def _pickle_as_npz(path: Path) -> None:
    path.write_bytes(pickle.dumps({"meta": 1}, protocol=2))


def _truncated_npz(path: Path) -> None:
    from safsd_glnet.data import make_synthetic, save_corpus

    save_corpus(make_synthetic("iemocap", feature_sizes={"t": 4}, num_dialogues=6), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


HOSTILE_NPZ = [
    Hostile("deep_meta", "npz", "meta JSON nested 100,000 deep", _deep_meta),
    Hostile("zip_bomb", "npz", "features_t: 1.6 MB deflated to 1.6 GB", _zip_bomb),
    Hostile("npy_huge_shape", "npz", "an npy header claiming shape (10**11, 8)",
            _header_shape((10**11, 8))),
    Hostile("npy_large_shape", "npz", "an npy header claiming shape (10**8, 8) over 64 bytes",
            _header_shape((10**8, 8))),
    Hostile("object_member", "npz", "a pickled object array as labels", _object_member),
    Hostile("huge_npy_header", "npz", "an npy header of 200,000 bytes", _huge_header),
    Hostile("lying_size", "npz", "a member declaring 64 bytes, inflating to 16 MiB", _lying_size),
    Hostile("many_members", "npz", "20,000 archive members", _many_members),
    Hostile("npy_as_npz", "npz", "a single .npy array named .npz", _npy_as_npz),
    Hostile("pickle_as_npz", "npz", "a pickle named .npz", _pickle_as_npz),
    Hostile("text_as_npz", "npz", "a text file named .npz", _write(b"dialogue,label\nd1,happy\n")),
    Hostile("truncated_npz", "npz", "half of a valid corpus", _truncated_npz),
    Hostile("empty_npz", "npz", "an empty file", _write(b"")),
]


# ----------------------------------------------------------------------------- checkpoints

def _checkpoint() -> dict[str, Any]:
    """A valid kit checkpoint dict for the tiny preset (a fresh copy the caller may change)."""
    return copy.deepcopy(_checkpoint_cached())


@functools.lru_cache(maxsize=1)
def _checkpoint_cached() -> dict[str, Any]:
    import torch

    from safsd_glnet.config import preset
    from safsd_glnet.data import make_synthetic
    from safsd_glnet.training.train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, build_model, data_signature

    torch.manual_seed(0)
    corpus = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=6)
    cfg = preset("tiny")
    model = build_model(cfg, corpus)
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.to_dict(),
            "data": data_signature(corpus), "epoch": 1, "model": model.state_dict()}


def _save(path: Path, ckpt: Any) -> None:
    import torch

    torch.save(ckpt, path)


def _big_hidden(path: Path) -> None:
    # Passes weights_only, then asks for hidden=65536 (16 GiB per square layer) before any
    # shape is compared.
    ckpt = _checkpoint()
    ckpt["config"]["model"].update(hidden=65536, heads=2)
    _save(path, ckpt)


def _expanded_weights(path: Path) -> None:
    # Every weight a stride-0 view of one float, with the shapes of a hidden=4096 model:
    # the shapes match the config, the file is tiny, the real model is gigabytes.
    import torch

    from safsd_glnet.model.network import SAFSDGLNet
    from safsd_glnet.config import ModelConfig

    ckpt = _checkpoint()
    ckpt["config"]["model"].update(hidden=4096, heads=2)
    cfg = ModelConfig(**{**ckpt["config"]["model"], "modalities": "tav"})
    sig = ckpt["data"]
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in SAFSDGLNet(cfg, sig["feature_sizes"], len(sig["class_names"]),
                                                     len(sig["speaker_names"])).state_dict().items()}
    one = torch.zeros(1)
    ckpt["model"] = {k: one.expand(s) if len(s) else one[0] for k, s in shapes.items()}
    _save(path, ckpt)


def _huge_feature_size(path: Path) -> None:
    ckpt = _checkpoint()
    ckpt["data"]["feature_sizes"]["t"] = 10**9
    _save(path, ckpt)


def _wrong_shapes(path: Path) -> None:
    ckpt = _checkpoint()
    key = next(k for k, v in ckpt["model"].items() if v.ndim == 2)
    ckpt["model"][key] = ckpt["model"][key][:, :-1].clone()
    _save(path, ckpt)


def _missing_weight(path: Path) -> None:
    ckpt = _checkpoint()
    ckpt["model"].pop(next(iter(ckpt["model"])))
    _save(path, ckpt)


def _config_is_list(path: Path) -> None:
    ckpt = _checkpoint()
    ckpt["config"] = [1, 2, 3]
    _save(path, ckpt)


def _sizes_are_text(path: Path) -> None:
    ckpt = _checkpoint()
    ckpt["data"]["feature_sizes"] = "tav"
    _save(path, ckpt)


def _torch_zip(path: Path, data_pkl: bytes, extra: dict[str, bytes] | None = None,
               method: int = zipfile.ZIP_STORED) -> None:
    """A checkpoint archive as torch.save lays it out, with the given data.pkl."""
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for name, data in (extra or {}).items():
            z.writestr(f"archive/{name}", data)


def _deep_checkpoint(path: Path) -> None:
    # torch.load(weights_only=True) dies of a segmentation fault on this data.pkl.
    _torch_zip(path, _raw(PROTO2, b"}N", b"\x85" * 1_000_000, b"Ns", STOP))


def _checkpoint_memo_bomb(path: Path) -> None:
    row = [0.5] * 10_000
    _torch_zip(path, pickle.dumps({"format": "safsd-glnet-checkpoint", "history": [row] * 100_000},
                                  protocol=2))


def _checkpoint_runs_code(path: Path) -> None:
    _torch_zip(path, pickle.dumps({"x": _Reduce(os.system, ("echo pwned",))}, protocol=2))


def _compressed_storage(path: Path) -> None:
    # A float storage of 400 MB deflated to 400 kB (torch.save never compresses).
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        pkl = z.read("archive/data.pkl")
    # The storage's element count is the first BININT1 4 (the tensor's size is the second).
    pkl = pkl.replace(b"K\x04", b"J" + struct.pack("<i", 100_000_000), 1)
    crc = 0
    for _ in range(25):
        crc = zlib.crc32(bytes(1 << 24), crc)
    stored = [(f"archive/{n}", 0, d, zlib.crc32(d), len(d))
              for n, d in (("data.pkl", pkl), ("byteorder", b"little"), ("version", b"3\n"))]
    _raw_zip(path, stored + [("archive/data/0", 8, _deflated_zeros(b"", 400 << 20), crc, 400 << 20)])


def _legacy_pickle_checkpoint(path: Path) -> None:
    path.write_bytes(pickle.dumps({"format": "safsd-glnet-checkpoint"}, protocol=2))


HOSTILE_CHECKPOINTS = [
    Hostile("big_hidden", "pt", "a tiny model's checkpoint whose config says hidden=65536", _big_hidden),
    Hostile("expanded_weights", "pt", "hidden=4096 weights as stride-0 views of one float",
            _expanded_weights),
    Hostile("huge_feature_size", "pt", "feature size 10**9 in the data signature", _huge_feature_size),
    Hostile("wrong_shapes", "pt", "a weight one column short", _wrong_shapes),
    Hostile("missing_weight", "pt", "a weight left out", _missing_weight),
    Hostile("config_is_list", "pt", "'config' is a list", _config_is_list),
    Hostile("sizes_are_text", "pt", "'feature_sizes' is a string", _sizes_are_text),
    Hostile("deep_checkpoint", "pt", "data.pkl with a key nested a million deep", _deep_checkpoint),
    Hostile("checkpoint_memo_bomb", "pt", "data.pkl sharing one list 100,000 times",
            _checkpoint_memo_bomb),
    Hostile("checkpoint_runs_code", "pt", "data.pkl calling os.system", _checkpoint_runs_code),
    Hostile("compressed_storage", "pt", "a 400 MB storage deflated to 400 kB", _compressed_storage),
    Hostile("legacy_pickle_checkpoint", "pt", "a bare pickle named .pt", _legacy_pickle_checkpoint),
    Hostile("text_as_checkpoint", "pt", "a text file named .pt", _write(b"epoch 3\n")),
    Hostile("empty_checkpoint", "pt", "an empty file", _write(b"")),
]


HOSTILE_JSON = [
    Hostile("deep_config", "json", "a config nested 100,000 deep",
            _write(b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
    Hostile("text_config", "json", "a text file that is not JSON", _write(b"hidden = 64\n")),
]

ALL = HOSTILE_PICKLES + HOSTILE_NPZ + HOSTILE_CHECKPOINTS + HOSTILE_JSON


def build_all(folder: Path, only: list[Hostile] | None = None) -> dict[str, Path]:
    """Write every hostile file (or ``only`` these) into ``folder``; filename -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for h in only if only is not None else ALL:
        path = folder / h.filename
        h.build(path)
        out[h.filename] = path
    return out
