"""Atomic file output: write to a temporary file beside the target, then rename it into place.

A reader (or a resumed run) never sees a half-written file under the final name, and a failed write
leaves the previous file, if any, untouched.  The temporary names,
``.<name>.<host>~<pid namespace>-<pid>.<random>.tmp``, say which process writes them, so that those of a process killed outright (SIGKILL, the kernel's OOM killer) can be
told from those of a process at work and removed (:func:`remove_stale_temps`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which would race with files other threads create.
_UMASK = _read_umask()


def _machine() -> str:
    """Where this process's id means something: the host name and, on Linux, the pid namespace (containers sharing
    the host's name, as with host networking, each have their own)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}~{namespace}"


def _prefix(path: Path) -> str:
    """The start of a temporary name beside ``path``: its name, this machine and this process (read at each call: a
    worker process forked or spawned has its own)."""
    return f".{path.name}.{_machine()}-{os.getpid()}."


def temp_beside(path: "str | os.PathLike", mode: str = "w", **open_kwargs):
    """Open a new temporary file in ``path``'s folder (created if needed) with the permissions a
    plain ``open`` would give; returns ``(file object, temp path)``.

    Raises
    ------
    OSError
        Naming ``path`` (not the temporary name) when its folder cannot be written or ``path`` is a folder, which
        the finished file could not replace; naming the folder when it cannot be created.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a folder has the name of the file to write", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e
    os.chmod(tmp, 0o666 & ~_UMASK)
    return os.fdopen(fd, mode, **open_kwargs), Path(tmp)


def discard(f, tmp: Path) -> None:
    """Close ``f``, the temporary file ``tmp`` being dropped, and delete it: a flush of what is dropped that fails
    (again, on a full disk) is ignored, and the file is deleted whatever the close raises."""
    try:
        f.close()
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path: "str | os.PathLike") -> None:
    """Raise now the :class:`OSError` that writing ``path`` atomically would raise (:func:`temp_beside`'s), for a
    caller that writes it only after a long computation; folders that would be created are not created yet."""
    path = Path(path)
    if path.parent.is_dir():  # temp_beside's checks, and the folder's write permission
        f, tmp = temp_beside(path, "wb")
        f.close()
        tmp.unlink()
        return
    ancestor = next(p for p in (path.parent, *path.parent.parents) if p.exists())  # the folder itself may be a file
    if not ancestor.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder, so the output's folder cannot be made in it",
                                 str(ancestor))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "the output's folder cannot be made in it", str(ancestor))


def fsync_path(path: Path) -> None:
    """Flush a finished file to disk before it is renamed into place, so a crash cannot leave a truncated file
    under the final name (which a resumed run would trust)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: "str | os.PathLike", mode: str = "w", **open_kwargs):
    """``with atomic_write(p) as f: ...`` writes ``p`` all at once or not at all."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: "str | os.PathLike"):
    """For writers that want a file name (``pyarrow``, ``numpy.savez``): yields a temporary path that
    is renamed to ``path`` when the block succeeds."""
    f, tmp = temp_beside(path, "wb")
    f.close()
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temp_dir_beside(path: "str | os.PathLike") -> Path:
    """A new temporary folder in ``path``'s folder (created if needed), with the permissions of a plain ``mkdir``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def replace_dir(tmp: Path, path: "str | os.PathLike") -> None:
    """Rename the finished folder ``tmp`` to ``path``, replacing a folder of that name (moved aside first, since a
    folder cannot be renamed over one that holds files, then deleted): readers see the old folder or the new one,
    except for the instant between the two renames."""
    path = Path(path)
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp"))
        os.replace(path, old / path.name)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    try:  # a zombie has ended, its parent has not reaped it (yet, or ever: a container whose process 1 reaps none)
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(folder: "str | os.PathLike", names) -> list:
    """Delete the temporary files and folders that processes of this machine that no longer run left in ``folder``
    while writing one of ``names`` (killed outright: SIGKILL, the OOM killer, a power cut), so that they do not keep
    the space a rerun needs; return their paths.  One listing of the folder.  Those of processes still running, and
    of other machines or pid namespaces (whose processes cannot be seen from here: they stay until a run there), are
    left; nothing is removed off POSIX, where ``os.kill`` is no probe.
    """
    folder, names, machine = Path(folder), set(names), _machine()
    removed = []
    if os.name != "posix":
        return removed
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        owner, _, _ = entry.name[1:-len(".tmp")].rpartition(".")  # <name>.<host>~<namespace>-<pid>, then mkstemp's random part
        target, _, pid = owner.rpartition("-")
        if not (pid.isdigit() and target.endswith(f".{machine}") and target[:-len(machine) - 1] in names) \
                or _alive(int(pid)):
            continue
        path = folder / entry.name
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
