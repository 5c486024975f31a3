"""Parsed-model cache: one file per parsed model, keyed by the source file's identity, so a second
start skips text parsing.  Parsers return ``dict[str, numpy.ndarray]`` (flat names, e.g.
``"scale0/view1/alphas"``).

A cache file is a JSON header (each array's name, dtype, shape and offset) followed by the arrays'
bytes, mapped and viewed in place: a start loads the ~520 arrays of the models in ~10 ms, where
``np.load`` of an ``.npz`` (a zip member and a header parse per array) took ~90 ms.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import mmap
import os
from pathlib import Path
from typing import Callable

import numpy as np

from gpuau._atomic import atomic_write

CACHE_VERSION = 3
"""Raised whenever a parser changes what it returns for the same file (3: CCNF neuron weights scaled in
float32, as OpenCV does)."""
_MAGIC = b"GPUAU-ARRAYS\n"
_ALIGN = 64

KEEP = 6
"""Cache files kept per model file name, the most recently used: its parses in three model folders (a file has one
or two parsers).  A key changes whenever the models are fetched again, moved or copied, so without a bound the cache
grew by the models' ~78 MB with each copy (a checkout whose tests copy the models held twelve sets, 0.93 GB)."""


def cache_dir() -> Path:
    """``$GPUAU_CACHE`` or the per-user cache folder."""
    env = os.environ.get("GPUAU_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gpuau"))


def _key(path: Path, parser_name: str) -> str:
    st = path.stat()
    ident = f"{CACHE_VERSION}|{parser_name}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def load_cached(path: "str | os.PathLike", parse: Callable[[Path], dict], name: "str | None" = None) -> dict:
    """Return ``parse(path)``, from its ``.arrays`` cache file when ``path`` is unchanged since it was parsed.

    ``name`` distinguishes several parsers of one file (defaults to the parser's qualified name).
    The cache is written atomically; an unwritable cache folder only costs speed.
    """
    path = Path(path)
    pname = name or f"{parse.__module__}.{parse.__qualname__}"
    target = cache_dir() / f"{path.name}.{_key(path, pname)}.arrays"
    if target.is_file():
        try:
            arrays = read_arrays(target)
            with contextlib.suppress(OSError):  # used now: the last to go (a read-only cache stays as it is)
                os.utime(target)
            return arrays
        except Exception:  # unreadable or truncated: parse again
            pass
    arrays = parse(path)
    try:
        write_arrays(target, arrays)
        prune(f"{glob.escape(path.name)}.{'[0-9a-f]' * 24}.arrays", KEEP)
    except OSError:
        pass
    return arrays


def prune(pattern: str, keep: int) -> None:
    """Remove the cache files matching glob ``pattern`` beyond the ``keep`` most recently used."""
    entries = []
    for f in cache_dir().glob(pattern):
        with contextlib.suppress(OSError):  # removed meanwhile by another process
            entries.append((f.stat().st_mtime_ns, f))
    for _, f in sorted(entries, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            f.unlink()


def write_arrays(target: Path, arrays: dict) -> None:
    """Write ``arrays`` (name -> plain numeric/bool ndarray) as one cache file, atomically."""
    header, offset = [], 0
    arrays = {name: np.asarray(a) for name, a in arrays.items()}  # tobytes() writes C order
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"{name}: object arrays are not cached")
        header.append({"name": name, "dtype": a.dtype.str, "shape": a.shape, "offset": offset})
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    head = json.dumps(header).encode()
    start = -(-(len(_MAGIC) + 8 + len(head)) // _ALIGN) * _ALIGN
    with atomic_write(target, "wb") as f:
        f.write(_MAGIC + len(head).to_bytes(8, "little") + head)
        f.write(b"\0" * (start - len(_MAGIC) - 8 - len(head)))
        for a in arrays.values():
            f.write(a.tobytes())
            f.write(b"\0" * (-a.nbytes % _ALIGN))


def read_arrays(target: Path) -> dict:
    """The arrays of a cache file written by :func:`write_arrays`: writable views of a private
    (copy-on-write) mapping of the file, so only the pages an array touches are read."""
    with open(target, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError):  # a file system without mmap, or an empty file
            data = bytearray(f.read())
    if data[:len(_MAGIC)] != _MAGIC:
        raise ValueError(f"{target}: not a gpuau array cache")
    n = int.from_bytes(data[len(_MAGIC):len(_MAGIC) + 8], "little")
    head = len(_MAGIC) + 8
    start = -(-(head + n) // _ALIGN) * _ALIGN
    out = {}
    for entry in json.loads(data[head:head + n]):
        dtype = np.dtype(entry["dtype"])
        if dtype.hasobject:
            raise ValueError(f"{target}: object dtype")
        count = int(np.prod(entry["shape"], dtype=np.int64))
        out[entry["name"]] = np.frombuffer(data, dtype, count, start + entry["offset"]).reshape(tuple(entry["shape"]))
    return out
