"""The opcode pre-scan: standard files pass with their sizes bounded, each rule refuses at its edge.

Every hostile pickle here is only scanned, never unpickled: the scan runs no C code that the
file could crash.
"""
from __future__ import annotations

import collections
import pickle
import pickletools
import struct
import tracemalloc

import numpy as np
import pytest

from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.safe.pickle_scan import (MAX_NESTING, MAX_UNSALTED_KEYS, ScanRefused,
                                          pickle_limits, scan_pickle)
from sdt_fixtures import make_sdt_fields, pack_sdt_fields

PROTO2 = b"\x80\x02"


def _weight(obj, seen_depth=0):
    """Reference weight: elements reached walking ``obj``, every reference counted again
    (str / bytes by length, arrays by their bytes)."""
    if isinstance(obj, (str, bytes)):
        return max(1, len(obj))
    if isinstance(obj, np.ndarray):
        return 1 + obj.nbytes
    if isinstance(obj, dict):
        return 1 + sum(_weight(k) + _weight(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return 1 + sum(_weight(x) for x in obj)
    return 1


def _depth(obj):
    if isinstance(obj, dict):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in obj.items()), default=0)
    if isinstance(obj, (list, tuple, set, frozenset)):
        return 1 + max((_depth(x) for x in obj), default=0)
    return 1 if isinstance(obj, np.ndarray) else 0


def _standard_files():
    for kind in ("iemocap", "meld"):
        obj = pack_sdt_fields(make_sdt_fields(kind, 6, seed=3), kind)
        for protocol in range(6):
            yield f"{kind}-p{protocol}", obj, pickle.dumps(obj, protocol=protocol)


@pytest.mark.parametrize("name, obj, data", list(_standard_files()), ids=lambda x: x if isinstance(x, str) else "")
def test_standard_files_pass_with_bounds_above_the_truth(name, obj, data):
    stats = scan_pickle(data, name)
    # The scan's figures bound what the unpickler really builds...
    assert stats.weight >= _weight(obj)
    assert stats.depth >= _depth(obj)
    pickle.loads(data)  # first-use costs (imports, codec caches) are not the file's
    tracemalloc.start()
    pickle.loads(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.memory >= peak
    # ...and a standard file is well inside the limits: one element per byte at most.
    memory, weight, hash_work = pickle_limits(len(data))
    assert stats.weight <= len(data) and stats.memory <= memory and stats.hash_work <= hash_work


@pytest.mark.parametrize("obj", [
    [frozenset(range(i, i + 5)) for i in range(2000)],
    {f"key{i}": (i, float(i), None) for i in range(3000)},
    [[0.5] * 50 for _ in range(500)],
    collections.OrderedDict((str(i), [i]) for i in range(1000)),
    [b"x" * 100] * 3 + ["\U0001F600" + "a" * 500],
], ids=["frozensets", "dict-of-tuples", "lists", "ordered", "texts"])
def test_memory_estimate_is_an_upper_bound(obj):
    for protocol in (2, 4):
        data = pickle.dumps(obj, protocol=protocol)
        stats = scan_pickle(data, "x")
        pickle.loads(data)  # first-use costs (imports, codec caches) are not the file's
        tracemalloc.start()
        pickle.loads(data)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak <= stats.memory, (protocol, peak, stats.memory)
        assert stats.weight >= _weight(obj)


def _nested_tuples(depth: int) -> bytes:
    return PROTO2 + b"N" + b"\x85" * depth + b"."


def test_nesting_limit_is_exact():
    assert scan_pickle(_nested_tuples(MAX_NESTING), "ok").depth == MAX_NESTING
    with pytest.raises(ScanRefused, match=f"nest more than {MAX_NESTING} deep"):
        scan_pickle(_nested_tuples(MAX_NESTING + 1), "deep.pkl")
    # Nesting through MARK ... LIST and through REDUCE counts the same.
    marks = PROTO2 + b"(" * (MAX_NESTING + 1) + b"N" + b"l" * (MAX_NESTING + 1) + b"."
    with pytest.raises(ScanRefused, match="nest"):
        scan_pickle(marks, "marks.pkl")
    nested = [[]]
    for _ in range(MAX_NESTING + 1):
        nested = [nested]
    with pytest.raises(ScanRefused, match="nest"):
        scan_pickle(pickle.dumps(nested, protocol=2), "lists.pkl")


def _shared_list(refs: int, items: int = 1000) -> bytes:
    return pickle.dumps([[7] * items] * refs, protocol=2)


def test_shared_references_are_counted_each_time():
    small = _shared_list(100)
    assert scan_pickle(small, "ok").weight >= 100 * 1000
    big = _shared_list(2000)  # 2 million elements from 6 kB
    limit = pickle_limits(len(big))[1]
    assert 2000 * 1000 > limit
    with pytest.raises(ScanRefused, match="shared references"):
        scan_pickle(big, "shared.pkl")


def _exponential_key(levels: int) -> bytes:
    out = [PROTO2, b"}", b"N\x85q\x000"]
    for k in range(1, levels + 1):
        out.append(b"h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"\x86q" + bytes([k])
                   + (b"0" if k < levels else b""))
    return b"".join(out) + b"Ns."


def test_hashing_shared_keys_is_bounded():
    assert scan_pickle(_exponential_key(10), "ok").hash_work >= 2**10
    with pytest.raises(ScanRefused, match="hashing"):
        scan_pickle(_exponential_key(30), "dag.pkl")


def _int_keys(n: int) -> bytes:
    return PROTO2 + b"}(" + b"".join(b"J" + struct.pack("<i", i) + b"N" for i in range(n)) + b"u."


def test_unsalted_keys_limit_is_exact():
    scan_pickle(_int_keys(MAX_UNSALTED_KEYS), "ok")
    with pytest.raises(ScanRefused, match="collide"):
        scan_pickle(_int_keys(MAX_UNSALTED_KEYS + 1), "keys.pkl")
    # String keys hash with a per-process salt: no such limit.
    scan_pickle(pickle.dumps({f"k{i}": i for i in range(MAX_UNSALTED_KEYS + 10)}, protocol=2), "ok")


def _sets_of_one_list(copies: int) -> bytes:
    """A list of 1000 ints, then ``copies`` times set(that list), each dropped again."""
    items = b"(" + b"K\x07" * 1000 + b"l"
    head = PROTO2 + b"c__builtin__\nset\nq\x00" + items + b"q\x010"
    return head + b"h\x00h\x01\x85R0" * copies + b"N."


def test_memory_budget():
    # Each set() copies the list's 1000 items (about 128 kB of table); the estimate adds
    # them up whether or not the pickle drops the sets afterwards.
    assert scan_pickle(_sets_of_one_list(200), "ok").memory > 200 * 128_000
    with pytest.raises(ScanRefused, match="MiB"):
        scan_pickle(_sets_of_one_list(400), "sets.pkl")


@pytest.mark.parametrize("data, match", [
    (PROTO2 + b"N" + b"r" + struct.pack("<I", 1) + b".", "skips ahead"),
    (PROTO2 + b"]q\x00h\x00Na.", "after the pickle shared it"),
    (PROTO2 + b"]2Na.", "after the pickle shared it"),
    (b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"N.", "frame claims"),
    (PROTO2 + b"c__builtin__\nbytearray\nJ\x00\xe4\x0b\x54\x85R.", "bytearray"),
    (PROTO2 + b"c__builtin__\nbytes\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00idna\x86R.", "codec"),
    (PROTO2 + b"c__builtin__\nunicode\n]\x85R.", "something other than text"),
    (PROTO2 + b"Pid\n.", "persistent id"),
    (PROTO2 + b"\x82\x01.", "extension"),
    (PROTO2 + b"\x97.", "out-of-band"),
    (PROTO2 + b"(c__builtin__\nlist\no.", "INST / OBJ"),
    (PROTO2 + b"}N}b.", "BUILD"),
], ids=["memo-skip", "mutate-get", "mutate-dup", "frame", "bytearray-n", "codec", "str-of-list",
        "persid", "ext", "buffer", "obj", "build-dict"])
def test_structural_rules(data, match):
    with pytest.raises(ScanRefused, match=match) as info:
        scan_pickle(data, "rule.pkl")
    assert str(info.value).startswith("rule.pkl: refused to load:")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data", [
    PROTO2 + b"h\x00.",  # GET of nothing
    PROTO2 + b"0.",  # POP of nothing
    PROTO2 + b"N",  # no STOP
    PROTO2 + b"X\xff\x00\x00\x00ab",  # a payload longer than the file
    PROTO2 + b"\xff.",  # not an opcode
    b"I12x\n.",  # a malformed text argument
], ids=["get", "pop", "no-stop", "payload", "opcode", "text-arg"])
def test_corrupted_files(data):
    with pytest.raises(DataError) as info:
        scan_pickle(data, "bad.pkl")
    assert not isinstance(info.value, ScanRefused)
    assert str(info.value).startswith("bad.pkl: ")


class _Reduce:
    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _multiarray(name):
    try:
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray
    return getattr(multiarray, name)


@pytest.mark.parametrize("obj, match", [
    (_Reduce(np.ndarray, ((1,), np.dtype("f4"), b"AAAA")), "numpy.ndarray"),
    (np.array([1, "x"], dtype=object), "dtype 'O8'"),
    (np.zeros(2, dtype=[("a", "<f4")]), "dtype state"),
    (np.zeros(2, dtype="M8[ns]"), "dtype 'M8'"),
    (_Reduce(np.dtype, ("V8", False, True), (3, "|", None, None, None, 8, 1, 63)), "dtype state"),
    (_Reduce(_multiarray("_reconstruct"), (np.ndarray, (10,), b"b")), "non-empty shape"),
], ids=["ndarray-call", "object", "structured", "datetime", "flags", "reconstruct"])
def test_numpy_rules(obj, match):
    for protocol in (2, 4, 5):
        with pytest.raises(ScanRefused, match=match):
            scan_pickle(pickle.dumps({"x": obj}, protocol=protocol), "np.pkl")


def test_numpy_arrays_of_every_plain_kind_pass():
    arrays = [np.arange(6, dtype=t).reshape(2, 3) for t in ("f4", ">f8", "i8", "u1", "c8")]
    arrays += [np.array([True, False]), np.array(["M", "F"]), np.array([b"ab"]), np.zeros(0),
               np.float32(2.5), np.asfortranarray(np.ones((2, 3)))]
    for protocol in (0, 2, 3, 4, 5):
        scan_pickle(pickle.dumps(arrays, protocol=protocol), "ok.pkl")


def test_generic_profile_checks_structure_only():
    import collections as c

    data = pickle.dumps(c.OrderedDict(a=1), protocol=2)
    scan_pickle(data, "x", profile="generic")
    with pytest.raises(ScanRefused, match="nest"):
        scan_pickle(_nested_tuples(MAX_NESTING + 1), "x", profile="generic")


def _arrays_for_the_fast_path():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (1, 4, 16, 17, 300)]
    arrays += [rng.standard_normal((3, 5)), np.asfortranarray(rng.standard_normal((4, 2))),
               rng.standard_normal((2, 3, 4)).astype(">f4"), np.float64(2.5) * np.ones(()),
               np.arange(70_000, dtype=np.int8), np.array(["M", "F", "MF"]), np.zeros((0, 3)),
               np.array([True, False, True]), rng.integers(0, 9, (2, 2, 2, 2))]
    return [arrays, {"a": arrays, "b": [arrays[0]] * 3, "c": list(reversed(arrays))}]


def _as_python2(data: bytes) -> bytes:
    """A protocol-3 pickle with its bytes written as Python 2 strings (BINSTRING), as in a
    file Python 2 wrote; the unpickler decodes them as latin1 and numpy reads those."""
    out = bytearray(data)
    for op, _, pos in pickletools.genops(data):
        if op.name in ("SHORT_BINBYTES", "BINBYTES"):
            out[pos] = ord("U" if op.name == "SHORT_BINBYTES" else "T")
    out[1] = 2
    return bytes(out)


@pytest.mark.parametrize("protocol", [2, 3, 4, "py2"])
def test_array_fast_path_equals_the_opcode_by_opcode_scan(protocol, monkeypatch):
    """numpy's array block is simulated at once; the result must be the generic handlers'."""
    from safsd_glnet.data.safe import pickle_scan
    from safsd_glnet.data.safe.unpickler import safe_loads

    calls = []
    real = pickle_scan._Scanner.array_block

    def counting(self, *args):
        out = real(self, *args)
        calls.append(out is not None)
        return out

    for obj in _arrays_for_the_fast_path():
        if protocol == "py2":
            data = _as_python2(pickle.dumps(obj, protocol=3))
            loaded = safe_loads(data)
            pairs = zip(loaded, obj) if isinstance(obj, list) else zip(loaded["a"], obj["a"])
            assert all(np.array_equal(a, b) for a, b in pairs)
        else:
            data = pickle.dumps(obj, protocol=protocol)
        monkeypatch.setattr(pickle_scan._Scanner, "array_block", counting)
        fast = scan_pickle(data, "x")
        monkeypatch.setattr(pickle_scan._Scanner, "array_block", lambda self, *args: None)
        slow = scan_pickle(data, "x")
        assert fast == slow
    assert sum(calls) >= 10  # the fast path did the work
    # A broken array (data one byte short) gets the same message either way.
    data = bytearray(pickle.dumps([np.zeros(3), np.zeros(4, np.float32)], protocol=4))
    at = data.rindex(struct.pack("<B", 16) + bytes(16))  # SHORT_BINBYTES of the second array
    data[at] = 15
    del data[at + 1]
    messages = []
    for block in (real, lambda self, *args: None):
        monkeypatch.setattr(pickle_scan._Scanner, "array_block", block)
        with pytest.raises(DataError) as info:
            scan_pickle(bytes(data), "x")
        messages.append(str(info.value))
    assert messages[0] == messages[1]
