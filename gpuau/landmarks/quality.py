"""Quality presets of the landmark fit: OpenFace's exact parameters, or a faster approximation.

A :class:`Quality` is a :class:`~gpuau.landmarks.clnf.FitParameters` for the main CLNF model plus the
hierarchical part models (inner face, eyes) that are fitted after it; :func:`load_clnf` builds the
:class:`~gpuau.landmarks.clnf.CLNF` that the trackers use.  ``"exact"`` is FeatureExtraction's
``FaceModelParameters`` with every part model (identical output to OpenFace); ``"fast"`` fits the
main model alone, trading under a pixel of landmark accuracy for about half the landmark time
(measured figures: README.md, "Quality: exact vs fast").

Port of the fields of ``FaceModelParameters::init`` (LandmarkDetectorParameters.cpp) that CLNF uses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from gpuau.landmarks.clnf import CLNF, FitParameters


@dataclass(frozen=True)
class Quality:
    """One preset of the CLNF fit.

    Attributes
    ----------
    name : str
    parameters : FitParameters
        Main-model parameters (window sizes per scale, NU-RLMS iterations, ...).
    parts : dict or None
        Hierarchical part models to fit (``"left_eye_28"``, ``"right_eye_28"``, ``"inner"``), each
        with the :class:`FitParameters` fields that replace OpenFace's for that part (``{}``: none);
        None fits every part that ``main_clnf_general.txt`` names with OpenFace's parameters.
    """

    name: str
    parameters: FitParameters = FitParameters()
    parts: "dict | None" = None


QUALITIES = {
    "exact": Quality("exact"),
    # The main model only: no inner-face or eye refinement (the part models cost about half of the
    # landmark time; their effect on the landmarks is under a pixel).
    "fast": Quality("fast", parts={}),
}


def get_quality(quality: "str | Quality") -> Quality:
    """The :class:`Quality` named ``quality`` (one of :data:`QUALITIES`, in any case), or ``quality`` itself."""
    if isinstance(quality, Quality):
        return quality
    try:
        return QUALITIES[quality.lower() if isinstance(quality, str) else quality]
    except KeyError:
        raise ValueError(f"quality={quality!r}: use one of {tuple(QUALITIES)}") from None


def load_clnf(models: "str | os.PathLike | None" = None, quality: "str | Quality" = "exact") -> CLNF:
    """:meth:`CLNF.load` with the parameters and part models of ``quality``."""
    q = get_quality(quality)
    clnf = CLNF.load(models, q.parameters)
    if q.parts is None:
        return clnf
    return replace(clnf, parts=[replace(p, parameters=replace(p.parameters, **q.parts[p.name]))
                                for p in clnf.parts if p.name in q.parts])
