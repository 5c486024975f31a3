"""What became of one input of a run: done (frames, faces, time), skipped, or failed with the reason in words.

Shared by the runners of many inputs: the batched engine, corpus runs, their worker processes and Ray actors.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from gpuau.video import InputError, no_face_notes


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
    disk_full: bool = False  # the output's device was full: no later input can be written either
    result: object = None  # the in-memory table (gpuau.pipeline.Result) of an engine job without output file

    def warnings(self) -> list:
        """What a finished input warns of: no face in any frame, and the reason's notes (an image folder's images
        OpenFace skips, frames decoded against the container's count, a rotated video's turn)."""
        if self.status != "done":
            return []
        return no_face_notes(self.frames, self.faces) + ([self.reason] if self.reason else [])

    def describe(self) -> str:
        """One line: status, input, and frames, faces, time and output (done), or the reason (failed)."""
        head = f"{self.status:<8} {self.input}"
        if self.status == "skipped":
            return f"{head}: {self.output} exists"
        if self.status == "failed":
            return f"{head}: {self.reason}"
        speed = f" ({self.frames / self.elapsed:.1f} frames/s)" if self.elapsed > 0 else ""
        return (f"{head}: {self.frames} frames, {self.faces} with a face, {self.elapsed:.1f} s{speed} "
                f"-> {self.output}")


def failed_outcome(src, dst, error: Exception) -> Outcome:
    """The failed outcome of an input whose analysis raised ``error``: the reason in words (with the fix an
    :class:`~gpuau.video.InputError` gives), and ``disk_full`` when the output's device is full."""
    if isinstance(error, InputError):  # naming the file at fault where it is not the input (an image of a folder)
        return Outcome(src, dst, "failed", reason=error.explanation if Path(error.path) == Path(src) else str(error))
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return Outcome(src, dst, "failed", reason=f"disk full writing {dst}", disk_full=True)
        return Outcome(src, dst, "failed", reason=f"{error.strerror or error} ({error.filename or dst})")
    return Outcome(src, dst, "failed", reason=f"{type(error).__name__}: {error}")
