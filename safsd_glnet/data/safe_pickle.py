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

:func:`safe_load` also turns truncated or corrupted files into a :class:`DataError` naming
the file.
"""
from __future__ import annotations

import builtins
import codecs
import collections
import io
import os
import pickle
import struct
from typing import Any, Callable

import numpy as np

from .corpus import DataError

__all__ = ["UnsafePickleError", "SafeUnpickler", "safe_load", "safe_loads", "ALLOWED_GLOBALS"]


class UnsafePickleError(DataError):
    """The pickle names a global outside the allow-list; nothing from it was called."""


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


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` that only does what pickle protocol 2 needs.

    Python 3 pickles ``bytes`` at protocol <= 2 as ``_codecs.encode(str, "latin1")``. The real
    function would look any codec name up in the codec registry (which imports modules), so
    the name is checked first.
    """
    if not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode called on {type(obj).__name__}, expected str")
    if encoding.lower() not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} refused (only latin1)")
    return codecs.latin_1_encode(obj, errors)[0]


def _build_allowed() -> dict[tuple[str, str], Callable[[], Any]]:
    # Values are thunks so that numpy attributes are looked up only when a file needs them.
    allowed: dict[tuple[str, str], Callable[[], Any]] = {}
    for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                 "bool", "str", "bytes", "bytearray"):
        obj = getattr(builtins, name)
        allowed[("builtins", name)] = lambda obj=obj: obj
    allowed[("collections", "OrderedDict")] = lambda: collections.OrderedDict
    allowed[("collections", "defaultdict")] = lambda: collections.defaultdict
    allowed[("_codecs", "encode")] = lambda: _latin1_encode
    allowed[("numpy", "ndarray")] = lambda: np.ndarray
    allowed[("numpy", "dtype")] = lambda: np.dtype
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = lambda: _numpy_attr("multiarray", "_reconstruct")
        allowed[(f"{package}.multiarray", "scalar")] = lambda: _numpy_attr("multiarray", "scalar")
        allowed[(f"{package}.numeric", "_frombuffer")] = lambda: _numpy_attr("numeric", "_frombuffer")
    return allowed


ALLOWED_GLOBALS = _build_allowed()
"""(module, name) -> thunk returning the object; the complete list of what a pickle may name."""

# Python 2 module names, which pickle's own find_class would translate (fix_imports).
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose :meth:`find_class` only resolves :data:`ALLOWED_GLOBALS`.

    ``source`` is the file name used in error messages.
    """

    def __init__(self, file: Any, *, source: str = "<bytes>", encoding: str = "latin1",
                 errors: str = "strict") -> None:
        super().__init__(file, encoding=encoding, errors=errors)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        key = (_PY2_MODULES.get(module, module), name)
        thunk = ALLOWED_GLOBALS.get(key)
        if thunk is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load: the pickle names the global "
                f"'{module}.{name}', which is not a plain container, number, string or numpy "
                f"array type (nothing was executed). Only trusted files may use other types; "
                f"convert them to the kit's .npz format with a trusted Python session.")
        return thunk()

    def persistent_load(self, pid: Any) -> Any:
        # Persistent ids let a pickle ask the loader for external objects; the feature files
        # never use them, so any use is refused like an unknown global.
        raise UnsafePickleError(f"{self.source}: refused to load: the pickle uses a persistent id "
                                f"({pid!r}), which plain feature files never do")


def _load(stream: io.BufferedIOBase, source: str, encoding: str) -> Any:
    try:
        return SafeUnpickler(stream, source=source, encoding=encoding).load()
    except DataError:
        raise
    except EOFError as e:
        raise DataError(f"{source}: the pickle ends early (truncated file?): {e or 'no data'}") from e
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, UnicodeDecodeError, MemoryError, OverflowError, struct.error) as e:
        # A flipped or missing byte surfaces as any of these, depending on which opcode it hits.
        raise DataError(f"{source}: not a readable pickle (corrupted or truncated file?): "
                        f"{type(e).__name__}: {e}") from e


def safe_load(path: str | os.PathLike, encoding: str = "latin1") -> Any:
    """Load the pickle at ``path`` with :class:`SafeUnpickler`.

    ``encoding`` decodes Python 2 ``str`` objects (the IEMOCAP file was written by Python 2,
    hence the latin1 default that SDT and M3Net use too). Raises :class:`UnsafePickleError`
    for a refused global and :class:`DataError` for a missing, truncated or corrupted file.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            return _load(f, source, encoding)
    except FileNotFoundError as e:
        raise DataError(f"{source}: file not found") from e
    except IsADirectoryError as e:
        raise DataError(f"{source}: is a folder, expected a pickle file") from e


def safe_loads(data: bytes, encoding: str = "latin1", source: str = "<bytes>") -> Any:
    """:func:`safe_load` for an in-memory pickle."""
    return _load(io.BytesIO(data), source, encoding)
