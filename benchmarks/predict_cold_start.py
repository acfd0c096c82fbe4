"""How long `safsd-glnet predict --dialogues` takes on a 20-utterance dialogue from a cold start.

A user's first question after training: how long until a new conversation is labelled. This
builds a text-only model the way a user would (frozen MiniLM features of a table, preset
``small``, a short training: its weights do not change the time), writes a 20-utterance
``Speaker: sentence`` file and runs the installed command in a **new process** ``--repeats``
times. Each process pays everything a user pays: Python start, importing torch and the kit,
the checkpoint's checks and load, loading the sentence encoder, encoding, the model, the
table. The file-system cache is warm after the first repeat (the first one is reported apart).

A second, in-process breakdown times the stages of :class:`safsd_glnet.training.prediction.Predictor`
(load the checkpoint, encode and predict the dialogue) after the imports.

Sentences are MELD's (``../shared/data``) when present, else the fallback sentences of
``feature_speed.py``.

Usage::

    python benchmarks/predict_cold_start.py                    # 3 repeats
    python benchmarks/predict_cold_start.py --repeats 1 --out /tmp/cold.json

Prints the figures and writes ``--out`` (default ``benchmarks/results/predict_cold_start.json``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: import this checkout's package
    sys.path.insert(0, str(REPO))

from benchmarks.feature_speed import machine, sentences  # noqa: E402
from safsd_glnet.provenance import code_version  # noqa: E402

CLASSES = ("neutral", "joy", "sadness", "anger")


def write_training_table(path: Path, texts: list[str]) -> None:
    """A small labelled table (train / valid / test) of the given sentences, two speakers."""
    rows = [["split", "dialogue_id", "utterance_index", "speaker", "emotion", "text"]]
    per_dialogue = 8
    for i in range(0, len(texts) - per_dialogue + 1, per_dialogue):
        d = i // per_dialogue
        split = ("train", "train", "train", "valid", "test")[d % 5]
        for u, text in enumerate(texts[i:i + per_dialogue]):
            rows.append([split, f"d{d}", u, "AB"[u % 2], CLASSES[(d + u) % len(CLASSES)], text])
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def write_dialogue(path: Path, texts: list[str]) -> None:
    speakers = ("A", "B")  # the training table's speaker names
    path.write_text("# dialogue: new\n" + "".join(f"{speakers[i % 2]}: {t}\n" for i, t in enumerate(texts)),
                    encoding="utf-8")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from safsd_glnet.cli.commands import main; sys.exit(main())", *args]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--utterances", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "predict_cold_start.json"))
    args = ap.parse_args(argv)

    texts = sentences(240 + args.utterances)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="safsd-cold-") as tmp:
        tmp = Path(tmp)
        write_training_table(tmp / "talks.csv", texts[:240])
        write_dialogue(tmp / "new.txt", texts[240:240 + args.utterances])
        for step in (["features", "--table", str(tmp / "talks.csv"), "--cache-dir", str(tmp / "cache"),
                      "--no-progress", "--out", str(tmp / "talks.npz")],
                     ["train", "--data", str(tmp / "talks.npz"), "--preset", "small", "--modalities", "t",
                      "--epochs", "2", "--no-progress", "--out", str(tmp / "run")]):
            subprocess.run(cli(*step), check=True, env=env, stdout=subprocess.DEVNULL)
        checkpoint = tmp / "run" / "checkpoint_best.pt"

        walls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            done = subprocess.run(cli("predict", "--checkpoint", str(checkpoint), "--dialogues", str(tmp / "new.txt"),
                                      "--out", str(tmp / "new.csv")), env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if done.returncode != 0:
                sys.exit(f"predict failed: {done.stderr.strip()}")
        with open(tmp / "new.csv", newline="") as f:
            predicted = sum(1 for _ in csv.DictReader(f))
        assert predicted == args.utterances, f"predicted {predicted} utterances, expected {args.utterances}"

        # In-process stages, after the imports (what a notebook or a service pays once / per call).
        t0 = time.perf_counter()
        import torch  # noqa: F401

        from safsd_glnet.training.prediction import Predictor
        import_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        predictor = Predictor(checkpoint, "cpu")
        load_seconds = time.perf_counter() - t0
        table = predictor.read(tmp / "new.txt")
        t0 = time.perf_counter()
        predictor.predict_table(table)
        first_call = time.perf_counter() - t0
        t0 = time.perf_counter()
        predictor.predict_table(table)
        second_call = time.perf_counter() - t0

    result = {
        "machine": {**machine(torch.get_num_threads()), **code_version("benchmarks/predict_cold_start.py")},
        "utterances": args.utterances,
        "model": "preset small, text only (frozen all-MiniLM-L6-v2 features)",
        "cold_process_seconds": [round(w, 2) for w in walls],
        "in_process": {"imports": round(import_seconds, 2), "load_checkpoint_and_encoder": round(load_seconds, 2),
                       "first_predict": round(first_call, 3), "next_predict": round(second_call, 3)},
    }
    print(f"predict --dialogues, {args.utterances} utterances, new process each time: "
          + ", ".join(f"{w:.1f} s" for w in walls) + " (the first with a cold file cache)")
    print("in one process: imports {imports} s, load checkpoint + encoder {load_checkpoint_and_encoder} s, "
          "first call {first_predict} s, next call {next_predict} s".format(**result["in_process"]))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
