"""Download public data files with checks: the official MELD text release, one command away.

:func:`download_meld` fetches ``train_sent_emo.csv``, ``dev_sent_emo.csv`` and
``test_sent_emo.csv`` from the MELD authors' repository (declare-lab/MELD on GitHub, folder
``data/MELD/``, branch ``master``) into a folder that ``safsd-glnet features --meld DIR`` reads.

Every file goes through :func:`download_file`, which uses only the standard library for HTTP:

* the bytes are written to ``DIR/.<name>.part`` and renamed to ``DIR/<name>`` only after
  their sha256 matched the pinned sum (the rename is atomic: a reader sees no file or the
  whole file, never half of one);
* an interrupted transfer keeps the part file, and the next try asks for the rest with an
  HTTP ``Range: bytes=<size>-`` request (a server that ignores ranges sends the whole file,
  which then replaces the part); within one call a cut transfer is retried ``retries`` times;
* a sha256 mismatch deletes the part file and is an error (:class:`DownloadError`);
* a file already in place with the right sum is not downloaded again; one with another sum
  is left alone and reported (it may be the user's own edit);
* a server that cannot be reached gives one line: what was tried, why it failed, and where to
  get the files by hand;
* time is bounded: ``timeout`` seconds per network operation (connecting, each read), an overall
  ``deadline`` per file (all its requests together; checked between reads, so it is met at
  most ``timeout`` seconds late) and, after the first :data:`RATE_GRACE` seconds of a
  request, an average of at least ``min_rate`` bytes per second: a server that sends one byte
  every two seconds never trips the timeout, and is dropped by these two;
* a ``Content-Length`` or ``Content-Range`` that is not a plain byte count (``²``, a 5000-digit
  number, a negative one) is an error naming the URL and the header;
* a redirect to another host (or scheme or port) is refused unless ``allow_redirects`` (the
  checksum would catch other bytes, but the user should know where the files came from);
  within the same host redirects are followed;
* a folder, a pipe or a link where the file or its part file belongs is refused with one line;
  the part file is opened without following links (:func:`safsd_glnet.data.atomic_files.open_working_file`).

Every failure is a :class:`DownloadError` (``safsd-glnet data`` exits 1 with its one line);
bad arguments exit 2.

Only the standard library (``urllib``) and ``tqdm`` (the progress bar) are used, so this works
without the optional extras.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping

MELD_BASE_URL = "https://raw.githubusercontent.com/declare-lab/MELD/master/data/MELD/"
MELD_PAGE = "https://github.com/declare-lab/MELD/tree/master/data/MELD"
# sha256 of the official MELD text files. The machine that wrote this module cannot reach
# GitHub, so the sums were computed from the copies in the project's shared data folder
# (shared/data/meld/*.csv), after checking that their md5 sums equal those its README lists
# for the official release (train 3a33b022655c68961c440a83c93497ec, dev
# 0ff1dda801c068b6e69bf8dd83218ac2, test 46c92f610268c703cb1a0472c76925e5).
MELD_SHA256 = {
    "train_sent_emo.csv": "d2fa2d6529cf03cac2989efec05c9b27d8fd2f4c8fc5974c7ae88aa537fa02db",
    "dev_sent_emo.csv": "2e89c6f8aa182d6f62f8c6331aece905ac7273ca4999660bfb5213e1d0370c1c",
    "test_sent_emo.csv": "8d37103938f7067600839fe29d5a114a6cd1bcdafb75bec101e06464c5006888",
}
MAX_BYTES = 64 << 20  # per file; MELD's largest is 1.1 MB: a bound on the disk a wrong URL can fill
USER_AGENT = "safsd-glnet-download/1 (+python urllib)"
DEADLINE = 1200.0  # seconds per file, all requests together: 20 minutes for MELD's 1.1 MB at 1 KiB/s
MIN_RATE = 1024  # bytes per second, averaged over a request once it has run RATE_GRACE seconds
RATE_GRACE = 30.0  # seconds a request may take to get going before its rate is judged
_clock = time.monotonic  # of the deadline and the rate (a module name, so that tests can set the time)
_BYTE_COUNT = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes '²'


class DownloadError(RuntimeError):
    """A download failed; the message is one line saying what, why, and what to do."""


class Unreachable(DownloadError):
    """The server could not be reached (refused, no route, name not found, timed out)."""


class _Interrupted(Exception):
    """A transfer that stopped short; the part file holds what arrived."""


class _TooLarge(DownloadError):
    """More bytes than allowed: the part file is deleted."""


def part_path(dest: Path) -> Path:
    """Where the partial download of ``dest`` is kept: ``DIR/.<name>.part``."""
    return dest.parent / f".{dest.name}.part"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reason(e: BaseException) -> str:
    """A one-line reason for a network failure (``[Errno 111] Connection refused``)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else OSError(str(e.reason))
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    return " ".join(str(e).split()) or type(e).__name__


def _part_size(part: Path) -> int:
    """Bytes already in the part file (0 when there is none); a link or anything but a regular
    file of one link is a :class:`DownloadError` (see :func:`_open_part`)."""
    try:
        st = os.lstat(part)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(_open_part_fd(part))  # raises, naming what the path is
    return st.st_size


def _open_part_fd(part: Path) -> int:
    from .corpus import DataError
    from .atomic_files import open_working_file

    try:
        return open_working_file(part, "partial download")
    except DataError as e:
        raise DownloadError(str(e)) from None


def _open_part(part: Path):
    """The part file opened for writing in place, without following a link and without
    truncating on opening (:func:`safsd_glnet.data.atomic_files.open_working_file`): a link planted at
    ``DIR/.<name>.part`` cannot make the download overwrite another file."""
    return os.fdopen(_open_part_fd(part), "r+b")


def _byte_count(text: str, url: str, header: str, value: str) -> int:
    """``text`` as a number of bytes, or a :class:`DownloadError` naming the URL and the header."""
    text = text.strip()
    if not _BYTE_COUNT.fullmatch(text):
        shown = value if len(value) <= 40 else f"{value[:40]}... ({len(value)} characters)"
        raise DownloadError(f"{url}: the server sent {header} {shown!r}, which is not a byte count; "
                            f"the download was stopped (a broken or hostile server)")
    return int(text)


def _total_size(response, offset: int, url: str) -> int | None:
    """The whole file's size from a 200 or 206 response, if the server says."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")  # "bytes a-b/total" or "bytes a-b/*"
        first, _, total = content_range.removeprefix("bytes ").partition("/")
        start = _byte_count(first.partition("-")[0], url, "Content-Range", content_range)
        if start != offset:
            raise DownloadError(f"{url}: asked for the bytes from {offset} on, the server sent "
                                f"{content_range[:80]!r}; delete the part file and try again")
        return None if total.strip() == "*" else _byte_count(total, url, "Content-Range", content_range)
    length = response.headers.get("Content-Length")
    return None if length is None else _byte_count(length, url, "Content-Length", length)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:  # a port that is not a number: never the same origin
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects within the same scheme, host and port; refuse others unless allowed."""

    def __init__(self, allow_other_hosts: bool):
        super().__init__()
        self.allow_other_hosts = allow_other_hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not self.allow_other_hosts and _origin(newurl) != _origin(req.full_url):
            raise DownloadError(f"{req.full_url}: the server redirects to {newurl[:200]}, another host; refused "
                                f"(pass --allow-redirects to follow it: the sha256 is checked either way)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open_url(request: urllib.request.Request, timeout: float, allow_redirects: bool):
    """``urlopen`` with :class:`_Redirects`; a ``file:`` URL must name a regular file (a pipe
    would block the open)."""
    if request.type == "file":
        from .corpus import DataError
        from .safe.foreign_files import regular_file

        try:
            regular_file(urllib.request.url2pathname(urllib.parse.urlsplit(request.full_url).path), "file to copy")
        except DataError as e:
            raise DownloadError(f"could not download {request.full_url}: {e}") from None
    return urllib.request.build_opener(_Redirects(allow_redirects)).open(request, timeout=timeout)


def _fetch(url: str, part: Path, *, timeout: float, max_bytes: int, progress: bool, desc: str,
           until: float, deadline: float, min_rate: float, allow_redirects: bool) -> None:
    """One HTTP request: continue ``part`` from its size (Range) and stream the body into it,
    giving up at the clock time ``until`` (the file's ``deadline``) or below ``min_rate``.

    Raises :class:`_Interrupted` when the transfer stops short (the part file is kept) and
    :class:`DownloadError` for everything that a retry would not fix.
    """
    from tqdm.auto import tqdm

    offset = _part_size(part)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    begun = _clock()
    if begun >= until:
        raise _overdue(url, deadline, part)
    try:
        response = _open_url(request, min(timeout, max(until - begun, 0.001)), allow_redirects)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # asked beyond the end: the part file is already whole
            return
        raise DownloadError(f"could not download {url}: {_reason(e)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise Unreachable(f"could not reach {url}: {_reason(e)}") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the range and sends the whole file
        total = _total_size(response, offset, url)
        if total is not None and total > max_bytes:
            raise _TooLarge(f"{url} is {total} bytes, more than the {max_bytes} allowed")
        received = offset
        with _open_part(part) as f, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=desc, disable=not progress, leave=False) as bar:
            f.seek(offset)
            f.truncate()  # the part file is the kit's own (_open_part): what lies past offset is stale
            try:
                while True:
                    block = response.read1(1 << 16)  # what has arrived: a trickle cannot hold it
                    if not block:
                        break
                    received += len(block)
                    if received > max_bytes:  # the part file is dropped by the caller
                        raise _TooLarge(f"{url} sent more than the {max_bytes} bytes allowed")
                    f.write(block)
                    bar.update(len(block))
                    now = _clock()
                    if now >= until:
                        raise _overdue(url, deadline, part)
                    rate = (received - offset) / max(now - begun, 1e-9)
                    if min_rate and now - begun >= RATE_GRACE and rate < min_rate:
                        raise DownloadError(f"{url}: {rate:.0f} bytes/s over {now - begun:.0f} s, below the minimum "
                                            f"of {min_rate:g} bytes/s (--min-rate); the part is kept in {part}: "
                                            f"run the command again to resume")
            except (OSError, http.client.HTTPException) as e:
                raise _Interrupted(f"transfer of {url} stopped after {received} bytes: {_reason(e)}") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
        if total is not None and received < total:
            raise _Interrupted(f"transfer of {url} stopped after {received} of {total} bytes")


def _overdue(url: str, deadline: float, part: Path) -> DownloadError:
    return DownloadError(f"{url}: not finished after {deadline:g} s (--deadline); the part is kept in {part}: "
                         f"run the command again to resume")


def download_file(url: str, dest: str | os.PathLike, sha256: str, *, retries: int = 3, timeout: float = 60.0,
                  max_bytes: int = MAX_BYTES, progress: bool = True, deadline: float = DEADLINE,
                  min_rate: float = MIN_RATE, allow_redirects: bool = False) -> bool:
    """Download ``url`` to ``dest`` (atomically, resumably, checked); False if it was already there.

    See the module notes. ``retries`` is how many more requests a transfer that stops short
    gets within this call (each continues from where the last stopped); ``timeout`` bounds each
    network operation, ``deadline`` the whole file (all its requests), ``min_rate`` (bytes per
    second, 0 = no minimum) a request's average rate after :data:`RATE_GRACE` seconds;
    ``allow_redirects`` lets the server redirect to another host.
    """
    from .corpus import DataError
    from .safe.foreign_files import regular_file

    dest = Path(dest)
    sha256 = sha256.lower()
    until = _clock() + deadline
    if dest.exists() or dest.is_symlink():
        try:
            regular_file(dest, "downloaded file")  # a folder or a pipe: one line, nothing opened
        except DataError as e:
            raise DownloadError(str(e)) from None
        found = sha256_file(dest)
        if found == sha256:
            return False
        raise DownloadError(f"{dest} exists with sha256 {found}, not the expected {sha256}; "
                            f"move it away to download it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout=timeout, max_bytes=max_bytes, progress=progress, desc=dest.name, until=until,
                   deadline=deadline, min_rate=min_rate, allow_redirects=allow_redirects)
            break
        except _TooLarge:
            part.unlink(missing_ok=True)
            raise
        except _Interrupted as e:
            if attempt == retries:
                raise DownloadError(f"{e}; the part is kept in {part}: run the command again to resume") from None
    found = sha256_file(part)
    if found != sha256:
        part.unlink()
        raise DownloadError(f"{url}: checksum mismatch (sha256 {found}, expected {sha256}); the download "
                            f"was deleted: the file on the server changed or the transfer was corrupted")
    os.replace(part, dest)
    return True


def download_meld(out_dir: str | os.PathLike, *, base_url: str = MELD_BASE_URL,
                  sha256: Mapping[str, str] = MELD_SHA256, retries: int = 3, timeout: float = 60.0,
                  progress: bool = True, deadline: float = DEADLINE, min_rate: float = MIN_RATE,
                  allow_redirects: bool = False) -> dict[str, bool]:
    """Download the three MELD text CSVs into ``out_dir``; file name -> whether it was fetched.

    ``base_url`` is the folder the files are fetched from (``base_url + name``); ``sha256``
    maps each file name to its expected sum (default: the pinned sums of the official files;
    the tests pass their own). A server that cannot be reached raises :class:`DownloadError`
    saying where to get the files by hand. ``deadline``, ``min_rate``, ``allow_redirects``: as
    for :func:`download_file`, per file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DownloadError(f"{out} is a file, expected a folder for the MELD CSVs")
    base = base_url if base_url.endswith("/") else base_url + "/"
    by_hand = MELD_PAGE if base == MELD_BASE_URL else base
    done = {}
    for name in ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"):
        if name not in sha256:
            raise ValueError(f"download_meld: no sha256 given for {name}")
        url = base + name
        try:
            done[name] = download_file(url, out / name, sha256[name], retries=retries, timeout=timeout,
                                       progress=progress, deadline=deadline, min_rate=min_rate,
                                       allow_redirects=allow_redirects)
        except Unreachable as e:
            raise Unreachable(f"{e}; download the three files (train_sent_emo.csv, dev_sent_emo.csv, "
                              f"test_sent_emo.csv) by hand from {by_hand} into {out}") from None
    return done
