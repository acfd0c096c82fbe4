"""The restricted unpickler: refuses code-running pickles, loads plain data and numpy."""
from __future__ import annotations

import collections
import io
import os
import pathlib
import pickle

import numpy as np
import pytest

from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.safe.unpickler import UnsafePickleError, safe_load, safe_loads


class WritesFile:
    """Unpickling this calls ``Path.write_text(target, "pwned")``."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.target, "pwned"))


class RunsShell:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def _write(path: pathlib.Path, obj, protocol: int) -> pathlib.Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_file_writing_payload_is_refused_and_nothing_runs(tmp_path, protocol):
    # Control: the payload is live; plain pickle really does write its file.
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(WritesFile(control), protocol=protocol))
    assert control.read_text() == "pwned"

    target = tmp_path / "pwned.txt"
    path = _write(tmp_path / "evil.pkl", {"features": np.zeros(3), "x": WritesFile(target)}, protocol)
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    assert not target.exists()
    msg = str(info.value)
    assert str(path) in msg
    # Protocols < 4 reach the method through getattr, later ones name it directly.
    assert "write_text" in msg or "getattr" in msg


def test_os_system_payload_is_refused(tmp_path):
    path = _write(tmp_path / "shell.pkl", [1, RunsShell()], 2)
    with pytest.raises(UnsafePickleError, match="system"):
        safe_load(path)


@pytest.mark.parametrize("payload, name", [
    (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
    (b"c__builtin__\ngetattr\n(c__builtin__\ndict\nS'items'\ntR.", "__builtin__.getattr"),
    (b"cbuiltins\n__import__\n(S'os'\ntR.", "builtins.__import__"),
    (b"cnumpy\nload\n(S'x.npy'\ntR.", "numpy.load"),
    (b"ccollections\nnamedtuple\n(S'a'\nS'b'\ntR.", "collections.namedtuple"),
])
def test_globals_outside_the_list_are_refused(payload, name):
    with pytest.raises(UnsafePickleError) as info:
        safe_loads(payload, source="mem.pkl")
    assert name in str(info.value) and "mem.pkl" in str(info.value)


def test_codecs_encode_only_for_latin1():
    # What Python 3 writes for bytes at protocol 2: _codecs.encode(text, "latin1").
    assert safe_loads(pickle.dumps(b"\x00\xffab", protocol=2)) == b"\x00\xffab"
    evil = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(DataError, match="rot13"):
        safe_loads(evil)


def _sample():
    d = collections.defaultdict(list)
    d["a"].append(1)
    return {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "f64": np.linspace(0, 1, 5),
        "i64": np.array([[1, -2], [3, 4]], dtype=np.int64),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "strings": np.array(["M", "F"]),
        "scalars": [np.float32(1.5), np.int64(7), np.bool_(True), np.float64(2.25)],
        "dtype": np.dtype("float32"),
        "plain": [1, 2.5, complex(1, 2), "text", b"bytes", (1, 2), {3, 4}, frozenset([5]),
                  bytearray(b"xy"), None, True],
        "ordered": collections.OrderedDict(b=1, a=2),
        "default": d,
    }


def _assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_and_numpy_load(tmp_path, protocol):
    obj = _sample()
    loaded = safe_load(_write(tmp_path / "ok.pkl", obj, protocol))
    _assert_same(obj, loaded)
    assert loaded["default"].default_factory is list


class FromBuffer:
    """Pickles as numpy's protocol-5 ``_frombuffer(bytes, dtype, shape, order)`` call."""

    def __init__(self, a: np.ndarray):
        self.a = a

    def __reduce__(self):
        return (_frombuffer(), (self.a.tobytes(), self.a.dtype, self.a.shape, "C"))


def _frombuffer():
    try:
        from numpy._core.numeric import _frombuffer as f  # numpy 2
    except ImportError:
        from numpy.core.numeric import _frombuffer as f  # numpy 1.x
    return f


@pytest.mark.parametrize("protocol", [0, 2])
def test_numpy_1x_module_names_load(protocol):
    # numpy 1.x wrote numpy.core.multiarray / numpy.core.numeric; numpy 2 writes numpy._core.
    # Protocols 0-2 name globals as text lines, so the old names can be written by replacement.
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = pickle.dumps({"a": a, "s": np.float32(3.5), "b": FromBuffer(a)}, protocol=protocol)
    old = data.replace(b"numpy._core.", b"numpy.core.")
    for name in (b"numpy.core.multiarray\n_reconstruct", b"numpy.core.multiarray\nscalar",
                 b"numpy.core.numeric\n_frombuffer"):
        assert name in old
    assert b"numpy._core" not in old
    out = safe_loads(old)
    assert np.array_equal(out["a"], a) and out["a"].dtype == np.float32
    assert out["s"] == np.float32(3.5) and isinstance(out["s"], np.float32)
    assert np.array_equal(out["b"], a) and out["b"].dtype == np.float32


def test_python2_pickle_strings_decode_as_latin1():
    # A Python 2 protocol-2 pickle of {'a': 'caf\xe9'} (str is bytes there) and a set.
    py2 = b"\x80\x02}q\x00(U\x01aq\x01U\x04caf\xe9q\x02U\x01sc__builtin__\nset\n]q\x03K\x01a\x85Rq\x04u."
    assert safe_loads(py2) == {"a": "caf\u00e9", "s": {1}}


def test_truncated_garbage_empty_and_missing_files(tmp_path):
    good = pickle.dumps(_sample(), protocol=4)
    cases = {"truncated.pkl": good[: len(good) // 2], "empty.pkl": b"",
             "garbage.pkl": b"this is not a pickle at all\n" * 3}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataError) as info:
            safe_load(path)
        assert str(path) in str(info.value)
        assert not isinstance(info.value, UnsafePickleError), name
    with pytest.raises(DataError, match="not found"):
        safe_load(tmp_path / "missing.pkl")


# ------------------------------------------------------------------------------------------
# The second and third layers, tested on their own (without the pre-scan in front of them).

from safsd_glnet.data.safe import unpickler as sp  # noqa: E402


def _forged_v8() -> np.dtype:
    """dtype('V8') whose flags say it holds objects: what a BUILD state can do (never used)."""
    dt = np.dtype("V8")
    dt.__setstate__((3, "|", None, None, None, 8, 1, 63))
    return dt


def test_object_dtypes_are_refused_wherever_they_are_built():
    forged = _forged_v8()
    assert forged.hasobject  # numpy trusts the flags: the reason for the checks below
    for bad in (np.dtype("O"), np.dtype([("a", "O")]), forged, np.dtype([("a", "<f4")]),
                np.dtype("M8[ns]"), np.dtype("V0")):
        assert sp.dtype_problem(bad) is not None, bad
    for good in ("f4", ">f8", "i8", "u1", "?", "U5", "S3", "V8", "c16"):
        assert sp.dtype_problem(np.dtype(good)) is None, good
    with pytest.raises(pickle.UnpicklingError):
        sp._safe_dtype("O")
    with pytest.raises(pickle.UnpicklingError):
        sp._safe_dtype("f4,O")
    with pytest.raises(pickle.UnpicklingError):
        sp._safe_scalar(forged, b"AAAAAAAA")
    with pytest.raises(pickle.UnpicklingError):
        sp._safe_frombuffer(b"AAAAAAAA", np.dtype("O"), (1,), "C")
    with pytest.raises(pickle.UnpicklingError):
        sp._NDARRAY((1,), np.dtype("f4"), b"AAAA")
    with pytest.raises(pickle.UnpicklingError):
        sp._safe_reconstruct(sp._NDARRAY, (10**10,), b"b")
    assert sp._safe_reconstruct(sp._NDARRAY, (0,), b"b").shape == (0,)
    assert sp._safe_scalar(np.dtype("f4"), np.float32(1.5).tobytes()) == np.float32(1.5)


def test_text_calls_only_convert_text():
    for kind in (bytes, bytearray):
        with pytest.raises(pickle.UnpicklingError):
            sp._text_only(kind)(10**10)
    with pytest.raises(pickle.UnpicklingError):
        sp._text_only(str)([[0.5] * 10] * 10)
    with pytest.raises(pickle.UnpicklingError):
        sp._text_only(bytes)("abc", "idna")
    assert sp._text_only(bytes)("caf\xe9", "latin1") == b"caf\xe9"
    assert sp._text_only(str)() == ""


def test_unpickler_alone_refuses_a_forged_object_array():
    # Without the scan in front, the direct ndarray call still never happens.
    class Forged:
        def __reduce__(self):
            return (np.ndarray, ((1,), np.dtype("f4"), b"AAAA"))

    data = pickle.dumps({"x": Forged()}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="ndarray"):
        sp.SafeUnpickler(io.BytesIO(data)).load()


def test_loaded_results_are_checked_for_object_arrays():
    sp._check_loaded({"a": [np.zeros(3), (np.float32(1),)], "d": np.dtype("f4")}, "ok.pkl")
    for bad in (np.array([1, None], dtype=object), np.zeros(1, dtype=[("a", "O")]), _forged_v8()):
        with pytest.raises(UnsafePickleError, match="bad.pkl"):
            sp._check_loaded({"k": [1, {"deep": (bad,)}]}, "bad.pkl")


def test_python3_protocol2_names_load():
    # Python 3 writes str as __builtin__.unicode at protocols <= 2 (for Python 2 readers).
    d = collections.defaultdict(str)
    d["a"] += "x"
    out = safe_loads(pickle.dumps({"d": d, "b": b"", "t": bytearray(b"ab")}, protocol=2))
    assert out["d"] == {"a": "x"} and out["d"].default_factory() == ""
    assert out["b"] == b"" and out["t"] == bytearray(b"ab")


def test_foreign_files_are_named(tmp_path):
    cases = {"zip.pkl": (b"PK\x03\x04" + b"\x00" * 40, "zip archive"),
             "text.pkl": (b"speaker,label\nM,happy\n", "is a text file"),
             "empty.pkl": (b"", "empty")}
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=words):
            safe_load(path)
    # A protocol-0 pickle is text too, and still loads.
    path = tmp_path / "p0.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2.5, "x"]}, protocol=0))
    assert safe_load(path) == {"a": [1, 2.5, "x"]}
