"""A linear pre-scan of a pickle's opcodes, run before the C unpickler sees the file.

The restricted unpickler (:mod:`~safsd_glnet.data.safe.unpickler`) decides *which* callables a
pickle may reach. That alone does not make a hostile file harmless: with nothing but tuples,
dicts and the memo, a file of a few hundred KB can

* nest a tuple a million deep; hashing it as a dict key recurses in C and the process dies of
  a segmentation fault, which no ``except`` clause can catch;
* refer to one list a hundred thousand times through the memo, so that a later
  ``np.asarray`` creates gigabytes from kilobytes;
* build a tuple DAG ``T_k = (T_{k-1}, T_{k-1})`` whose hash costs 2^k steps;
* call ``bytearray(10**10)``, push millions of empty sets, claim memo slot 2^32 (the C
  unpickler grows its memo array to the index), or give a numpy dtype a state whose flags
  say it holds Python objects (numpy trusts them).

:func:`scan_pickle` decodes the opcodes once, in a loop (so depth cannot crash the scan
itself), and simulates the unpickler's stack symbolically. A stack entry is a small atom (its
value: None, bool, int, float, str or bytes of at most :data:`MAX_CONSTANT_LEN` characters), a
short tuple of atoms (the tuple itself), or a :class:`_Cell` summarising an object: its kind,
nesting depth, *weight* (the elements a consumer reaches when it walks the object, each
reference counted again, a str or bytes counting its length) and, for short tuples, its items.
The file is refused, with a :class:`DataError` naming the file, the byte offset and the rule,
as soon as

* an object nests deeper than :data:`MAX_NESTING` (a standard SDT file nests 4 deep);
* the memory the unpickler would allocate (an upper bound per opcode, see ``_COST``)
  exceeds ``MEMORY_FLOOR + MEMORY_PER_BYTE * file size`` (a standard file needs 2.2 bytes
  per byte: the data, perhaps copied once by numpy, plus object headers);
* the loaded object weighs more than ``WEIGHT_FLOOR + WEIGHT_PER_BYTE * file size``. Without
  memo reuse every element costs at least a byte of file (a float 9, an int 2, a GET 2, a
  float32 array element 4), so this bounds what any later conversion can create, however
  the memo shares lists;
* hashing dict keys and set items would visit more than ``HASH_FLOOR + HASH_PER_BYTE *
  file size`` elements, or a dict or set gets more than :data:`MAX_UNSALTED_KEYS` keys
  whose hash Python does not salt (ints and tuples can be chosen to collide, which makes
  every insertion walk all the others);
* a memo index skips ahead of the entries stored so far (picklers number them in order; the
  C unpickler allocates up to the index), a ``GET`` names an empty slot, or a ``FRAME`` claims
  more bytes than the file has left;
* an object fetched from the memo or duplicated is modified afterwards. Picklers only fill
  an object right after creating it; the rule keeps every depth and weight an upper bound,
  since nothing can grow after it was counted.

With ``profile="numpy"`` (the SDT feature files) the scan also knows what each allow-listed
callable does and refuses what numpy's and Python's picklers never write: a direct
``numpy.ndarray(...)`` call, ``_reconstruct`` with a non-empty shape, a dtype other than a
plain number, bool, bytes, str or void type (no objects, structures, sub-arrays, datetimes,
empty items), a dtype state (``BUILD``) other than the one numpy writes for that type, an array
state whose data is not bytes, ``BUILD`` on anything but a dtype or array, ``bytes(n)`` and
``bytearray(n)``, persistent ids, extension codes, out-of-band buffers, ``INST`` / ``OBJ``.
``profile="generic"`` (the ``data.pkl`` of a torch checkpoint, whose callables
``torch.load(weights_only=True)`` restricts) applies the structural bounds only.

Speed: the scan is Python, one step per opcode, and a standard file has about 20 opcodes per
feature row. numpy writes every array after the first with the same opcodes, so that block is
recognised and simulated in one step (``_Scanner.array_block``, tested equal to the opcode by
opcode simulation); the cyclic garbage collector is paused meanwhile. The README's Security
section gives the load times before and after on an IEMOCAP-size file.

Long (about 1,350 lines) on purpose: one opcode table and one linear pass whose bounds are only
checked when read together; split, the proof that every opcode is bounded would be scattered.
"""
from __future__ import annotations

import gc
import io
import math
import pickletools
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .foreign_files import clip
from ..corpus import DataError

__all__ = ["scan_pickle", "ScanStats", "ScanRefused", "pickle_limits", "MAX_NESTING",
           "MEMORY_FLOOR", "MEMORY_PER_BYTE", "WEIGHT_FLOOR", "WEIGHT_PER_BYTE", "HASH_FLOOR",
           "HASH_PER_BYTE", "MAX_UNSALTED_KEYS", "MAX_ITEMSIZE", "ALLOWED_DTYPE_KINDS"]

MAX_NESTING = 100
"""Deepest nesting allowed (a C recursion survives about 1000 levels of hashing or repr)."""
MEMORY_FLOOR = 32 << 20
MEMORY_PER_BYTE = 4
"""Estimated unpickler memory allowed: 32 MiB + 4 bytes per byte of file."""
WEIGHT_FLOOR = 1 << 20
WEIGHT_PER_BYTE = 1
"""Logical elements allowed: 1 Mi + 1 per byte of file."""
HASH_FLOOR = 1 << 20
HASH_PER_BYTE = 4
"""Element visits allowed for hashing keys: 1 Mi + 4 per byte of file."""
MAX_UNSALTED_KEYS = 1 << 14
"""Keys per dict or set whose hash is not salted (16 Ki; MELD's file has 1,432 int ids)."""
MAX_ITEMSIZE = 1 << 20
"""Largest numpy item allowed, in bytes (a ``U`` string of 256 Ki characters)."""
ALLOWED_DTYPE_KINDS = "biufcSUV"
"""numpy kinds a feature pickle may use: bool, ints, floats, complex, bytes, str, void."""
MAX_CONSTANT_LEN = 64  # str / bytes atoms kept as values (dtype codes, endian marks, names)
MAX_KEPT_ITEMS = 16  # tuples up to this length keep their items (call arguments, states)

# Upper bounds of what the C unpickler allocates, in bytes (64-bit CPython): object sizes
# (sys.getsizeof) plus the slack of the arrays that hold them (the stack, memo, marks and
# lists double when they grow: 8 bytes per entry become at most 16; a dict or set table is
# at least a third full, and holds old and new tables while it grows).
_PUSH = 16
_COST = {"tuple": 40, "list": 56, "dict": 64, "set": 216, "item": 16, "entry": 128,
         "call": 256, "array": 128, "text": 64, "unpickler": 8192}


class ScanRefused(DataError):
    """The pre-scan refused the pickle; nothing in it was run."""


class _Cell:
    """What the scan knows about one object on the simulated stack or in the memo."""

    __slots__ = ("kind", "depth", "weight", "length", "shared", "items", "info", "unsalted")

    def __init__(self, kind: str, depth: int, weight: int, length: int,
                 items: tuple | None = None, info: Any = None) -> None:
        self.kind = kind  # list tuple dict set frozenset str bytes global dtype array scalar
        # atom (a number of unknown value) object (generic profile)
        self.depth = depth  # 0 for atoms, 1 + the deepest item for containers
        self.weight = weight  # logical elements, every reference counted again
        self.length = length  # top-level items (characters for str / bytes)
        self.shared = False  # fetched through GET or DUP: may no longer be modified
        self.items = items  # short tuples: the entries themselves
        self.info = info  # globals: (module, name); dtypes: [numpy dtype, built]; arrays: built
        self.unsalted = 0  # lists, dicts, sets: items whose hash is not salted (not str/bytes)


_ATOM = _Cell("atom", 0, 1, 0)  # a number from int(), float(): value unknown
_ATOM.shared = True  # one object for all of them: never modified


@dataclass
class ScanStats:
    """What a pickle needed (:func:`scan_pickle` returns it; benchmarks print it)."""

    opcodes: int
    depth: int
    memory: int  # estimated bytes
    weight: int  # logical elements of the loaded object
    hash_work: int


def pickle_limits(file_size: int) -> tuple[int, int, int]:
    """(memory bytes, weight, hash work) allowed for a pickle of ``file_size`` bytes."""
    return (MEMORY_FLOOR + MEMORY_PER_BYTE * file_size, WEIGHT_FLOOR + WEIGHT_PER_BYTE * file_size,
            HASH_FLOOR + HASH_PER_BYTE * file_size)


# numpy callables under the names pickles use (numpy 1.x and 2.x module paths).
_NUMPY = {("numpy", "dtype"): "dtype", ("numpy", "ndarray"): "ndarray"}
for _package in ("numpy.core", "numpy._core"):
    _NUMPY[(f"{_package}.multiarray", "_reconstruct")] = "reconstruct"
    _NUMPY[(f"{_package}.multiarray", "scalar")] = "scalar"
    _NUMPY[(f"{_package}.numeric", "_frombuffer")] = "frombuffer"
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_PY2_NAMES = {("__builtin__", "unicode"): ("builtins", "str"), ("__builtin__", "long"): ("builtins", "int")}


def python3_name(module: str, name: str) -> tuple[str, str]:
    """(module, name) as Python 3 calls it (what pickle's fix_imports does for Python 2 files,
    and for files Python 3 wrote at protocol 2, which say ``__builtin__.unicode`` for str)."""
    return _PY2_NAMES.get((module, name)) or (_PY2_MODULES.get(module, module), name)
_CONTAINERS = {("builtins", "list"): "list", ("builtins", "tuple"): "tuple",
               ("builtins", "dict"): "dict", ("builtins", "set"): "set",
               ("builtins", "frozenset"): "frozenset", ("collections", "OrderedDict"): "dict"}
_NUMBERS = {("builtins", n) for n in ("int", "float", "complex", "bool")}
_TEXTS = {("builtins", "str"), ("builtins", "bytes"), ("builtins", "bytearray"),
          ("_codecs", "encode")}
_FACTORIES = set(_CONTAINERS) | _NUMBERS | (_TEXTS - {("_codecs", "encode")})
_LATIN1 = ("latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "iso8859_1", "l1")
_CODECS = _LATIN1 + ("utf-8", "utf8", "utf_8", "ascii")


def _depth(x: Any) -> int:
    t = type(x)
    return x.depth if t is _Cell else 1 if t is tuple else 0


def _weight(x: Any) -> int:
    t = type(x)
    if t is _Cell:
        return x.weight
    if t is str or t is bytes:
        return len(x) or 1
    if t is tuple:
        w = 1
        for i in x:
            ti = type(i)
            w += (len(i) or 1) if ti is str or ti is bytes else 1
        return w
    return 1


def _salted(x: Any) -> bool:
    """str and bytes hashes are salted per process; numbers and tuples are not."""
    t = type(x)
    return x.kind in ("str", "bytes") if t is _Cell else t is str or t is bytes


def _text_length(x: Any) -> int | None:
    t = type(x)
    if t is _Cell:
        return x.length if x.kind in ("str", "bytes") else None
    return len(x) if t is str or t is bytes else None


def _constant(x: Any) -> Any:
    """The value of an atom or constant tuple (a tuple cell of atoms); ``None`` if unknown."""
    if type(x) is _Cell:
        if x.kind == "tuple" and x.items is not None and all(type(i) is not _Cell for i in x.items):
            return x.items
        return None
    return x


def _items(x: Any) -> tuple | None:
    """The entries of a short tuple (a constant or a cell that kept them)."""
    if type(x) is tuple:
        return x
    if type(x) is _Cell and x.kind == "tuple":
        return x.items
    return None


def _length(x: Any) -> int | None:
    """Items a constructor copies out of ``x``; None when the scan cannot tell."""
    t = type(x)
    if t is _Cell:
        return x.length if x.kind in ("list", "tuple", "dict", "set", "frozenset", "str",
                                      "bytes", "object") else None
    if t is str or t is bytes or t is tuple:
        return len(x)
    return None


def _shape(x: Any) -> tuple[int, ...] | None:
    """``x`` when it is a constant tuple of sizes (an array shape), else None."""
    if type(x) is not tuple:
        return None
    for s in x:
        if type(s) is not int or s < 0:
            return None
    return x


def _plain_dtype(code: str) -> np.dtype | None:
    """numpy's dtype for ``code`` when it is a plain, sized, object-free type, else None."""
    try:
        dt = np.dtype(code)
    except (TypeError, ValueError, SyntaxError):
        return None
    if (dt.kind not in ALLOWED_DTYPE_KINDS or dt.hasobject or dt.names is not None
            or dt.subdtype is not None or not 1 <= dt.itemsize <= MAX_ITEMSIZE):
        return None
    return dt


def _built_dtype(x: Any) -> np.dtype | None:
    if type(x) is _Cell and x.kind == "dtype" and x.info[1]:
        return x.info[0]
    return None


class _Scanner:
    def __init__(self, source: str, file_size: int, profile: str,
                 check_global: Callable[[str, str], None] | None) -> None:
        self.source, self.file_size, self.strict = source, file_size, profile == "numpy"
        self.check_global = check_global
        self.max_memory, self.max_weight, self.max_hash = pickle_limits(file_size)
        self.stack: list[Any] = []
        self.marks = array("q")
        self.floor = 0  # stack entries below the innermost MARK are out of reach
        self.memo: list[Any] = []
        # Weights and hash work saturate above every limit, so the numbers stay small.
        self.cap = max(self.max_weight, self.max_hash) + 1
        self.memory = _COST["unpickler"]
        self.hash_work = self.max_depth = self.pos = 0
        self.reconstruct: _Cell | None = None  # the memoized global numpy arrays start with
        self.frame = 0  # the largest frame so far

    # ------------------------------------------------------------------ refusals and budgets

    def refuse(self, why: str) -> ScanRefused:
        return ScanRefused(f"{self.source}: refused to load: {why} (byte {self.pos}; nothing "
                           f"from the file was run)")

    def corrupt(self, why: str) -> DataError:
        return DataError(f"{self.source}: not a readable pickle (corrupted file?): {why} at byte "
                         f"{self.pos}")

    def over_memory(self) -> ScanRefused:
        return self.refuse(
            f"loading it would take more than {self.max_memory >> 20} MiB (32 MiB + "
            f"{MEMORY_PER_BYTE} bytes per byte of the {self.file_size}-byte file; a feature "
            f"file needs about 2.2)")

    def deeper(self, depth: int) -> None:
        self.max_depth = depth
        if depth > MAX_NESTING:
            raise self.refuse(f"objects nest more than {MAX_NESTING} deep (a feature file nests "
                              f"4 deep; deeper nesting can crash Python in C code)")

    def hashed(self, target: _Cell | None, keys: Any) -> None:
        """Account for hashing ``keys`` into ``target`` (a dict or set, or None)."""
        for k in keys:
            self.hash_work += _weight(k)
            if target is not None and not _salted(k):
                target.unsalted += 1
        if target is not None and target.unsalted > MAX_UNSALTED_KEYS:
            raise self.refuse(f"a dict or set gets more than {MAX_UNSALTED_KEYS} keys that are "
                              f"not strings (numbers or tuples can be chosen to collide and "
                              f"make loading take hours)")
        if self.hash_work > self.max_hash:
            raise self.refuse(f"hashing its dict keys and set items would visit more than "
                              f"{self.max_hash} elements (shared or deeply nested keys)")

    # ------------------------------------------------------------------ stack helpers

    def pop(self) -> Any:
        if len(self.stack) <= self.floor:
            raise self.corrupt("the pickle pops from an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.corrupt("the pickle closes a MARK it never opened")
        at = self.marks.pop()
        self.floor = self.marks[-1] if self.marks else 0
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def top(self) -> Any:
        if len(self.stack) <= self.floor:
            raise self.corrupt("the pickle reads an empty stack")
        return self.stack[-1]

    def cell(self, kind: str, items: list[Any], keep: bool = False) -> Any:
        """A new container holding ``items``: depth, weight, unsalted items counted."""
        n = len(items)
        if keep and n <= MAX_KEPT_ITEMS:
            for i in items:
                if type(i) is _Cell or type(i) is tuple:
                    break
            else:
                return tuple(items)  # a constant tuple of atoms
        depth = weight = unsalted = 0
        for i in items:
            t = type(i)
            if t is _Cell:
                if i.depth > depth:
                    depth = i.depth
                weight += i.weight
                if i.kind != "str" and i.kind != "bytes":
                    unsalted += 1
            elif t is str or t is bytes:
                weight += len(i) or 1
            else:
                if t is tuple:
                    if depth < 1:
                        depth = 1
                    weight += _weight(i)
                else:
                    weight += 1
                unsalted += 1
        c = _Cell(kind, depth + 1, min(weight + 1, self.cap), n,
                  tuple(items) if keep and n <= MAX_KEPT_ITEMS else None)
        c.unsalted = unsalted
        if depth + 1 > self.max_depth:
            self.deeper(depth + 1)
        return c

    def mutable(self, kinds: tuple[str, ...], what: str) -> _Cell:
        """The top of the stack, which ``what`` is about to modify in place."""
        target = self.top()
        if type(target) is not _Cell or (self.strict and target.kind not in kinds):
            kind = target.kind if type(target) is _Cell else type(target).__name__
            raise self.refuse(f"{what} applied to a {kind}")
        if target.shared:
            raise self.refuse(f"{what} modifies an object after the pickle shared it through "
                              f"the memo (picklers never do; it would hide how deep or large "
                              f"the object is)")
        return target

    def grow(self, target: _Cell, items: list[Any], count: int) -> None:
        added = self.cell(target.kind, items)
        if added.depth > target.depth:
            target.depth = added.depth
        target.weight = min(target.weight + added.weight - 1, self.cap)
        target.length += count
        if target.kind == "list":
            target.unsalted += added.unsalted

    # ------------------------------------------------------------------ the loop

    def run(self, buf: Any, end: int) -> ScanStats:
        """Decode and simulate the opcodes of ``buf[:end]`` (bytes or an mmap) up to STOP."""
        # The decoder is written out rather than taken from pickletools.genops, which spends
        # about 3 microseconds per opcode on read() and tell(); a standard IEMOCAP file has
        # 1.3 million opcodes. Text arguments (protocol 0) use pickletools' own readers.
        text_view = None
        count, i = 0, 0
        kinds, specs, handlers = _ARG_KIND, _ARG_SPEC, _HANDLERS
        stack, memo, cell_type, max_memory = self.stack, self.memo, _Cell, self.max_memory
        truncated = f"{self.source}: the pickle ends early (truncated file?)"
        try:
            while True:
                if i >= end:
                    raise DataError(truncated)
                code = buf[i]
                self.pos = i
                i += 1
                count += 1
                # Fast paths for the memo and the commonest atoms (over half the opcodes of a
                # feature file); each does what the matching op_* method does.
                if code == 114 or code == 113 or code == 148:  # LONG_BINPUT, BINPUT, MEMOIZE
                    if code == 114:
                        if i + 4 > end:
                            raise DataError(truncated)
                        index = buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16 | buf[i + 3] << 24
                        i += 4
                    elif code == 113:
                        if i >= end:
                            raise DataError(truncated)
                        index = buf[i]
                        i += 1
                    else:
                        index = len(memo)
                    if index == len(memo) and len(stack) > self.floor:
                        memo.append(stack[-1])
                        self.memory += _PUSH
                    else:
                        self.op_put(index)
                    continue
                if code == 106 or code == 104:  # LONG_BINGET, BINGET
                    if code == 106:
                        if i + 4 > end:
                            raise DataError(truncated)
                        index = buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16 | buf[i + 3] << 24
                        i += 4
                    else:
                        if i >= end:
                            raise DataError(truncated)
                        index = buf[i]
                        i += 1
                    if index >= len(memo):
                        self.op_get(index)
                    x = memo[index]
                    if x is self.reconstruct and self.strict:
                        # numpy's array block, after the first: one step instead of twenty.
                        done = self.array_block(buf, i, end)
                        if done is not None:
                            i, ops = done
                            count += ops
                            continue
                    if type(x) is cell_type:
                        x.shared = True
                    stack.append(x)
                    self.memory += _PUSH
                    continue
                if code == 75:  # BININT1: a small int, a shared object
                    if i >= end:
                        raise DataError(truncated)
                    stack.append(buf[i])
                    i += 1
                    self.memory += _PUSH
                    continue
                how = kinds[code]
                if how == _NO_ARG:
                    arg = None
                elif how == _FIXED:
                    size, unpack = specs[code]
                    if i + size > end:
                        raise DataError(truncated)
                    arg = unpack(buf, i)[0]
                    i += size
                elif how == _COUNTED:
                    size, unpack = specs[code]
                    if i + size > end:
                        raise DataError(truncated)
                    length = unpack(buf, i)[0]
                    i += size
                    if length < 0 or i + length > end:
                        raise DataError(f"{self.source}: the pickle claims {length} bytes at byte "
                                        f"{self.pos} that the file does not have (truncated or "
                                        f"corrupted file?)")
                    arg = buf[i:i + length]
                    i += length
                elif how == _TEXT:
                    if text_view is None:
                        text_view = buf if hasattr(buf, "readline") else io.BytesIO(buf)
                    text_view.seek(i)
                    arg = specs[code](text_view)
                    i = text_view.tell()
                else:
                    raise DataError(f"{self.source}: not a readable pickle (byte {self.pos} is "
                                    f"{bytes([code])!r}, not a pickle opcode; corrupted file?)")
                if code == 46:  # STOP
                    result = self.pop()
                    break
                handlers[code](self, arg)
                if self.memory > max_memory:
                    raise self.over_memory()
        except DataError:
            raise
        except (ValueError, UnicodeDecodeError, OverflowError) as e:
            # pickletools' text readers raise ValueError for malformed lines.
            raise DataError(f"{self.source}: not a readable pickle (corrupted or truncated "
                            f"file?): {clip(str(e))}") from None
        weight = _weight(result)
        if weight > self.max_weight:
            raise self.refuse(
                f"the data reaches more than {self.max_weight} elements through shared "
                f"references (1 Mi + {WEIGHT_PER_BYTE} per byte of the {self.file_size}-byte "
                f"file); converting it could take unbounded memory")
        return ScanStats(count, self.max_depth, self.memory, weight, self.hash_work)

    # ------------------------------------------------------------------ numpy's array block

    def array_block(self, buf: Any, i: int, end: int) -> tuple[int, int] | None:
        """Simulate numpy's whole pickle of one array at once, or return None to let the
        opcodes be simulated one by one (nothing is changed then).

        ``buf[i:]`` follows the GET of ``_reconstruct``. numpy's pickler writes every array
        after the first as the same twenty-odd opcodes, its globals and dtype fetched from
        the memo (protocol 3 or higher, or a Python 2 file):

            GET ndarray  (GET (0,) | BININT1 0 TUPLE1 PUT)  GET 'b'  TUPLE3 PUT  REDUCE PUT
            MARK  BININT 1  BININT n...  (TUPLEn PUT | EMPTY_TUPLE)  GET dtype  NEWFALSE
            BINBYTES data PUT  TUPLE PUT  BUILD

        Anything else (more than 3 dimensions, a dtype built in place, protocol 2 text data,
        memo indices out of order) returns None. The effects on the stack, the memo, the
        budgets and the statistics are those of the generic handlers, opcode by opcode (a
        test compares the two on many arrays).
        """
        memo = self.memo
        n_memo = len(memo)
        new_memo: list[Any] = []  # what the block's PUTs store, in order (or thunks making it)
        shared: list[Any] = []  # more entries fetched with GET (encoded_data's)
        memory = 0  # what the generic handlers would add, opcode by opcode
        ops = 0  # opcodes after the caller's GET

        def get(at: int) -> tuple[Any, int] | None:
            if at + 1 >= end:
                return None
            c = buf[at]
            if c == 104:
                index, at = buf[at + 1], at + 2
            elif c == 106 and at + 4 < end:
                index, at = int.from_bytes(buf[at + 1:at + 5], "little"), at + 5
            else:
                return None
            return (memo[index], at) if index < n_memo else None

        def put(at: int, value: Any) -> int | None:
            """A PUT that appends ``value`` to the memo (index = entries so far)."""
            if at >= end:
                return None
            c = buf[at]
            expected = n_memo + len(new_memo)
            if c == 113 and at + 1 < end and buf[at + 1] == expected:
                at += 2
            elif c == 114 and at + 4 < end and int.from_bytes(buf[at + 1:at + 5], "little") == expected:
                at += 5
            elif c == 148:
                at += 1
            else:
                return None
            new_memo.append(value)
            return at

        found = get(i)  # GET ndarray
        if found is None:
            return None
        ndarray, i = found
        if not (type(ndarray) is _Cell and ndarray.kind == "global"
                and _NUMPY.get(ndarray.info) == "ndarray"):
            return None
        ops += 1
        memory += 2 * _PUSH  # the caller's GET _reconstruct, GET ndarray
        if i + 2 < end and buf[i] == 75 and buf[i + 2] == 0x85:  # BININT1 k TUPLE1 PUT
            empty = (buf[i + 1],)
            i = put(i + 3, empty)
            if i is None:
                return None
            ops += 3
            memory += _PUSH + _COST["tuple"] + 8 + _PUSH + _PUSH
        else:
            found = get(i)  # GET (0,)
            if found is None:
                return None
            empty, i = found
            ops += 1
            memory += _PUSH
        if type(empty) is not tuple or _shape(empty) is None or math.prod(empty) != 0:
            return None
        found = get(i)  # GET 'b'
        if found is None or _text_length(found[0]) is None:
            return None
        code_b, i = found
        if i >= end or buf[i] != 0x87:  # TUPLE3
            return None
        i = put(i + 1, lambda: self.cell("tuple", [ndarray, empty, code_b], keep=True))
        if i is None or i >= end or buf[i] != 0x52:  # REDUCE
            return None
        array = _Cell("array", 1, 1, 0, None, False)
        i = put(i + 1, array)
        if i is None or i >= end or buf[i] != 0x28:  # MARK
            return None
        i += 1
        ops += 1 + 1 + 1 + 1 + 1 + 1  # GET 'b', TUPLE3, PUT, REDUCE, PUT, MARK
        memory += _PUSH + _COST["tuple"] + 8 * 3 + 2 * _PUSH + _COST["array"] + 2 * _PUSH
        ints = []
        while i < end and buf[i] in (75, 77, 74) and len(ints) < 4:  # BININT1, 2, BININT
            c = buf[i]
            size = 1 if c == 75 else 2 if c == 77 else 4
            if i + size >= end:
                return None
            v = int.from_bytes(buf[i + 1:i + 1 + size], "little", signed=c == 74)
            ints.append(v)
            memory += _PUSH + (0 if -5 <= v <= 256 else sys.getsizeof(v))
            i += 1 + size
        if not ints or i >= end:
            return None
        ops += len(ints)
        shape = tuple(ints[1:])  # the first int is the state's version
        ndim = len(shape)
        if ndim == 0 and buf[i] == 0x29:  # EMPTY_TUPLE: a 0-d array (not memoized)
            i += 1
            ops += 1
            memory += _PUSH
        elif 1 <= ndim <= 3 and buf[i] == 0x84 + ndim:  # TUPLE1..3 PUT
            i = put(i + 1, shape)
            if i is None:
                return None
            ops += 2
            memory += _COST["tuple"] + 8 * ndim + 2 * _PUSH
        else:
            return None
        if min(shape, default=0) < 0:
            return None
        found = get(i)  # GET dtype
        if found is None:
            return None
        dtype_cell, i = found
        dtype = _built_dtype(dtype_cell)
        if dtype is None or i >= end or buf[i] not in (0x88, 0x89):  # NEWTRUE, NEWFALSE
            return None
        fortran = buf[i] == 0x88
        i += 1
        if i >= end:
            return None
        c = buf[i]
        if c == 104 or c == 106:  # protocol 2 from Python 3: _codecs.encode(text, "latin1")
            found = self.encoded_data(buf, i, end, get, put, shared)
            if found is None:
                return None
            i, data, n, extra_ops, extra_memory = found
            if math.prod(shape) * dtype.itemsize != n:
                return None  # the generic path names the problem
            ops += extra_ops
            memory += extra_memory
            is_text = False
        else:
            if c == 0x43 or c == 0x55:  # SHORT_BINBYTES, SHORT_BINSTRING
                size = 1
            elif c == 0x42 or c == 0x54:  # BINBYTES, BINSTRING
                size = 4
            elif c == 0x8E:  # BINBYTES8
                size = 8
            else:
                return None
            if i + size >= end:
                return None
            n = int.from_bytes(buf[i + 1:i + 1 + size], "little", signed=c == 0x54)
            start = i + 1 + size
            if n < 0 or start + n > end or math.prod(shape) * dtype.itemsize != n:
                return None  # the generic path names the problem
            is_text = c == 0x55 or c == 0x54  # a Python 2 str, decoded as latin1
            if n > MAX_CONSTANT_LEN:
                data = _Cell("str" if is_text else "bytes", 0, n, n)
            else:
                raw = bytes(buf[start:start + n])
                data = raw.decode("latin1") if is_text else raw
            i = put(start + n, data)
            ops += 2  # the data, PUT
            memory += (49 if is_text else 33) + n + 2 * _PUSH
        if i is None or i >= end or buf[i] != 0x74:  # TUPLE
            return None
        i = put(i + 1, lambda: self.cell("tuple", [ints[0], shape, dtype_cell, fortran, data],
                                         keep=True))
        if i is None or i >= end or buf[i] != 0x62:  # BUILD
            return None
        ops += 1 + 1 + 1 + 1 + 1  # GET dtype, NEWFALSE, TUPLE, PUT, BUILD
        memory += 2 * _PUSH  # GET dtype, NEWFALSE
        memory += _COST["tuple"] + 8 * 5 + 2 * _PUSH + _COST["array"] + n  # TUPLE, PUT, BUILD
        if self.memory + memory > self.max_memory:
            return None  # the generic path refuses at the right opcode

        # Apply: what the generic handlers would have done, in their order (tuples the block
        # builds are made now, from the thunks the PUTs recorded).
        self.memory += memory
        for x in (self.reconstruct, ndarray, code_b, dtype_cell, *shared):
            if type(x) is _Cell:
                x.shared = True  # fetched with GET
        memo.extend(x() if callable(x) else x for x in new_memo)
        array.weight = min(1 + n, self.cap)
        array.length = shape[0] if shape else 1
        array.info = True
        self.stack.append(array)
        self.pos = i
        return i + 1, ops

    def encoded_data(self, buf: Any, i: int, end: int, get: Callable, put: Callable,
                     shared: list) -> tuple | None:
        """The data of an array pickled at protocol 2 by Python 3, for :meth:`array_block`:

            GET _codecs.encode  BINUNICODE text PUT  GET 'latin1'  TUPLE2 PUT  REDUCE PUT

        Returns (position after it, the data entry, its length, opcodes, memory), or None.
        Changes nothing but what ``put`` records and ``shared``.
        """
        found = get(i)
        if found is None:
            return None
        encoder, i = found
        if not (type(encoder) is _Cell and encoder.kind == "global"
                and encoder.info == ("_codecs", "encode")) or i >= end:
            return None
        c = buf[i]
        size = 1 if c == 0x8C else 4 if c == 0x58 else 8 if c == 0x8D else 0
        if not size or i + size >= end:
            return None
        nbytes = int.from_bytes(buf[i + 1:i + 1 + size], "little")
        start = i + 1 + size
        if start + nbytes > end:
            return None
        raw = buf[start:start + nbytes]
        if nbytes > MAX_CONSTANT_LEN and raw.isascii():  # as op_unicode counts it
            n, text_memory, text = nbytes, 49 + nbytes, None
        else:
            text = str(raw, "utf-8", "surrogatepass")
            n, text_memory = len(text), sys.getsizeof(text)
        entry: Any = text if n <= MAX_CONSTANT_LEN else _Cell("str", 0, n, n)
        i = put(start + nbytes, entry)
        if i is None:
            return None
        found = get(i)
        if found is None or type(found[0]) is not str or found[0].lower() not in _LATIN1:
            return None
        codec, i = found
        if i >= end or buf[i] != 0x86:  # TUPLE2
            return None
        i = put(i + 1, lambda: self.cell("tuple", [entry, codec], keep=True))
        if i is None or i >= end or buf[i] != 0x52:  # REDUCE
            return None
        if type(entry) is str:
            try:
                data: Any = entry.encode("latin1")
            except UnicodeEncodeError:
                return None  # the generic path refuses it
        else:
            data = _Cell("bytes", 0, n or 1, n)
        i = put(i + 1, data)
        if i is None:
            return None
        shared.append(encoder)
        memory = _PUSH + text_memory + _PUSH + _PUSH  # GET, the text, PUT
        memory += _PUSH + _COST["tuple"] + 8 * 2 + 2 * _PUSH  # GET codec, TUPLE2, PUT
        memory += _COST["text"] + n + _PUSH  # REDUCE (a byte per character), PUT
        return i, data, n, 8, memory

    # ------------------------------------------------------------------ atoms

    def op_atom(self, arg: Any) -> None:
        if not (type(arg) is int and -5 <= arg <= 256):  # small ints are shared objects
            self.memory += sys.getsizeof(arg)
        self.stack.append(arg)
        self.memory += _PUSH

    def op_long(self, arg: bytes) -> None:
        self.op_atom(int.from_bytes(arg, "little", signed=True))

    def op_none(self, arg: Any) -> None:
        self.stack.append(None)
        self.memory += _PUSH

    def op_true(self, arg: Any) -> None:
        self.stack.append(True)
        self.memory += _PUSH

    def op_false(self, arg: Any) -> None:
        self.stack.append(False)
        self.memory += _PUSH

    def push_text(self, value: Any, nbytes: int, kind: str) -> None:
        """Push a str or bytes the unpickler stores in ``nbytes`` (small ones by value)."""
        self.memory += nbytes + _PUSH
        n = len(value)
        if n > MAX_CONSTANT_LEN:
            self.stack.append(_Cell(kind, 0, n, n))
        elif kind == "str" and type(value) is not str:
            self.stack.append(bytes(value).decode("latin1"))
        else:
            self.stack.append(value if type(value) in (str, bytes) else bytes(value))

    def op_unicode(self, arg: Any) -> None:
        if type(arg) is str:
            self.push_text(arg, sys.getsizeof(arg), "str")
        elif len(arg) > MAX_CONSTANT_LEN and arg.isascii():
            self.push_text(arg, 49 + len(arg), "str")  # ASCII: one byte per character
        else:
            # The decoded size is what the unpickler allocates (1, 2 or 4 bytes a character).
            text = str(arg, "utf-8", "surrogatepass")
            self.push_text(text, sys.getsizeof(text), "str")

    def op_binstring(self, arg: bytes) -> None:
        # Python 2 str, decoded as latin1 by the loaders: one byte per character.
        self.push_text(arg, 49 + len(arg), "str")

    def op_string(self, arg: str) -> None:
        self.push_text(arg, sys.getsizeof(arg), "str")

    def op_bytes(self, arg: bytes) -> None:
        self.push_text(arg, 33 + len(arg), "bytes")

    def op_bytearray(self, arg: bytes) -> None:
        self.push_text(arg, 57 + len(arg), "bytes")

    # ------------------------------------------------------------------ marks, stack, memo

    def op_mark(self, arg: Any) -> None:
        self.floor = len(self.stack)
        self.marks.append(self.floor)
        self.memory += _PUSH

    def op_pop(self, arg: Any) -> None:
        if len(self.stack) > self.floor:
            self.stack.pop()
        elif self.marks:
            self.pop_mark()  # what pickle does for a POP right after a MARK
        else:
            raise self.corrupt("the pickle pops from an empty stack")

    def op_pop_mark(self, arg: Any) -> None:
        self.pop_mark()

    def op_dup(self, arg: Any) -> None:
        top = self.top()
        if type(top) is _Cell:
            top.shared = True
        self.stack.append(top)
        self.memory += _PUSH

    def op_put(self, arg: Any) -> None:
        memo = self.memo
        if arg is None:  # MEMOIZE
            arg = len(memo)
        if len(self.stack) <= self.floor:
            raise self.corrupt("the pickle stores an empty stack in the memo")
        if arg == len(memo):
            memo.append(self.stack[-1])
            self.memory += _PUSH
        elif 0 <= arg < len(memo):
            memo[arg] = self.stack[-1]
        else:
            raise self.refuse(f"memo index {arg} skips ahead of the {len(memo)} entries stored "
                              f"so far (the unpickler would allocate room for all of them)")

    def op_get(self, arg: int) -> None:
        if not 0 <= arg < len(self.memo):
            raise self.corrupt(f"memo index {arg} was never stored")
        x = self.memo[arg]
        if type(x) is _Cell:
            x.shared = True
        self.stack.append(x)
        self.memory += _PUSH

    def op_frame(self, arg: int) -> None:
        left = self.file_size - self.pos - 9
        if arg > left:
            raise self.refuse(f"a frame claims {arg} bytes, the file has {max(left, 0)} left")
        # The unpickler reads a frame into a buffer before decoding it, one frame at a time.
        if arg > self.frame:
            self.memory += arg - self.frame
            self.frame = arg

    def op_proto(self, arg: int) -> None:
        if not 0 <= arg <= 5:
            raise self.refuse(f"unknown pickle protocol {arg}")

    # ------------------------------------------------------------------ containers

    def op_empty_list(self, arg: Any) -> None:
        self.stack.append(_Cell("list", 1, 1, 0))
        self.memory += _COST["list"] + _PUSH

    def op_empty_dict(self, arg: Any) -> None:
        self.stack.append(_Cell("dict", 1, 1, 0))
        self.memory += _COST["dict"] + _PUSH

    def op_empty_set(self, arg: Any) -> None:
        self.stack.append(_Cell("set", 1, 1, 0))
        self.memory += _COST["set"] + _PUSH

    def op_empty_tuple(self, arg: Any) -> None:
        self.stack.append(())
        self.memory += _PUSH

    def make_tuple(self, items: list[Any]) -> None:
        self.memory += _COST["tuple"] + 8 * len(items) + _PUSH
        self.stack.append(self.cell("tuple", items, keep=True))

    def op_tuple(self, arg: Any) -> None:
        self.make_tuple(self.pop_mark())

    def op_tuple_n(self, n: int) -> None:
        stack = self.stack
        if len(stack) - n < self.floor:
            raise self.corrupt("TUPLE on an empty stack")
        items = stack[-n:]
        del stack[-n:]
        self.make_tuple(items)

    def op_tuple1(self, arg: Any) -> None:
        self.op_tuple_n(1)

    def op_tuple2(self, arg: Any) -> None:
        self.op_tuple_n(2)

    def op_tuple3(self, arg: Any) -> None:
        self.op_tuple_n(3)

    def op_list(self, arg: Any) -> None:
        items = self.pop_mark()
        self.memory += _COST["list"] + _COST["item"] * len(items) + _PUSH
        self.stack.append(self.cell("list", items))

    def op_dict(self, arg: Any) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise self.corrupt("DICT with an odd number of items")
        self.memory += _COST["dict"] + _COST["entry"] * (len(items) // 2) + _PUSH
        c = self.cell("dict", items)
        c.length, c.unsalted = len(items) // 2, 0
        self.hashed(c, items[0::2])
        self.stack.append(c)

    def op_frozenset(self, arg: Any) -> None:
        items = self.pop_mark()
        self.memory += _COST["set"] + _COST["entry"] * len(items) + _PUSH
        c = self.cell("frozenset", items)
        c.unsalted = 0
        self.hashed(c, items)
        self.stack.append(c)

    def op_append(self, arg: Any) -> None:
        item = self.pop()
        self.memory += _COST["item"]
        self.grow(self.mutable(("list",), "APPEND"), [item], 1)

    def op_appends(self, arg: Any) -> None:
        items = self.pop_mark()
        self.memory += _COST["item"] * len(items)
        self.grow(self.mutable(("list",), "APPENDS"), items, len(items))

    def op_setitem(self, arg: Any) -> None:
        value = self.pop()
        key = self.pop()
        target = self.mutable(("dict",), "SETITEM")
        self.memory += _COST["entry"]
        self.grow(target, [key, value], 1)
        self.hashed(target, (key,))

    def op_setitems(self, arg: Any) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise self.corrupt("SETITEMS with an odd number of items")
        target = self.mutable(("dict",), "SETITEMS")
        self.memory += _COST["entry"] * (len(items) // 2)
        self.grow(target, items, len(items) // 2)
        self.hashed(target, items[0::2])

    def op_additems(self, arg: Any) -> None:
        items = self.pop_mark()
        target = self.mutable(("set",), "ADDITEMS")
        self.memory += _COST["entry"] * len(items)
        self.grow(target, items, len(items))
        self.hashed(target, items)

    # ------------------------------------------------------------------ globals and calls

    def push_global(self, module: str, name: str) -> None:
        if self.check_global is not None:
            self.check_global(module, name)  # with the name as written, for its message
        cell = _Cell("global", 0, 1, 0, None, python3_name(module, name))
        if _NUMPY.get(cell.info) == "reconstruct":
            self.reconstruct = cell  # what array_block looks for
        self.stack.append(cell)
        self.memory += _PUSH

    def op_global(self, arg: str) -> None:
        module, _, name = arg.partition(" ")
        self.push_global(module, name)

    def op_stack_global(self, arg: Any) -> None:
        name = self.pop()
        module = self.pop()
        if type(module) is not str or type(name) is not str:
            raise self.refuse("STACK_GLOBAL with a module or name that is not a short string")
        self.push_global(module, name)

    def op_reduce(self, arg: Any) -> None:
        stack = self.stack
        if len(stack) - 2 < self.floor:
            raise self.corrupt("REDUCE on an empty stack")
        args = stack.pop()
        stack[-1] = self.call(stack[-1], args, "REDUCE")

    def op_newobj(self, arg: Any) -> None:
        args = self.pop()
        cls = self.pop()
        self.stack.append(self.call(cls, args, "NEWOBJ"))
        self.memory += _PUSH

    def op_newobj_ex(self, arg: Any) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        if self.strict:
            raise self.refuse("NEWOBJ_EX (keyword construction) is not used by plain data pickles")
        self.stack.append(self.generic_call([cls, args, kwargs]))

    def op_inst(self, arg: Any) -> None:
        items = self.pop_mark()
        if self.strict:
            raise self.refuse("INST / OBJ (class instances) are not used by plain data pickles")
        self.stack.append(self.generic_call(items))

    op_obj = op_inst

    def op_persid(self, arg: Any) -> None:
        if self.strict:
            raise self.refuse("the pickle uses a persistent id, which plain feature files never do")
        self.memory += _COST["call"]
        self.stack.append(_Cell("object", 1, 1, 0))

    def op_binpersid(self, arg: Any) -> None:
        self.pop()
        self.op_persid(arg)

    def op_ext(self, arg: Any) -> None:
        if self.strict:
            raise self.refuse("the pickle uses the extension registry (EXT opcodes), which "
                              "plain feature files never do")
        self.stack.append(_Cell("global", 0, 1, 0))

    def op_buffer(self, arg: Any) -> None:
        raise self.refuse("the pickle needs out-of-band buffers, which a file cannot supply")

    def op_build(self, arg: Any) -> None:
        state = self.pop()
        if self.strict:
            self.build_numpy(self.top(), state)
            return
        target = self.mutable(("object", "dict", "list", "set"), "BUILD")
        self.memory += _COST["call"] + _COST["entry"] * (_length(state) or 1)
        self.grow(target, [state], 0)

    def generic_call(self, items: list[Any]) -> _Cell:
        """Any callable (generic profile): its result may copy each argument's items once."""
        self.memory += _COST["call"] + _COST["entry"] * sum(_length(i) or 1 for i in items)
        return self.cell("object", items)

    def call(self, func: Any, args: Any, what: str) -> Any:
        items = _items(args)
        if not self.strict:
            if items is None and not (type(args) is _Cell and args.kind == "tuple"):
                raise self.refuse(f"{what} with arguments that are not a tuple")
            return self.generic_call([func, args])
        if type(func) is not _Cell or func.kind != "global":
            raise self.refuse(f"{what} calls something that is not a named global")
        key = func.info
        if items is None:
            raise self.refuse(f"{what} of {key[0]}.{key[1]} without a short tuple of arguments")
        numpy_call = _NUMPY_CALLS.get(key)
        if numpy_call is not None:
            if what != "REDUCE":
                raise self.refuse(f"{what} of {key[0]}.{key[1]}: numpy's pickles use REDUCE")
            return numpy_call(self, items)
        if key in _CONTAINERS:
            return self.container_call(_CONTAINERS[key], items, what)
        if key == ("collections", "defaultdict") and what == "REDUCE":
            return self.defaultdict_call(items)
        if key in _NUMBERS:
            if any(type(i) is _Cell and i.kind not in ("str", "bytes", "atom") for i in items):
                raise self.refuse(f"{key[1]}() of a container")
            self.memory += _COST["call"]
            return _ATOM
        if key in _TEXTS and what == "REDUCE":
            return self.text_call(key, items)
        raise self.refuse(f"{what} of {key[0]}.{key[1]} is not something plain data pickles do")

    def container_call(self, kind: str, items: tuple, what: str) -> _Cell:
        if len(items) > 1:
            raise self.refuse(f"{kind}() with {len(items)} arguments")
        if not items or (what != "REDUCE" and kind not in ("tuple", "frozenset")):
            self.memory += _COST["set"]  # empty (list.__new__ and the like ignore arguments)
            return _Cell(kind, 1, 1, 0)
        source = items[0]
        n = _length(source)
        if n is None:
            shown = source.kind if type(source) is _Cell else type(source).__name__
            raise self.refuse(f"{kind}() of a {shown}; plain data pickles build containers from "
                              f"lists, tuples, dicts or strings only")
        self.memory += _COST["set"] + _COST["entry"] * n
        # The result holds the source's items: the same depth and weight as the source.
        c = _Cell(kind, max(1, _depth(source)), _weight(source), n)
        c.unsalted = source.unsalted if type(source) is _Cell else 0
        if kind in ("set", "frozenset", "dict"):
            self.hash_work += _weight(source)
            self.hashed(c, ())
        return c

    def defaultdict_call(self, items: tuple) -> _Cell:
        factory = items[0] if items else None
        if factory is not None and not (type(factory) is _Cell and factory.kind == "global"
                                        and factory.info in _FACTORIES):
            raise self.refuse("defaultdict with a factory that is not a container or number type")
        if len(items) > 1:
            return self.container_call("dict", items[1:], "REDUCE")
        self.memory += _COST["set"]
        return _Cell("dict", 1, 1, 0)

    def text_call(self, key: tuple[str, str], items: tuple) -> Any:
        """str(), bytes(), bytearray(), _codecs.encode() of text: never of a size or container."""
        if not items:
            self.memory += _COST["text"]
            return "" if key[1] == "str" else b""
        n = _text_length(items[0])
        if n is None or len(items) > 3 or any(_text_length(i) is None for i in items[1:]):
            raise self.refuse(f"{key[0]}.{key[1]}() of something other than text (bytes(n) and "
                              f"bytearray(n) allocate n bytes from a few)")
        codec = _constant(items[1]) if len(items) > 1 else "utf-8"
        if type(codec) is not str or codec.lower() not in _CODECS:
            raise self.refuse(f"{key[0]}.{key[1]}() with codec {str(codec)[:20]!r}: only latin1, "
                              f"UTF-8 and ASCII (a codec name can import a module)")
        # bytes(text, "latin1") has a byte per character, str(data, encoding) at most four.
        self.memory += _COST["text"] + (4 * n if key[1] == "str" else n)
        value = _constant(items[0])
        encoding = _constant(items[1]) if len(items) > 1 else None
        if key[1] == "encode" and type(encoding) is str and encoding.lower() in _LATIN1:
            if type(value) is str:
                try:
                    return value.encode("latin1")
                except UnicodeEncodeError:
                    raise self.refuse("_codecs.encode of text that is not latin1") from None
        return _Cell("str" if key[1] == "str" else "bytes", 0, n or 1, n)

    # ------------------------------------------------------------------ numpy

    def np_ndarray(self, items: tuple) -> Any:
        raise self.refuse("the pickle calls numpy.ndarray(...) directly, which numpy's own "
                          "pickles never do (it can forge an array's memory)")

    def np_dtype(self, items: tuple) -> _Cell:
        code = items[0] if items else None
        if type(code) is bytes:
            code = code.decode("latin1")
        if (type(code) is not str or len(items) > 3
                or any(type(f) not in (bool, int) or f not in (0, 1) for f in items[1:])):
            raise self.refuse("numpy.dtype(...) with arguments numpy's pickles never use")
        ref = _plain_dtype(code) if len(code) <= 16 else None
        if ref is None:
            raise self.refuse(f"numpy dtype {code[:20]!r} is not a plain number, bool, bytes, str "
                              f"or void type (object, structured and datetime dtypes are refused)")
        self.memory += 4 * _COST["call"]
        return _Cell("dtype", 1, 1, 0, None, [ref, False])

    def np_reconstruct(self, items: tuple) -> _Cell:
        if len(items) != 3 or not (type(items[0]) is _Cell and items[0].kind == "global"
                                   and _NUMPY.get(items[0].info) == "ndarray"):
            raise self.refuse("numpy _reconstruct(...) with arguments numpy's pickles never use")
        shape = _shape(items[1])
        if shape is None or math.prod(shape) != 0 or _text_length(items[2]) is None:
            raise self.refuse("numpy _reconstruct(...) with a non-empty shape (numpy writes "
                              "(0,) and fills the array from its state)")
        self.memory += _COST["array"]
        return _Cell("array", 1, 1, 0, None, False)

    def np_scalar(self, items: tuple) -> _Cell:
        if len(items) != 2 or _built_dtype(items[0]) is None or _text_length(items[1]) is None:
            raise self.refuse("numpy scalar(...) without a plain dtype and its bytes")
        self.memory += _COST["array"] + 4 * _text_length(items[1])
        return _Cell("scalar", 1, 1, 0)

    def np_frombuffer(self, items: tuple) -> _Cell:
        dtype = _built_dtype(items[1]) if len(items) == 4 else None
        n = _text_length(items[0])
        shape = _shape(items[2]) if len(items) == 4 else None
        if dtype is None or n is None or shape is None:
            raise self.refuse("numpy _frombuffer(...) without bytes, a plain dtype and a shape")
        if math.prod(shape) * dtype.itemsize != n:
            raise self.refuse(f"numpy _frombuffer(...): shape {shape} does not match the {n} "
                              f"bytes given")
        self.memory += _COST["array"]
        c = _Cell("array", 1, min(1 + n, self.cap), shape[0] if shape else 1)
        c.info = True
        return c

    def build_numpy(self, target: Any, state: Any) -> None:
        if not (type(target) is _Cell and target.kind in ("dtype", "array")):
            kind = target.kind if type(target) is _Cell else type(target).__name__
            raise self.refuse(f"BUILD (set the state of) a {kind}: plain data pickles only set "
                              f"the state of numpy dtypes and arrays")
        built = target.info[1] if target.kind == "dtype" else target.info
        if target.shared or built:
            raise self.refuse(f"BUILD on a numpy {target.kind} that was already shared or built")
        if target.kind == "dtype":
            self.build_dtype(target, state)
        else:
            self.build_array(target, state)

    def build_dtype(self, target: _Cell, state: Any) -> None:
        ref = target.info[0]
        value = _constant(state)
        ok = (type(value) is tuple and len(value) == 8 and value[0] == 3
              and value[1] in ("<", ">", "|", "=") and value[2:5] == (None, None, None)
              and value[5] in (-1, ref.itemsize) and value[6] in (-1, ref.alignment)
              and value[7] == ref.flags)
        if not ok:
            raise self.refuse(f"a numpy dtype state other than the one numpy writes for "
                              f"{ref.str!r} (it could claim the dtype holds Python objects)")
        target.info = [ref, True]

    def build_array(self, target: _Cell, state: Any) -> None:
        items = _items(state)
        if items is None or len(items) not in (4, 5):
            raise self.refuse("a numpy array state that is not (version, shape, dtype, fortran, "
                              "data)")
        shape, dtype, fortran, data = items[-4:]
        shape, dtype, n = _shape(shape), _built_dtype(dtype), _text_length(data)
        if shape is None or dtype is None:
            raise self.refuse("a numpy array state without a short shape and a plain dtype")
        if n is None:
            raise self.refuse("a numpy array state whose data is not bytes (an object array?)")
        if fortran not in (0, 1) or math.prod(shape) * dtype.itemsize != n:
            raise self.refuse(f"a numpy array state whose shape {shape} does not match its "
                              f"{n} bytes")
        self.memory += _COST["array"] + n  # numpy copies the data when small or unaligned
        target.weight = min(1 + n, self.cap)
        target.length = shape[0] if shape else 1
        target.info = True


_NUMPY_CALLS = {key: getattr(_Scanner, "np_" + name) for key, name in _NUMPY.items()}

_BY_NAME: dict[str, Callable[[_Scanner, Any], None]] = {
    "PROTO": _Scanner.op_proto, "FRAME": _Scanner.op_frame, "STOP": lambda s, a: None,
    "MARK": _Scanner.op_mark, "POP": _Scanner.op_pop, "POP_MARK": _Scanner.op_pop_mark,
    "DUP": _Scanner.op_dup,
    "INT": _Scanner.op_atom, "BININT": _Scanner.op_atom, "BININT1": _Scanner.op_atom,
    "BININT2": _Scanner.op_atom, "LONG": _Scanner.op_atom, "LONG1": _Scanner.op_long,
    "LONG4": _Scanner.op_long, "FLOAT": _Scanner.op_atom, "BINFLOAT": _Scanner.op_atom,
    "NONE": _Scanner.op_none, "NEWTRUE": _Scanner.op_true, "NEWFALSE": _Scanner.op_false,
    "STRING": _Scanner.op_string, "BINSTRING": _Scanner.op_binstring,
    "SHORT_BINSTRING": _Scanner.op_binstring, "UNICODE": _Scanner.op_unicode,
    "BINUNICODE": _Scanner.op_unicode, "SHORT_BINUNICODE": _Scanner.op_unicode,
    "BINUNICODE8": _Scanner.op_unicode, "BINBYTES": _Scanner.op_bytes,
    "SHORT_BINBYTES": _Scanner.op_bytes, "BINBYTES8": _Scanner.op_bytes,
    "BYTEARRAY8": _Scanner.op_bytearray,
    "EMPTY_LIST": _Scanner.op_empty_list, "EMPTY_DICT": _Scanner.op_empty_dict,
    "EMPTY_SET": _Scanner.op_empty_set, "EMPTY_TUPLE": _Scanner.op_empty_tuple,
    "TUPLE": _Scanner.op_tuple, "TUPLE1": _Scanner.op_tuple1, "TUPLE2": _Scanner.op_tuple2,
    "TUPLE3": _Scanner.op_tuple3, "LIST": _Scanner.op_list, "DICT": _Scanner.op_dict,
    "FROZENSET": _Scanner.op_frozenset, "APPEND": _Scanner.op_append,
    "APPENDS": _Scanner.op_appends, "SETITEM": _Scanner.op_setitem,
    "SETITEMS": _Scanner.op_setitems, "ADDITEMS": _Scanner.op_additems,
    "PUT": _Scanner.op_put, "BINPUT": _Scanner.op_put, "LONG_BINPUT": _Scanner.op_put,
    "MEMOIZE": _Scanner.op_put, "GET": _Scanner.op_get, "BINGET": _Scanner.op_get,
    "LONG_BINGET": _Scanner.op_get,
    "GLOBAL": _Scanner.op_global, "STACK_GLOBAL": _Scanner.op_stack_global,
    "REDUCE": _Scanner.op_reduce, "NEWOBJ": _Scanner.op_newobj,
    "NEWOBJ_EX": _Scanner.op_newobj_ex, "INST": _Scanner.op_inst, "OBJ": _Scanner.op_obj,
    "BUILD": _Scanner.op_build, "PERSID": _Scanner.op_persid,
    "BINPERSID": _Scanner.op_binpersid, "EXT1": _Scanner.op_ext, "EXT2": _Scanner.op_ext,
    "EXT4": _Scanner.op_ext, "NEXT_BUFFER": _Scanner.op_buffer,
    "READONLY_BUFFER": _Scanner.op_buffer,
}

# How each opcode's argument is encoded: none, a fixed-size number, a length-prefixed
# payload, or a text line (protocol 0), read with pickletools' own reader.
_UNKNOWN, _NO_ARG, _FIXED, _COUNTED, _TEXT = range(5)
_FIXED_FORMATS = {"uint1": "<B", "uint2": "<H", "int4": "<i", "uint4": "<I", "uint8": "<Q",
                  "float8": ">d"}
_COUNT_FORMATS = {"long1": "<B", "long4": "<i", "string1": "<B", "string4": "<i",
                  "bytes1": "<B", "bytes4": "<I", "bytes8": "<Q", "bytearray8": "<Q",
                  "unicodestring1": "<B", "unicodestring4": "<I", "unicodestring8": "<Q"}
_ARG_KIND = [_UNKNOWN] * 256
_ARG_SPEC: list[Any] = [None] * 256
_HANDLERS: list[Any] = [None] * 256
for _op in pickletools.opcodes:
    _code = ord(_op.code)
    _HANDLERS[_code] = _BY_NAME[_op.name]
    if _op.arg is None:
        _ARG_KIND[_code] = _NO_ARG
    elif _op.arg.name in _FIXED_FORMATS:
        _fmt = struct.Struct(_FIXED_FORMATS[_op.arg.name])
        _ARG_KIND[_code], _ARG_SPEC[_code] = _FIXED, (_fmt.size, _fmt.unpack_from)
    elif _op.arg.name in _COUNT_FORMATS:
        _fmt = struct.Struct(_COUNT_FORMATS[_op.arg.name])
        _ARG_KIND[_code], _ARG_SPEC[_code] = _COUNTED, (_fmt.size, _fmt.unpack_from)
    else:
        _ARG_KIND[_code], _ARG_SPEC[_code] = _TEXT, _op.arg.reader


def scan_pickle(data: Any, source: str, *, profile: str = "numpy",
                check_global: Callable[[str, str], None] | None = None) -> ScanStats:
    """Walk the pickle in ``data`` and refuse what is unsafe, before anything unpickles it.

    Args:
        data: the pickle's bytes or an ``mmap`` of the file; the bounds are measured against
            ``len(data)``.
        source: the file name for messages.
        profile: ``"numpy"`` (feature pickles: only the allow-listed callables, used the way
            numpy and the pickler use them) or ``"generic"`` (structural bounds only).
        check_global: called with (module, name) for each global, as the file writes them;
            it raises to refuse one.

    Returns:
        :class:`ScanStats`: opcodes, deepest nesting, estimated memory, weight, hash work.

    Raises:
        DataError: naming ``source``, the byte offset and the rule broken, or saying the
            file is truncated or corrupted (:class:`ScanRefused` for a broken rule).
    """
    if profile not in ("numpy", "generic"):
        raise ValueError(f"scan_pickle: profile={profile!r}, expected 'numpy' or 'generic'")
    # The scan makes no reference cycles, and with a million live cells the cyclic garbage
    # collector's full passes would cost more than the scan itself: it is paused meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _Scanner(source, len(data), profile, check_global).run(data, len(data))
    finally:
        if enabled:
            gc.enable()
