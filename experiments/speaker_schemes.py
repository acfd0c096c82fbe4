"""Speakers by name or by order in the dialogue: both schemes on the real MELD text, validation only.

The kit numbers speakers in one of two ways (``features --speakers corpus|dialogue``; see
docs/speakers.md): one embedding per name across the corpus, or one per position of first
appearance in each dialogue (speaker 0 spoke first). This script trains SAFSD-GLNet, preset
``small`` with the MELD settings of :mod:`experiments.real_text` (text only, standardised frozen
MiniLM features, cached under ``.cache/safsd-glnet``), once per seed and scheme, and reports the
validation weighted F1 at the epoch chosen on validation, with the share of validation
utterances whose speaker never speaks in train under each scheme.

The test split is never read: before training, the corpus's test dialogues are replaced by
copies of its validation dialogues (``train`` needs a test split to score every epoch for the
reference protocol), so nothing the script computes or prints depends on a test label.

Usage (about half a minute per run on a 2-core CPU, 6 runs)::

    nice -n 15 python experiments/speaker_schemes.py --seeds 0 1 2 --threads 1 \\
        --out experiments/results/speaker_schemes.json
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from experiments.real_text import DEFAULT_CACHE, DEFAULT_DATA, glnet_config, machine  # noqa: E402
from safsd_glnet.data.corpus import Corpus  # noqa: E402

SCHEMES = ("dialogue", "corpus")


def without_test(corpus: Corpus) -> Corpus:
    """``corpus`` whose test split is a copy of its validation dialogues (ids ``valid-copy-<id>``):
    the test labels are gone before any training starts."""
    valid = corpus.split("valid")
    copies = {f"valid-copy-{d.id}": replace(d, id=f"valid-copy-{d.id}") for d in valid}
    kept = {k: d for k, d in corpus.dialogues.items() if k not in set(corpus.splits.get("test", []))}
    splits = {"train": list(corpus.splits["train"]), "valid": list(corpus.splits["valid"]), "test": list(copies)}
    return replace(corpus, dialogues={**kept, **copies}, splits=splits).validate()


def meld_corpus(scheme: str, data_dir: Path, cache_dir: Path) -> Corpus:
    """MELD text features with speakers numbered by ``scheme`` (the sentence vectors are cached by
    the sentences alone, so the second scheme reuses the first's)."""
    from safsd_glnet.data.tables import read_meld_dir
    from safsd_glnet.features.text import build_text_corpus

    table = read_meld_dir(data_dir / "meld", speaker_mode=scheme)
    return build_text_corpus(table, "minilm", cache_dir=cache_dir, device="cpu", progress=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help=f"folder holding meld/ (default {DEFAULT_DATA})")
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    ap.add_argument("--epochs", type=int, default=None, help="override the MELD settings' epochs (smoke runs)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from safsd_glnet.data.atomic_files import write_json
    from safsd_glnet.training.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"protocol": "validation weighted F1 at the epoch chosen on validation; "
                                           "test never read (replaced by copies of validation)",
                               "preset": "small + experiments.real_text.TEXT_SETTINGS['meld'], text only",
                               "seeds": list(args.seeds), "schemes": {}}
    for scheme in args.schemes:
        corpus = meld_corpus(scheme, Path(args.data), Path(args.cache_dir))
        corpus = without_test(corpus)
        unseen = corpus.unseen_speakers()["valid"]
        runs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            cfg = glnet_config("meld", "glnet", seed, args.epochs, "cpu")
            run = train(cfg, corpus.with_modalities(("t",)), out_dir=None)
            runs.append({"seed": seed, "valid_weighted_f1": run.metrics["valid"]["weighted_f1"],
                         "chosen_epoch": run.metrics["chosen_epoch"], "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{scheme}: seed {seed}: validation weighted F1 {runs[-1]['valid_weighted_f1']:.2f} "
                  f"(epoch {runs[-1]['chosen_epoch']}, {runs[-1]['seconds']:.0f} s)", flush=True)
        scores = np.array([r["valid_weighted_f1"] for r in runs])
        results["schemes"][scheme] = {
            "speakers": len(corpus.speaker_names), "valid_unseen_speaker_share": unseen, "runs": runs,
            "valid_weighted_f1_mean": float(scores.mean()),
            "valid_weighted_f1_std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0}
        print(f"{scheme}: {len(corpus.speaker_names)} speaker embeddings, {100 * unseen:.1f}% of validation "
              f"utterances by a speaker unseen in train; validation weighted F1 {scores.mean():.2f} ± "
              f"{results['schemes'][scheme]['valid_weighted_f1_std']:.2f} over {len(scores)} seeds", flush=True)
    results["machine"] = machine()
    if args.out:
        write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
