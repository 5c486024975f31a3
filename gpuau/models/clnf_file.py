"""Parsers of OpenFace's CLNF model description files.

* the main file (``main_clnf_general.txt``): one ``LandmarkDetector`` line (the CLNF file), then
  ``LandmarkDetector_part <file> <name> <main idx> <part idx> ...`` lines for the hierarchical part
  models, and ``DetectionValidator`` / ``FaceDetConversion`` lines (port of ``CLNF::Read``,
  LandmarkDetectorModel.cpp);
* a CLNF file (``clnf_general.txt``): ``PDM``, ``Triangulations`` and one ``PatchesCCNF`` line
  per patch scale (port of ``CLNF::Read_CLNF``).

Paths are resolved relative to the file's folder, as OpenFace does.
"""
from __future__ import annotations

import os
from pathlib import Path


def parse_main_clnf(path: "str | os.PathLike") -> dict:
    """Parse a main CLNF description file.

    Returns
    -------
    dict
        ``clnf``: Path of the CLNF file; ``parts``: list of ``(name, Path, [(main_idx, part_idx), ...])``;
        ``validator``: Path or None.
    """
    path = Path(path)
    root = path.parent
    out: dict = {"clnf": None, "parts": [], "validator": None}
    for line in path.read_text().splitlines():
        tok = line.split()
        if len(tok) < 2:
            continue
        module, location = tok[0], root / tok[1]
        if module == "LandmarkDetector":
            out["clnf"] = location
        elif module == "LandmarkDetector_part":
            idx = [int(t) for t in tok[3:]]
            out["parts"].append((tok[2], location, list(zip(idx[0::2], idx[1::2]))))
        elif module == "DetectionValidator":
            out["validator"] = location
    if out["clnf"] is None:
        raise ValueError(f"{path}: no LandmarkDetector line")
    return out


def parse_clnf(path: "str | os.PathLike") -> dict:
    """Parse a CLNF file.

    Returns
    -------
    dict
        ``pdm``: Path; ``ccnf``: list of Paths (one per patch scale, in file order);
        ``triangulations``: Path or None.
    """
    path = Path(path)
    root = path.parent
    out: dict = {"pdm": None, "ccnf": [], "triangulations": None}
    for line in path.read_text().splitlines():
        module, _, location = line.strip().partition(" ")
        if not location:
            continue
        loc = root / location.strip()
        if module == "PDM":
            out["pdm"] = loc
        elif module == "PatchesCCNF":
            out["ccnf"].append(loc)
        elif module == "Triangulations":
            out["triangulations"] = loc
    if out["pdm"] is None or not out["ccnf"]:
        raise ValueError(f"{path}: expected a PDM line and PatchesCCNF lines")
    return out
