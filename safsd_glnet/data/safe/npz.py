"""Read an ``.npz`` archive from elsewhere without letting it decide how much memory to take.

``numpy.load`` trusts two sizes a file states about itself: the zip directory's size of each
member and the ``.npy`` header's shape, which it allocates before reading a byte of data. A
1 MB member can declare (and inflate to) 1.6 GB; a header can claim shape (10**11, 8) and get
a raw ``MemoryError``; a pickled object array gets a message advising ``allow_pickle=True``.
:func:`read_npz` reads both sizes first and refuses, with one line naming the file, the
member and the field, an archive whose members

* are not ``.npy`` arrays, are repeated, are more than :data:`MAX_MEMBERS`, or use a
  compression other than none or deflate;
* declare more bytes than ``MAX_RATIO`` times their compressed size plus ``RATIO_SLACK``, or
  more than that times the archive's size in all, or more than :data:`MAX_TOTAL` (``np.savez``,
  which the kit uses, stores members uncompressed: ratio 1; float features written by
  ``np.savez_compressed`` deflate about 1.1 : 1; zeros 1000 : 1, the zip bomb's ratio);
* have an ``.npy`` header longer than numpy's 10,000 bytes, a dtype other than bool,
  integers or floats (no objects, structures or strings), or a shape whose bytes differ from
  what the member holds after its header.

Only then is each member read, into an array of exactly the declared size; zip's CRC check
catches a member whose data does not match. A file that is not a zip archive is named for
what it is (a text file, a pickle, a single ``.npy``). Nothing here needs ``allow_pickle``.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
import numpy as np

from .foreign_files import describe_foreign, regular_file, safe_message
from ..corpus import DataError

__all__ = ["read_npz", "MAX_MEMBERS", "MAX_RATIO", "RATIO_SLACK", "MAX_TOTAL", "ALLOWED_KINDS"]

MAX_MEMBERS = 64
MAX_RATIO = 8
RATIO_SLACK = 1 << 20
MAX_TOTAL = 32 << 30  # 32 GiB: the MELD corpus with all features is about 0.7 GB
ALLOWED_KINDS = "biuf"
_HEADER_LIMIT = 10_000  # numpy's own default max_header_size


def read_npz(path: str | os.PathLike, what: str = "a .npz archive", kinds: str = ALLOWED_KINDS
             ) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path`` by name (without ``.npy``), after the checks above.

    ``what`` describes the expected file in messages (e.g. "a safsd-glnet-corpus .npz file");
    ``kinds`` the dtype kinds allowed (the caches add ``"U"``, fixed-width text, which needs no
    pickle either).

    Raises:
        DataError: naming the file (and the member and field) for a missing, empty, foreign,
            truncated or corrupted file and for every refusal listed in the module docstring.
    """
    source = os.fspath(path)
    regular_file(source, what)  # a pipe or a device is refused before it is opened
    try:
        with open(source, "rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{source}: is a folder, expected {what}") from None
    except PermissionError as e:
        raise DataError(f"{source}: cannot be read ({e.strerror})") from None
    kind = describe_foreign(head)
    if kind != "a zip archive":
        if kind is None:
            raise DataError(f"{source}: is not a .npz (zip) archive, expected {what}")
        hint = " (SDT feature pickles are read from .pkl files)" if kind == "a pickle" else ""
        raise DataError(f"{source}: is {kind}, not a .npz archive{hint}")
    try:
        with zipfile.ZipFile(source) as archive:
            infos = _check_directory(archive, source, os.path.getsize(source))
            for info in infos:
                _check_header(archive, info, source, kinds)
            arrays = {}
            for info in infos:
                with archive.open(info) as member:
                    arrays[info.filename[:-4]] = np.lib.format.read_array(member, allow_pickle=False)
            return arrays
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            NotImplementedError) as e:
        # zipfile checks each member's CRC as it reads: a flipped byte surfaces here.
        raise DataError(f"{source}: not a readable .npz archive (truncated or corrupted?): "
                        f"{type(e).__name__}: {safe_message(str(e))}") from None
    except MemoryError:
        raise DataError(f"{source}: refused to load: out of memory while reading it") from None


def _check_directory(archive: zipfile.ZipFile, source: str, size: int) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DataError(f"{source}: refused to load: the archive has {len(infos)} members, more "
                        f"than the {MAX_MEMBERS} a .npz of the kit may have")
    seen = set()
    total = 0
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or "/" in name:
            raise DataError(f"{source}: member {name[:80]!r} is not a .npy array at the top of "
                            f"the archive")
        if name in seen:
            raise DataError(f"{source}: member {name[:80]!r} is in the archive twice")
        seen.add(name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DataError(f"{source}: member {name!r} uses zip compression method "
                            f"{info.compress_type}; numpy writes stored or deflated members")
        bound = MAX_RATIO * info.compress_size + RATIO_SLACK
        if info.file_size > bound:
            raise DataError(f"{source}: refused to load: member {name!r} declares {info.file_size} "
                            f"bytes from {info.compress_size} compressed, more than {MAX_RATIO} "
                            f"times + 1 MiB (a zip bomb?)")
        total += info.file_size
    if total > min(MAX_TOTAL, MAX_RATIO * size + RATIO_SLACK):
        raise DataError(f"{source}: refused to load: its members declare {total} bytes in all, "
                        f"more than {MAX_RATIO} times the {size}-byte file + 1 MiB (or "
                        f"{MAX_TOTAL >> 30} GiB)")
    return infos


def _check_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str,
                  kinds: str = ALLOWED_KINDS) -> None:
    """The member's ``.npy`` header must describe exactly the bytes that follow it."""
    where = f"{source}: member {info.filename!r}"
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                    member, max_header_size=_HEADER_LIMIT)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                    member, max_header_size=_HEADER_LIMIT)
            else:
                raise DataError(f"{where}: unknown .npy format version {version}")
        except DataError:
            raise
        except ValueError as e:
            text = str(e)
            if "max_header_size" in text or "large" in text:
                raise DataError(f"{where}: field 'header' is longer than the {_HEADER_LIMIT} bytes "
                                f"numpy writes") from None
            raise DataError(f"{where}: field 'header' is not a valid .npy header: "
                            f"{safe_message(text)}") from None
        header_end = member.tell()
    if dtype.hasobject or dtype.kind not in kinds or dtype.names is not None \
            or dtype.subdtype is not None or dtype.itemsize < 1:
        raise DataError(f"{where}: field 'dtype' is {dtype}; the kit's archives hold bool, integer "
                        f"and float arrays only (object arrays would need pickle)")
    if not all(isinstance(s, int) and s >= 0 for s in shape):
        raise DataError(f"{where}: field 'shape' is {shape}, not a shape")
    nbytes = math.prod(shape) * dtype.itemsize
    held = info.file_size - header_end
    if nbytes != held:
        raise DataError(f"{where}: field 'shape' says {tuple(shape)} of {dtype} ({nbytes} bytes), "
                        f"the member holds {held} bytes after its header")
