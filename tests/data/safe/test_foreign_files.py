"""JSON depth and size bounds, naming foreign files, messages without unsafe advice, and paths that
are not regular files (pipes, devices) refused before they are opened."""
from __future__ import annotations

import io
import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from guards import no_hang

from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.safe.foreign_files import (MAX_JSON_DEPTH, MAX_JSON_VALUES, describe_foreign, json_shape,
                                     loads_json, safe_message)
from safsd_glnet.data.atomic_files import read_json


def _random_json(rng: random.Random, depth: int):
    """Nested lists, dicts and strings full of brackets, quotes and escapes."""
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([1, 2.5, None, True, 'x[{"]}\\', "[[[", "\\\"}}", "é ☃"])
    if rng.random() < 0.5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}]{{": _random_json(rng, depth - 1) for i in range(rng.randint(0, 3))}


def _depth(x):
    if isinstance(x, list):
        return 1 + max((_depth(v) for v in x), default=0)
    if isinstance(x, dict):
        return 1 + max((_depth(v) for v in x.values()), default=0)
    return 0


def _values(x):
    if isinstance(x, list):
        return 1 + sum(_values(v) for v in x)
    if isinstance(x, dict):
        return 1 + sum(1 + _values(v) for v in x.values())
    return 1


def test_json_shape_matches_the_parsed_structure():
    rng = random.Random(0)
    for _ in range(300):
        obj = _random_json(rng, rng.randint(0, 8))
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
        depth, values = json_shape(text)
        assert depth == _depth(obj), text
        assert values >= _values(obj) - 1 and values <= 2 * _values(obj) + 1, text


def test_depth_limit_is_exact():
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert _depth(loads_json(ok, "x.json")) == MAX_JSON_DEPTH
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(ValueError, match=f"x.json: field 'meta': JSON nested {MAX_JSON_DEPTH + 1} deep"):
        loads_json(deep, "x.json", "meta")
    # Brackets inside strings do not count.
    assert loads_json(json.dumps({"a": "[" * 500}), "x.json") == {"a": "[" * 500}


def test_value_and_size_limits():
    with pytest.raises(ValueError, match="values"):
        loads_json("[" + "0," * MAX_JSON_VALUES + "0]", "big.json")
    with pytest.raises(ValueError, match="more than the 10"):
        loads_json("[1, 2, 3, 4, 5]", "big.json", max_bytes=10)


def test_read_json_refuses_deep_and_foreign_files(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match="deep.json: JSON nested 100001 deep"):
        read_json(deep)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_json(binary)
    text = tmp_path / "text.json"
    text.write_text("hidden = 64\n")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(text)
    big = tmp_path / "big.json"
    big.write_text("[" + "1," * 100 + "1]")
    with pytest.raises(ValueError, match="more than the 50"):
        read_json(big, max_bytes=50)


def test_foreign_files_are_named():
    buf = io.BytesIO()
    np.save(buf, np.zeros(2))
    assert describe_foreign(buf.getvalue()[:64]) == "a single numpy .npy array"
    assert describe_foreign(pickle.dumps({}, protocol=2)) == "a pickle"
    assert describe_foreign(b"PK\x03\x04rest") == "a zip archive"
    assert describe_foreign("dialogue,label\nd1,joie\n".encode()) == "a text file"
    assert describe_foreign(b"") == "an empty file"
    assert describe_foreign(os.urandom(64).replace(b"\x00", b"\xff") + b"\x00") is None


def test_messages_never_advise_unsafe_loading(tmp_path):
    # The real messages of the installed torch and numpy, not copies of them.
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo never",))

    path = tmp_path / "evil.pt"
    torch.save({"x": 1}, path)
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data_pkl = next(n for n in members if n.endswith("data.pkl"))
    members[data_pkl] = pickle.dumps({"x": Evil()}, protocol=2)
    with zipfile.ZipFile(path, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    with pytest.raises(pickle.UnpicklingError) as torch_error:
        torch.load(path, weights_only=True)
    buf = io.BytesIO()
    np.save(buf, np.array([1, None], dtype=object))
    buf.seek(0)
    with pytest.raises(ValueError) as numpy_error:
        np.load(buf, allow_pickle=False)
    for raw in (str(torch_error.value), str(numpy_error.value)):
        assert "weights_only" in raw or "allow_pickle" in raw  # what the check is about
        clean = safe_message(raw)
        assert "weights_only" not in clean and "allow_pickle" not in clean and "\n" not in clean
        assert clean
    assert "system" in safe_message(str(torch_error.value))  # the reason is kept


# ------------------------------------------------------------------------------ special files

def _readers():
    """(name, call(path)) of every loader of a path the user gives."""
    from safsd_glnet.features import audio
    from safsd_glnet.cli import commands as cli
    from safsd_glnet.data import atomic_files as files
    from safsd_glnet.data import load_corpus, safe_load
    from safsd_glnet.data import table_files as tf
    from safsd_glnet.data.tables import read_dialogue_text, read_table

    return [
        ("table", lambda p: read_table(p)),
        ("dialogues", lambda p: read_dialogue_text(p)),
        ("table bytes", lambda p: tf.read_bytes(Path(p))),
        ("corpus", lambda p: load_corpus(p)),
        ("pickle", lambda p: safe_load(p)),
        ("checkpoint", lambda p: files.load_torch(p)),
        ("json", lambda p: files.read_json(p)),
        ("id list", lambda p: cli.read_id_list(str(p))),
        ("audio hash", lambda p: audio.file_sha256(Path(p), "d1", 0)),
    ]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
@pytest.mark.parametrize("name", [name for name, _ in _readers()])
def test_a_fifo_is_refused_before_it_is_opened(fifo, name):
    call = dict(_readers())[name]
    with no_hang(20):
        with pytest.raises(ValueError) as err:
            call(fifo)
    message = str(err.value)
    assert str(fifo) in message and "\n" not in message
    assert "named pipe" in message and "not a regular file" in message


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("name", [name for name, _ in _readers()])
def test_a_device_is_refused_without_reading_it(name):
    call = dict(_readers())[name]
    with no_hang(20):
        with pytest.raises(ValueError) as err:
            call("/dev/zero")
    message = str(err.value)
    assert "/dev/zero" in message and "character device" in message and "not a regular file" in message


def test_regular_file_check(tmp_path):
    from safsd_glnet.data.safe.foreign_files import regular_file

    good = tmp_path / "a.csv"
    good.write_text("x")
    assert regular_file(good, "table file").st_size == 1
    link = tmp_path / "link.csv"
    link.symlink_to(good)  # reading through a link is fine: what it names is checked
    assert regular_file(link, "table file").st_size == 1
    with pytest.raises(DataError, match=r"missing.csv: table file not found$"):
        regular_file(tmp_path / "missing.csv", "table file")
    with pytest.raises(DataError, match=r": is a folder, expected an audio file$"):
        regular_file(tmp_path, "audio file")
    with pytest.raises(DataError, match=r"^d1.wav: dialogue 'x', utterance 2: audio file not found$"):
        regular_file(tmp_path / "d1.wav", "audio file", where="d1.wav: dialogue 'x', utterance 2")
