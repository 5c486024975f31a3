"""The OpenFace model folder: where it is, whether it is complete, and fetching what is missing.

A model folder holds OpenFace's files in its repository layout (``lib/local/LandmarkDetector/model/...``,
``lib/local/FaceAnalyser/AU_predictors/...``), so an OpenFace checkout works as is. It is found, in order:

1. the ``models`` argument of the calling function (``--models`` on the command line);
2. ``$GPUAU_MODELS``;
3. ``$OPENFACE_MODELS_DIR/2.2.0/originals`` (the layout pyfaceau, pyclnf and pymtcnn share);
4. ``platformdirs.user_data_dir("gpuau")/openface-2.2.0``, where ``gpuau models fetch`` puts them.

The first one that is set is used; a folder that is set but wrong is an error, never skipped. Every
error names the missing or corrupt file(s) and the one command that fixes them. Nothing here touches
the network except :func:`fetch`, which only runs when asked to and after the licence is accepted.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpuau.models.cache import cache_dir, prune
from gpuau.models.manifest import AU_PREDICTORS, LANDMARK_MODEL, ModelEntry, load_manifest, sha256_file

LANDMARK_DIR = LANDMARK_MODEL
AU_DIR = AU_PREDICTORS
OPENFACE_MODELS_SUBDIR = "2.2.0/originals"
USER_DATA_SUBDIR = "openface-2.2.0"
PART_SUFFIX = ".part"
_LISTED = 5  # problems named one by one in an error message; the rest are counted
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class ModelStoreError(RuntimeError):
    """Model files are missing or corrupt; the message names the file and the command that fixes it."""


class LicenseNotAcceptedError(ModelStoreError):
    """:func:`fetch` was called without accepting OpenFace's licence."""


@dataclass(frozen=True)
class ModelsLocation:
    """Where the model folder is (or would be), and which rule chose it.

    Attributes
    ----------
    path : pathlib.Path
        The folder (it may not exist yet).
    source : str
        ``"argument"``, ``"GPUAU_MODELS"``, ``"OPENFACE_MODELS_DIR"`` or ``"user data folder"``.
    """

    path: Path
    source: str

    @property
    def fetch_command(self) -> str:
        """The command that downloads the missing files into this folder."""
        if self.source == "user data folder":
            return "gpuau models fetch"
        return f"gpuau models fetch --dir {shlex.quote(str(self.path))}"

    @property
    def fix(self) -> str:
        """What makes this folder usable: the fetch, or for gpuau's own folder also pointing ``GPUAU_MODELS`` at
        model files the user has already (an OpenFace checkout, a shared copy) instead."""
        if self.source == "user data folder":
            return f"{self.fetch_command} (or, with OpenFace's model files elsewhere: export GPUAU_MODELS=THAT_FOLDER)"
        return self.fetch_command

    def describe(self) -> str:
        return f"{self.path} (from {self.source})"


@dataclass(frozen=True)
class FileProblem:
    """A manifest file that is missing or does not match the manifest."""

    entry: ModelEntry
    problem: str  # "missing", "size N, expected M" or "sha256 mismatch"

    def __str__(self) -> str:
        return f"{self.entry.path} ({self.problem})"


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`: every checked entry and the problems found."""

    location: ModelsLocation
    checked: tuple  # of ModelEntry
    problems: tuple  # of FileProblem

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class FetchReport:
    """Result of :func:`fetch`."""

    location: ModelsLocation
    downloaded: tuple  # of ModelEntry
    already_present: int


def user_models_dir() -> Path:
    """``platformdirs.user_data_dir("gpuau")/openface-2.2.0``."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("gpuau")) / USER_DATA_SUBDIR


def locate_models_dir(models: "str | os.PathLike | None" = None) -> ModelsLocation:
    """The model folder the resolution order picks, without checking it (see the module docstring)."""
    if models:
        return ModelsLocation(Path(models).expanduser(), "argument")
    if os.environ.get("GPUAU_MODELS"):
        return ModelsLocation(Path(os.environ["GPUAU_MODELS"]).expanduser(), "GPUAU_MODELS")
    if os.environ.get("OPENFACE_MODELS_DIR"):
        root = Path(os.environ["OPENFACE_MODELS_DIR"]).expanduser()
        return ModelsLocation(root / OPENFACE_MODELS_SUBDIR, "OPENFACE_MODELS_DIR")
    return ModelsLocation(user_models_dir(), "user data folder")


def _has_layout(path: Path) -> bool:
    return (path / LANDMARK_DIR).is_dir() or (path / AU_DIR).is_dir()


def _layout_root_near(path: Path) -> "Path | None":
    """A folder in repository layout that ``path`` is inside of or holds (a likely mix-up), if any."""
    for cand in (path / OPENFACE_MODELS_SUBDIR, path / USER_DATA_SUBDIR, *list(path.parents)[:4]):
        if _has_layout(cand):
            return cand
    return None


def _wrong_folder_error(loc: ModelsLocation) -> ModelStoreError:
    near = _layout_root_near(loc.path)
    setting = "the models argument (--models)" if loc.source == "argument" else f"${loc.source}"
    if near is None and loc.path.exists() and not loc.path.is_dir():
        return ModelStoreError(
            f"{loc.describe()} is a file, not an OpenFace model folder. Fix: point {setting} at the folder holding "
            f"{LANDMARK_DIR}, or run `gpuau models fetch` to download the models into gpuau's own folder")
    if near is None and not loc.path.exists() and loc.source != "user data folder":  # a mistyped path, most likely
        return ModelStoreError(
            f"no OpenFace model folder at {loc.describe()}: no such folder. Fix: check {setting}, or download the "
            f"model files there: {loc.fetch_command}")
    if near is None:
        return ModelStoreError(
            f"no OpenFace model folder at {loc.describe()}: it lacks {LANDMARK_DIR}. "
            f"Fix: {loc.fix}")
    if loc.source == "argument":
        fix = f"pass {near} instead"
    elif loc.source in ("GPUAU_MODELS", "OPENFACE_MODELS_DIR"):
        fix = f"export GPUAU_MODELS={shlex.quote(str(near))}"
    else:
        fix = loc.fix
    return ModelStoreError(
        f"{loc.describe()} is not an OpenFace model folder in repository layout (no {LANDMARK_DIR}), but "
        f"{near} is. Fix: {fix}")


def _incomplete_error(loc: ModelsLocation, problems) -> ModelStoreError:
    named = ", ".join(str(p) for p in problems[:_LISTED])
    more = f" and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
    state = "is incomplete" if all(p.problem == "missing" for p in problems) else "has missing or damaged files"
    return ModelStoreError(
        f"OpenFace model folder {loc.describe()} {state}: {named}{more}. Fix: {loc.fix}")


def resolve_models_dir(models: "str | os.PathLike | None" = None) -> Path:
    """Folder holding OpenFace's files in its repository layout (``lib/local/...``).

    Raises
    ------
    ModelStoreError
        The chosen folder does not exist or is not in repository layout; the message says which folder,
        which rule chose it and the command that fixes it.
    """
    loc = locate_models_dir(models)
    if not _has_layout(loc.path):
        raise _wrong_folder_error(loc)
    return loc.path


def check_files(root: "str | os.PathLike", entries, *, sha256: bool = True) -> tuple:
    """Problems of ``entries`` under ``root``: missing, wrong size, or (when ``sha256``) wrong digest."""
    root = Path(root)
    problems = []
    for e in entries:
        p = root / e.path
        if not p.is_file():
            problems.append(FileProblem(e, "missing"))
        elif (size := p.stat().st_size) != e.size:
            problems.append(FileProblem(e, f"size {size}, expected {e.size}"))
        elif sha256 and sha256_file(p) != e.sha256:
            problems.append(FileProblem(e, "sha256 mismatch"))
    return tuple(problems)


def model_file(rel: str, models: "str | os.PathLike | None" = None) -> Path:
    """Path of one OpenFace file given its repository path, e.g. ``lib/local/LandmarkDetector/model/pdms/In-the-wild_aligned_PDM_68.txt``.

    A file the manifest lists must also have the manifest's size.

    Raises
    ------
    ModelStoreError
        The folder is wrong, or the file is missing or truncated; a missing file's message names every
        missing manifest file of the folder, so one fetch fixes them all.
    """
    rel = Path(rel).as_posix()
    loc = locate_models_dir(models)
    root = resolve_models_dir(models)
    p = root / rel
    manifest = load_manifest()
    entry = manifest.entry(rel)
    if entry is None:
        if not p.is_file():
            raise ModelStoreError(f"missing model file {p}; it is not part of the OpenFace 2.2.0 manifest")
        return p
    problems = check_files(root, (entry,), sha256=False)
    if problems:
        others = tuple(q for q in check_files(root, manifest.files, sha256=False) if q.entry != entry)
        raise _incomplete_error(loc, problems + others)
    return p


def require_models(models: "str | os.PathLike | None" = None, *, groups=None) -> Path:
    """Check that every manifest file (of ``groups``) is present with the right size and sha256; return the folder.

    Call this once before a run so a missing or damaged folder fails with one message instead of midway (or, for a
    damaged file that still parses, with wrong numbers). The digests (~0.05 s for the 18.5 MB) are computed once per
    state of the files: a stamp in the gpuau cache (:func:`gpuau.models.cache.cache_dir`) remembers a folder that
    passed, keyed by the folder, the manifest's digests and each file's size, modification and change times and
    inode (a file rewritten in place with its modification time put back still changes its change time), so later
    starts only read the files' metadata.

    Raises
    ------
    ModelStoreError
        Naming every missing, truncated or damaged file and the command that fixes them.
    """
    loc = locate_models_dir(models)
    root = resolve_models_dir(models)
    entries = load_manifest().in_groups(groups)
    problems = check_files(root, entries, sha256=False)
    if not problems:
        stamp = _verified_stamp(root, entries)
        if stamp.is_file():
            return root
        problems = check_files(root, entries)
        if not problems:
            with contextlib.suppress(OSError):  # an unwritable cache only costs the digests at the next start
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.touch()
                prune(VERIFIED_STAMP.format(key="*"), keep=VERIFIED_KEEP)
    if problems:
        raise _incomplete_error(loc, problems)
    return root


VERIFIED_STAMP = "models-verified.{key}"
VERIFIED_KEEP = 16  # stamps kept, the most recently made: model folders (and copies of them) in use


def _verified_stamp(root: Path, entries) -> Path:
    """The cache file whose existence says these files of ``root`` matched the manifest's sha256 as they are now."""
    ident = [str(root.resolve())]
    for e in entries:
        st = (root / e.path).stat()
        ident.append(f"{e.path}|{e.sha256}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}")
    key = hashlib.sha256("\n".join(ident).encode()).hexdigest()[:24]
    return cache_dir() / VERIFIED_STAMP.format(key=key)


def verify(models: "str | os.PathLike | None" = None, *, groups=None) -> VerifyReport:
    """Check size and sha256 of every manifest file (of ``groups``) in the model folder.

    A folder that does not exist reports every file missing; nothing is raised for problems.
    """
    loc = locate_models_dir(models)
    entries = load_manifest().in_groups(groups)
    return VerifyReport(loc, entries, check_files(loc.path, entries))


def _url(entry: ModelEntry, base_url: "str | None") -> str:
    return entry.url if base_url is None else base_url.rstrip("/") + "/" + entry.path


def _download(url: str, part: Path, offset: int, entry: ModelEntry, timeout: float, rerun: str) -> None:
    """Append ``url``'s bytes from ``offset`` to ``part`` (HTTP Range), or rewrite it when the server
    does not resume.  Errors name the file and the fix."""
    import urllib.error  # here: its HTTP and SSL modules cost every analysis ~10 ms of start-up otherwise
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "gpuau"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = offset > 0 and getattr(response, "status", None) == 206
            with open(part, "ab" if resumed else "wb") as f:
                while chunk := response.read(1 << 16):
                    f.write(chunk)
    except urllib.error.HTTPError as e:
        raise ModelStoreError(f"could not download {entry.path} from {url}: HTTP {e.code} {e.reason}. "
                              f"Fix: check the address (or --base-url), then rerun `{rerun}`") from e
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise ModelStoreError(f"disk full while writing {part}: free space on {part.anchor or part.parent} "
                                  f"or pick another folder, then rerun `{rerun}` (the download resumes)") from e
        if isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionError)):
            reason = getattr(e, "reason", None) or e
            raise ModelStoreError(f"network failure downloading {entry.path} from {url}: {reason}. Fix: check the "
                                  f"connection (or HTTPS_PROXY), then rerun `{rerun}` (finished files are kept, "
                                  f"this one resumes)") from e
        raise ModelStoreError(f"cannot write {part}: {e.strerror or e}. Fix: make the folder writable or pick "
                              f"another with --dir, then rerun `{rerun}`") from e
    have = part.stat().st_size
    if have < entry.size:
        raise ModelStoreError(f"download of {entry.path} from {url} stopped at {have} of {entry.size} bytes. "
                              f"Fix: rerun `{rerun}` (it resumes)")


def fetch_file(entry: ModelEntry, root: "str | os.PathLike", *, base_url: "str | None" = None,
               timeout: float = 60.0, rerun: str = "gpuau models fetch") -> Path:
    """Download one manifest file into ``root`` and verify its sha256; return its path.

    The bytes go to ``<file>.part`` (resumed with an HTTP Range request when a previous attempt left
    one), which replaces the file only after its digest matches. A resumed download that fails the
    check is retried once from scratch.
    """
    final = Path(root) / entry.path
    part = final.with_name(final.name + PART_SUFFIX)
    url = _url(entry, base_url)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelStoreError(f"cannot create {final.parent}: {e.strerror or e}. Fix: pick a writable folder "
                              f"with --dir") from e
    for _ in range(2):
        offset = part.stat().st_size if part.is_file() else 0
        if offset > entry.size:
            part.unlink()
            offset = 0
        if offset < entry.size:
            _download(url, part, offset, entry, timeout, rerun)
        if part.stat().st_size == entry.size and sha256_file(part) == entry.sha256:
            os.replace(part, final)
            return final
        part.unlink()
        if offset == 0:
            break
    raise ModelStoreError(f"{entry.path} downloaded from {url} does not match the manifest's sha256 "
                          f"{entry.sha256}: the source serves a different file. Fix: rerun `{rerun}`; if it "
                          f"persists, the download is being altered (proxy?) or --base-url points at another "
                          f"OpenFace version")


def fetch(models: "str | os.PathLike | None" = None, *, accept_license: bool = False,
          base_url: "str | None" = None, groups=None, timeout: float = 60.0,
          log: "Callable[[str], None] | None" = None) -> FetchReport:
    """Download the manifest files that are missing or corrupt in the model folder.

    Parameters
    ----------
    models : path, optional
        Target folder; default: the resolution order of :func:`locate_models_dir`.
    accept_license : bool
        Must be True when anything has to be downloaded: the caller has shown OpenFace's licence
        (``manifest.license_summary``, ``manifest.license_url``) and the user accepted it.
    base_url : str, optional
        A mirror in OpenFace's repository layout (``<base_url>/<repository path>``, ``file://`` works);
        default: each file's official URL.
    groups : iterable of str, optional
        Only these manifest groups.
    log : callable, optional
        Called with one line per downloaded file.

    Raises
    ------
    LicenseNotAcceptedError
        Files are missing and ``accept_license`` is False.
    ModelStoreError
        Network failure, sha256 mismatch, disk full or unwritable folder (the message names the file
        and the fix). Files fetched before the error are kept.
    """
    manifest = load_manifest()
    loc = locate_models_dir(models)
    entries = manifest.in_groups(groups)
    todo = tuple(p.entry for p in check_files(loc.path, entries))
    if todo and not accept_license:
        raise LicenseNotAcceptedError(
            f"{len(todo)} OpenFace model files are missing from {loc.describe()}, and downloading them needs "
            f"OpenFace's licence accepted ({manifest.license_url}). Fix: {loc.fetch_command} --accept-license")
    rerun = f"{loc.fetch_command} --accept-license"
    if todo:
        try:
            loc.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ModelStoreError(f"cannot create {loc.path}: {e.strerror or e}. Fix: pick a writable folder "
                                  f"with --dir") from e
        need = sum(e.size for e in todo)
        free = shutil.disk_usage(loc.path).free
        if free < need:
            raise ModelStoreError(f"not enough disk space in {loc.path} for {todo[0].path} and "
                                  f"{len(todo) - 1} more: {need / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free. "
                                  f"Fix: free space or pick another folder with --dir")
    for i, entry in enumerate(todo, 1):
        fetch_file(entry, loc.path, base_url=base_url, timeout=timeout, rerun=rerun)
        if log:
            log(f"[{i}/{len(todo)}] {entry.path} ({entry.size / 1e6:.2f} MB) ok")
    return FetchReport(loc, todo, len(entries) - len(todo))
