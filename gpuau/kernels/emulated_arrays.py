"""The emulated backend's array module: NumPy memory behind CuPy's rules.

The emulated backend runs the ``.cu`` kernels on the CPU (:mod:`.emulator`) so that the GPU path is tested
without a GPU.  With NumPy as its array module, host code that mixes host and device arrays in ways CuPy
refuses passed there and failed only on a GPU.  Here a device array is an :class:`ndarray` wrapping NumPy
storage, and the places where CuPy raises ``TypeError`` raise it too:

* ``numpy.asarray`` (or anything that converts implicitly) of a device array: use ``asnumpy`` / ``.get()``;
* a NumPy array as an operand of an arithmetic operator or ufunc with device arrays, or as an array argument
  of this module's functions (``cupy.stack``, ``cupy.where``, ``cupy.ascontiguousarray``, ...), which only
  ``asarray`` / ``array`` copy to the device;
* a NumPy array as a kernel's pointer argument (:meth:`gpuau.kernels.emulator.EmulatedKernel.__call__`);
* an attribute CuPy's ``ndarray`` lacks (``ctypes``, ``resize``, ...), a NumPy function CuPy lacks called on a device
  array (``numpy.insert``, ...), and ``operator.index`` of an array.

What CuPy accepts is accepted: NumPy arrays and lists as indices, NumPy values assigned into a device array,
Python and NumPy scalars as operands, ``float``/``int``/``bool`` of a one-element array, ``item``,
``tolist``, and NumPy's functions called on device arrays (CuPy's ``__array_function__``).  Reductions give
0-d device arrays, as CuPy's do.  The facts are CuPy 14's (``cupy.ascontiguousarray`` takes device arrays
only; a kernel argument may be a NumPy array of one element, passed by value, and no larger).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")
"""CuPy's message for a device array converted implicitly."""

NOT_IN_CUPY = frozenset({"ctypes", "getfield", "resize", "setfield", "setflags", "to_device"})
"""Public attributes of NumPy's ``ndarray`` that CuPy 14's lacks."""

FUNCTIONS_NOT_IN_CUPY = frozenset({
    "block", "einsum_path", "geomspace", "histogram_bin_edges", "insert", "matvec", "nanpercentile", "nanquantile",
    "polyder", "polydiv", "polyint", "spacing", "unstack", "vecdot", "vecmat", "linalg.diagonal", "linalg.matrix_norm",
    "linalg.multi_dot", "linalg.outer", "linalg.svdvals", "linalg.tensordot", "linalg.trace", "linalg.vecdot",
    "linalg.vector_norm"})
"""NumPy's array functions that CuPy 14 lacks (its ``__array_function__`` then raises ``TypeError``)."""


def _unsupported(value) -> TypeError:
    return TypeError(f"Unsupported type {type(value)}")


def _device(value):
    """``value`` as this module's functions and ufuncs take it: a device array's storage, a scalar, or a
    sequence of them (a ``stack`` of arrays); a NumPy array raises ``TypeError`` as in CuPy."""
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, np.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_device(v) for v in value)
    if isinstance(value, dict):
        return {k: _device(v) for k, v in value.items()}
    return value


def _index(key):
    """An index as CuPy takes it: device arrays, NumPy arrays and lists of indices, slices, scalars."""
    if isinstance(key, ndarray):
        return key._data
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key


def _wrap(value):
    """NumPy results as device values: arrays, and scalars as 0-d arrays (CuPy's reductions give those)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


@dataclass(frozen=True)
class MemoryPointer:
    """A device address (``cupy.cuda.MemoryPointer``'s ``ptr``)."""

    ptr: int


class ndarray(NDArrayOperatorsMixin):
    """A device array of the emulated backend (NumPy storage, CuPy's rules: see the module)."""

    __slots__ = ("_data",)

    def __init__(self, data: np.ndarray):
        self._data = data

    # -- what CuPy refuses
    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT)

    def __index__(self):
        raise TypeError(f"'{type(self).__name__}' object cannot be interpreted as an integer")

    # -- NumPy's protocols: CuPy's ufuncs and functions
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _wrap(getattr(ufunc, method)(*_device(inputs), **_device(kwargs)))

    def __array_function__(self, func, types, args, kwargs):
        name = f"{func.__module__}.{func.__name__}".removeprefix("numpy.")
        if name in FUNCTIONS_NOT_IN_CUPY:
            raise TypeError(f"no implementation found for 'numpy.{name}' on device arrays (CuPy lacks it)")
        return _wrap(func(*_device(args), **_device(kwargs)))

    # -- the Python protocols CuPy's arrays have
    def __getitem__(self, key):
        return _wrap(self._data[_index(key)])

    def __setitem__(self, key, value):
        self._data[_index(key)] = value._data if isinstance(value, ndarray) else value

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return bool(self._data)

    def __float__(self) -> float:
        return float(self._data)

    def __int__(self) -> int:
        return int(self._data)

    def __complex__(self) -> complex:
        return complex(self._data)

    def __repr__(self) -> str:
        return f"emulated {self._data!r}"

    def __getattr__(self, name: str):
        if name in NOT_IN_CUPY or name.startswith("_"):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        value = getattr(self._data, name)
        if not callable(value):
            return _wrap(value)

        def method(*args, **kwargs):
            return _wrap(value(*_device(args), **_device(kwargs)))

        return method

    # -- CuPy's own
    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        """A NumPy copy (``cupy.ndarray.get``)."""
        if out is not None:
            out[...] = self._data
            return out
        return np.array(self._data, order=order)

    def set(self, arr: np.ndarray, stream=None) -> None:
        """Copy the NumPy array ``arr`` in (``cupy.ndarray.set``)."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError("Shape or dtype mismatch")
        self._data[...] = arr

    @property
    def data(self) -> "MemoryPointer":
        """Where the array's memory starts (``cupy.ndarray.data``: a table of addresses passed to a kernel)."""
        return MemoryPointer(self._data.ctypes.data)


def storage(a: ndarray) -> np.ndarray:
    """The NumPy memory of the device array ``a``, not copied: what the emulated kernels read and write."""
    return a._data


def asnumpy(a, stream=None, order="C", out=None) -> np.ndarray:
    """A host copy of a device array; anything else as ``numpy.asarray`` takes it (``cupy.asnumpy``)."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def array(obj, dtype=None, copy=True, order="K", ndmin=0) -> ndarray:
    """A device array of ``obj``: host data (an array, nested sequences with device arrays among them, a scalar)
    is copied to the device; a device array too, unless ``copy`` is False and it serves as it is."""
    if isinstance(obj, ndarray) and not copy and ndmin <= obj.ndim:
        return asarray(obj, dtype)
    if isinstance(obj, ndarray):
        obj = obj._data
    elif isinstance(obj, (list, tuple)):
        obj = [o._data if isinstance(o, ndarray) else o for o in obj]
    return ndarray(np.array(obj, dtype=dtype, order=order, ndmin=ndmin))


def asarray(a, dtype=None, order=None) -> ndarray:
    """``a`` on the device: a device array as it is (or cast), anything else copied (``cupy.asarray``)."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else ndarray(a._data.astype(dtype))
    return array(a, dtype=dtype, order=order or "K")


def ascontiguousarray(a, dtype=None) -> ndarray:
    """A C-contiguous device array of the device array ``a``; a host array raises ``TypeError``, as in CuPy."""
    if not isinstance(a, ndarray):
        raise TypeError("Argument 'a' has incorrect type (expected cupy._core.core._ndarray_base, "
                        f"got {type(a).__name__})")
    data = np.ascontiguousarray(a._data, dtype=dtype)
    return a if data is a._data else ndarray(data)


def _function(name: str, prototype: bool = False):
    """NumPy's function ``name`` over device arrays (CuPy's of the same name), refusing host arrays; with
    ``prototype``, its first argument may be a host array, whose shape and dtype CuPy's ``*_like`` read."""
    function = getattr(np, name)

    def call(*args, **kwargs):
        host = prototype and args and isinstance(args[0], np.ndarray)
        first, rest = (args[:1], args[1:]) if host else ((), args)
        return _wrap(function(*first, *_device(rest), **_device(kwargs)))

    call.__name__ = name
    return call


for _name in ("zeros_like", "ones_like", "full_like"):
    globals()[_name] = _function(_name, prototype=True)


def _garbage(a: ndarray) -> ndarray:
    """``a`` filled with bytes 0xFF (NaN in floats, -1 in integers): what CuPy's pool hands back is whatever an
    earlier array left there, and a kernel or host step that reads memory nothing wrote gives other numbers, where
    NumPy's fresh pages of zeros would have hidden it."""
    a._data.ravel(order="K").view(np.uint8).fill(0xFF)  # fresh, so contiguous: a view
    return a


def empty(shape, dtype=float, order="C") -> ndarray:
    """``cupy.empty``: its contents are not zeros (:func:`_garbage`)."""
    return _garbage(ndarray(np.empty(shape, dtype, order)))


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None) -> ndarray:
    """``cupy.empty_like``, of a device array or a host one's shape and dtype: not zeros either (:func:`_garbage`)."""
    data = prototype._data if isinstance(prototype, ndarray) else np.asarray(prototype)
    return _garbage(ndarray(np.empty_like(data, dtype=dtype, order=order, shape=shape)))


def __getattr__(name: str):
    """NumPy's dtypes and constants as they are; its functions and ufuncs (``zeros``, ``stack``, ``where``,
    ``exp``, ...) over device arrays (:func:`_function`)."""
    value = getattr(np, name)
    if isinstance(value, (type, np.dtype, float, int)) or not callable(value):
        return value
    return _function(name)
