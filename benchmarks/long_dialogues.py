"""Long inputs: peak memory and time of the surfaces that grow with their input.

Each measurement runs in a fresh process and reports its peak resident memory (``VmHWM`` of
``/proc/self/status``, the high-water mark of that process alone) and its wall time:

* ``--text``: reading a plain-text ``Speaker: sentence`` file of 20,000 and 200,000 short
  dialogues (``read_dialogue_text``, what ``predict --dialogues FILE.txt`` reads first);
* ``--long-line MB``: a file whose one line holds MB megabytes of non-ASCII text, refused;
* ``--special``: paths that are not regular files (``/dev/zero``, ``/dev/urandom``, a named
  pipe) given as a dialogue file, a table and an audio file, refused (``--timeout`` ends a
  run that blocks: give a short one, e.g. 20, to measure another version);
* ``--predict N``: ``safsd-glnet predict --dialogues`` on one dialogue of N utterances (default
  20,000), with a text model of preset ``small`` trained on frozen MiniLM features of a small
  table first (as ``predict_cold_start.py`` builds it): the encoder, the model in blocks
  (``safsd_glnet/model/long_dialogues.py``) and the output files together;
* ``--train-memory``: one training step on one dialogue of n utterances for two model sizes,
  the peak growth against the estimate that ``dialogue_windows.check_trainable`` refuses by;
* ``--cli``: the command lines of issue 23 (a link planted as a lock, ``--out`` onto a run's
  files, a malformed ``Content-Length`` and a trickling server from a local HTTP server on
  127.0.0.1, a pipe as ``--dialogues``, audio paths leaving their folder, a WAV of NaN samples,
  formula cells written to a CSV), each in a fresh process: exit code, first line of stderr,
  peak RSS (the README's security rows).

``PYTHONPATH=/path/to/other/checkout python benchmarks/long_dialogues.py --text`` measures
another version of the kit (the "before" figures; ``--timeout`` bounds each run).

    nice python benchmarks/long_dialogues.py --text --long-line 50 --predict 20000 --train-memory

Prints the figures and writes ``--out`` (default ``benchmarks/results/long_dialogues.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere; PYTHONPATH may name another kit
    sys.path.insert(len(sys.path) if os.environ.get("PYTHONPATH") else 0, str(REPO))

# Runs the code given on the command line, then prints its peak RSS, its time and its result as
# JSON. The code calls start() after its imports: the time is that of the work, not of importing.
# What the code prints goes nowhere: stdout carries the JSON alone, stderr the code's errors.
_CHILD = """
import os as _os, sys as _sys
_out, _sys.stdout = _sys.stdout, open(_os.devnull, "w")
import json, sys, time
started = time.perf_counter()
def start():
    global started
    started = time.perf_counter()
result = None
try:
    exec(sys.argv[1])
    error = None
except BaseException as e:
    error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
seconds = time.perf_counter() - started
with open("/proc/self/status") as f:
    peak = int(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
print(json.dumps({"peak_mb": peak / 1024, "seconds": seconds, "error": error, "result": result}), file=_out)
"""


def _env() -> dict[str, str]:
    kit = os.environ.get("PYTHONPATH") or str(REPO)
    return {**os.environ, "PYTHONPATH": kit, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_child(code: str, timeout: float) -> dict:
    """``code`` in a fresh interpreter: {"peak_mb", "seconds", "error", "result"} (or a timeout)."""
    try:
        with tempfile.TemporaryDirectory(prefix="safsd-child-") as cwd:  # `python -c` imports from its cwd first
            done = subprocess.run([sys.executable, "-c", _CHILD, code], env=_env(), capture_output=True, text=True,
                                  timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"peak_mb": None, "seconds": timeout, "error": f"did not finish in {timeout:g} s", "result": None}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"peak_mb": None, "seconds": None, "error": f"exit {done.returncode}: {done.stderr[-300:]}",
                "result": None}
    return {**json.loads(lines[-1]), "stderr": done.stderr[-2000:]}


def text_reading(folder: Path, counts: list[int], timeout: float) -> list[dict]:
    rows = []
    for n in counts:
        path = folder / f"short_{n}.txt"
        path.write_text("".join(f"Ann: line {k} here\nBob: and {k} there\n\n" for k in range(n)), encoding="utf-8")
        code = ("from safsd_glnet.data.tables import read_dialogue_text\nstart()\n"
                f"t = read_dialogue_text({str(path)!r})\nresult = len(t.dialogues)")
        r = run_child(code, timeout)
        rows.append({"dialogues": n, "bytes": path.stat().st_size, **r})
        print(f"plain text, {n:,} dialogues ({path.stat().st_size / 1e6:.1f} MB): {_show(r)}")
    return rows


def long_line(folder: Path, megabytes: int, timeout: float) -> dict:
    path = folder / "long_line.txt"
    unit = "\u00e9\u20ac"  # 5 bytes of UTF-8: the cleaning's worst case, non-ASCII runs
    with open(path, "w", encoding="utf-8") as f:
        f.write("Ann: hello\n\nBob: ")
        f.write(unit * (megabytes * 200_000))
        f.write("\n")
    code = ("from safsd_glnet.data.tables import read_dialogue_text\nstart()\n"
            f"try:\n    read_dialogue_text({str(path)!r})\nexcept ValueError as e:\n    result = str(e)[-160:]")
    r = run_child(code, timeout)
    print(f"one line of {path.stat().st_size / 1e6:.0f} MB: {_show(r)}; {r.get('result')}")
    return {"bytes": path.stat().st_size, **r}


def special_paths(folder: Path, timeout: float) -> list[dict]:
    fifo = folder / "pipe.txt"
    os.mkfifo(fifo)
    tables = "from safsd_glnet.data.tables import read_dialogue_text, read_table"
    calls = {  # name: (import, call)
        "--dialogues /dev/zero": (tables, "read_dialogue_text('/dev/zero')"),
        "--dialogues FIFO": (tables, f"read_dialogue_text({str(fifo)!r})"),
        "--table /dev/zero": (tables, "read_table('/dev/zero')"),
        "audio file /dev/urandom": ("from pathlib import Path\nfrom safsd_glnet.features.audio import file_sha256",
                                    "file_sha256(Path('/dev/urandom'), 'd1', 0)"),
    }
    rows = []
    for name, (imports, call) in calls.items():
        code = f"{imports}\nstart()\ntry:\n    {call}\nexcept ValueError as e:\n    result = str(e)[-120:]"
        r = run_child(code, timeout)
        print(f"{name}: {_show(r)}; {r.get('result')}")
        rows.append({"input": name, **r})
    return rows


def _show(r: dict) -> str:
    if r.get("error"):
        return f"failed: {r['error']}"
    return f"{r['seconds']:.2f} s, peak RSS {r['peak_mb']:.0f} MB"


def build_text_model(folder: Path) -> Path:
    """A text-only model of preset small on frozen MiniLM features (predict_cold_start.py's)."""
    from benchmarks.feature_speed import sentences
    from benchmarks.predict_cold_start import cli, write_training_table

    folder.mkdir(parents=True, exist_ok=True)
    write_training_table(folder / "talks.csv", sentences(240))
    for step in (["features", "--table", str(folder / "talks.csv"), "--cache-dir", str(folder / "cache"),
                  "--no-progress", "--out", str(folder / "talks.npz")],
                 ["train", "--data", str(folder / "talks.npz"), "--preset", "small", "--modalities", "t",
                  "--epochs", "2", "--no-progress", "--out", str(folder / "run")]):
        subprocess.run(cli(*step), check=True, env=_env(), stdout=subprocess.DEVNULL)
    return folder / "run" / "checkpoint_best.pt"


def predict_long(folder: Path, n: int, timeout: float) -> dict:
    from benchmarks.feature_speed import sentences

    checkpoint = build_text_model(folder)
    texts = sentences(500)
    dialogue = folder / "meeting.txt"
    dialogue.write_text("# dialogue: meeting\n" + "".join(f"{'AB'[i % 2]}: {texts[i % len(texts)]} ({i})\n"
                                                           for i in range(n)), encoding="utf-8")
    code = ("import contextlib, os\nfrom safsd_glnet.cli.commands import main\nstart()\n"
            "with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null):\n"
            f"    code = main(['predict', '--checkpoint', {str(checkpoint)!r}, '--dialogues', {str(dialogue)!r},"
            f" '--device', 'cpu', '--out', {str(folder / 'meeting.csv')!r}])\n"
            "assert code == 0, code\n"
            f"result = sum(1 for _ in open({str(folder / 'meeting.csv')!r})) - 1")
    r = run_child(code, timeout)
    print(f"predict --dialogues, one dialogue of {n:,} utterances: {_show(r)}; {r.get('result')} rows written")
    return {"utterances": n, "model": "preset small, text only (frozen all-MiniLM-L6-v2 features)", **r}


def train_memory(lengths: list[int], timeout: float) -> list[dict]:
    rows = []
    for name, overrides in (("small, text only", {"model.modalities": "t"}), ("tiny, t+a+v", {})):
        preset_name = name.split(",")[0]
        for n in lengths:
            code = f"""
import numpy as np, torch
from safsd_glnet.config import preset
from safsd_glnet.data.batching import collate
from safsd_glnet.data.corpus import Dialogue
from safsd_glnet.model.losses import LossComputer
from safsd_glnet.model.network import SAFSDGLNet
from safsd_glnet.model import kernels, long_dialogues
from safsd_glnet.training.train import make_optimizer, training_step
cfg = preset({preset_name!r}).override(*[f"{{k}}={{v}}" for k, v in {overrides!r}.items()], "train.amp=false")
sizes = {{"t": 384, "a": 88, "v": 342}}
sizes = {{m: sizes[m] for m in cfg.model.modalities}}
rng = np.random.default_rng(0)
d = Dialogue("d", rng.integers(0, 2, {n}), rng.integers(0, 6, {n}),
             {{m: rng.normal(size=({n}, s)).astype(np.float32) for m, s in sizes.items()}})
model = kernels.install(SAFSDGLNet(cfg.model, sizes, 6, 2))
opt = make_optimizer(cfg.train, model.parameters(), torch.device("cpu"))
losses = LossComputer.from_counts(cfg.loss, np.bincount(d.labels, minlength=6),
                                  ["happy", "sad", "neutral", "angry", "excited", "frustrated"])
batch = collate([d])
with open("/proc/self/status") as f:
    before = int(next(line.split()[1] for line in f if line.startswith("VmRSS:"))) / 1024
start()
training_step(model, opt, losses, batch, torch.device("cpu"), False)
result = {{"rss_before_mb": before, "estimate_mb": long_dialogues.training_bytes({n}, 1, cfg.model) / 2**20}}
"""
            r = run_child(code, timeout)
            res = r.get("result") or {}
            growth = r["peak_mb"] - res["rss_before_mb"] if res and r.get("peak_mb") else None
            rows.append({"model": name, "utterances": n, **r, "growth_mb": growth})
            if growth is not None:
                print(f"training step, {name}, one dialogue of {n:,}: peak growth {growth:.0f} MB, "
                      f"estimate {res['estimate_mb']:.0f} MB ({r['seconds']:.1f} s)")
            else:
                print(f"training step, {name}, {n:,}: {_show(r)}")
    return rows


class _Server:
    """A local HTTP server on 127.0.0.1 for the download rows: ``/length`` sends a Content-Length
    of '\u00b2', ``/trickle`` one byte every 0.2 s until the client hangs up."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "\u00b2" if "length" in self.path else "1000000")
                self.end_headers()
                try:
                    while not server.stop.wait(0.2):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        if "length" in self.path:
                            break
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def cli_rows(folder: Path, timeout: float) -> list[dict]:
    """The issue's command lines, each in a fresh process (see the module notes)."""
    import numpy as np
    import soundfile as sf

    from benchmarks.predict_cold_start import cli

    env = _env()
    run = folder / "run"
    subprocess.run(cli("train", "--data", "synthetic:iemocap:num_dialogues=12", "--sizes", "t=8,a=6,v=4",
                       "--preset", "tiny", "--epochs", "1", "--no-progress", "--out", str(run)),
                   check=True, env=env, stdout=subprocess.DEVNULL)
    (folder / "victim.txt").write_text("precious\n")
    (folder / "runs" / "x").mkdir(parents=True)
    (folder / "runs" / "x" / ".lock").symlink_to(Path("..") / ".." / "victim.txt")
    os.mkfifo(folder / "pipe.txt")
    checkpoint = build_text_model(folder / "text")
    audio = folder / "audio"
    audio.mkdir()
    t = np.arange(8000) / 16000
    sf.write(str(audio / "ok.wav"), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="FLOAT")
    sf.write(str(audio / "nan.wav"), np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    def table(name: str, bad: str) -> Path:
        """Two utterances per split; the second of the first dialogue names ``bad``."""
        lines = ["split,dialogue_id,utterance_index,speaker,emotion,text,wav"]
        for split, d in (("train", "a"), ("valid", "b"), ("test", "c")):
            for i in (0, 1):
                wav = bad if (d, i) == ("a", 1) else f"{d}{i}.wav"
                if wav.endswith(".wav") and not (audio / wav).exists():
                    (audio / wav).write_bytes((audio / "ok.wav").read_bytes())
                lines.append(f"{split},{d},{i},M,{('sad', 'happy')[i]},line {i} of {d},{wav}")
        (audio / name).write_text("\n".join(lines) + "\n")
        return audio / name

    formula = folder / "formula.txt"
    formula.write_text("A: =HYPERLINK(\"http://example.invalid\",\"click\")\nB: =cmd|' /C calc'!A0\n"
                       "A: @SUM(A1:A9)\nB: +1+1\n")
    server = _Server()
    try:
        cases = {
            "train --out a folder whose .lock links to another file": [
                "train", "--data", "synthetic:iemocap:num_dialogues=12", "--sizes", "t=8,a=6,v=4", "--preset", "tiny",
                "--no-progress", "--out", str(folder / "runs" / "x")],
            "evaluate --out RUN/metrics.json": [
                "evaluate", "--checkpoint", str(run / "checkpoint_best.pt"), "--data", "synthetic:iemocap:num_dialogues=12",
                "--sizes", "t=8,a=6,v=4", "--out", str(run / "metrics.json")],
            "predict --dialogues a named pipe": [
                "predict", "--checkpoint", str(checkpoint), "--dialogues", str(folder / "pipe.txt")],
            "data meld, Content-Length '\u00b2'": [
                "data", "meld", "--out", str(folder / "meld1"), "--base-url", server.url + "length/", "--no-progress"],
            "data meld, one byte every 0.2 s (--deadline 5)": [
                "data", "meld", "--out", str(folder / "meld2"), "--base-url", server.url + "trickle/", "--no-progress",
                "--deadline", "5", "--retries", "0"],
            "features, audio path ../../etc/passwd": [
                "features", "--table", str(table("escape.csv", "../../etc/passwd")), "--audio-column", "wav",
                "--cache-dir", str(folder / "cache"), "--no-progress", "--out", str(folder / "f1.npz")],
            "features, a WAV of NaN samples": [
                "features", "--table", str(table("nan.csv", "nan.wav")), "--audio-column", "wav",
                "--cache-dir", str(folder / "cache"), "--no-progress", "--out", str(folder / "f2.npz")],
            "predict --dialogues with formula sentences --out x.csv": [
                "predict", "--checkpoint", str(checkpoint), "--dialogues", str(formula), "--out", str(folder / "x.csv")],
        }
        results = []
        for name, argv in cases.items():
            code = f"from safsd_glnet.cli.commands import main\nstart()\nresult = main({argv!r})"
            r = run_child(code, timeout)
            lines = [ln for ln in r.pop("stderr", "").splitlines() if ln.strip() and "Loading weights" not in ln]
            row = {"run": name, "exit": r.get("result"), "peak_mb": r.get("peak_mb"), "seconds": r.get("seconds"),
                   "stderr_lines": len(lines), "message": lines[-1][:300] if lines else "", "error": r.get("error")}
            results.append(row)
            print(f"{name}: exit {row['exit']}, {row['stderr_lines']} line(s), peak RSS {row['peak_mb'] or 0:.0f} MB: "
                  f"{row['message'][:160]}")
        victim = (folder / "victim.txt").read_text()
        cells = (folder / "x.csv").read_text().splitlines()[1:] if (folder / "x.csv").exists() else []
        results.append({"run": "checks", "victim_unchanged": victim == "precious\n",
                        "csv_text_cells": [c.split(",", 4)[3][:30] for c in cells]})
        print(f"victim unchanged: {victim == 'precious' + chr(10)}; CSV text cells: {results[-1]['csv_text_cells']}")
        return results
    finally:
        server.close()


def machine() -> dict:
    from benchmarks.feature_speed import machine as describe

    env = _env()
    return {**describe(int(env["OMP_NUM_THREADS"])), "kit": env["PYTHONPATH"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", action="store_true", help="plain-text files of 20,000 and 200,000 short dialogues")
    ap.add_argument("--text-counts", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--long-line", type=int, metavar="MB", help="a file with one line of MB megabytes")
    ap.add_argument("--special", action="store_true", help="pipes and devices given as files")
    ap.add_argument("--cli", action="store_true", help="the command lines of issue 23, in fresh processes")
    ap.add_argument("--predict", type=int, metavar="N", nargs="?", const=20_000,
                    help="predict --dialogues on one dialogue of N utterances (default 20,000)")
    ap.add_argument("--train-memory", action="store_true", help="a training step's peak against the estimate")
    ap.add_argument("--train-lengths", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run (default 1800)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "long_dialogues.json"))
    args = ap.parse_args(argv)
    if not (args.text or args.long_line or args.special or args.cli or args.predict or args.train_memory):
        ap.error("choose at least one of --text, --long-line, --special, --cli, --predict, --train-memory")
    result: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="safsd-long-") as tmp:
        tmp = Path(tmp)
        if args.text:
            result["plain_text"] = text_reading(tmp, args.text_counts, args.timeout)
        if args.long_line:
            result["long_line"] = long_line(tmp, args.long_line, args.timeout)
        if args.special:
            result["special_paths"] = special_paths(tmp, args.timeout)
        if args.cli:
            result["command_lines"] = cli_rows(tmp, args.timeout)
        if args.predict:
            result["predict"] = predict_long(tmp, args.predict, args.timeout)
        if args.train_memory:
            result["train_memory"] = train_memory(args.train_lengths, args.timeout)
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(result)  # one file for all the measurements, each run adds its own
    out.write_text(json.dumps(previous, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
