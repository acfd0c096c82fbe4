"""A restricted unpickler for the SDT / M3Net feature files.

``pickle.load`` runs whatever callable a file names, so opening a downloaded feature file with
it is equivalent to running a downloaded program. The standard IEMOCAP and MELD files only
contain dicts, lists, tuples, sets, strings, numbers and numpy arrays, so
:class:`SafeUnpickler` resolves exactly the globals those need and refuses every other one
*before* it is called: :meth:`SafeUnpickler.find_class` is the only way a pickle can reach a
callable, and it raises :class:`UnsafePickleError` instead of returning one.

What is allowed (module, name) and why:

* builtins (``__builtin__`` in files written by Python 2 or with protocol < 3): ``dict``,
  ``list``, ``tuple``, ``set``, ``frozenset``, ``int``, ``float``, ``complex``, ``bool``,
  ``str``, ``bytes``, ``bytearray`` -- containers and numbers that protocol 0-2 build
  with a call;
* ``collections.OrderedDict`` and ``collections.defaultdict`` (the factory it is given is
  itself resolved through this list, so only a container type can be a factory);
* ``_codecs.encode``: protocol 0-2 pickles written by Python 3 store ``bytes`` as
  ``_codecs.encode(text, "latin1")``. A wrapper is returned that accepts only the latin-1
  family of codecs, so the codec registry cannot be used to import anything;
* numpy: ``numpy.ndarray``, ``numpy.dtype``, and ``_reconstruct`` / ``scalar`` from
  ``numpy.core.multiarray`` (numpy 1.x) and ``numpy._core.multiarray`` (numpy 2.x), and
  ``_frombuffer`` from ``numpy.core.numeric`` / ``numpy._core.numeric`` (protocol 5). The
  numpy 1.x names are mapped onto the installed numpy's own functions without importing the
  deprecated ``numpy.core`` shim.

Allowed callables can still be misused, so three more layers stand between a file and the
process:

1. :func:`~safsd_glnet.data.safe.pickle_scan.scan_pickle` reads the opcodes before the unpickler
   runs and refuses deep nesting, memo tricks, memory bombs and numpy calls that numpy's own
   pickles never make (see that module for the rules and bounds).
2. What :meth:`SafeUnpickler.find_class` returns for the risky names checks its arguments
   when called: ``numpy.ndarray`` cannot be called at all (``ndarray(shape, dtype('O'),
   buffer)`` builds an object array whose element pointers the file chooses, and the first
   read of it crashes the process); ``_reconstruct`` only makes empty arrays; ``dtype``,
   ``scalar`` and ``_frombuffer`` refuse object, structured and datetime dtypes;
   ``str`` / ``bytes`` / ``bytearray`` only convert text (``bytearray(10**10)`` allocates
   10 GB from 20 bytes of file).
3. After loading, every numpy array, scalar and dtype in the result is checked again: no
   array with an object dtype (or a dtype holding objects) leaves :func:`safe_load`.

:func:`safe_load` also turns truncated, corrupted and foreign files (a zip archive, a text
file) into a :class:`DataError` naming the file; ``MemoryError`` and ``RecursionError`` never
escape it.
"""
from __future__ import annotations

import builtins
import codecs
import collections
import io
import mmap
import os
import pickle
import struct
from typing import Any, Callable

import numpy as np

from .foreign_files import looks_like_text, regular_file
from ..corpus import DataError
from .pickle_scan import ALLOWED_DTYPE_KINDS, MAX_ITEMSIZE, ScanRefused, python3_name, scan_pickle

__all__ = ["UnsafePickleError", "SafeUnpickler", "safe_load", "safe_loads", "ALLOWED_GLOBALS"]


class UnsafePickleError(DataError):
    """The pickle names a global outside the allow-list, or misuses one; nothing from it was called."""


def _numpy_attr(submodule: str, name: str) -> Any:
    """``numpy._core.<submodule>.<name>``, falling back to ``numpy.core`` on numpy 1.x."""
    import importlib

    for package in ("numpy._core", "numpy.core"):
        try:
            module = importlib.import_module(f"{package}.{submodule}")
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportError(f"this numpy ({np.__version__}) has no {submodule}.{name}")


_LATIN1_NAMES = {"latin1", "latin_1", "latin-1", "iso-8859-1", "iso8859-1", "iso8859_1", "l1"}
_TEXT_CODECS = _LATIN1_NAMES | {"utf-8", "utf8", "utf_8", "ascii"}


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` that only does what pickle protocol 2 needs.

    Python 3 pickles ``bytes`` at protocol <= 2 as ``_codecs.encode(str, "latin1")``. The real
    function would look any codec name up in the codec registry (which imports modules), so
    the name is checked first.
    """
    if not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode called on {type(obj).__name__}, expected str")
    if not isinstance(encoding, str) or encoding.lower() not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} refused (only latin1)")
    return codecs.latin_1_encode(obj, errors)[0]


def _text_only(kind: type) -> Callable[..., Any]:
    """``str`` / ``bytes`` / ``bytearray`` limited to converting text.

    ``bytes(n)`` and ``bytearray(n)`` allocate n zero bytes (``bytearray(10**10)`` is 20 bytes
    of pickle); ``str(obj)`` of a shared nested list writes out every reference; a codec name
    reaches the codec registry, which imports modules. Pickles only ever call these with no
    argument or with text and a latin1 / UTF-8 / ASCII codec.
    """

    def convert(*args: Any) -> Any:
        if not args:
            return kind()
        value, rest = args[0], args[1:]
        if not isinstance(value, (str, bytes, bytearray)) or len(rest) > 2 or not all(
                isinstance(r, str) for r in rest) or (rest and rest[0].lower() not in _TEXT_CODECS):
            raise pickle.UnpicklingError(f"{kind.__name__}() refused: only text with a latin1, "
                                         f"UTF-8 or ASCII codec")
        return kind(value, *rest)

    convert.__name__ = convert.__qualname__ = kind.__name__
    return convert


class _NdarrayType:
    """What the name ``numpy.ndarray`` resolves to: a marker for ``_reconstruct``, never called.

    ``numpy.ndarray(shape, dtype, buffer)`` builds an array over the file's bytes with any
    dtype: with an object dtype the bytes become the element pointers, and the first read of
    the array crashes the process. numpy's own pickles only pass the class to ``_reconstruct``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray(...) called directly (numpy's own pickles "
                                     "never do; it can forge an array's memory)")

    def __reduce__(self) -> str:
        return "_NDARRAY"


_NDARRAY = _NdarrayType()


def dtype_problem(dtype: Any) -> str | None:
    """Why ``dtype`` may not leave the unpickler (None when it is a plain, sized, object-free type).

    The flags must be the ones numpy gives the same type code: a dtype state in a pickle can
    set them, and numpy trusts flags that say the dtype holds Python objects.
    """
    if not isinstance(dtype, np.dtype):
        return f"a {type(dtype).__name__} where a numpy dtype belongs"
    if dtype.hasobject:
        return f"numpy dtype {dtype} holds Python objects"
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.names is not None or dtype.subdtype is not None:
        return f"numpy dtype {dtype} is not a plain number, bool, bytes, str or void type"
    if not 1 <= dtype.itemsize <= MAX_ITEMSIZE:
        return f"numpy dtype {dtype} has items of {dtype.itemsize} bytes"
    try:
        reference = np.dtype(dtype.str)
    except TypeError:
        return f"numpy dtype {dtype} cannot be rebuilt from its type code"
    if dtype.flags != reference.flags:
        return f"numpy dtype {dtype} has flags {dtype.flags}, numpy gives that type {reference.flags}"
    return None


def _checked(dtype: Any, what: str) -> np.dtype:
    problem = dtype_problem(dtype)
    if problem is not None:
        raise pickle.UnpicklingError(f"{what}: {problem}")
    return dtype


def _safe_dtype(code: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` for the type codes numpy writes (``'f4'``, ``'U5'``, ``'V8'``)."""
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if not isinstance(code, str) or len(code) > 16:
        raise pickle.UnpicklingError("numpy.dtype(...) of something other than a short type code")
    return _checked(np.dtype(code, bool(align), bool(copy)), "numpy.dtype")


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``_reconstruct`` as numpy calls it: an empty array that BUILD then fills."""
    if subtype is not _NDARRAY or not isinstance(shape, tuple) or 0 not in shape:
        raise pickle.UnpicklingError("numpy _reconstruct(...) other than (ndarray, (0,), 'b')")
    return _numpy_attr("multiarray", "_reconstruct")(np.ndarray, shape, dtype)


def _safe_scalar(dtype: Any, *args: Any) -> Any:
    return _numpy_attr("multiarray", "scalar")(_checked(dtype, "numpy scalar"), *args)


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _numpy_attr("numeric", "_frombuffer")(buf, _checked(dtype, "numpy _frombuffer"),
                                                  shape, order)


def _build_allowed() -> dict[tuple[str, str], Callable[[], Any]]:
    # Values are thunks so that numpy attributes are looked up only when a file needs them.
    allowed: dict[tuple[str, str], Callable[[], Any]] = {}
    for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool"):
        obj = getattr(builtins, name)
        allowed[("builtins", name)] = lambda obj=obj: obj
    for kind in (str, bytes, bytearray):
        allowed[("builtins", kind.__name__)] = lambda kind=kind: _text_only(kind)
    allowed[("collections", "OrderedDict")] = lambda: collections.OrderedDict
    allowed[("collections", "defaultdict")] = lambda: collections.defaultdict
    allowed[("_codecs", "encode")] = lambda: _latin1_encode
    allowed[("numpy", "ndarray")] = lambda: _NDARRAY
    allowed[("numpy", "dtype")] = lambda: _safe_dtype
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = lambda: _safe_reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = lambda: _safe_scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = lambda: _safe_frombuffer
    return allowed


ALLOWED_GLOBALS = _build_allowed()
"""(module, name) -> thunk returning the object; the complete list of what a pickle may name."""

def _check_global(source: str, module: str, name: str) -> None:
    # Python 2 names are translated as pickle's own find_class does (fix_imports).
    if python3_name(module, name) not in ALLOWED_GLOBALS:
        raise UnsafePickleError(
            f"{source}: refused to load: the pickle names the global '{module}.{name}', which "
            f"is not a plain container, number, string or numpy array type (nothing was "
            f"executed). Only trusted files may use other types; convert them to the kit's "
            f".npz format with a trusted Python session.")


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose :meth:`find_class` only resolves :data:`ALLOWED_GLOBALS`.

    ``source`` is the file name used in error messages. On its own it does not bound memory
    or nesting: :func:`safe_load` scans the file first.
    """

    def __init__(self, file: Any, *, source: str = "<bytes>", encoding: str = "latin1",
                 errors: str = "strict") -> None:
        super().__init__(file, encoding=encoding, errors=errors)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        _check_global(self.source, module, name)
        return ALLOWED_GLOBALS[python3_name(module, name)]()

    def persistent_load(self, pid: Any) -> Any:
        # Persistent ids let a pickle ask the loader for external objects; the feature files
        # never use them, so any use is refused like an unknown global.
        raise UnsafePickleError(f"{self.source}: refused to load: the pickle uses a persistent id "
                                f"({str(pid)[:40]!r}), which plain feature files never do")


def _check_loaded(obj: Any, source: str) -> None:
    """Refuse a result holding a numpy array, scalar or dtype that is not plain (see above).

    Walks containers iteratively, each object once (shared objects are not walked again).
    """
    seen: set[int] = set()
    checked: set[int] = set()  # dtypes found plain (arrays of one file share a few)
    todo = [obj]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, dict):
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            todo.extend(x)
        elif isinstance(x, (np.ndarray, np.generic, np.dtype)):
            dtype = x if isinstance(x, np.dtype) else x.dtype
            if id(dtype) in checked:
                continue
            problem = dtype_problem(dtype)
            if problem is not None:
                raise UnsafePickleError(f"{source}: refused to load: {problem} (nothing from the "
                                        f"file was run)")
            checked.add(id(dtype))
            todo.append(dtype)  # keeps it alive, so that its id is not reused meanwhile


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _foreign(head: bytes, source: str) -> DataError | None:
    """A clear error for files that are plainly something else (None when it may be a pickle)."""
    if not head:
        return DataError(f"{source}: the file is empty, expected a pickle")
    if head.startswith(_ZIP_MAGIC):
        return DataError(f"{source}: is a zip archive (a .npz corpus or a checkpoint?), not a "
                         f"pickle")
    return None


def _looks_like_text(head: bytes) -> bool:
    """No NUL byte and valid UTF-8 in the first bytes, and not a binary pickle's PROTO opcode."""
    return not head.startswith(b"\x80") and looks_like_text(head)


# What a protocol-0 pickle starts with: MARK, GLOBAL, PUT-less atoms and containers.
_PROTOCOL0_STARTS = {bytes([c]) for c in b"(cdlINFSVLP"}


def _scan(data: Any, source: str) -> None:
    """Refuse ``data`` (bytes or an mmap of the file) before anything unpickles it."""
    head = bytes(data[:4096])
    problem = _foreign(head, source)
    if problem is not None:
        raise problem
    try:
        scan_pickle(data, source, check_global=lambda m, n: _check_global(source, m, n))
    except (UnsafePickleError, ScanRefused):
        raise
    except DataError as e:
        # Protocol-0 pickles are text too; a text file that does not start like one is named.
        if _looks_like_text(head) and head[:1] not in _PROTOCOL0_STARTS:
            raise DataError(f"{source}: is a text file, not a pickle") from None
        raise


def _unpickle(stream: io.BufferedIOBase, source: str, encoding: str) -> Any:
    """Unpickle a scanned file with :class:`SafeUnpickler` and check the result."""
    try:
        obj = SafeUnpickler(stream, source=source, encoding=encoding).load()
    except DataError:
        raise
    except EOFError as e:
        raise DataError(f"{source}: the pickle ends early (truncated file?): {e or 'no data'}") from e
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, UnicodeDecodeError, MemoryError, RecursionError, OverflowError,
            struct.error) as e:
        # A flipped or missing byte surfaces as any of these, depending on which opcode it hits;
        # a refused call (see _text_only, _safe_dtype...) as UnpicklingError.
        text = " ".join(str(e).split())[:200]
        raise DataError(f"{source}: not a readable pickle (corrupted, truncated or refused "
                        f"content): {type(e).__name__}: {text}") from None
    _check_loaded(obj, source)
    return obj


def safe_load(path: str | os.PathLike, encoding: str = "latin1") -> Any:
    """Load the pickle at ``path`` with :class:`SafeUnpickler`, after :func:`scan_pickle`.

    ``encoding`` decodes Python 2 ``str`` objects (the IEMOCAP file was written by Python 2,
    hence the latin1 default that SDT and M3Net use too). Raises :class:`UnsafePickleError`
    for a refused global and :class:`DataError` for a missing, truncated, corrupted or
    foreign file and for one the scan refuses (too deep, too large, numpy misused).
    """
    source = os.fspath(path)
    regular_file(source, "pickle file")  # a pipe or a device is refused before it is opened
    try:
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise DataError(f"{source}: the file is empty, expected a pickle")
            # The scan reads an mmap of the file (no copy in memory); the unpickler then reads
            # the file itself from the start.
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _scan(data, source)
            f.seek(0)
            return _unpickle(f, source, encoding)
    except FileNotFoundError as e:
        raise DataError(f"{source}: file not found") from e
    except IsADirectoryError as e:
        raise DataError(f"{source}: is a folder, expected a pickle file") from e
    except PermissionError as e:
        raise DataError(f"{source}: cannot be read ({e.strerror})") from None
    except MemoryError:
        raise DataError(f"{source}: refused to load: out of memory while reading it") from None


def safe_loads(data: bytes, encoding: str = "latin1", source: str = "<bytes>") -> Any:
    """:func:`safe_load` for an in-memory pickle."""
    if not data:
        raise DataError(f"{source}: the file is empty, expected a pickle")
    try:
        _scan(data, source)
        return _unpickle(io.BytesIO(data), source, encoding)
    except MemoryError:
        raise DataError(f"{source}: refused to load: out of memory while reading it") from None
