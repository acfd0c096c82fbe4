"""``safsd-glnet data``: fetch public data files (now: the official MELD text release).

Registered on the main command line by :func:`add_parser`; needs only the standard library
and tqdm. ``safsd-glnet data meld --out DIR`` writes the three MELD CSVs that
``safsd-glnet features --meld DIR`` reads (see :mod:`safsd_glnet.data.download`).
"""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  safsd-glnet data meld --out data/meld
  safsd-glnet features --meld data/meld --out meld_text.npz
  # from a local copy or mirror of the same three files (checked against the same sums):
  safsd-glnet data meld --out data/meld --base-url file:///srv/datasets/MELD/

Files are checked against pinned sha256 sums and renamed into place only when they match;
an interrupted download resumes from DIR/.<name>.part on the next run, and files already
in place are not fetched again. Time is bounded three ways: --timeout per network
operation, --deadline per file (all its requests), and --min-rate (a request slower than
that on average after its first 30 s is dropped). A redirect to another host is refused
unless --allow-redirects. Exit status: 0 when the three files are in place, 1 when a
download failed (one line saying why), 2 for bad arguments. IEMOCAP cannot be downloaded
this way: it is licensed by USC SAIL and requested through the IEMOCAP release form on
https://sail.usc.edu.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``data`` subcommand on ``subparsers``."""
    from ..data.download import DEADLINE, MELD_BASE_URL, MIN_RATE

    p = subparsers.add_parser("data", help="download public data files (the MELD text CSVs)",
                              description="Download public data files, checked against pinned sha256 sums.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    meld = sub.add_parser("meld", help="the official MELD text release (train/dev/test_sent_emo.csv, 1.5 MB)",
                          description="Download train_sent_emo.csv, dev_sent_emo.csv and test_sent_emo.csv "
                                      "from the MELD authors' repository (declare-lab/MELD, data/MELD/) into "
                                      "--out, the folder that 'safsd-glnet features --meld' reads.",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    meld.add_argument("--out", required=True, metavar="DIR", help="folder for the three CSVs (created)")
    meld.add_argument("--base-url", default=MELD_BASE_URL, metavar="URL",
                      help=f"where the files are fetched from, as URL + file name (default: {MELD_BASE_URL})")
    meld.add_argument("--retries", type=int, default=3,
                      help="further requests for a transfer that stops short, each resuming it (default: 3)")
    meld.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to wait for the server in any one network operation (default: 60)")
    meld.add_argument("--deadline", type=float, default=DEADLINE,
                      help=f"seconds one file may take in all, its retries included; checked between reads, so "
                           f"met at most --timeout late (default: {DEADLINE:g})")
    meld.add_argument("--min-rate", type=float, default=MIN_RATE, metavar="BYTES_PER_S",
                      help=f"drop a request whose average rate is below this many bytes per second after its "
                           f"first 30 s; the part is kept for the next run (default: {MIN_RATE}; 0: no minimum)")
    meld.add_argument("--allow-redirects", action="store_true",
                      help="follow a redirect to another host (refused by default; the sha256 is checked either way)")
    meld.add_argument("--no-progress", action="store_true", help="no progress bar")
    meld.set_defaults(func=run_meld)
    return p


def run_meld(args: argparse.Namespace) -> int:
    """0 when the three files are in place, 1 when a download failed, 2 on bad arguments."""
    from ..data.download import DownloadError, download_meld

    import math

    if args.retries < 0 or not args.timeout > 0 or not args.deadline > 0 or not args.min_rate >= 0 or \
            not all(math.isfinite(x) for x in (args.timeout, args.deadline, args.min_rate)):
        print("safsd-glnet data: error: --retries must be >= 0, --timeout and --deadline > 0, --min-rate >= 0",
              file=sys.stderr)
        return 2
    try:
        done = download_meld(args.out, base_url=args.base_url, retries=args.retries, timeout=args.timeout,
                             progress=not args.no_progress, deadline=args.deadline, min_rate=args.min_rate,
                             allow_redirects=args.allow_redirects)
    except DownloadError as e:
        print(f"safsd-glnet data: error: {e}", file=sys.stderr)
        return 1
    for name, fetched in done.items():
        print(f"{'downloaded' if fetched else 'already in place'}: {args.out}/{name}")
    print(f"next: safsd-glnet features --meld {args.out} --out meld_text.npz")
    return 0
