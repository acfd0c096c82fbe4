"""What writing a run's checkpoints costs, and what ``train.save_every_s`` saves.

The training loop writes ``checkpoint_best.pt`` (the weights) when validation improves and
``checkpoint_last.pt`` (weights, Adam's two moments, random states, history: the resume
point). Both go through the kit's atomic write (temporary file, ``fsync``, rename). This
times those writes for a preset's model on an IEMOCAP-shaped synthetic corpus, with the
optimiser state filled by one real step, so the sizes are those of a real run.

With ``--epochs N`` it then trains N epochs twice, writing the resume point after every
epoch (``save_every_s=0``) and at most once a minute (the default), and prints both wall
times: the difference is what the interval buys on this machine.

Usage::

    python benchmarks/checkpoint_write.py                      # paper preset, 3 writes of each
    python benchmarks/checkpoint_write.py --epochs 3 --out /tmp/ckpt.json

Prints the figures and writes ``--out`` (default ``benchmarks/results/checkpoint_write.json``).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def write_times(preset_name: str, repeats: int, folder: Path) -> dict:
    """Seconds and sizes of ``repeats`` atomic writes of the model-only and the full checkpoint."""
    import torch

    from safsd_glnet.data import atomic_files as files
    from safsd_glnet.config import preset
    from safsd_glnet.data import make_synthetic
    from safsd_glnet.training.train import build_model, make_optimizer

    cfg = preset(preset_name)
    corpus = make_synthetic("iemocap", seed=0)
    model = build_model(cfg, corpus)
    optimizer = make_optimizer(cfg.train, model.parameters(), torch.device("cpu"))
    for p in model.parameters():  # one step, so that Adam holds both moments as in a real run
        p.grad = torch.zeros_like(p)
    optimizer.step()
    out = {}
    for name, ckpt in (("checkpoint_best.pt", {"model": model.state_dict()}),
                       ("checkpoint_last.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict()})):
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            files.save_torch(folder / name, ckpt)
            seconds.append(round(time.perf_counter() - t0, 3))
        out[name] = {"mib": round((folder / name).stat().st_size / 2**20, 1), "seconds": seconds}
        print(f"{name}: {out[name]['mib']:.0f} MiB, {', '.join(f'{s:.2f}' for s in seconds)} s per write", flush=True)
    return out


def training_times(preset_name: str, epochs: int, folder: Path) -> dict:
    """Wall seconds of ``epochs`` epochs with the resume point after every epoch and at most once a minute."""
    from safsd_glnet.config import preset
    from safsd_glnet.data import make_synthetic
    from safsd_glnet.training.train import train

    corpus = make_synthetic("iemocap", seed=0)
    out = {}
    for every in (0.0, 60.0):
        cfg = preset(preset_name).replace(train={"epochs": epochs, "progress": False, "save_every_s": every})
        t0 = time.perf_counter()
        metrics = train(cfg, corpus, folder / f"every{every:g}").metrics
        wall = time.perf_counter() - t0
        out[f"save_every_s={every:g}"] = {"wall_s": round(wall, 1), "epoch_seconds_sum": round(metrics["seconds"], 1)}
        print(f"save_every_s={every:g}: {epochs} epochs in {wall:.1f} s wall "
              f"({metrics['seconds']:.1f} s in the epochs themselves)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=0, help="also train this many epochs both ways (default 0: no)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "checkpoint_write.json"))
    args = ap.parse_args(argv)

    import torch

    from safsd_glnet.data.atomic_files import write_json
    from safsd_glnet.provenance import code_version

    result = {"command": "python benchmarks/checkpoint_write.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "preset": args.preset,
              "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "load_average_1min": os.getloadavg()[0],
                          **code_version("benchmarks/checkpoint_write.py")}}
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:  # the repository's disk, where run folders usually live
        result["writes"] = write_times(args.preset, args.repeats, Path(tmp))
        if args.epochs:
            result["training"] = training_times(args.preset, args.epochs, Path(tmp))
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
