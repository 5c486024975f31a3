"""Many inputs, one output each: expansion of paths, resume, per-input failure isolation, summary.

A corpus run never stops at a bad input: each input either produces its complete output (written to a
temporary file and renamed), is skipped because its complete output already exists, or is reported as
failed with the reason. Only a full disk stops the run, since every later output would fail the same way.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

try:
    import fcntl
except ImportError:  # not a POSIX system: runs do not lock their output folder (RunLock)
    fcntl = None

from gpuau import _signals
from gpuau._atomic import check_writable, remove_stale_temps
from gpuau.outcome import Outcome, failed_outcome
from gpuau.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, InputError

LIST_EXTENSIONS = (".txt", ".lst")

VIDEO_BARS = 8
"""Per-video progress bars shown at once with ``streams > 1`` (the videos opened while all are taken get none)."""

SETTINGS_LOG = "gpuau-settings.jsonl"
"""In a corpus run's output folder: a line per output written, ``{"output": file name, "input": the input's absolute
path, "settings": output_settings(...), "bytes": the input's (:func:`input_bytes`)}`` (the last line of an output
counts): a rerun resumes only over outputs made with its own settings, redoes those whose input's bytes changed, and
gives each input recorded there the same output name."""

OUTPUT_SETTINGS = ("quality", "multi_face", "au_static", "detect_every", "timestamps", "orientation", "camera",
                   "columns")
"""The :class:`gpuau.pipeline.Analyzer` keywords that change an output's numbers, rows or columns (the device, the
model folder's place and the extra files asked for do not).  ``columns`` is recorded only when some groups are chosen:
a log written before gpuau had it records the same settings as a run of every column."""


RUN_LOCK_PREFIX = ".gpuau-run-"
"""In a corpus run's output folder while it runs: ``.gpuau-run-<digest of its settings>.lock``, holding the settings'
JSON, share-locked (``flock``) by every run with those settings (:class:`RunLock`)."""


IMAGE_SETTINGS = ("quality", "camera", "columns")
"""Of :data:`OUTPUT_SETTINGS`, those that change a single image's table (FaceLandmarkImg's: every face, static AU
models; the others are a video's)."""

CONTAINER_SETTINGS = ("timestamps", "orientation")
"""Of :data:`OUTPUT_SETTINGS`, those of a video file's container: an image folder's frames have no times and turn as
their files say."""


def single_image(path: Path) -> bool:
    """Whether the input ``path`` is one image (analysed as FaceLandmarkImg does), not a video or an image folder."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.is_dir()


def settings_for(settings: dict, source: Path) -> dict:
    """``settings`` (:func:`output_settings`) as they apply to the output of ``source``: :data:`IMAGE_SETTINGS` for a
    single image, all but :data:`CONTAINER_SETTINGS` for an image folder."""
    if source.is_dir():
        return {k: v for k, v in settings.items() if k not in CONTAINER_SETTINGS}
    if single_image(source):
        return {k: settings[k] for k in IMAGE_SETTINGS if k in settings}
    return settings


def output_settings(options: dict) -> dict:
    """``options`` (Analyzer keywords, as :meth:`gpuau.pipeline.Analyzer.settings` gives them) reduced to
    :data:`OUTPUT_SETTINGS` as JSON values: a quality preset by its name, another :class:`Quality` by its fields."""
    from gpuau.landmarks.quality import QUALITIES, get_quality

    values = {k: options.get(k) for k in OUTPUT_SETTINGS}
    values["quality"] = quality = get_quality(values["quality"] or "exact")
    if QUALITIES.get(quality.name) == quality:
        values["quality"] = quality.name
    if values["columns"] is None:  # every column: as logs before gpuau had the setting record it
        del values["columns"]
    return json.loads(json.dumps(values, default=repr))


def input_bytes(path: Path) -> "int | None":
    """The bytes of an input: a file's, or those of the images an image folder's analysis reads
    (:func:`gpuau.video.sequence_files`: not the notes or other images beside them); None where it cannot be read."""
    from gpuau.video import sequence_files

    try:
        if path.is_dir():
            return sum(f.stat().st_size for f in sequence_files(path)[0])
        return path.stat().st_size
    except (OSError, InputError):  # unreadable, or a folder without images: its analysis says so
        return None


def read_settings_log(outdir: Path) -> dict:
    """Output file name -> the last :data:`SETTINGS_LOG` entry for it in ``outdir`` (lines that do not parse, such as
    one cut short by a crash, are passed over)."""
    try:
        lines = (outdir / SETTINGS_LOG).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InputError(outdir / SETTINGS_LOG, f"cannot be read ({e.strerror or e})",
                         "make it a readable file, or remove it, which leaves resumed outputs unchecked") from e
    found = {}
    for line in lines:
        try:
            entry = json.loads(line)
            found[entry["output"]] = {"input": str(entry.get("input", "")), "settings": entry["settings"],
                                      "bytes": entry.get("bytes")}
        except (ValueError, KeyError, TypeError):
            continue
    return found


class RunLock:
    """A corpus run's claim on its output folder: runs with the same settings share it, a run with other settings is
    refused while one holds it (two analyses would otherwise mix in the folder, each output the last writer's).

    ``flock`` on :data:`RUN_LOCK_PREFIX` files: a run share-locks the file of its settings, then tries an exclusive
    lock on every other such file; one it cannot take belongs to a run at work, and the constructor raises
    :class:`InputError` naming the difference; one it takes was left by a run that ended without removing it, and is
    removed.  Two runs with different settings that start at the same instant may both be refused, never both let in.
    Where ``flock`` is missing or the file system refuses it, no lock is taken; on NFS (whose ``flock`` is a POSIX lock)
    it holds across machines where the lock manager runs.

    Parameters
    ----------
    outdir : Path
    settings : dict
        The run's :func:`output_settings`.
    """

    def __init__(self, outdir: Path, settings: dict):
        self._fd = None
        if fcntl is None:
            return
        text = json.dumps(settings, sort_keys=True)
        self.path = outdir / f"{RUN_LOCK_PREFIX}{hashlib.sha256(text.encode()).hexdigest()[:16]}.lock"
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)  # other runs hold it exclusively only to check or remove it
                if os.fstat(fd).st_size == 0:
                    os.write(fd, text.encode())
                    os.fchmod(fd, 0o666)  # other users' runs check it (read-write: NFS's locks need it)
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:  # removed by the run it belonged to, or as stale, before it was locked here
                pass
            except OSError:  # no locks on this file system, or the file cannot be written
                os.close(fd)
                return
            os.close(fd)
        self._fd = fd
        try:
            for other in outdir.glob(f"{RUN_LOCK_PREFIX}*.lock"):
                if other.name != self.path.name:
                    self._check(other, settings)
        except BaseException:
            self.release()
            raise

    @staticmethod
    def _check(other: Path, settings: dict) -> None:
        for flags in (os.O_RDWR, os.O_RDONLY):  # read-write where allowed: NFS's flock is a POSIX lock, whose
            try:                                 # exclusive kind needs it
                fd = os.open(other, flags)
                break
            except PermissionError:
                continue
            except OSError:  # removed meanwhile
                return
        else:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    difference = ": " + settings_difference(json.loads(os.pread(fd, 1 << 16, 0).decode()), settings)
                except ValueError:  # being written
                    difference = ""
                raise InputError(other.parent, f"another gpuau analyze is writing into it with other settings{difference}",
                                 "let that run finish first, or choose another output folder") from None
            except OSError:  # no locks on this file system
                return
            try:
                other.unlink(missing_ok=True)  # a run's that ended without removing it
            except OSError:  # another user's, in a folder where only they may remove it: checked again each run
                pass
        finally:
            os.close(fd)

    def release(self) -> None:
        """Unlock; remove the file when no other run of these settings holds it."""
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path.unlink(missing_ok=True)
        except OSError:  # another run of the same settings holds it still
            pass
        os.close(self._fd)
        self._fd = None


def settings_difference(recorded: dict, settings: dict) -> str:
    """The settings in which ``recorded`` and ``settings`` differ, as ``quality 'fast' (this run: 'exact'), ...``."""
    keys = [k for k in dict.fromkeys([*recorded, *settings]) if recorded.get(k) != settings.get(k)]

    def shown(key, value) -> str:
        return "all" if key == "columns" and value is None else repr(value)  # recorded only when some are chosen

    return ", ".join(f"{k} {shown(k, recorded.get(k))} (this run: {shown(k, settings.get(k))})" for k in keys)


@dataclass
class CorpusReport:
    outcomes: list = field(default_factory=list)
    elapsed: float = 0.0
    stopped: str = ""
    setup: float = 0.0  # seconds the CPU kernels' one-time compile took before the first input (not in elapsed)
    not_started: list = field(default_factory=list)  # inputs a stopped run (a full disk, Ctrl-C) left for the rerun

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        """A small table: videos done / skipped / failed (with reasons), frames, faces, elapsed, throughput (frames
        over the elapsed time, worker processes or streams side by side included)."""
        frames = sum(o.frames for o in self.outcomes)
        faces = sum(o.faces for o in self.outcomes)
        lines = [
            f"{'inputs':<10}{len(self.outcomes) + len(self.not_started):>8}",
            f"{'done':<10}{self.count('done'):>8}",
            f"{'skipped':<10}{self.count('skipped'):>8}   (complete output already there; --overwrite redoes them)",
            f"{'failed':<10}{self.count('failed'):>8}",
            f"{'frames':<10}{frames:>8}",
            f"{'faces':<10}{faces:>8}   (frames with a tracked face; an image's faces, --multi-face's face rows)",
            f"{'elapsed':<10}{self.elapsed:>8.1f} s",
            f"{'speed':<10}{(frames / self.elapsed if self.elapsed else 0):>8.1f} frames/s   "
            f"(all frames over the elapsed time)",
        ]
        if self.not_started:
            lines.insert(4, f"{'not run':<10}{len(self.not_started):>8}   (the run stopped first: a rerun does them)")
        if self.setup >= 1.0:
            lines.append(f"{'setup':<10}{self.setup:>8.1f} s   (the CPU kernels compiled once for this version of "
                         "gpuau and this CPU, before the first input; not in elapsed)")
        warned = [o for o in self.outcomes if o.warnings()]
        if warned:
            lines.insert(4, f"{'warnings':<10}{len(warned):>8}   (inputs done with a warning, listed below)")
        for o in warned:
            lines += [f"WARNING {o.input}: {w}" for w in o.warnings()]
        for o in self.failed:
            lines.append(f"FAILED {o.input}: {o.reason}")
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}")
        return "\n".join(lines)


def on_terminal() -> bool:
    """Whether stderr is a terminal: progress bars are drawn only there (a log file gets none)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class _NoBar:
    """The part of a tqdm bar that gpuau uses, drawing nothing."""

    def __init__(self, total=None):
        self.n, self.total = 0, total

    def update(self, n: int = 1) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(progress: bool, **kwargs):
    """A tqdm bar (``kwargs``: tqdm's) on stderr when ``progress`` is asked for and stderr is a terminal, else a
    stand-in that draws nothing: a run without bars does not import tqdm, ~45 ms of the command's start-up."""
    if not (progress and on_terminal()):
        return _NoBar(kwargs.get("total"))
    from tqdm.auto import tqdm

    return tqdm(**kwargs)


def say(line: str) -> None:
    """Print ``line`` on stderr, above the progress bars when any are drawn (tqdm's ``write``)."""
    drawing = sys.modules.get("tqdm.auto")
    if drawing is None:
        print(line, file=sys.stderr, flush=True)
    else:
        drawing.tqdm.write(line, file=sys.stderr)


def _looks_like_input(path: Path) -> bool:
    """Whether a path that does not exist names what an input would be: a video, an image or a list by its ending."""
    return path.suffix.lower() in (*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS, *LIST_EXTENSIONS)


def expand_inputs(inputs: Iterable["str | os.PathLike"], exclude: "str | os.PathLike | None" = None) -> list:
    """Inputs as analysable paths, in order, without duplicates.

    A video or image file stands for itself; a folder is searched recursively for videos and image folders, except
    the folder ``exclude`` (the output folder), any other run's output folder found there (one holding a
    :data:`SETTINGS_LOG`) and hidden files and folders (macOS's ``._`` files beside each video, ``.Trashes``; named,
    they are inputs). A folder holding images and no videos is one image sequence, and its subfolders are searched
    too; images beside videos are left out with a warning. An output folder named is searched for videos only,
    never taken for an image sequence, and its ``*_aligned`` folders (its aligned faces) are left out. A folder
    named that cannot be listed is kept as an input, which fails saying why; one found is skipped with a warning.
    A ``.txt``/``.lst`` file lists one path per line (a line starting with ``#`` is a comment; relative to the
    list's folder, in quotes or not; UTF-8, a byte-order mark allowed; lists it names are read too, each once). A
    path that does not
    exist is kept, so that it is reported as failed rather than silently dropped, unless no line of its list names
    one that does, nor a video, an image or a list by its ending (a text file of notes, which a glob named): that file
    is left out with a warning. Each folder is searched once, however many links lead to it (a link to a folder above
    it would otherwise be followed round and round).

    Raises
    ------
    InputError
        A list that is not UTF-8 text.
    """
    out: list = []
    seen: set = set()
    searched: set = set()  # folders searched, resolved
    skip = Path(exclude).resolve() if exclude is not None else None

    def add(p: Path):
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            out.append(p)

    def walk(p: Path, named: bool = False):
        if p.is_dir():
            real = p.resolve()
            # a run's output folder: its aligned faces, plots or rendered videos are no input (os.path.isfile: False,
            # not PermissionError, in a folder that cannot be read)
            outputs = os.path.isfile(p / SETTINGS_LOG) or real == skip
            if outputs and not named:
                return
            try:
                children = [c for c in sorted(p.iterdir()) if not c.name.startswith(".")]
                files = [c.suffix.lower() for c in children if c.is_file()]
            except OSError as e:
                if named:  # an input, which then fails saying so
                    add(p)
                else:
                    say(f"warning: {p}: not searched ({e.strerror or e})")
                return
            if real in searched:
                return
            searched.add(real)
            images = sum(f in IMAGE_EXTENSIONS for f in files)
            if images and not outputs:
                if any(f in VIDEO_EXTENSIONS for f in files):
                    say(f"warning: {p}: {images} image(s) beside its videos not analysed (an image folder holds no "
                        "videos: move them into a folder of their own to analyse them as an image sequence)")
                else:
                    add(p)
            for child in children:
                if outputs and child.name.endswith("_aligned") and child.is_dir():
                    continue
                if child.is_dir() or child.suffix.lower() in VIDEO_EXTENSIONS:
                    walk(child)
        else:
            add(p)

    lists: set = set()  # lists read, resolved: a list may name lists, none twice

    def expand(p: Path):
        if not (p.is_file() and p.suffix.lower() in LIST_EXTENSIONS):
            walk(p, named=True)
            return
        if p.resolve() in lists:
            return
        lists.add(p.resolve())
        try:
            text = p.read_text(encoding="utf-8-sig")  # Notepad starts its UTF-8 with a byte-order mark
        except UnicodeDecodeError as e:
            raise InputError(p, f"a list of inputs that is not UTF-8 text ({e.reason} at byte {e.start})",
                             "save it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
        lines = [line for line in map(str.strip, text.splitlines()) if line and not line.startswith("#")]
        # a path quoted as a shell or a spreadsheet's export quotes it (an empty cell: no path)
        lines = [line[1:-1].strip() if len(line) > 1 and line[0] == line[-1] in "'\"" else line for line in lines]
        named = [Path(line).expanduser() for line in lines if line]
        named = [q if q.is_absolute() else p.parent / q for q in named]
        if named and not any(os.path.lexists(q) or _looks_like_input(q) for q in named):  # notes, a README: prose
            say(f"warning: {p}: left out: no line of it names a file or folder that exists, nor a video, an image or "
                "a list, so it is no list of inputs (a .txt or .lst file lists one path per line)")
            return
        for q in named:
            expand(q)

    for item in inputs:
        expand(Path(item))
    return out


def output_paths(inputs: list, outdir: "str | os.PathLike", fmt: str = "csv", kept: "dict | None" = None) -> list:
    """``OUTDIR/<input name>.<fmt>``, one distinct file per input, the same on every run of the same inputs.

    The name is the file's stem (a folder's whole name); names that collide (compared without case: ``Clip`` and
    ``clip`` are one file on macOS's and Windows' disks) get their parent folder's name prefixed, and any that still
    collide a short hash of the input's absolute path.  ``kept`` (an input's absolute
    path -> the name, without suffix, an earlier run gave its output: :data:`SETTINGS_LOG`'s): those inputs keep
    their names and no other input takes one (it gets its folder's name prefixed, or the hash), so that inputs added
    to a corpus later rename no output already there, nor take one of another input's (:class:`CorpusRun` keeps the
    names of recorded inputs still there).
    """
    outdir = Path(outdir)
    keys = [str(p.resolve()) for p in inputs]

    def digest(i: int) -> str:
        return hashlib.sha1(keys[i].encode()).hexdigest()[:8]

    def collisions(names):  # linear: a corpus may hold 100,000 inputs; Clip and clip are one file on macOS's disks
        counts = Counter(n.casefold() for n in names)
        return {n for n in names if counts[n.casefold()] > 1}

    names = [p.name if p.is_dir() else p.stem for p in inputs]
    dup = collisions(names)
    # the folder the input is named in (not a link's target's), by its own name for an input given as "clip.avi" too
    folders = [Path(os.path.abspath(p)).parent.name for p in inputs]
    names = [f"{folder}_{n}" if n in dup else n for folder, n in zip(folders, names)]
    dup = collisions(names)
    names = [f"{n}_{digest(i)}" if n in dup else n for i, n in enumerate(names)]
    kept = kept or {}
    reserved = {n.casefold() for n in kept.values()}
    own = [keys[i] in kept for i in range(len(inputs))]
    names = [kept[keys[i]] if own[i] else n for i, n in enumerate(names)]
    taken = Counter(n.casefold() for n in names)
    for i, n in enumerate(names):
        if not own[i] and n.casefold() in reserved:  # another input's recorded output
            renamed = f"{folders[i]}_{n}"
            if renamed.casefold() in reserved or taken[renamed.casefold()]:
                renamed = f"{renamed}_{digest(i)}"
            taken[n.casefold()] -= 1
            taken[renamed.casefold()] += 1
            names[i] = renamed
    return [outdir / f"{n}.{fmt}" for n in names]


def complete(dst: Path, hog: bool = False, aligned: bool = False) -> bool:
    """Whether an input's outputs exist: its table ``dst`` and the ``.hog`` file and aligned faces asked for (written
    before the table, so a table written without them is redone).  An empty file or a folder at the table's name is
    none of gpuau's (a table has a header at least): it is no finished output."""
    from gpuau.io import aligned_dir, hog_path

    return (dst.is_file() and dst.stat().st_size > 0 and (not hog or hog_path(dst).exists())
            and (not aligned or aligned_dir(dst).is_dir()))


class CorpusRun:
    """Bookkeeping of one corpus run, shared by the local and the Ray runner.

    Expands ``inputs``, names their outputs, records inputs whose complete output exists as skipped
    (unless ``overwrite``) and keeps the rest in :attr:`todo`; :meth:`record` takes each outcome as it
    arrives (in any order) and feeds the corpus progress bar; :meth:`finish` returns the report with
    outcomes in input order.

    Parameters
    ----------
    inputs : iterable of path-like
        Expanded with :func:`expand_inputs`.
    outdir : path-like
        Created if missing.
    fmt : {"csv", "parquet"}
    overwrite : bool
    progress : bool
        Corpus progress bar (tqdm) on stderr.
    verbose : bool
        A line per input on stderr as its outcome arrives (:meth:`Outcome.describe`).
    write_hog, write_aligned : bool
        The inputs also get a ``.hog`` file / a folder of aligned faces (see :class:`gpuau.pipeline.Analyzer`): an
        output counts as complete only with them.
    settings : dict, optional
        The run's :func:`output_settings`: each output done is recorded with them in :data:`SETTINGS_LOG`, and an
        existing output recorded with others is not skipped as complete but refused (:class:`InputError`), unless
        ``overwrite``. None: neither (outputs never recorded, as those the library's ``write_video`` writes, are
        skipped in any case).

    Raises
    ------
    InputError
        No input found; the output folder cannot be written; outputs there were made with other settings, or a run
        with other settings is writing there (:class:`RunLock`, taken until :meth:`finish`).
    """

    def __init__(self, inputs: Iterable, outdir: "str | os.PathLike", *, fmt: str = "csv", overwrite: bool = False,
                 progress: bool = True, verbose: bool = False, write_hog: bool = False, write_aligned: bool = False,
                 settings: "dict | None" = None):
        self._t0 = time.perf_counter()
        paths = expand_inputs(inputs, exclude=outdir)
        if not paths:
            raise InputError(", ".join(map(str, inputs)) or "(no inputs)", "no video, image or image folder found",
                             "name video files, images or folders that hold them")
        self.outdir = Path(outdir)
        if self.outdir.exists() and not self.outdir.is_dir():
            raise InputError(self.outdir, "is a file, not a folder, so it cannot be the output folder",
                             "pass -o a folder's name (one that does not exist is created)")
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            check_writable(self.outdir / ".gpuau-write-check")
        except OSError as e:
            raise InputError(self.outdir, f"cannot be used as the output folder ({e.strerror or e})",
                             "pass -o a folder that can be created and written") from e
        self.settings = settings
        log = read_settings_log(self.outdir) if settings is not None else {}
        # a recorded input keeps its output's name while it is there (a corpus moved elsewhere is named afresh)
        kept = {e["input"]: Path(name).stem for name, e in log.items() if e["input"] and Path(e["input"]).exists()}
        outputs = output_paths(paths, outdir, fmt, kept=kept)
        done = [] if overwrite else [
            complete(dst, write_hog, write_aligned) and not self._changed(log.get(dst.name), src)
            for src, dst in zip(paths, outputs)]
        self._check_settings(log, [(src, dst) for src, dst, d in zip(paths, outputs, done) if d])
        self._lock = None
        if settings is not None and not (done and all(done)):
            # a run with inputs to do claims the folder (until finish()): refused while a run of other settings writes it
            self._lock = RunLock(self.outdir, settings)
            self._warn_other_outputs(log, outputs)
        self.report = CorpusReport()
        self.verbose = verbose
        self.bar = progress_bar(progress, total=len(paths), desc="corpus", unit="video", position=0)
        self._order = {p: i for i, p in enumerate(paths)}
        self.todo: list = []
        for i, (src, dst) in enumerate(zip(paths, outputs)):
            if done and done[i]:
                self.record(Outcome(src, dst, "skipped"))
            else:
                self.todo.append((src, dst))
        # each input's bytes as the run finds it, recorded with its output (a file still being copied in is redone)
        self._bytes = {src: input_bytes(src) for src, _ in self.todo}
        self.sweep(outputs)  # finished ones too: what a killed run left beside an output its rerun finished

    @staticmethod
    def _changed(entry: "dict | None", src: Path) -> bool:
        """Whether the log ``entry`` of ``src``'s output (:func:`read_settings_log`) records another input at its path
        than is there now, by its bytes (a truncated download fetched again, a file replaced): said, and redone."""
        if not entry or entry["bytes"] is None or entry["input"] != str(src.resolve()):
            return False
        now = input_bytes(src)
        if now in (None, entry["bytes"]):
            return False
        say(f"warning: {src}: {now} bytes where its output was made from {entry['bytes']}: the input changed since, "
            "and is analysed again")
        return True

    def sweep(self, outputs: list) -> None:
        """Delete what processes killed outright (SIGKILL, the OOM killer) left half-written of ``outputs`` (the tables,
        ``.hog`` files and aligned faces' folders): :func:`gpuau._atomic.remove_stale_temps`."""
        from gpuau.io import aligned_dir, hog_path

        remove_stale_temps(self.outdir, {p.name for dst in outputs for p in (dst, hog_path(dst), aligned_dir(dst))})

    def _warn_other_outputs(self, log: dict, outputs: list) -> None:
        """Say so when the folder holds outputs of other inputs made with other settings, which this run's outputs will
        sit beside (each compared on the settings recorded for it: an image's, a folder's or a video's)."""
        ours = {dst.name for dst in outputs}
        other = []  # (output, its recorded settings, this run's on the same keys)
        for name, e in log.items():
            theirs = e["settings"]
            mine = {k: self.settings.get(k) for k in theirs}
            if name not in ours and theirs != mine and (self.outdir / name).exists():
                other.append((name, theirs, mine))
        if other:
            name, theirs, mine = other[0]
            more = f" and {len(other) - 1} other output{'s' * (len(other) > 2)}" if len(other) > 1 else ""
            say(f"warning: {self.outdir}: {name}{more} there {'were' if more else 'was'} made with other settings, as "
                f"{SETTINGS_LOG} records: {settings_difference(theirs, mine)}; "
                f"this run adds outputs of its own settings beside them (choose another output folder to keep the "
                f"analyses apart)")

    def _check_settings(self, log: dict, existing: list) -> None:
        """Refuse to resume over the ``existing`` outputs (``(input, output)`` pairs) that ``log``
        (:func:`read_settings_log`) says were made with other settings than this run's, as they apply to each."""
        if self.settings is None:
            return
        other, same = [], 0
        for src, dst in existing:
            ours = settings_for(self.settings, src)
            theirs = log[dst.name]["settings"] if dst.name in log else ours
            if theirs == ours:
                same += 1
            else:
                other.append((dst.name, settings_difference(theirs, ours)))
        if not other:
            return
        (first, difference), more = other[0], len(other) - 1
        which = f"{first} and {more} other output{'s' * (more > 1)} there were" if more else f"{first} there was"
        fix = ("add --overwrite to redo them all with this run's settings (the folder holds outputs of both), or "
               "choose another output folder" if same else
               "rerun with those settings to resume, add --overwrite to redo the outputs, or choose another output "
               "folder")
        raise InputError(self.outdir, f"{which} made with other settings, as {SETTINGS_LOG} records: {difference}", fix)

    def record(self, outcome: Outcome) -> None:
        """Add ``outcome``; a full disk sets :attr:`CorpusReport.stopped` (callers start no further input)."""
        self.report.outcomes.append(outcome)
        if self.verbose:
            say(outcome.describe())
        elif outcome.status == "failed":  # as it happens, not only in the summary at the end
            say(f"gpuau: failed: {outcome.input}: {outcome.reason}")
        for warning in outcome.warnings():
            say(f"warning: {outcome.input}: {warning}")
        if outcome.disk_full:
            self.report.stopped = (f"no space left on the device holding {self.outdir.resolve()}; free space and "
                                   f"rerun (finished outputs are kept and skipped)")
        if outcome.status == "done" and self.settings is not None:
            self._record_settings(outcome)
        self.bar.update(1)

    def _record_settings(self, outcome: Outcome) -> None:
        """Append the line of ``outcome``'s output to :data:`SETTINGS_LOG` (in one write, which lines of concurrent runs
        do not interleave on a local disk, unless the disk takes part of it); if that fails the output stays,
        unrecorded, as one written before gpuau kept the log."""
        output, source = outcome.output, Path(outcome.input)
        entry = {"output": output.name, "input": str(source.resolve()), "settings": settings_for(self.settings, source),
                 "bytes": self._bytes.get(source)}
        line = (json.dumps(entry) + "\n").encode()
        try:
            fd = os.open(self.outdir / SETTINGS_LOG, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut short (a crash, a full disk) ends here
                    line = b"\n" + line
                while line:
                    line = line[os.write(fd, line):]
            finally:
                os.close(fd)
        except OSError as e:
            logging.getLogger(__name__).warning("%s: not recorded in %s (%s)", output, SETTINGS_LOG, e)

    def largest_first(self) -> list:
        """:attr:`todo`, the largest inputs first (:func:`input_bytes`), as workers pulling from a queue take them: no
        long video is left for last, to run alone while the other workers idle."""
        return sorted(self.todo, key=lambda item: -(self._bytes.get(item[0]) or 0))

    def prepare(self, step: Callable[[], None]) -> None:
        """Run ``step`` before the first input, outside the elapsed time (the report's ``setup``)."""
        t = time.perf_counter()
        step()
        self.report.setup = time.perf_counter() - t
        self._t0 += self.report.setup

    def finish(self) -> CorpusReport:
        """Close the progress bar and give up the folder (:class:`RunLock`); the report, outcomes in input order, with
        the elapsed time."""
        if self._lock is not None:
            self._lock.release()
        self.bar.close()
        self.report.outcomes.sort(key=lambda o: self._order[o.input])
        ended = {o.input for o in self.report.outcomes}  # none left out, unless a full disk or an interrupt stopped it
        self.report.not_started = [src for src, _ in self.todo if src not in ended]
        self.report.elapsed = time.perf_counter() - self._t0
        return self.report


def analyze_input(analyzer, src: Path, dst: Path, *, fmt: str = "csv", progress=None, on_open=None) -> Outcome:
    """Analyse one input into ``dst`` with ``analyzer``; any failure of this input becomes a failed outcome.

    Parameters
    ----------
    analyzer : Analyzer
    src, dst : Path
    fmt : {"csv", "parquet"}
    progress, on_open : callable, optional
        Passed to :meth:`gpuau.pipeline.Analyzer.write_video`.

    Returns
    -------
    Outcome
        ``"done"`` with frames, faces and elapsed time, or ``"failed"`` with the reason (``disk_full`` set
        when the output's device is full).
    """
    try:
        info = analyzer.write_video(src, dst, format=fmt, progress=progress, on_open=on_open)
    except Exception as e:  # one input's failure must not end the corpus
        _signals.reraise(e)  # unless it is Ctrl-C or SIGTERM landing in a compiled kernel's call: the run stops
        return failed_outcome(src, dst, e)
    note = "; ".join(info.get("notes", []))
    return Outcome(src, dst, "done", reason=note, frames=info["frames"], faces=info["faces"], elapsed=info["elapsed"])


FAULT_ENV = "GPUAU_WORKER_FAULT"
"""Fault injection for tests: ``FILE`` holding an input's file name. A worker process (Ray's or
:mod:`gpuau.workers`') analysing that input deletes ``FILE`` after the input's first frame and exits on the
spot, as a crashed process would (once per FILE)."""


def _fault_hook(src: Path):
    """The :data:`FAULT_ENV` progress callback for ``src``, or None."""
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return None

    def crash(frames: int) -> None:
        try:
            if Path(marker).read_text().strip() != src.name:
                return
            os.unlink(marker)
        except FileNotFoundError:
            return
        os._exit(1)

    return crash


def limit_threads(threads: int) -> None:
    """Give this process ``threads`` cores: the CPU kernels' (``NUMBA_NUM_THREADS``, so the landmark fit's helper
    and onnxruntime's threads), and FFmpeg's (``OMP_NUM_THREADS``, see :func:`gpuau.video.decoder_threads`).

    Call it in a worker process before its first analysis."""
    os.environ["NUMBA_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(max(1, int(threads)))
    if "numba" in sys.modules:  # imported already: it reads its variables again (no gpuau kernel starts its threads)
        from numba.core.config import reload_config

        reload_config()


class CorpusWorker:
    """The body of a worker process (a Ray actor, or one of :mod:`gpuau.workers`' processes): one Analyzer,
    whose models load once, and inputs analysed one at a time.

    Parameters
    ----------
    device : str
    threads : int
        Cores of this worker on the CPU (:func:`limit_threads`).
    options : dict
        The Analyzer's keywords (``models``, resolved where the worker runs, ``multi_face``,
        ``timestamps``, ``quality``, ``detect_every``, ``orientation``, ``au_static``, ``camera``, ``columns``; see
        :class:`gpuau.pipeline.Analyzer`).
    """

    def __init__(self, device: str, threads: int, options: dict, stopping: "threading.Event | None" = None):
        limit_threads(threads)
        from gpuau.pipeline import Analyzer
        from gpuau.video import serial_opencv

        serial_opencv()
        self.analyzer = Analyzer(device, **options)
        self.analyzer.loaded_models()
        self.stopping = stopping or threading.Event()

    def analyze(self, src: Path, dst: Path, fmt: str, progress=None, on_open=None) -> Outcome:
        """:func:`analyze_input` on this worker's Analyzer (``progress``, ``on_open``: as there); once :attr:`stopping`
        is set, the input stops at its next frame (KeyboardInterrupt, raised in plain Python code: its temporary files
        are removed, no output appears)."""
        crash = _fault_hook(src)

        def report(frames: int) -> None:
            if self.stopping.is_set():
                raise KeyboardInterrupt
            if crash:
                crash(frames)
            if progress:
                progress(frames)

        return analyze_input(self.analyzer, src, dst, fmt=fmt, progress=report, on_open=on_open)


def _mtime(path: Path) -> "int | None":
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


class WorkerDeaths:
    """What becomes of the input a worker process was analysing when it died, for :mod:`gpuau.workers` and the
    Ray scheduler alike: done, if its output was completed before (its file changed since the run began);
    failed, after ``max_retries`` + 1 deaths on it; otherwise back to the front of ``queue``, with a warning.

    Parameters
    ----------
    run : CorpusRun
        Takes the outcomes; its ``todo`` is the inputs the workers will analyse.
    queue : collections.deque
        The ``(src, dst)`` items still to hand out.
    max_retries : int
    """

    def __init__(self, run: CorpusRun, queue, max_retries: int):
        self.run, self.queue, self.max_retries = run, queue, max_retries
        self._before = {dst: _mtime(dst) for _, dst in run.todo}
        self._deaths: dict = {}

    def __call__(self, item: tuple, cause: str, retry_where: str) -> None:
        """The worker analysing ``item`` (``(src, dst)``) died of ``cause``; ``retry_where`` says where a retry runs."""
        src, dst = item
        self.run.sweep([dst])  # what the dead worker was writing
        deaths = self._deaths[item] = self._deaths.get(item, 0) + 1
        if _mtime(dst) != self._before[dst]:
            self.run.record(Outcome(src, dst, "done", reason="output completed before its worker died"))
        elif deaths > self.max_retries:
            self.run.record(Outcome(src, dst, "failed", reason=f"its worker died {deaths} time(s); last: {cause}"))
        else:
            say(f"warning: worker died analysing {src} ({cause}); retry {deaths} of {self.max_retries} {retry_where}")
            self.queue.appendleft(item)

    def abandon(self, error) -> None:
        """Every worker died and none could start again (the last start's ``error``): each input still queued fails,
        saying so."""
        while self.queue:
            src, dst = self.queue.popleft()
            self.run.record(Outcome(src, dst, "failed", reason=f"not analysed: no worker left ({error})"))


def run_corpus(inputs: Iterable, outdir: "str | os.PathLike", *, analyzer, fmt: str = "csv", overwrite: bool = False,
               progress: bool = True, streams: "int | None" = 1, workers: "int | None" = 1, verbose: bool = False,
               decode: str = "opencv") -> CorpusReport:
    """Analyse every input into ``outdir`` with ``analyzer`` (a :class:`gpuau.pipeline.Analyzer`).

    Parameters
    ----------
    inputs : iterable of path-like
        Expanded with :func:`expand_inputs`.
    outdir : path-like
    analyzer : Analyzer
    fmt : {"csv", "parquet"}
    overwrite : bool
        Redo inputs whose output exists (default: skip them, which makes a rerun resume, over outputs that
        :data:`SETTINGS_LOG` records with ``analyzer``'s settings or not at all).
    progress : bool
        Progress bars (tqdm) on stderr when it is a terminal: one for the corpus, one per video (frames, frames/s
        and time left, sized from the frames the container announces); with ``streams > 1`` one for all streams'
        frames and one for each of up to :data:`VIDEO_BARS` videos being analysed.
    streams : int or None
        Videos analysed together by :class:`gpuau.engine.Engine` (``None``: its automatic choice),
        with ``analyzer``'s settings and loaded models; 1 analyses one input at a time.  Single
        images, and every input with ``multi_face``, go one at a time.
    workers : int or None
        With one stream: worker processes on this machine, each analysing one input at a time with an
        Analyzer of ``analyzer``'s settings and device (:mod:`gpuau.workers`; ``None``: the choice of
        :func:`gpuau.workers.plan_local_workers`, one per core on the CPU); 1 analyses in this process.
    verbose : bool
        A line per input on stderr (see :class:`CorpusRun`).
    decode : {"opencv", "nvdec"}
        The engine's video decoder (:class:`gpuau.engine.Engine`'s ``decode``); ``"nvdec"`` sends the
        videos through the engine even with one stream (ignored with ``multi_face``, which the engine
        does not run).

    Raises
    ------
    InputError
        As :class:`CorpusRun`: no input found, an output folder that cannot be written, outputs there made with
        other settings, a run with other settings writing there.
    """
    run = CorpusRun(inputs, outdir, fmt=fmt, overwrite=overwrite, progress=progress, verbose=verbose,
                    write_hog=analyzer.write_hog, write_aligned=analyzer.write_aligned,
                    settings=output_settings(analyzer.settings()))
    return finish_run(run, lambda: _run(run, analyzer, fmt, progress, streams, workers, decode))


def finish_run(run: CorpusRun, body: Callable[[], None]) -> CorpusReport:
    """Run ``body()`` (a scheduler analysing ``run.todo``), then finish ``run`` whatever happens; its report. An
    interrupt (Ctrl-C, SIGTERM) carries the report out as its ``report``, for the command to say how far it got."""
    interrupted = None
    try:
        body()
    except (KeyboardInterrupt, _signals.Terminated) as e:
        interrupted = e
        raise
    finally:
        report = run.finish()
        if interrupted is not None:
            interrupted.report = report
    return report


def _run(run: CorpusRun, analyzer, fmt: str, progress: bool, streams: "int | None", workers: "int | None",
         decode: str) -> None:
    """:func:`run_corpus`'s inputs to do, in this process, through the engine or on worker processes."""
    if run.todo:  # the kernels' one-time compile: here, not in every worker process at once, and not in elapsed
        run.prepare(analyzer.compile_kernels)
    if (streams != 1 or decode != "opencv") and not analyzer.multi_face:
        _run_streams(run, analyzer, fmt, streams, progress, decode)
        return
    if workers != 1 and len(run.todo) > 1:
        from gpuau.workers import plan_local_workers, schedule

        backend = analyzer.backend
        plan = plan_local_workers(len(run.todo), backend.name, workers)
        if plan.count > 1:
            logging.getLogger("gpuau").info("%d worker processes of %d core(s) each", plan.count, plan.threads)
            schedule(run, backend.spec, plan, fmt=fmt, progress=progress, options=analyzer.settings())
            return
    for src, dst in run.todo:
        bar = progress_bar(progress, desc=src.name[:30], unit="frame", position=1, leave=False)
        try:
            outcome = analyze_input(analyzer, src, dst, fmt=fmt, progress=lambda n: bar.update(n - bar.n),
                                    on_open=lambda s: setattr(bar, "total", s.frame_count or None))
        finally:
            bar.close()
        run.record(outcome)
        if run.report.stopped:
            break


def _run_streams(run: CorpusRun, analyzer, fmt: str, streams: "int | None", progress: bool, decode: str) -> None:
    """:func:`run_corpus`'s todo list through the lockstep engine (single images one at a time)."""
    from gpuau.engine import Engine

    images, videos = [], []
    for src, dst in run.todo:
        (images if single_image(src) else videos).append((src, dst))
    for src, dst in images:
        run.record(analyze_input(analyzer, src, dst, fmt=fmt))
        if run.report.stopped:
            return
    if not videos:
        return
    engine = Engine.from_analyzer(analyzer, streams=streams, decode=decode)
    bar = progress_bar(progress, desc=f"{engine.streams} stream{'s' * (engine.streams != 1)}", unit="frame",
                       position=1, leave=False)
    video_bars: dict = {}  # input -> (its bar, the bar's position)
    free = list(range(2, 2 + VIDEO_BARS))  # bar positions below the corpus's and the streams' bars

    def open_bar(job, source):
        """A bar for the video ``job`` opened (as :func:`run_corpus` with one stream); its progress callable."""
        if not (progress and free and on_terminal()):
            return None
        position = free.pop(0)
        total = (source.frame_count or None) if source else None
        b = progress_bar(True, desc=job.label.name[:30], total=total, unit="frame", position=position, leave=False)
        video_bars[job.label] = b, position
        return lambda n: b.update(n - b.n)

    def close_bar(label):
        if label in video_bars:
            b, position = video_bars.pop(label)
            b.close()
            free.append(position)
            free.sort()

    outcomes = engine.run(videos, format=fmt, progress=lambda n: bar.update(n - bar.n), on_open=open_bar)
    try:
        for outcome in outcomes:
            close_bar(outcome.input)
            run.record(outcome)
            if run.report.stopped:
                return
    finally:
        outcomes.close()
        for label in list(video_bars):
            close_bar(label)
        bar.close()
