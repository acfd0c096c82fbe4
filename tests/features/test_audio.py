"""Audio features (openSMILE functionals) for utterance tables, on real synthesised speech.

Speech comes from Debian's ``espeak-ng`` (``apt-get install espeak-ng``; ``.ci/run`` installs
it); without it, or without the ``opensmile`` package, these tests skip with a message. The
references are independent of the kit's reading path: opensmile run directly on a file,
numpy's RMS, scipy's polyphase resampler for the 44.1 / 16 kHz versions.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration  # speech from espeak-ng, features from openSMILE

ESPEAK = shutil.which("espeak-ng")
if ESPEAK is None:
    pytest.skip("espeak-ng not found: the audio tests synthesise speech with it "
                "(apt-get install espeak-ng)", allow_module_level=True)
opensmile = pytest.importorskip("opensmile", reason="opensmile not installed (pip install 'safsd-glnet[audio]')")
sf = pytest.importorskip("soundfile", reason="soundfile not installed (comes with opensmile)")
from scipy.signal import resample_poly  # noqa: E402

from safsd_glnet.features import audio  # noqa: E402
from safsd_glnet.features import text as feat  # noqa: E402
from safsd_glnet.data.corpus import DataError  # noqa: E402
from safsd_glnet.data.tables import read_table  # noqa: E402

HEADER = ["split", "dialogue_id", "utterance_index", "speaker", "emotion", "text", "wav"]
# Three splits, two dialogues of two or three utterances each in train: enough to train.
ROWS = [
    ["train", "d1", 0, "M", "neutral", "How are you doing today?"],
    ["train", "d1", 1, "F", "sad", "Not well. My dog died last night."],
    ["train", "d1", 2, "M", "sad", "I am so sorry to hear that."],
    ["train", "d2", 0, "F", "angry", "Get out of my office right now!"],
    ["train", "d2", 1, "M", "frustrated", "I told you this would never work."],
    ["valid", "d3", 0, "M", "happy", "We won the match, can you believe it?"],
    ["valid", "d3", 1, "F", "excited", "That is the best news all year!"],
    ["test", "d4", 0, "F", "neutral", "The train leaves at noon."],
    ["test", "d4", 1, "M", "happy", "Great, then we have time for lunch."],
]


def speak(text: str, path: Path) -> Path:
    """espeak-ng's voice saying ``text`` (22050 Hz mono 16-bit WAV)."""
    subprocess.run([ESPEAK, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """One spoken clip per row of ROWS, named ``<dialogue>_<order>.wav``."""
    folder = tmp_path_factory.mktemp("speech")
    return {f"{r[1]}_{r[2]}": speak(r[5], folder / f"{r[1]}_{r[2]}.wav") for r in ROWS}


def write_table(folder: Path, wav_for=lambda r: f"{r[1]}_{r[2]}.wav") -> Path:
    path = folder / "talks.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows([r + [wav_for(r)] for r in ROWS])
    return path


@pytest.fixture
def table_dir(tmp_path, clips) -> Path:
    """A table with a wav column and the clips beside it."""
    for name, src in clips.items():
        shutil.copy(src, tmp_path / f"{name}.wav")
    write_table(tmp_path)
    return tmp_path


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    x, rate = sf.read(str(path), dtype="float64")
    assert x.ndim == 1
    return x, rate


def to_16k_float_wav(x: np.ndarray, rate: int, path: Path) -> Path:
    """scipy's polyphase resampler (not the kit's) to 16 kHz, stored as float (no rounding)."""
    g = np.gcd(16000, rate)
    sf.write(str(path), resample_poly(x, 16000 // g, rate // g), 16000, subtype="FLOAT")
    return path


def opensmile_direct(path: Path, config: str) -> np.ndarray:
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, config),
                            feature_level=opensmile.FeatureLevel.Functionals)
    return smile.process_file(str(path)).to_numpy().ravel()


# ------------------------------------------------------------------------- one file

@pytest.mark.parametrize("name,config,size", [("egemaps", "eGeMAPSv02", 88), ("compare", "ComParE_2016", 6373)])
def test_feature_sizes_and_values_equal_opensmile_on_16k_mono(clips, tmp_path, name, config, size):
    x, rate = read_mono(clips["d1_1"])
    wav16 = to_16k_float_wav(x, rate, tmp_path / "d1_1_16k.wav")
    y = audio.extract_file(wav16, name, "d1", 1)
    assert y.shape == (size,) and y.dtype == np.float32 and audio.feature_set(name).size == size
    # A 16 kHz mono file reaches opensmile unchanged: same numbers as opensmile on the file.
    np.testing.assert_allclose(y, opensmile_direct(wav16, config), rtol=1e-5, atol=1e-5)


def test_stereo_is_mixed_to_the_mean_of_its_channels(clips, tmp_path):
    x, rate = read_mono(clips["d1_0"])
    x16 = resample_poly(x, 320, 441)
    sf.write(str(tmp_path / "stereo.wav"), np.stack([x16, 0.5 * x16], axis=1), 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "mean.wav"), 0.75 * x16, 16000, subtype="FLOAT")
    got = audio.extract_file(tmp_path / "stereo.wav")
    np.testing.assert_allclose(got, opensmile_direct(tmp_path / "mean.wav", "eGeMAPSv02"), rtol=1e-4, atol=1e-4)
    left_only = opensmile_direct(tmp_path / "stereo.wav", "eGeMAPSv02")  # opensmile's own default
    assert np.abs(got - left_only).max() > 1.0  # so the test would see a channel-0-only reader


@pytest.mark.parametrize("name,share", [("egemaps", 0.95), ("compare", 0.85)])
def test_a_44k_file_and_its_16k_version_give_close_features(clips, tmp_path, name, share):
    rows44, rows16 = [], []
    keys = ["d1_0", "d2_0", "d3_1", "d4_0"]
    for k in keys:
        x, rate = read_mono(clips[k])
        sf.write(str(tmp_path / f"{k}_44.wav"), resample_poly(x, 2, 1), 44100, subtype="FLOAT")  # 22.05 -> 44.1
        to_16k_float_wav(x, rate, tmp_path / f"{k}_16.wav")
        rows44.append(audio.extract_file(tmp_path / f"{k}_44.wav", name))
        rows16.append(audio.extract_file(tmp_path / f"{k}_16.wav", name))
    a, b = np.array(rows44, np.float64), np.array(rows16, np.float64)

    def rel(u, v):
        return np.abs(u - v) / (np.abs(v) + 1e-6)

    same = rel(a, b)
    assert np.median(same) < 0.01, np.median(same)
    assert (same < 0.05).mean() > share, (same < 0.05).mean()
    # The same measure between different sentences is far from close: the check can fail.
    other = rel(a[[1, 2, 3, 0]], b)
    assert np.median(other) > 0.05 and (other < 0.05).mean() < 0.5


def test_rms_and_duration_thresholds(clips, tmp_path):
    x, rate = read_mono(clips["d4_0"])
    x = x / np.sqrt(np.mean(x ** 2))  # RMS 1.0, i.e. 0 dB
    quiet = x * 10 ** (-50 / 20)  # -50 dB: quiet speech, accepted
    sf.write(str(tmp_path / "quiet.wav"), quiet, rate, subtype="FLOAT")
    assert audio.extract_file(tmp_path / "quiet.wav").shape == (88,)
    np.testing.assert_allclose(audio.rms_db(quiet), -50.0, atol=1e-9)
    sf.write(str(tmp_path / "faint.wav"), x * 10 ** (-70 / 20), rate, subtype="FLOAT")
    with pytest.raises(DataError, match=r"silent \(RMS -70\.\d dB, below the -60 dB"):
        audio.extract_file(tmp_path / "faint.wav", dialogue="d9", position=3)
    assert audio.extract_file(tmp_path / "faint.wav", min_rms_db=-80).shape == (88,)
    assert audio.rms_db(np.zeros(10)) == -np.inf
    short = x[rate // 2: rate // 2 + int(0.08 * rate)]  # 80 ms of speech
    sf.write(str(tmp_path / "short.wav"), short * 0.1, rate, subtype="FLOAT")
    with pytest.raises(DataError, match=r"0\.080 s long, shorter than the 0\.1 s minimum"):
        audio.extract_file(tmp_path / "short.wav")
    assert audio.extract_file(tmp_path / "short.wav", min_seconds=0.07).shape == (88,)
    with pytest.raises(DataError, match="longer than 1 s"):
        audio.extract_file(clips["d1_0"], max_seconds=1.0)
    # 16 channels for 2 s at 48 kHz: under 10 s, but more samples than 10 s of 48 kHz stereo.
    sf.write(str(tmp_path / "wide.wav"), np.zeros((96000, 16), np.float32), 48000, subtype="PCM_16")
    with pytest.raises(DataError, match=r"more than 960000 samples to decode \(16 channels at 48000 Hz\)"):
        audio.extract_file(tmp_path / "wide.wav", max_seconds=10.0)


# ------------------------------------------------------------------ files -> utterances

def test_column_and_patterns_map_files_to_utterances(table_dir, tmp_path_factory):
    table = read_table(table_dir / "talks.csv")
    by_column = audio.audio_paths(table, column="wav")
    assert by_column["d1"] == [table_dir / "d1_0.wav", table_dir / "d1_1.wav", table_dir / "d1_2.wav"]
    assert audio.audio_paths(table, pattern="{dialogue}_{order}.wav") == by_column
    other = tmp_path_factory.mktemp("elsewhere")
    nested = audio.audio_paths(table, pattern="{split}/{dialogue}/{position:03d}-{speaker}.wav", audio_dir=other)
    assert nested["d3"] == [other / "valid" / "d3" / "000-M.wav", other / "valid" / "d3" / "001-F.wav"]
    assert audio.audio_paths(table, column="wav", audio_dir=other)["d4"][1] == other / "d4_1.wav"


def test_pattern_and_column_errors(table_dir):
    table = read_table(table_dir / "talks.csv")
    with pytest.raises(DataError, match=r"unknown placeholder \{utterance\}"):
        audio.audio_paths(table, pattern="{dialogue}/{utterance}.wav")
    with pytest.raises(DataError, match=r"unknown placeholder \{dialogue.__class__\}"):
        audio.audio_paths(table, pattern="{dialogue.__class__}.wav")
    with pytest.raises(DataError, match="no placeholder"):
        audio.audio_paths(table, pattern="same.wav")
    with pytest.raises(DataError, match=r"'d1', utterance 1 is also that of dialogue 'd1', utterance 0"):
        audio.audio_paths(table, pattern="{dialogue}.wav")
    with pytest.raises(DataError, match=r"talks.csv: no column 'audio'"):
        audio.audio_paths(table, column="audio")
    write_table(table_dir, wav_for=lambda r: "" if r[1] == "d2" and r[2] == 1 else f"{r[1]}_{r[2]}.wav")
    table = read_table(table_dir / "talks.csv")
    with pytest.raises(DataError, match=r"talks.csv: dialogue 'd2', utterance 1 \(row 5\): column 'wav'"):
        audio.audio_paths(table, column="wav")


def test_meld_style_pattern_uses_the_raw_dialogue_number(tmp_path):
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
              "Season", "Episode", "StartTime", "EndTime"]
    for name, rows in (("train_sent_emo.csv", [(12, 0), (12, 2)]), ("dev_sent_emo.csv", [(0, 0)]),
                       ("test_sent_emo.csv", [(3, 1)])):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows([[i, "Hi", "Ross", "joy", "positive", d, u, 1, 1, "", ""] for i, (d, u) in enumerate(rows)])
    from safsd_glnet.data.tables import read_meld_dir

    paths = audio.audio_paths(read_meld_dir(tmp_path), pattern="{split}/dia{dialogue_raw}_utt{order}.wav")
    assert paths["train_12"] == [tmp_path / "train" / "dia12_utt0.wav", tmp_path / "train" / "dia12_utt2.wav"]
    assert paths["valid_0"] == [tmp_path / "valid" / "dia0_utt0.wav"]


# ------------------------------------------------------------------------ bad files

def bad_file_case(folder: Path, case: str, clip: Path) -> None:
    target = folder / "d2_1.wav"
    if case == "missing":
        target.unlink()
    elif case == "corrupt":
        target.write_bytes(b"RIFF\x00\x00\x00\x00WAVE this is not audio at all")
    elif case == "text":
        target.write_text("split,dialogue\n")
    elif case == "silent":
        sf.write(str(target), np.zeros(22050), 22050, subtype="PCM_16")
    elif case == "short":
        x, rate = read_mono(clip)
        sf.write(str(target), x[rate // 2: rate // 2 + rate // 20], rate, subtype="PCM_16")  # 50 ms


BAD_FILES = {
    "missing": "audio file not found",
    "corrupt": "not a readable audio file",
    "text": "not a readable audio file",
    "silent": "silent (all zero, below the -60 dB threshold",
    "short": "0.050 s long, shorter than the 0.1 s minimum",
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_name_the_file_and_the_utterance(table_dir, clips, case):
    bad_file_case(table_dir, case, clips["d2_1"])
    table = read_table(table_dir / "talks.csv")
    with pytest.raises(DataError) as err:
        audio.build_audio_features(table, column="wav", cache_dir=None, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"{table_dir / 'd2_1.wav'}: dialogue 'd2', utterance 1: " in message, message
    assert BAD_FILES[case] in message, message


def test_nan_features_are_an_error(table_dir, monkeypatch):
    class NaNSmile:
        def process_signal(self, x, rate):
            import pandas as pd

            values = np.ones((1, 88))
            values[0, 5] = np.nan
            return pd.DataFrame(values, columns=[f"feature{i}" for i in range(88)])

    monkeypatch.setattr(audio, "_smile", lambda fs: NaNSmile())
    table = read_table(table_dir / "talks.csv")
    with pytest.raises(DataError, match=r"d1_0.wav: dialogue 'd1', utterance 0: opensmile returned NaN or inf "
                                        r"in 1 feature\(s\), first 'feature5'"):
        audio.build_audio_features(table, column="wav", cache_dir=None, progress=False)


# ------------------------------------------------------------------------ the cache

def test_cache_reuses_vectors_by_content(table_dir, tmp_path, monkeypatch):
    calls = []
    real = audio.extract_file

    def counting(path, *args, **kwargs):
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(audio, "extract_file", counting)
    cache = tmp_path / "cache"
    table = read_table(table_dir / "talks.csv")
    first = audio.build_audio_features(table, column="wav", cache_dir=cache, progress=False)
    assert len(calls) == 9 and {k: v.shape for k, v in first.items()} == \
        {"d1": (3, 88), "d2": (2, 88), "d3": (2, 88), "d4": (2, 88)}
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and files[0] == audio.audio_cache_path(table, "egemaps", cache)
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays, no pickle inside
        stored = dict(zip(z["sha256"], z["features"]))
    sha = hashlib.sha256((table_dir / "d3_1.wav").read_bytes()).hexdigest()
    np.testing.assert_array_equal(stored[sha], first["d3"][1])

    again = audio.build_audio_features(table, column="wav", cache_dir=cache, progress=False)
    assert len(calls) == 9, "the second call must read the cache, not extract"
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    # A renamed file with the same bytes is found by its hash; an edited file alone is redone.
    (table_dir / "d1_0.wav").rename(table_dir / "renamed.wav")
    (table_dir / "d4_1.wav").write_bytes((table_dir / "d1_1.wav").read_bytes())
    write_table(table_dir, wav_for=lambda r: "renamed.wav" if r[1:3] == ["d1", 0] else f"{r[1]}_{r[2]}.wav")
    table = read_table(table_dir / "talks.csv")
    third = audio.build_audio_features(table, column="wav", cache_dir=cache, progress=False)
    assert len(calls) == 9  # d4_1 now holds d1_1's bytes: already cached
    np.testing.assert_array_equal(third["d4"][1], first["d1"][1])
    np.testing.assert_array_equal(third["d1"][0], first["d1"][0])
    audio.build_audio_features(table, "compare", column="wav", cache_dir=cache, progress=False)
    assert len(calls) == 17 and len(list(cache.glob("*.npz"))) == 2  # 8 distinct files, own cache
    assert not list(cache.glob("*.tmp"))


def test_a_run_stopped_by_a_bad_file_keeps_what_it_extracted(table_dir, clips, tmp_path, monkeypatch):
    bad_file_case(table_dir, "silent", clips["d2_1"])
    cache = tmp_path / "cache"
    table = read_table(table_dir / "talks.csv")
    with pytest.raises(DataError, match="silent"):
        audio.build_audio_features(table, column="wav", cache_dir=cache, progress=False)
    shutil.copy(clips["d2_1"], table_dir / "d2_1.wav")
    calls = []
    real = audio.extract_file
    monkeypatch.setattr(audio, "extract_file", lambda p, *a, **k: calls.append(Path(p).name) or real(p, *a, **k))
    audio.build_audio_features(read_table(table_dir / "talks.csv"), column="wav", cache_dir=cache, progress=False)
    assert calls[0] == "d2_1.wav" and "d1_0.wav" not in calls  # d1 was done before the stop


# ------------------------------------------------------------- corpus, training, CLI

class HashEncoder:
    """A stand-in sentence encoder: 8 numbers from the sentence's hash."""

    def get_sentence_embedding_dimension(self) -> int:
        return 8

    def encode(self, texts, batch_size=32, show_progress_bar=None, convert_to_numpy=True):
        return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], np.uint8) / 255.0
                         for t in texts]).astype(np.float32)


@pytest.fixture
def fake_encoder(monkeypatch):
    monkeypatch.setattr(feat, "load_encoder", lambda encoder="minilm", device="auto": HashEncoder())


def test_merged_text_audio_corpus_trains(table_dir, tmp_path, fake_encoder):
    from safsd_glnet.config import preset
    from safsd_glnet.training.train import train

    table = read_table(table_dir / "talks.csv")
    text = feat.build_text_corpus(table, "fake", cache_dir=None, progress=False)
    feats = audio.build_audio_features(table, column="wav", cache_dir=None, progress=False)
    corpus = audio.add_audio_modality(text, feats)
    assert corpus.modalities == ("t", "a") and corpus.feature_sizes == {"t": 8, "a": 88}
    np.testing.assert_array_equal(corpus.dialogues["d2"].features["a"][1],
                                  audio.extract_file(table_dir / "d2_1.wav"))
    np.testing.assert_array_equal(corpus.dialogues["d2"].features["t"], text.dialogues["d2"].features["t"])
    assert corpus.dialogues["d1"].texts == text.dialogues["d1"].texts and corpus.splits == text.splits
    cfg = preset("tiny").replace(model={"modalities": "ta"}, train={"epochs": 1})
    run = train(cfg, corpus)
    history = run.metrics["history"]
    assert run.metrics["modalities"] == "ta" and len(history) == 1
    assert history[0]["loss"] and all(np.isfinite(v) for v in history[0]["loss"].values())

    with pytest.raises(DataError, match="already has modality 'a'"):
        audio.add_audio_modality(corpus, feats)
    with pytest.raises(DataError, match=r"no audio features for dialogue 'd3'"):
        audio.add_audio_modality(text, {k: v for k, v in feats.items() if k != "d3"})
    with pytest.raises(DataError, match=r"dialogue 'd1' has audio features of shape \(2, 88\) and 3 utterances"):
        audio.add_audio_modality(text, dict(feats, d1=feats["d1"][:2]))
    with pytest.raises(DataError, match=r"dialogue 'd4', utterance 1: audio features hold NaN"):
        audio.add_audio_modality(text, dict(feats, d4=np.vstack([feats["d4"][:1], np.full((1, 88), np.nan)])))


def make_cli():
    from safsd_glnet.cli import features as cli_features

    parser = argparse.ArgumentParser(prog="safsd-glnet")
    sub = parser.add_subparsers(dest="command")
    cli_features.add_parser(sub)
    return parser


def test_cli_features_with_audio(table_dir, tmp_path, fake_encoder, capsys):
    from safsd_glnet.data.kit_format import load_corpus

    out = tmp_path / "out.npz"
    audio_dir = tmp_path / "clips"
    audio_dir.mkdir()
    for p in table_dir.glob("*.wav"):
        shutil.copy(p, audio_dir / p.name.replace("_", "-"))
    args = make_cli().parse_args(["features", "--table", str(table_dir / "talks.csv"), "--encoder", "fake",
                                  "--cache-dir", str(tmp_path / "c"), "--no-progress",
                                  "--audio-dir", str(audio_dir), "--audio-pattern", "{dialogue}-{order}.wav",
                                  "--audio-features", "egemaps", "--out", str(out)])
    assert args.func(args) == 0
    corpus = load_corpus(out)
    assert corpus.feature_sizes == {"t": 8, "a": 88} and corpus.num_utterances() == 9
    np.testing.assert_allclose(corpus.dialogues["d3"].features["a"][0],
                               audio.extract_file(audio_dir / "d3-0.wav"), rtol=1e-6)
    assert "audio features: 88-d (egemaps)" in capsys.readouterr().out

    (audio_dir / "d4-1.wav").unlink()
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "d4-1.wav: dialogue 'd4', utterance 1: audio file not found" in err

    lone = make_cli().parse_args(["features", "--table", str(table_dir / "talks.csv"), "--encoder", "fake",
                                  "--audio-dir", str(audio_dir), "--out", str(out)])
    assert lone.func(lone) == 2
    assert "--audio-dir and --audio-any-path need --audio-column or --audio-pattern" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a column and a pattern together
        make_cli().parse_args(["features", "--table", "t.csv", "--audio-column", "wav",
                               "--audio-pattern", "{dialogue}.wav", "--out", "o.npz"])
