"""The rows of one output table as an analysis makes them: streamed to an OpenFace CSV or to a
Parquet file's temporary row store in chunks, or kept for an in-memory table.

Every analysis loop that writes a table (:meth:`gpuau.pipeline.Analyzer.write_video`, its
multi-face variant, and each stream of :class:`gpuau.engine.Engine`) adds its non-AU rows here as
frames are analysed and hands over the AU columns at the end, when the offline AU pass is done.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from gpuau._atomic import temp_beside
from gpuau.io import openface_csv
from gpuau.io.openface_csv import OpenFaceCSVWriter, kept_columns, openface_columns, write_parquet_row_groups


class RowWriter:
    """Non-AU rows of one table, then its AU columns.

    Every ``chunk`` rows go to an :class:`~gpuau.io.OpenFaceCSVWriter` (CSV output), or to a temporary
    file beside a Parquet output that :meth:`close` converts row group by row group (memory stays
    bounded on long videos either way); without an output file the rows are kept until :meth:`close`
    returns the columns.  Used as a context manager, an exception before :meth:`close` drops the
    unfinished output (:meth:`abort`).

    Parameters
    ----------
    output : path-like or None
        The file to write (atomically, at :meth:`close`); None keeps the table in memory.
    fmt : {"csv", "parquet"}
    au_names : (reg_names, cls_names)
        The AU models' names: the CSV's AU columns (OpenFace's order).
    chunk : int
        Rows per write (to the CSV or to the Parquet output's row file).
    files : sequence of str, optional
        An image folder's file names in frame order (:attr:`gpuau.video.VideoSource.file_names`): each
        row gets gpuau's ``file`` column, the name of its frame's image (after the AU columns).
    gaze : bool
        The rows have the gaze and eye-landmark columns (:func:`~gpuau.io.openface_columns`).
    columns : tuple of str, optional
        The column groups the table keeps (:func:`~gpuau.io.column_groups`; FeatureExtraction's output flags); None:
        all.  The rows added hold every column of :attr:`names` all the same.

    Attributes
    ----------
    names : list of str
        The non-AU columns (:func:`~gpuau.io.openface_columns`), the order of a row's values.
    kept : list of str
        Those of them the table keeps (all but the groups ``columns`` leaves out): what the CSV chunks, the Parquet
        output's row file and the in-memory blocks hold.
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
                 files: "Sequence[str] | None" = None, gaze: bool = False, columns: "tuple | None" = None):
        self.output = None if output is None else Path(output)
        self.fmt, self.chunk = fmt, int(chunk)
        self.files = files
        self.names = openface_columns(gaze=gaze)
        self.groups = columns
        self.kept = kept_columns(self.names, columns)  # the table's non-AU columns, of which rows keep the values
        self._index = [self.names.index(n) for n in self.kept]
        self.rows = 0
        self._pending: list = []
        self._blocks: list = []
        self._writer = None
        self._spill = self._spill_path = None  # Parquet output: float64 rows, appended until close()
        if self.output is not None and fmt == "csv":
            self._writer = OpenFaceCSVWriter(self.output, kept_columns(
                openface_columns(*au_names, gaze=gaze, file=files is not None), columns))
        elif self.output is not None:
            openface_csv.require_pyarrow()  # now, not when the analysis is done
            self._spill, self._spill_path = temp_beside(self.output, "wb")

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
        block = np.array(self._pending).reshape(len(self._pending), len(self.names))[:, self._index]
        self._pending = []
        if self._writer is not None:
            self._writer.write_rows(self._columns(block))
        elif self._spill is not None:
            np.ascontiguousarray(block, np.float64).tofile(self._spill)
        else:
            self._blocks.append(block)

    def _columns(self, block: np.ndarray) -> dict:
        """The non-AU columns of ``block``'s rows, with ``file`` (from each row's frame number) for image folders."""
        columns = {n: block[:, j] for j, n in enumerate(self.kept)}
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
        aus = {c: aus[c] for c in kept_columns(aus, self.groups)}
        if self._writer is not None:
            self._writer.close(aus, postprocessed=postprocessed)
            return None
        if self._spill is not None:
            self._spill.close()
            try:
                write_parquet_row_groups(self.output, self._row_groups(aus))
            finally:
                self._spill_path.unlink(missing_ok=True)
            return None
        rows = np.concatenate(self._blocks) if self._blocks else np.zeros((0, len(self.kept)))
        return self._table(rows, aus)

    def _row_groups(self, aus: dict):
        """The table, :data:`~gpuau.io.openface_csv.PARQUET_ROW_GROUP` rows at a time, read back from the row file."""
        width = len(self.kept)
        step = openface_csv.PARQUET_ROW_GROUP
        for start in range(0, max(self.rows, 1), step):
            n = min(step, self.rows - start)
            block = np.fromfile(self._spill_path, np.float64, count=n * width, offset=start * width * 8)
            yield self._table(block.reshape(n, width), {c: v[start:start + n] for c, v in aus.items()})

    def _table(self, rows: np.ndarray, aus: dict) -> dict:
        """``rows``' columns, then the AU columns, then ``file``: the table or one of its row groups."""
        columns = {**self._columns(rows), **aus}
        if "file" in columns:
            columns["file"] = columns.pop("file")  # last, as in the CSV
        return columns

    def abort(self) -> None:
        """Drop the output: the file is never created (or is left as it was)."""
        if self._writer is not None:
            self._writer.abort()
        if self._spill is not None:
            self._spill.close()
            self._spill_path.unlink(missing_ok=True)
        self._pending, self._blocks = [], []
