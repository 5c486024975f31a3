"""The rows of one output table as an analysis makes them: streamed to an OpenFace CSV in chunks, or
kept for a Parquet file or an in-memory table.

Every analysis loop that writes a table (:meth:`gpuau.pipeline.Analyzer.write_video`, its
multi-face variant, and each stream of :class:`gpuau.engine.Engine`) adds its non-AU rows here as
frames are analysed and hands over the AU columns at the end, when the offline AU pass is done.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from gpuau.io.openface_csv import OpenFaceCSVWriter, openface_columns, write_openface_parquet


class RowWriter:
    """Non-AU rows of one table, then its AU columns.

    With a CSV output the rows go to an :class:`~gpuau.io.OpenFaceCSVWriter` every ``chunk`` rows
    (memory stays bounded on long videos); otherwise they are kept until :meth:`close`, which writes
    the Parquet file or returns the columns.  Used as a context manager, an exception before
    :meth:`close` drops the unfinished output (:meth:`abort`).

    Parameters
    ----------
    output : path-like or None
        The file to write (atomically, at :meth:`close`); None keeps the table in memory.
    fmt : {"csv", "parquet"}
    au_names : (reg_names, cls_names)
        The AU models' names: the CSV's AU columns (OpenFace's order).
    chunk : int
        Rows per CSV write.
    files : sequence of str, optional
        An image folder's file names in frame order (:attr:`gpuau.video.VideoSource.file_names`): each
        row gets gpuau's ``file`` column, the name of its frame's image (after the AU columns).

    Attributes
    ----------
    names : list of str
        The non-AU columns (:func:`~gpuau.io.openface_columns`), the order of a row's values.
    rows : int
        Rows added so far.

    Examples
    --------
    >>> with RowWriter("out.csv", "csv", (aus.reg_names, aus.cls_names)) as w:     # doctest: +SKIP
    ...     for row in rows:
    ...         w.add(row)
    ...     w.close(aus.finish())
    """

    def __init__(self, output: "str | os.PathLike | None", fmt: str, au_names, chunk: int = 256, *,
                 files: "Sequence[str] | None" = None):
        self.output = None if output is None else Path(output)
        self.fmt, self.chunk = fmt, int(chunk)
        self.files = files
        self.names = openface_columns()
        self.rows = 0
        self._pending: list = []
        self._blocks: list = []
        self._writer = None
        if self.output is not None and fmt == "csv":
            self._writer = OpenFaceCSVWriter(self.output, openface_columns(*au_names, file=files is not None))

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is not None:
            self.abort()

    def add(self, row: np.ndarray) -> None:
        """One row of :attr:`names`' values."""
        self._pending.append(row)
        self.rows += 1
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        block = np.array(self._pending).reshape(len(self._pending), len(self.names))
        self._pending = []
        if self._writer is not None:
            self._writer.write_rows(self._columns(block))
        else:
            self._blocks.append(block)

    def _columns(self, block: np.ndarray) -> dict:
        """The non-AU columns of ``block``'s rows, with ``file`` (from each row's frame number) for image folders."""
        columns = {n: block[:, j] for j, n in enumerate(self.names)}
        if self.files is not None:
            columns["file"] = np.array([self.files[int(k) - 1] for k in columns["frame"]], dtype=str)
        return columns

    def close(self, aus: dict, *, postprocessed: bool = True) -> "dict | None":
        """Add the AU columns (one value per row) and finish.

        Parameters
        ----------
        aus : dict[str, ndarray (rows,)]
            ``AU*_r`` and ``AU*_c`` columns.
        postprocessed : bool
            Whether the AUs went through FeatureExtraction's offline pass (the CSV's ``AU*_c``
            decimals, see :meth:`~gpuau.io.OpenFaceCSVWriter.close`).

        Returns
        -------
        dict or None
            The whole table's columns when there is no output file; None once the file is written.
        """
        self._flush()
        if self._writer is not None:
            self._writer.close(aus, postprocessed=postprocessed)
            return None
        rows = np.concatenate(self._blocks) if self._blocks else np.zeros((0, len(self.names)))
        columns = {**self._columns(rows), **aus}
        if "file" in columns:
            columns["file"] = columns.pop("file")  # last, as in the CSV
        if self.output is None:
            return columns
        write_openface_parquet(self.output, columns)
        return None

    def abort(self) -> None:
        """Drop the output: the file is never created (or is left as it was)."""
        if self._writer is not None:
            self._writer.abort()
        self._pending, self._blocks = [], []
