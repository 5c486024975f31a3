"""The steps of one scale's CCNF response maps as separate host functions, one face at a time: the
view (``Patch_experts::GetViewIdx``), the similarity to the reference shape and the areas of interest
(``Patch_experts::Response``), over the package's kernels.  The fit runs them batched on the device
(``response_areas``, ``clnf.patch_responses``); the tests check it, and the kernels, against these."""
import numpy as np

from gpuau.cpu.response_areas import area_matrices, nearest_views
from gpuau.cpu.similarity import similarity
from gpuau.device import resolve_device

_F = np.float32


def view_index(ccnf, params_global) -> "int | np.ndarray":
    """Index of ``ccnf``'s view whose centre is closest to the rotation of ``params_global``: an int for
    ``(6,)``, an ``(F,)`` int32 array for ``(F, 6)``."""
    g = np.asarray(params_global, dtype=_F)
    idx = nearest_views(np.ascontiguousarray(g.reshape(-1, g.shape[-1])[:, 1:4]), ccnf.centers)
    return int(idx[0]) if g.ndim == 1 else idx


def similarity_to_reference(landmarks_2d: np.ndarray, reference_2d: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """``(sim_img_to_ref, sim_ref_to_img)``, ``(..., 2, 2)`` float32: the similarity between the image shape
    and the reference shape of a patch scale and its inverse, for one face ``(n, 2)`` or a stack ``(F, n, 2)``."""
    src = np.asarray(landmarks_2d, _F)
    sims = similarity(src.reshape(-1, *src.shape[-2:]), np.asarray(reference_2d, _F).reshape(-1, *src.shape[-2:]))
    sims = sims.reshape(src.shape[:-2] + sims.shape[1:])
    return sims[..., 0, :, :], sims[..., 1, :, :]


def extract_areas(gray: np.ndarray, centres: np.ndarray, sim_ref_to_img: np.ndarray, size: int, backend="cpu") -> np.ndarray:
    """``(N, size, size)`` float32 areas of interest around ``centres`` in a ``(H, W)`` float32 frame, sampled
    in the patch experts' reference frame (``warpAffine(..., WARP_INVERSE_MAP | INTER_LINEAR)``, zero border)
    by the ``warp_affine`` kernel."""
    m = area_matrices(centres, sim_ref_to_img, size)
    images = np.ascontiguousarray(gray, _F)[None]
    return resolve_device(backend).kernels.warp_affine(images, np.zeros(m.shape[0], np.int64), m, size, size)
