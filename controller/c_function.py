"""Call a CasADi-generated C function straight through ``ctypes``, with buffers allocated once.

``casadi.external`` works, but every call converts its arguments to CasADi matrices and back, which costs more than
the generated solver's arithmetic on a problem this small. :class:`CompiledFunction` reads the function's
signature from the library itself (CasADi's generated C API: ``<name>_n_in``, ``_sparsity_in``, ``_work``,
``_checkout``...), keeps one work space, and exchanges plain NumPy arrays. Outputs come back dense, in the
shapes the sparsity patterns give.

The generated code has a fixed pool of memory slots per library (one by default), so a function is loaded once per
process (:func:`load_functions` caches by path) and calls are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_INT = ctypes.c_longlong  # casadi_int in generated code (checked against <name>_casadi_int_size when exported)
_REAL = ctypes.c_double


class CompiledFunctionError(RuntimeError):
    """The library lacks the function, has an unexpected ABI, or the function returned a nonzero status."""


@dataclass(frozen=True, slots=True)
class Sparsity:
    """A CasADi compressed-column sparsity pattern (``rows`` x ``cols``; ``colind``, ``row`` as in CCS)."""

    rows: int
    cols: int
    colind: np.ndarray
    row: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.colind[-1])

    @property
    def dense(self) -> bool:
        return self.nnz == self.rows * self.cols

    def flat_index(self) -> np.ndarray:
        """Column-major position of every structural nonzero in the dense matrix."""
        cols = np.repeat(np.arange(self.cols), np.diff(self.colind))
        return cols * self.rows + self.row


def _read_sparsity(ptr: "ctypes._Pointer") -> Sparsity:
    """Decode CasADi's compact pattern: ``{rows, cols, 1}`` means dense, else ``{rows, cols, colind..., row...}``
    (``colind[0]`` is always 0, so the flag is unambiguous)."""
    rows, cols = int(ptr[0]), int(ptr[1])
    if int(ptr[2]) == 1:
        colind = np.arange(cols + 1, dtype=np.int64) * rows
        row = np.tile(np.arange(rows, dtype=np.int64), cols)
        return Sparsity(rows, cols, colind, row)
    colind = np.array([ptr[2 + j] for j in range(cols + 1)], dtype=np.int64)
    nnz = int(colind[-1])
    row = np.array([ptr[3 + cols + k] for k in range(nnz)], dtype=np.int64)
    return Sparsity(rows, cols, colind, row)


class CompiledFunction:
    """One generated function of a loaded library, callable with NumPy arrays (dense, column-major order)."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        try:
            self._fn = getattr(lib, name)
            n_in = getattr(lib, f"{name}_n_in")
            n_out = getattr(lib, f"{name}_n_out")
            sp_in = getattr(lib, f"{name}_sparsity_in")
            sp_out = getattr(lib, f"{name}_sparsity_out")
            work = getattr(lib, f"{name}_work")
        except AttributeError as exc:
            raise CompiledFunctionError(f"{name} is not in the library: {exc}") from exc
        self.name = name
        int_size = getattr(lib, f"{name}_casadi_int_size", None)
        if int_size is not None:
            int_size.restype = ctypes.c_int
            int_size.argtypes = []
            if int(int_size()) != ctypes.sizeof(_INT):
                raise CompiledFunctionError(f"{name} was built with a {int(int_size())}-byte casadi_int")
        for f in (n_in, n_out):
            f.restype = _INT
            f.argtypes = []
        for f in (sp_in, sp_out):
            f.restype = ctypes.POINTER(_INT)
            f.argtypes = [_INT]
        self.sparsity_in = tuple(_read_sparsity(sp_in(i)) for i in range(int(n_in())))
        self.sparsity_out = tuple(_read_sparsity(sp_out(i)) for i in range(int(n_out())))
        sz = [_INT() for _ in range(4)]
        work.argtypes = [ctypes.POINTER(_INT)] * 4
        work.restype = ctypes.c_int
        if work(*(ctypes.byref(s) for s in sz)) != 0:
            raise CompiledFunctionError(f"{name}_work failed")
        n_arg, n_res, n_iw, n_w = (max(int(s.value), 1) for s in sz)
        self._arg = (ctypes.POINTER(_REAL) * n_arg)()
        self._res = (ctypes.POINTER(_REAL) * n_res)()
        self._iw = (_INT * n_iw)()
        self._w = (_REAL * n_w)()
        self._mem = 0
        checkout = getattr(lib, f"{name}_checkout", None)
        if checkout is not None:
            checkout.restype = ctypes.c_int
            checkout.argtypes = []
            self._mem = int(checkout())
            if self._mem < 0:
                raise CompiledFunctionError(f"{name}: no free memory slot in the generated code")
        incref = getattr(lib, f"{name}_incref", None)
        if incref is not None:
            incref.argtypes = []
            incref.restype = None
            incref()
        self._fn.argtypes = [ctypes.POINTER(ctypes.POINTER(_REAL)), ctypes.POINTER(ctypes.POINTER(_REAL)),
                             ctypes.POINTER(_INT), ctypes.POINTER(_REAL), ctypes.c_int]
        self._fn.restype = ctypes.c_int
        # input/output buffers live as long as the instance; the pointer tables point at them once
        self._in_bufs = [np.zeros(sp.nnz) for sp in self.sparsity_in]
        self._out_bufs = [np.zeros(sp.nnz) for sp in self.sparsity_out]
        # per-call constants, read once: (position, buffer, dense size, scatter index or None) of every input with
        # nonzeros, and (buffer, dense size, column count, gather index or None) of every output
        self._in_specs = tuple((i, self._in_bufs[i], sp.rows * sp.cols, None if sp.dense else sp.flat_index())
                               for i, sp in enumerate(self.sparsity_in) if sp.nnz)
        self._out_specs = tuple((self._out_bufs[i], sp.rows, sp.cols, None if sp.dense else sp.flat_index())
                                for i, sp in enumerate(self.sparsity_out))
        self._lock = threading.Lock()
        for i, buf in enumerate(self._in_bufs):
            self._arg[i] = buf.ctypes.data_as(ctypes.POINTER(_REAL)) if buf.size else None
        for i, buf in enumerate(self._out_bufs):
            self._res[i] = buf.ctypes.data_as(ctypes.POINTER(_REAL)) if buf.size else None

    def __call__(self, *args: np.ndarray | float | Sequence[float],
                 outputs: Sequence[int] | None = None) -> list[np.ndarray]:
        """Evaluate; every argument is given densely (column-major when a matrix). Returns dense outputs
        (vectors as 1-D arrays, matrices as 2-D arrays): all of them, or only those at the positions ``outputs``.

        Raises:
            CompiledFunctionError: wrong argument count/size, or a nonzero return status of the C function.
        """
        if len(args) != len(self._in_bufs):
            raise CompiledFunctionError(f"{self.name} takes {len(self._in_bufs)} arguments, got {len(args)}")
        with self._lock:
            return self._call(args, range(len(self._out_specs)) if outputs is None else outputs)

    def _call(self, args: Sequence, outputs: Sequence[int]) -> list[np.ndarray]:
        for i, buf, size, idx in self._in_specs:
            flat = np.asarray(args[i], dtype=float)
            if flat.ndim > 1:
                flat = flat.reshape(-1, order="F")
            if flat.size != size:
                raise CompiledFunctionError(f"{self.name} argument {i} has {flat.size} values, expected {size}")
            buf[:] = flat.ravel() if idx is None else flat.ravel()[idx]
        status = self._fn(self._arg, self._res, self._iw, self._w, self._mem)
        if status != 0:
            raise CompiledFunctionError(f"{self.name} returned status {status}")
        out: list[np.ndarray] = []
        for k in outputs:
            buf, rows, cols, idx = self._out_specs[k]
            if idx is None:
                dense = buf.copy()
            else:
                dense = np.zeros(rows * cols)
                dense[idx] = buf
            out.append(dense if cols == 1 else dense.reshape(rows, cols, order="F"))
        return out


_LOADED: dict[tuple[str, str], CompiledFunction] = {}
_LOAD_LOCK = threading.Lock()


def load_functions(path: str, names: Sequence[str]) -> dict[str, CompiledFunction]:
    """``names`` from the shared library at ``path`` (see :class:`CompiledFunction`), loaded once per process."""
    key_path = os.path.realpath(path)
    with _LOAD_LOCK:
        missing = [n for n in names if (key_path, n) not in _LOADED]
        if missing:
            try:
                lib = ctypes.CDLL(key_path)
            except OSError as exc:
                raise CompiledFunctionError(f"cannot load {path}: {exc}") from exc
            for n in missing:
                _LOADED[(key_path, n)] = CompiledFunction(lib, n)
        return {n: _LOADED[(key_path, n)] for n in names}
