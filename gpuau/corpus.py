"""Many inputs, one output each: expansion of paths, resume, per-input failure isolation, summary.

A corpus run never stops at a bad input: each input either produces its complete output (written to a
temporary file and renamed), is skipped because its complete output already exists, or is reported as
failed with the reason. Only a full disk stops the run, since every later output would fail the same way.
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from gpuau.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, InputError

LIST_EXTENSIONS = (".txt", ".lst")


@dataclass
class Outcome:
    """What happened to one input."""

    input: Path
    output: Path
    status: str  # "done" | "skipped" | "failed"
    reason: str = ""
    frames: int = 0
    faces: int = 0
    elapsed: float = 0.0


@dataclass
class CorpusReport:
    outcomes: list = field(default_factory=list)
    elapsed: float = 0.0
    stopped: str = ""

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        """A small table: videos done / skipped / failed (with reasons), frames, faces, elapsed, throughput."""
        frames = sum(o.frames for o in self.outcomes)
        faces = sum(o.faces for o in self.outcomes)
        busy = sum(o.elapsed for o in self.outcomes if o.status == "done")
        lines = [
            f"{'inputs':<10}{len(self.outcomes):>8}",
            f"{'done':<10}{self.count('done'):>8}",
            f"{'skipped':<10}{self.count('skipped'):>8}   (complete output already there; --overwrite redoes them)",
            f"{'failed':<10}{self.count('failed'):>8}",
            f"{'frames':<10}{frames:>8}",
            f"{'faces':<10}{faces:>8}   (frames with a tracked face)",
            f"{'elapsed':<10}{self.elapsed:>8.1f} s",
            f"{'speed':<10}{(frames / busy if busy else 0):>8.1f} frames/s",
        ]
        for o in self.failed:
            lines.append(f"FAILED {o.input}: {o.reason}")
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}")
        return "\n".join(lines)


def _is_sequence_folder(p: Path) -> bool:
    entries = [f for f in p.iterdir() if f.is_file()]
    return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in entries) and not any(
        f.suffix.lower() in VIDEO_EXTENSIONS for f in entries)


def expand_inputs(inputs: Iterable["str | os.PathLike"]) -> list:
    """Inputs as analysable paths, in order, without duplicates.

    A video or image file stands for itself; a folder holding images (and no videos) is one image
    sequence; any other folder is searched recursively for videos (and image-sequence folders); a
    ``.txt``/``.lst`` file lists one path per line (``#`` comments allowed, relative to the list's folder).
    A path that does not exist is kept, so that it is reported as failed rather than silently dropped.
    """
    out: list = []
    seen: set = set()

    def add(p: Path):
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            out.append(p)

    def walk(p: Path):
        if p.is_dir():
            if _is_sequence_folder(p):
                add(p)
                return
            for child in sorted(p.iterdir()):
                if child.is_dir() or child.suffix.lower() in VIDEO_EXTENSIONS:
                    walk(child)
        else:
            add(p)

    for item in inputs:
        p = Path(item)
        if p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line).expanduser()
                    walk(q if q.is_absolute() else p.parent / q)
        else:
            walk(p)
    return out


def output_paths(inputs: list, outdir: "str | os.PathLike", fmt: str = "csv") -> list:
    """``OUTDIR/<input stem>.<fmt>``; inputs whose stems collide get their parent folder's name prefixed."""
    outdir = Path(outdir)
    stems = [p.stem if p.suffix else p.name for p in inputs]
    dup = {s for s in stems if stems.count(s) > 1}
    return [outdir / (f"{p.parent.name}_{s}" if s in dup else s).__add__(f".{fmt}") for p, s in zip(inputs, stems)]


def run_corpus(inputs: Iterable, outdir: "str | os.PathLike", *, analyzer, fmt: str = "csv", overwrite: bool = False,
               progress: bool = True) -> CorpusReport:
    """Analyse every input into ``outdir`` with ``analyzer`` (a :class:`gpuau.pipeline.Analyzer`).

    Parameters
    ----------
    inputs : iterable of path-like
        Expanded with :func:`expand_inputs`.
    outdir : path-like
    analyzer : Analyzer
    fmt : {"csv", "parquet"}
    overwrite : bool
        Redo inputs whose output exists (default: skip them, which makes a rerun resume).
    progress : bool
        Progress bars (tqdm) on stderr: one for the corpus, one per video.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    paths = expand_inputs(inputs)
    outs = output_paths(paths, outdir, fmt)
    report = CorpusReport()
    Path(outdir).mkdir(parents=True, exist_ok=True)
    corpus_bar = tqdm(total=len(paths), desc="corpus", unit="video", disable=not progress, position=0)
    try:
        for src, dst in zip(paths, outs):
            if dst.exists() and not overwrite:
                report.outcomes.append(Outcome(src, dst, "skipped"))
                corpus_bar.update(1)
                continue
            bar = tqdm(desc=src.name[:30], unit="frame", disable=not progress, position=1, leave=False)
            try:
                info = analyzer.write_video(src, dst, format=fmt, progress=lambda n: bar.update(n - bar.n),
                                            on_open=lambda s: setattr(bar, "total", s.frame_count or None))
                report.outcomes.append(Outcome(src, dst, "done", frames=info["frames"], faces=info["faces"],
                                               elapsed=info["elapsed"]))
                if info["faces"] == 0:
                    tqdm.write(f"warning: {src}: no face found in any of its {info['frames']} frames")
            except InputError as e:
                report.outcomes.append(Outcome(src, dst, "failed", reason=str(e.reason)))
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    report.outcomes.append(Outcome(src, dst, "failed", reason=f"disk full writing {dst}"))
                    report.stopped = f"no space left on the device holding {Path(outdir).resolve()}; free space and rerun (finished outputs are kept and skipped)"
                    break
                report.outcomes.append(Outcome(src, dst, "failed", reason=f"{e.strerror or e} ({e.filename or dst})"))
            except Exception as e:  # one input's failure must not end the corpus
                report.outcomes.append(Outcome(src, dst, "failed", reason=f"{type(e).__name__}: {e}"))
            finally:
                bar.close()
            corpus_bar.update(1)
    finally:
        corpus_bar.close()
    report.elapsed = time.perf_counter() - t0
    return report
