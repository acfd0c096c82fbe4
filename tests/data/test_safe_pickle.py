"""The restricted unpickler: refuses code-running pickles, loads plain data and numpy."""
from __future__ import annotations

import collections
import os
import pathlib
import pickle

import numpy as np
import pytest

from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.safe_pickle import UnsafePickleError, safe_load, safe_loads


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
