"""OpenFace CSV (and Parquet) output with FeatureExtraction's columns and number formats.

Port of ``RecorderCSV::Open`` / ``WriteLine`` (RecorderCSV.cpp) and of the AU rewrite in
``FaceAnalyser::PostprocessOutputFile`` (FaceAnalyser.cpp): values are written ``std::fixed`` with
a precision per column group, columns separated by ``", "``.  After post-processing every AU
column (``_r`` and ``_c``) has 2 decimals.

Files are written to a temporary file in the target folder and renamed into place, so a reader
never sees a half-written file.  The streaming writer keeps only the current chunk in memory: rows
without AUs go to a temporary file and the AU columns are appended line by line when the video is
finished (the AUs are known only after the offline pass).

One column is gpuau's own: ``file``, the image file each row of an image folder comes from.  It is
text and comes after the AU columns, so every OpenFace column keeps its position.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from gpuau._atomic import atomic_write, discard, temp_beside

NUM_LANDMARKS = 68
NUM_MODES = 34
NUM_EYE_LANDMARKS = 56

_PRECISION = [
    # (column pattern, decimals; None = integer)
    (r"frame|face_id|face|success", None),
    (r"timestamp", 3),
    (r"confidence", 2),
    (r"gaze_[01]_[xyz]", 6),
    (r"gaze_angle_[xy]", 3),
    (r"eye_lmk_[xyXYZ]_\d+", 1),
    (r"pose_T[xyz]", 1),
    (r"pose_R[xyz]", 3),
    (r"[xyXYZ]_\d+", 1),
    (r"p_(scale|rx|ry|rz|tx|ty|\d+)", 3),
    (r"AU\d+_[rc]", 2),
]

TEXT_COLUMNS = ("file",)
"""Columns of text, not numbers (gpuau's, not OpenFace's), written after the AU columns."""

COLUMN_GROUPS = ("gaze", "pose", "2Dfp", "3Dfp", "pdmparams", "aus")
"""The column groups of FeatureExtraction's output flags (``-gaze -pose -2Dfp -3Dfp -pdmparams -aus``), in file
order: gaze and eye landmarks, head pose, 2D landmarks, 3D landmarks, PDM parameters, AUs.  A table of some of them
keeps its first columns (``frame, face_id, timestamp, confidence, success``; an image's ``face, confidence``) and
gpuau's ``file``, as OpenFace's table of those flags does."""

_GROUP_PATTERNS = [(r"gaze_.*|eye_lmk_.*", "gaze"), (r"pose_.*", "pose"), (r"[xy]_\d+", "2Dfp"),
                   (r"[XYZ]_\d+", "3Dfp"), (r"p_.*", "pdmparams"), (r"AU\d+_[rc]", "aus")]


def column_groups(groups) -> "tuple | None":
    """``groups`` (names of :data:`COLUMN_GROUPS`, in any case, as an iterable or a comma-separated string) checked and
    in file order; None (every group) stays None.

    Raises
    ------
    ValueError
        A name that is no group, or none at all.
    """
    if groups is None:
        return None
    names = [g.strip() for g in groups.split(",")] if isinstance(groups, str) else list(groups)
    known = {g.lower(): g for g in COLUMN_GROUPS}
    unknown = [g for g in names if not isinstance(g, str) or g.lower() not in known]
    if unknown or not names:
        raise ValueError(f"columns={groups!r}: name some of {', '.join(COLUMN_GROUPS)} (FeatureExtraction's -gaze "
                         "-pose -2Dfp -3Dfp -pdmparams -aus), or None for all")
    chosen = {known[g.lower()] for g in names}
    return tuple(g for g in COLUMN_GROUPS if g in chosen)


def column_group(name: str) -> "str | None":
    """The :data:`COLUMN_GROUPS` group of an output column; None for the columns every table has."""
    return next((group for pattern, group in _GROUP_PATTERNS if re.fullmatch(pattern, name)), None)


def kept_columns(names: Iterable[str], groups: "tuple | None") -> list:
    """``names`` of the columns a table of ``groups`` has (:func:`column_groups`; None: all), in their order."""
    names = list(names)
    return names if groups is None else [n for n in names if column_group(n) in (None, *groups)]


def openface_columns(au_reg_names=(), au_cls_names=(), *, sequence: bool = True, gaze: bool = False, pose: bool = True,
                     landmarks_2d: bool = True, landmarks_3d: bool = True, params: bool = True,
                     file: bool = False) -> list:
    """Column names in OpenFace's order (``RecorderCSV::Open``).

    Parameters
    ----------
    au_reg_names, au_cls_names : iterable of str
        AU names (``"AU01"``...); written sorted, with ``_r`` / ``_c`` suffixes.
    sequence : bool
        FeatureExtraction's ``frame, face_id, timestamp, confidence, success`` (else FaceLandmarkImg's
        ``face, confidence``).
    gaze, pose, landmarks_2d, landmarks_3d, params : bool
        Column groups to include (gaze is off unless computed).
    file : bool
        gpuau's ``file`` column (the image file of each row of an image folder), last.

    Returns
    -------
    list of str
    """
    cols = ["frame", "face_id", "timestamp", "confidence", "success"] if sequence else ["face", "confidence"]
    if gaze:
        cols += ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
        cols += [f"eye_lmk_{a}_{i}" for a in "xyXYZ" for i in range(NUM_EYE_LANDMARKS)]
    if pose:
        cols += ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    if landmarks_2d:
        cols += [f"{a}_{i}" for a in "xy" for i in range(NUM_LANDMARKS)]
    if landmarks_3d:
        cols += [f"{a}_{i}" for a in "XYZ" for i in range(NUM_LANDMARKS)]
    if params:
        cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(NUM_MODES)]
    cols += [f"{n}_r" for n in sorted(au_reg_names)]
    cols += [f"{n}_c" for n in sorted(au_cls_names)]
    if file:
        cols.append("file")
    return cols


def column_decimals(name: str, *, sequence: bool = True, postprocessed: bool = True) -> "int | None":
    """Decimals OpenFace writes for a numeric column (None for integers).

    ``confidence`` has 3 decimals in image files; ``_c`` columns have 1 decimal until
    FeatureExtraction's post-processing rewrites them with 2.  Text columns (:data:`TEXT_COLUMNS`)
    raise ValueError.
    """
    if name == "confidence" and not sequence:
        return 3
    if name.endswith("_c") and name.startswith("AU") and not postprocessed:
        return 1
    for pattern, decimals in _PRECISION:
        if re.fullmatch(pattern, name):
            return decimals
    raise ValueError(f"{name!r} is not an OpenFace output column")


def column_dtypes(names: Iterable[str]) -> dict:
    """Each column's type in gpuau's tables (Parquet files, DataFrames): ``str`` for text (:data:`TEXT_COLUMNS`),
    ``np.int32`` for the integers (frame, face_id, face, success), ``np.float64`` for the rest."""
    return {c: str if c in TEXT_COLUMNS else np.int32 if column_decimals(c) is None else np.float64 for c in names}


def _text_cell(text: str) -> str:
    """A text value as one cell: quoted (RFC 4180, quotes doubled) when it holds a separator, a quote, a
    line break or leading/trailing spaces; then it reads back with ``skipinitialspace`` readers (pandas'
    ``read_csv(..., skipinitialspace=True)``, Python's ``csv``)."""
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


FORMAT_ROWS = 4096
"""Rows formatted at a time (a few MB of Python floats, however long the table): formatted whole, the AU columns of a
10-hour video took ~1.7 KB per row at once, and a 714-column table ~27 KB per row."""


def _format_rows(columns: Mapping, names: list, *, sequence: bool, postprocessed: bool) -> list:
    """Each row of the ``names`` columns as one line, its cells joined by ", ": text cells quoted as
    :func:`_text_cell` says, numbers with :func:`column_decimals`' decimals.  Numeric rows go through one
    ``%``-format each (a third of a table's cell-by-cell formatting time)."""
    text = [n in TEXT_COLUMNS for n in names]
    if any(text):
        if not all(text):
            raise ValueError("format the text columns apart from the numeric ones")
        cells = [[_text_cell(str(x)) for x in columns[n]] for n in names]
        return [", ".join(row) for row in zip(*cells)]
    fmt = ", ".join("%d" if d is None else f"%.{d}f"
                    for d in (column_decimals(n, sequence=sequence, postprocessed=postprocessed) for n in names))
    values = [np.asarray(columns[n], np.float64).reshape(-1) for n in names]
    if not values:
        return []
    for n, v in zip(names, values):
        if len(v) != len(values[0]):
            raise ValueError(f"column {n!r} has {len(v)} values, {names[0]!r} {len(values[0])}: one per row")
    return [fmt % row for row in map(tuple, np.column_stack(values).tolist())]


class OpenFaceCSVWriter:
    """Streaming OpenFace CSV writer: rows without AUs during the video, AU columns at the end.

    Parameters
    ----------
    path : str or PathLike
    columns : list of str
        All columns in file order (see :func:`openface_columns`): the numeric columns, then the AU
        columns, then any text column (:data:`TEXT_COLUMNS`).
    sequence : bool
        FeatureExtraction (video) conventions, else FaceLandmarkImg's.

    Attributes
    ----------
    base_columns : list of str
        The columns :meth:`write_rows` takes: all but the AU columns.
    au_columns : list of str
        The columns :meth:`close` takes.

    Examples
    --------
    >>> w = OpenFaceCSVWriter(out, openface_columns(reg, cls))          # doctest: +SKIP
    >>> w.write_rows({"frame": [1, 2], ...})                            # doctest: +SKIP
    >>> w.close({"AU01_r": [...], ...})                                  # doctest: +SKIP
    """

    def __init__(self, path: "str | os.PathLike", columns: list, *, sequence: bool = True):
        self.path = Path(path)
        self.columns = list(columns)
        self.sequence = sequence
        group = [2 if c in TEXT_COLUMNS else 1 if re.fullmatch(r"AU\d+_[rc]", c) else 0 for c in self.columns]
        if group != sorted(group):
            raise ValueError("columns must be the numeric columns, then the AU columns, then the text columns")
        self._head = [c for c, g in zip(self.columns, group) if g == 0]
        self._tail = [c for c, g in zip(self.columns, group) if g == 2]
        self.base_columns = self._head + self._tail
        self.au_columns = [c for c, g in zip(self.columns, group) if g == 1]
        self._rows = 0
        # rows without their AU columns until close(), in a temporary file beside the output; text cells
        # follow a NUL, JSON-encoded (they may hold line breaks)
        self._body, self._body_path = temp_beside(self.path, "w", newline="\n")

    def write_rows(self, columns: Mapping) -> None:
        """Append rows (every column of :attr:`base_columns`, as arrays or lists of equal length)."""
        missing = [c for c in self.base_columns if c not in columns]
        if missing:
            raise KeyError(f"missing columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
        lines = _format_rows(columns, self._head, sequence=self.sequence, postprocessed=True)
        if self._tail:
            tails = _format_rows(columns, self._tail, sequence=self.sequence, postprocessed=True)
            lines = [f"{line}\0{json.dumps(tail)}" for line, tail in zip(lines, tails)]
        self._rows += len(lines)
        for line in lines:
            self._body.write(line + "\n")

    def abort(self) -> None:
        """Drop what was written; the final file is never created (or is left as it was)."""
        discard(self._body, self._body_path)

    def close(self, aus: "Mapping | None" = None, *, postprocessed: bool = True) -> Path:
        """Append the AU columns to every row and move the file into place.

        Parameters
        ----------
        aus : mapping of column name -> (rows,) array, optional
            Every AU column of the header (missing AU columns are written as 0).
        postprocessed : bool
            FeatureExtraction's final file (``_c`` with 2 decimals) or the online values (1 decimal).

        Returns
        -------
        Path
        """
        try:
            self._body.close()
            aus = aus or {}
            table = {c: np.asarray(aus.get(c, np.zeros(self._rows))) for c in self.au_columns}
            for c, v in table.items():
                if v.shape[0] != self._rows:
                    raise ValueError(f"{c}: {v.shape[0]} values for {self._rows} rows")
            with atomic_write(self.path, "w", newline="\n") as out, open(self._body_path) as body:
                out.write(", ".join(self.columns) + "\n")
                for start in range(0, self._rows, FORMAT_ROWS):
                    rows = min(FORMAT_ROWS, self._rows - start)
                    au_lines = [", " + line for line in _format_rows(
                        {c: v[start:start + rows] for c, v in table.items()}, self.au_columns,
                        sequence=self.sequence, postprocessed=postprocessed)] if table else [""] * rows
                    for line, au in zip(itertools.islice(body, rows), au_lines):
                        head, _, tail = line.rstrip("\n").partition("\0")
                        out.write(head + au + (", " + json.loads(tail) if tail else "") + "\n")
        finally:
            Path(self._body_path).unlink(missing_ok=True)
        return self.path


def write_openface_csv(path: "str | os.PathLike", columns: Mapping, *, order: "list | None" = None, sequence: bool = True,
                       postprocessed: bool = True) -> Path:
    """Write a whole table as an OpenFace CSV.

    Parameters
    ----------
    path : str or PathLike
    columns : mapping of column name -> (rows,) array
    order : list of str, optional
        Column order; defaults to the keys of ``columns`` in OpenFace's order.
    sequence, postprocessed : bool
        See :class:`OpenFaceCSVWriter`.

    Returns
    -------
    Path
    """
    order = order or _openface_order(columns)
    rows = len(columns[order[0]]) if order else 0
    uneven = [c for c in order if len(columns[c]) != rows]
    if uneven:
        raise ValueError(f"column {uneven[0]!r} has {len(columns[uneven[0]])} values, {order[0]!r} {rows}: one per row")
    writer = OpenFaceCSVWriter(path, order, sequence=sequence)
    try:
        for start in range(0, rows, FORMAT_ROWS):
            writer.write_rows({c: columns[c][start:start + FORMAT_ROWS] for c in writer.base_columns})
    except BaseException:
        writer.abort()
        raise
    return writer.close({c: columns[c] for c in writer.au_columns}, postprocessed=postprocessed)


def _openface_order(columns: Mapping) -> list:
    names = list(columns)
    reg = [n[:-2] for n in names if re.fullmatch(r"AU\d+_r", n)]
    cls = [n[:-2] for n in names if re.fullmatch(r"AU\d+_c", n)]
    sequence = "frame" in columns
    full = openface_columns(reg, cls, sequence=sequence, gaze=True, file="file" in columns)
    rank = {c: i for i, c in enumerate(full)}
    unknown = [n for n in names if n not in rank]
    if unknown:
        raise ValueError(f"not OpenFace columns: {unknown[:5]}")
    return sorted(names, key=rank.__getitem__)


PARQUET_ROW_GROUP = 8192
"""Rows per Parquet row group (about 28 MB of FeatureExtraction's columns): the unit converted at a time."""


def require_pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or an ImportError that says how to get a pyarrow that imports.

    An installed pyarrow can fail to import too: pip lets a numpy 1.x environment take a pyarrow built for
    numpy 2 ("pyarrow requires NumPy 2.0 or newer"); the message then keeps pyarrow's reason.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("pyarrow"):
            raise
        raise ImportError("Parquet output needs pyarrow: pip install pyarrow") from e
    except ImportError as e:
        raise ImportError(f"Parquet output needs pyarrow, which is installed but does not import ({e}): install one "
                          "built for this environment's numpy (with numpy 1.26: pip install 'pyarrow==17.*') or "
                          "upgrade numpy") from e
    return pa, pq


def write_openface_parquet(path: "str | os.PathLike", columns: Mapping, *, order: "list | None" = None) -> Path:
    """Write the same table as Parquet (needs pyarrow), atomically.

    Integer columns (frame, face_id, success) are int32, text columns (``file``) strings, the rest
    float64 at full precision; written :data:`PARQUET_ROW_GROUP` rows at a time.
    """
    order = order or _openface_order(columns)
    rows = len(columns[order[0]]) if order else 0
    return write_parquet_row_groups(path, ({c: columns[c][start:start + PARQUET_ROW_GROUP] for c in order}
                                           for start in range(0, max(rows, 1), PARQUET_ROW_GROUP)), order=order)


def write_parquet_row_groups(path: "str | os.PathLike", groups: Iterable[Mapping], *,
                             order: "list | None" = None) -> Path:
    """Write a table given as consecutive row groups as Parquet (needs pyarrow), atomically.

    Only one group is converted at a time, so a table read back from disk group by group never has to
    be in memory whole.

    Parameters
    ----------
    path : str or PathLike
    groups : iterable of mapping of column name -> (rows,) array
        At least one group (it may have 0 rows); every group has every column.
    order : list of str, optional
        Column order; defaults to the first group's columns in OpenFace's order.

    Returns
    -------
    Path
    """
    pa, pq = require_pyarrow()
    path = Path(path)
    groups = iter(groups)
    first = next(groups)
    order = order or _openface_order(first)
    dtypes = column_dtypes(order)
    types = {c: pa.string() if t is str else pa.from_numpy_dtype(t) for c, t in dtypes.items()}
    schema = pa.schema([(c, types[c]) for c in order])

    def table(group: Mapping):
        return pa.table({c: pa.array([str(x) for x in group[c]], pa.string()) if dtypes[c] is str
                         else pa.array(np.asarray(group[c], dtypes[c])) for c in order}, schema=schema)

    # through a Python file, whose writes raise OSError(ENOSPC) on a full disk (pyarrow's own file says only
    # "N requested and M written")
    with atomic_write(path, "wb") as f, pq.ParquetWriter(f, schema) as out:
        for group in itertools.chain([first], groups):
            out.write_table(table(group))
    return path


def read_openface_csv(path: "str | os.PathLike") -> dict:
    """Read an OpenFace CSV into ``{column: array}`` (header names stripped).

    Numeric columns are float64 arrays, text columns (``file``) arrays of str.  ValueError, naming ``path``, for an
    empty file or one whose cells are not a table of numbers under its header.
    """
    with open(path, newline="") as f:
        first = next(csv.reader(f), None)
        if first is None:
            raise ValueError(f"{path}: an empty file, not an OpenFace CSV")
        header = [h.strip() for h in first]
        try:
            if not any(h in TEXT_COLUMNS for h in header):  # numbers only: NumPy's parser, ~3x faster
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "loadtxt: input contained no data")  # a header-only file
                    data = np.loadtxt(f, delimiter=",", ndmin=2).reshape(-1, len(header))
                return {h: data[:, i] for i, h in enumerate(header)}
            rows = [r for r in csv.reader(f, skipinitialspace=True) if r]
            cells = np.array(rows, dtype=str).reshape(len(rows), len(header))
            return {h: cells[:, i] if h in TEXT_COLUMNS else cells[:, i].astype(np.float64)
                    for i, h in enumerate(header)}
        except ValueError as e:
            raise ValueError(f"{path}: not an OpenFace CSV ({e})") from None


def read_openface_table(path: "str | os.PathLike") -> dict:
    """:func:`read_openface_csv`, or for a ``.parquet`` name the columns of the file :func:`write_openface_parquet`
    writes (``gpuau analyze --format parquet``)."""
    if Path(path).suffix.lower() != ".parquet":
        return read_openface_csv(path)
    _, pq = require_pyarrow()
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}
