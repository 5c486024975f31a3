"""Parsed-model cache: ``.npz`` files keyed by the source file's identity, so a second start skips
text parsing.  Parsers return ``dict[str, numpy.ndarray]`` (flat names, e.g. ``"scale0/view1/alphas"``)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from gpuau._atomic import atomic_write

CACHE_VERSION = 1


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
    """Return ``parse(path)``, from the ``.npz`` cache when the file is unchanged since it was parsed.

    ``name`` distinguishes several parsers of one file (defaults to the parser's qualified name).
    The cache is written atomically; an unwritable cache folder only costs speed.
    """
    path = Path(path)
    pname = name or f"{parse.__module__}.{parse.__qualname__}"
    target = cache_dir() / f"{path.name}.{_key(path, pname)}.npz"
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception:
            pass
    arrays = parse(path)
    try:
        with atomic_write(target, "wb") as f:
            np.savez(f, **arrays)
    except OSError:
        pass
    return arrays
