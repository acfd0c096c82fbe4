"""Audio files that are not audio, and audio paths that leave their folder.

Needs only ``soundfile`` and ``audresample`` (they come with ``opensmile``), not the espeak-ng
speech of tests/features/test_audio.py: every file here is written by the test with soundfile.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile", reason="soundfile not installed (pip install 'safsd-glnet[audio]')")
pytest.importorskip("audresample", reason="audresample not installed (pip install 'safsd-glnet[audio]')")

from safsd_glnet.features import audio  # noqa: E402
from safsd_glnet.data.corpus import DataError  # noqa: E402
from safsd_glnet.data.tables import read_table  # noqa: E402

RATE = 16_000


def tone(seconds: float = 0.5, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def write_float_wav(path: Path, x: np.ndarray) -> Path:
    sf.write(str(path), x, RATE, subtype="FLOAT")
    return path


def test_nan_samples_are_non_finite_not_silent(tmp_path):
    x = np.full(RATE // 2, np.nan, dtype=np.float32)
    path = write_float_wav(tmp_path / "nan.wav", x)
    with pytest.raises(DataError) as err:
        audio.load_signal(path, "d1", 0)
    message = str(err.value)
    assert message.startswith(f"{path}: dialogue 'd1', utterance 0: ") and "non-finite" in message
    assert "silent" not in message and "\n" not in message
    try:
        import opensmile  # noqa: F401
    except ImportError:
        pass
    else:  # the symptom: extraction called such a file "silent (all zero)"
        with pytest.raises(DataError, match="non-finite"):
            audio.extract_file(path, "egemaps", "d1", 0)
    x = tone()
    x[100] = np.inf
    with pytest.raises(DataError, match="non-finite"):
        audio.load_signal(write_float_wav(tmp_path / "inf.wav", x))


def test_float_samples_beyond_full_scale_are_refused(tmp_path):
    x = tone()
    x[1000] = 3e38  # the garbage sample
    path = write_float_wav(tmp_path / "huge.wav", x)
    with pytest.raises(DataError) as err:
        audio.load_signal(path, "d2", 3)
    message = str(err.value)
    assert message.startswith(f"{path}: dialogue 'd2', utterance 3: ") and "full scale" in message
    write_float_wav(tmp_path / "over.wav", tone(level=1.5))
    with pytest.raises(DataError, match="full scale"):
        audio.load_signal(tmp_path / "over.wav")
    # Within the tolerance, and any integer PCM file, is read as it is.
    y = audio.load_signal(write_float_wav(tmp_path / "edge.wav", tone(level=1.0)))
    assert y.shape == (1, RATE // 2) and np.abs(y).max() <= 1.0 + 1e-6
    sf.write(str(tmp_path / "pcm.wav"), tone(level=0.99), RATE, subtype="PCM_16")
    assert audio.load_signal(tmp_path / "pcm.wav").shape == (1, RATE // 2)


def write_table(folder: Path, wavs: list[str]) -> Path:
    path = folder / "talks.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["split", "dialogue_id", "utterance_index", "speaker", "emotion", "text", "wav"])
        for i, wav in enumerate(wavs):
            w.writerow(["test", "d1", i, "M", "sad", f"line {i}", wav])
    return path


@pytest.mark.parametrize("wav", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.wav"])
def test_audio_paths_stay_in_the_audio_folder(tmp_path, wav):
    folder = tmp_path / "corpus"
    folder.mkdir()
    table = read_table(write_table(folder, ["a.wav", wav]))
    with pytest.raises(DataError) as err:
        audio.audio_paths(table, column="wav")
    message = str(err.value)
    assert "\n" not in message and "dialogue 'd1', utterance 1" in message and wav in message
    assert "outside the audio folder" in message and "--audio-any-path" in message
    # The user may allow it: the path is then taken as written (from the folder when relative).
    allowed = audio.audio_paths(table, column="wav", allow_any_path=True)["d1"][1]
    assert allowed == (Path(wav) if Path(wav).is_absolute() else folder / wav)
    # A pattern whose placeholders come from the table is held to the same rule.
    spoofed = read_table(write_table(folder, ["a.wav", "b.wav"]))
    spoofed.dialogues[0].speaker_labels[1] = "../../../etc"
    with pytest.raises(DataError, match="outside the audio folder"):
        audio.audio_paths(spoofed, pattern="{speaker}/{position}.wav")


def test_paths_inside_the_folder_still_work(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    table = read_table(write_table(folder, ["a.wav", "sub/../b.wav", "./sub/c.wav"]))
    assert audio.audio_paths(table, column="wav")["d1"] == [folder / "a.wav", folder / "sub/../b.wav",
                                                            folder / "sub" / "c.wav"]
    other = tmp_path / "audio"
    assert audio.audio_paths(table, column="wav", audio_dir=other)["d1"][0] == other / "a.wav"
    with pytest.raises(DataError, match="outside the audio folder"):
        audio.audio_paths(read_table(write_table(folder, [str(folder / "a.wav")])), column="wav", audio_dir=other)


def test_the_audio_folder_option_reaches_the_command_line(tmp_path):
    from safsd_glnet.cli.commands import build_parser

    args = build_parser().parse_args(["features", "--table", "t.csv", "--audio-column", "wav", "--audio-any-path",
                                      "--out", "x.npz"])
    assert args.audio_any_path is True
