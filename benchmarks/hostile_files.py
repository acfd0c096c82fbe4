"""Every hostile file of ``tests/hostile_fixtures.py`` through every command that reads it.

For each (file, command) a child process runs the command line (``safsd_glnet.cli.commands.main``),
and the parent records how it ended (exit code or the signal that killed it), what it wrote
to stderr, its peak resident memory (``ru_maxrss`` of that child, from ``os.wait4``) and the
time it took. Children are forked from one parent that has already imported the kit and torch
(and the encoder), so a run costs a fraction of a second rather than a fresh interpreter's
3-7 s; their peak memory includes the parent's pages (about 450 MB: torch, torch_geometric, the kit),
which a fresh ``python -m safsd_glnet.cli`` of ``convert`` does not pay, so the figures
overstate what a real run needs.

A run that goes past ``--timeout`` seconds is killed and reported as a hang. Every child
runs under an address-space limit (``--limit-gb``, default 6) so that running the script
against a vulnerable version of the kit cannot exhaust the machine: a bomb then ends in
MemoryError (a traceback) instead.

    python benchmarks/hostile_files.py                  # the table (markdown) for the README
    python benchmarks/hostile_files.py --json out.json  # also the rows as JSON
    python benchmarks/hostile_files.py --only deep_tuple_key.pkl zip_bomb.npz
    PYTHONPATH=/path/to/old/checkout python benchmarks/hostile_files.py   # another version
    python benchmarks/hostile_files.py --speed /tmp/big.pkl --protocol 2  # load time, large file

``--speed FILE`` times loading a standard-layout pickle the size of the IEMOCAP file (built
there first if missing: 150 dialogues of 40-60 utterances, features 1024 x 4 / 1582 / 342,
float32 rows; protocol 2 writes the data as latin1 text, as Python 3 does for Python 2
readers, 278 MB; protocol 4 as bytes, 184 MB) in fresh processes: the pre-scan alone,
``safe_load`` and ``load_sdt_pickle``, with each process's wall and CPU time (imports
excluded) and peak memory.

Results: ``results/hostile_files.md``. The tests (``tests/data/safe/test_hostile_files.py``) run this
script (``--first-only``; all of it under ``-m slow``) and assert exit code 2, one line on
stderr, no traceback, and a peak below 1 GiB for every file.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere; PYTHONPATH may name another kit
    sys.path.insert(len(sys.path) if os.environ.get("PYTHONPATH") else 0, str(REPO))
if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))

COMMANDS = {"pkl": ("convert", "train", "evaluate", "predict", "features"),
            "npz": ("train", "evaluate", "predict"),
            "pt": ("evaluate", "predict"),
            "json": ("train",)}


@dataclass
class Outcome:
    file: str
    size: int  # bytes
    command: str
    code: int | None  # exit code; None when killed by a signal or the timeout
    signal: str | None  # e.g. SIGSEGV, or "timeout"
    stderr: str
    peak_mb: float  # the child's peak resident memory
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def prepare(work: Path, features: bool = True) -> dict[str, Path]:
    """The good companions of a hostile file: a checkpoint, a corpus and a small table (with
    its text vectors cached, when ``features``) for ``features --merge-pickle``."""
    import torch

    from hostile_fixtures import _checkpoint
    from safsd_glnet.cli.commands import main
    from safsd_glnet.data import make_synthetic, save_corpus

    work.mkdir(parents=True, exist_ok=True)
    good = {"checkpoint": work / "good.pt", "data": work / "good.npz", "table": work / "table.csv"}
    torch.save(_checkpoint(), good["checkpoint"])
    save_corpus(make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=6),
                good["data"])
    rows = ["split,dialogue_id,utterance_index,speaker,emotion,text"]
    for split, did in (("train", "d0"), ("train", "d1"), ("valid", "d2"), ("test", "d3")):
        rows += [f"{split},{did},{i},{'MF'[i % 2]},{('happy', 'sad')[i % 2]},line {i} of {did}"
                 for i in range(3)]
    good["table"].write_text("\n".join(rows) + "\n")
    good["cache"] = work / "cache"
    if features:
        with open(os.devnull, "w") as null:
            saved = os.dup(1), os.dup(2)
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            try:  # encode the table once: the runs below find the vectors in the cache
                main(["features", "--table", str(good["table"]), "--classes", "happy,sad",
                      "--cache-dir", str(good["cache"]), "--no-progress", "--out",
                      str(work / "text.npz")])
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    return good


def _features_available() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def argv_for(command: str, path: Path, good: dict[str, Path], out: Path) -> list[str]:
    """The command line that feeds ``path`` to ``command``."""
    kind = path.suffix.lstrip(".")
    if command == "convert":
        return ["convert", "--pickle", str(path), "--out", str(out / "converted.npz")]
    if command == "train":
        if kind == "json":
            return ["train", "--data", str(good["data"]), "--config", str(path), "--epochs", "1",
                    "--no-progress", "--out", str(out / "run")]
        return ["train", "--data", str(path), "--preset", "tiny", "--epochs", "1", "--no-progress",
                "--out", str(out / "run")]
    if command in ("evaluate", "predict"):
        checkpoint, data = (path, good["data"]) if kind == "pt" else (good["checkpoint"], path)
        argv = [command, "--checkpoint", str(checkpoint), "--data", str(data)]
        return argv + ["--out", str(out / ("metrics.json" if command == "evaluate" else "p.csv"))]
    if command == "features":
        return ["features", "--table", str(good["table"]), "--classes", "happy,sad", "--cache-dir",
                str(good["cache"]), "--no-progress", "--merge-pickle", str(path), "--out",
                str(out / "merged.npz")]
    raise ValueError(command)


def run_one(argv: list[str], cwd: Path, timeout: float, limit_gb: float) -> tuple[int | None, str | None, str, float, float]:
    """Fork, run ``safsd_glnet.cli.commands.main(argv)`` in the child; (code, signal, stderr, MB, s)."""
    from safsd_glnet.cli.commands import main

    err_path = cwd / "stderr.txt"
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.chdir(cwd)
            limit = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            with open(err_path, "w") as err, open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
                try:
                    code = int(main(argv) or 0)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
                sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = started + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            seconds = time.perf_counter() - started
            return None, "timeout", _read(err_path), usage.ru_maxrss / 1024, seconds
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    stderr = _read(err_path)
    if os.WIFSIGNALED(status):
        return None, signal.Signals(os.WTERMSIG(status)).name, stderr, usage.ru_maxrss / 1024, seconds
    return os.WEXITSTATUS(status), None, stderr, usage.ru_maxrss / 1024, seconds


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def run_matrix(folder: Path, names: list[str] | None = None, commands: list[str] | None = None,
               timeout: float = 60.0, limit_gb: float = 6.0,
               first_only: bool = False) -> tuple[list[Outcome], float]:
    """Build the hostile files (all, or ``names``) in ``folder`` and run each through its
    commands (all, those in ``commands``, or with ``first_only`` the first of its kind's:
    convert, train, evaluate). Returns one :class:`Outcome` per run and the peak RSS of a
    child that only parses its arguments (what every child starts with)."""
    if first_only:
        commands = ["convert", "train", "evaluate"]
    # Imported once here and shared by every child: what the commands import before reading.
    import safsd_glnet.notebook.plots  # noqa: F401
    import safsd_glnet.training.train  # noqa: F401
    from hostile_fixtures import ALL, build_all

    chosen = [h for h in ALL if names is None or h.filename in names]
    started = time.perf_counter()
    paths = build_all(folder / "files", chosen)
    print(f"built {len(paths)} files in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    features = _features_available() and (not commands or "features" in commands)
    if features:
        import safsd_glnet.features.text  # noqa: F401
    good = prepare(folder / "good", features)
    # What a child costs before it reads anything: the parent's pages (torch, the kit).
    _, _, _, base, _ = run_one(["convert", "--help"], folder, timeout, limit_gb)
    print(f"baseline: a child that only parses its arguments peaks at {base:.0f} MB", file=sys.stderr)
    started = time.perf_counter()
    outcomes = []
    for h in chosen:
        kinds_commands = COMMANDS[h.kind][:1] if first_only else COMMANDS[h.kind]
        for command in kinds_commands:
            if (commands and command not in commands) or (command == "features" and not features):
                continue
            cwd = Path(tempfile.mkdtemp(prefix=f"{h.name}-{command}-", dir=folder))
            argv = argv_for(command, paths[h.filename], good, cwd)
            code, sig, stderr, peak, seconds = run_one(argv, cwd, timeout, limit_gb)
            outcomes.append(Outcome(h.filename, paths[h.filename].stat().st_size, command, code, sig,
                                    stderr, peak, seconds))
    print(f"{len(outcomes)} runs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return outcomes, base


def verdict(runs: list[Outcome]) -> str:
    """How a file's runs ended, in a few words: "exit 2", "SIGSEGV", "hang > 20 s",
    "traceback (MemoryError)", "exit 2 at 1.6 GB", "exit 2, 3 lines" (distinct ones, joined)."""
    seen: list[str] = []
    for o in runs:
        if o.signal == "timeout":
            text = f"hang > {o.seconds:.0f} s"
        elif o.signal:
            text = o.signal
        elif o.code != 2:
            last = o.lines[-1] if o.lines else ""
            error = last.split(":", 1)[0].split(".")[-1] if ":" in last else "no message"
            text = f"exit {o.code}, traceback ({error})"
        elif o.peak_mb >= 1024:
            text = f"exit 2 at {o.peak_mb / 1024:.1f} GB"
        elif len(o.lines) != 1:
            text = f"exit 2, {len(o.lines)} lines"
        else:
            text = "exit 2"
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)


def markdown(outcomes: list[Outcome], before: list[Outcome] | None = None, base_mb: float = 0.0,
             messages: bool = True) -> str:
    """One row per file: size, what it attempts, how ``before`` ended (when given), how the
    runs end now (and how many), the worst peak RSS over its commands (with its growth over
    ``base_mb``), and the message of the first run (unless ``messages`` is False)."""
    from hostile_fixtures import ALL

    what = {h.filename: h.what for h in ALL}
    old: dict[str, list[Outcome]] = {}
    for o in before or []:
        old.setdefault(o.file, []).append(o)
    head = "| file | size | what it attempts |" + (" before |" if before else "")
    rows = [head + " now | peak RSS |" + (" message |" if messages else ""),
            "|---|---:|---|" + ("---|" if before else "") + "---|---:|" + ("---|" if messages else "")]
    by_file: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_file.setdefault(o.file, []).append(o)
    for name, runs in by_file.items():
        peak = max(o.peak_mb for o in runs)
        first = runs[0].lines
        message = first[-1] if first else ""
        message = message.split(": error: ", 1)[-1]
        message = message.split(f"{name}: ", 1)[-1].replace("|", "\\|")
        if len(message) > 110:
            message = message[:107] + "..."
        was = f" {verdict(old.get(name, []))} |" if before else ""
        growth = f" (+{peak - base_mb:.0f})" if base_mb else ""
        rows.append(f"| `{name}` | {_size(runs[0].size)} | {what.get(name, '')} |{was} "
                    f"{verdict(runs)} ({len(runs)}) | {peak:.0f} MB{growth} |"
                    + (f" {message} |" if messages else ""))
    return "\n".join(rows)


def _size(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


SPEED_CODE = """
import json, mmap, resource, sys, time
path, what = sys.argv[1], sys.argv[2]
import safsd_glnet.data  # noqa: F401  (imports before the clock starts)
started, cpu = time.perf_counter(), time.process_time()
if what == "scan":
    from safsd_glnet.data.safe.pickle_scan import scan_pickle
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        scan_pickle(data, path)
elif what == "safe_load":
    from safsd_glnet.data.safe.unpickler import safe_load
    safe_load(path)
else:
    from safsd_glnet.data import load_sdt_pickle
    load_sdt_pickle(path)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"what": what, "seconds": time.perf_counter() - started,
                  "cpu_seconds": time.process_time() - cpu, "peak_mb": usage.ru_maxrss / 1024}))
"""


def speed(path: Path, protocol: int, repeat: int) -> list[dict]:
    """Time the pre-scan, safe_load and load_sdt_pickle on ``path`` (built if missing), each
    in ``repeat`` fresh processes; one dict per run."""
    import pickle
    import subprocess

    if not path.exists():
        from sdt_fixtures import make_sdt_fields, pack_sdt_fields

        fields = make_sdt_fields("iemocap", 150, {"t": 1024, "a": 1582, "v": 342}, lengths=(40, 60))
        with open(path, "wb") as f:
            pickle.dump(pack_sdt_fields(fields, "iemocap"), f, protocol=protocol)
    rows = []
    whats = ["safe_load", "load_sdt_pickle"]
    try:
        import safsd_glnet.data.safe.pickle_scan  # noqa: F401
        whats.insert(0, "scan")
    except ImportError:  # an older kit without the pre-scan
        pass
    for _ in range(repeat):
        for what in whats:
            out = subprocess.run([sys.executable, "-c", SPEED_CODE, str(path), what], capture_output=True,
                                 text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            rows.append({**json.loads(out.stdout), "file": str(path), "size": path.stat().st_size})
            print(json.dumps(rows[-1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="FILE", help="hostile files by name, e.g. zip_bomb.npz")
    parser.add_argument("--commands", nargs="+", help="only these commands")
    parser.add_argument("--first-only", action="store_true",
                        help="each file through one command: convert (.pkl), train (.npz, .json), "
                             "evaluate (.pt)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a run counts as a hang")
    parser.add_argument("--limit-gb", type=float, default=6.0, help="address-space limit of each run")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--keep", help="build the files in this folder and keep them")
    parser.add_argument("--before", help="rows (--json) of an earlier version, for a 'before' column")
    parser.add_argument("--no-messages", action="store_true", help="leave the message column out")
    parser.add_argument("--speed", metavar="FILE", help="time loading this large standard pickle instead")
    parser.add_argument("--protocol", type=int, default=2, help="--speed: protocol of the file it builds")
    parser.add_argument("--repeat", type=int, default=3, help="--speed: fresh processes per measurement")
    args = parser.parse_args(argv)
    if args.speed:
        rows = speed(Path(args.speed), args.protocol, args.repeat)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hostile-"))
    outcomes, base = run_matrix(folder, args.only, args.commands, args.timeout, args.limit_gb,
                                args.first_only)
    before = None
    if args.before:
        before = [Outcome(**row) for row in json.loads(Path(args.before).read_text())]
    print(markdown(outcomes, before, base, messages=not args.no_messages))
    print(f"\nPeak RSS: of a child forked from a process that has imported the kit and torch; one "
          f"that only parses its arguments peaks at {base:.0f} MB.")
    bad = [o for o in outcomes if o.code != 2 or len(o.lines) != 1 or "Traceback" in o.stderr
           or o.peak_mb >= 1024]
    print(f"\n{len(outcomes)} runs of {len({o.file for o in outcomes})} files; {len(bad)} did not end "
          f"with exit 2, one line on stderr and a peak below 1 GiB")
    for o in bad:
        print(f"  {o.file} {o.command}: code {o.code} signal {o.signal}, {len(o.lines)} lines, "
              f"{o.peak_mb:.0f} MB: {(o.lines or [''])[-1][:200]}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
