"""Similarity-normalised, masked face crop that the AU predictors read.

Port of ``AlignFaceMask`` and ``extract_rigid_points`` (Face_utils.cpp).  The face is warped so that
its rigid landmarks match OpenFace's PDM mean shape scaled by 0.7 in a 112 x 112 image, then
everything outside the face triangulation (with the brow and upper jaw lifted to include the
forehead) is set to 0.  Arithmetic is float32 as in OpenFace.
"""
from __future__ import annotations

import numpy as np

from gpuau.device import resolve_device
from gpuau.cpu.fp import fmaf_arrays
from gpuau.cpu.similarity import similarity
from gpuau.landmarks.paw import triangle_map

_F = np.float32

AU_SCALE = 0.7
"""``FaceAnalyserParameters::sim_scale_au``: PDM mean-shape units to aligned pixels."""
AU_SIZE = 112
"""``FaceAnalyserParameters::sim_size_au``: aligned face width and height."""

RIGID_INDICES = np.array([1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41, 42, 45, 46, 47])
"""Landmarks that do not move with expression (``extract_rigid_points``): jaw sides, nose, eye corners."""

FOREHEAD_INDICES = np.array([0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26])
"""Landmarks moved up by 30 / 0.7 * scale pixels before masking: the top of the jaw and the brows."""


def similarity_warp(landmarks_2d: np.ndarray, params_global: np.ndarray, mean_shape: np.ndarray,
                    sim_scale: float = AU_SCALE, width: int = AU_SIZE, height: int = AU_SIZE) -> np.ndarray:
    """Affine map from the image to the aligned face, for one face or a stack of them (each gets the
    bits it gets alone).

    Port of the warp-matrix part of ``AlignFaceMask``, Face_utils.cpp.

    Parameters
    ----------
    landmarks_2d : (..., 68, 2) float
        Detected landmarks ``(x, y)``.
    params_global : (..., 6) float
        PDM global parameters fitted to those landmarks; only the translation ``[4:6]`` is used.
    mean_shape : (204,) float32
        PDM mean shape (all x, then all y, then all z).
    sim_scale : float
    width, height : int

    Returns
    -------
    (..., 2, 3) float32
        ``cv2.warpAffine`` matrices.
    """
    source = np.asarray(landmarks_2d, _F)
    n = source.shape[-2]
    # cv::Mat_<float> * double: scaled in double, rounded to float
    reference = (np.asarray(mean_shape, _F).astype(np.float64) * sim_scale).astype(_F)[: 2 * n].reshape(2, n).T
    rigid = source[..., RIGID_INDICES, :]
    scale_rot = similarity(rigid.reshape(-1, len(RIGID_INDICES), 2), reference[None, RIGID_INDICES])[:, 0]
    scale_rot = scale_rot.reshape(source.shape[:-2] + (2, 2))
    t = np.asarray(params_global, _F)[..., 4:6]
    warp = np.empty(source.shape[:-2] + (2, 3), _F)
    warp[..., :2] = scale_rot
    # T = scale_rot * (tx, ty) as OpenFace's build fuses cv::Matx's product: fmaf(m01, ty, m00 * tx)
    shift = fmaf_arrays(scale_rot[..., :, 1], t[..., None, 1], scale_rot[..., :, 0] * t[..., None, 0])
    warp[..., 0, 2] = -shift[..., 0] + _F(width // 2)
    warp[..., 1, 2] = -shift[..., 1] + _F(height // 2)
    return warp


def invert_affine(warp: np.ndarray) -> np.ndarray:
    """Destination -> source map of a forward affine warp (or of a stack of them), as
    ``cv::warpAffine`` computes it.

    Port of the ``!(flags & WARP_INVERSE_MAP)`` branch of ``cv::warpAffine`` (OpenCV imgwarp.cpp),
    in float64 in OpenCV's order (elementwise over the stack: each warp gets the bits it gets alone).

    Parameters
    ----------
    warp : (..., 2, 3) float
        Source -> destination map.

    Returns
    -------
    (..., 2, 3) float64
    """
    m = np.asarray(warp, np.float64)
    m00, m01, m02, m10, m11, m12 = (m[..., i // 3, i % 3] for i in range(6))
    d = m00 * m11 - m01 * m10
    nonzero = d != 0
    d = np.divide(1.0, d, out=np.zeros_like(d), where=nonzero)
    a00, a01, a10, a11 = m11 * d, m01 * -d, m10 * -d, m00 * d
    out = np.empty(m.shape, np.float64)
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1] = a00, a01, a10, a11
    out[..., 0, 2] = -a00 * m02 - a01 * m12
    out[..., 1, 2] = -a10 * m02 - a11 * m12
    return out


def mask_points(landmarks_2d: np.ndarray, warp: np.ndarray, sim_scale: float = AU_SCALE) -> np.ndarray:
    """The shape whose triangulation masks the aligned face: the landmarks in aligned pixels, with
    the top of the jaw and the brows lifted by ``30 / 0.7 * sim_scale`` pixels to take in the forehead
    (for one face or a stack of them; each gets the bits it gets alone).

    Port of the landmark transform of ``AlignFaceMask``, Face_utils.cpp.

    Parameters
    ----------
    landmarks_2d : (..., 68, 2) float
    warp : (..., 2, 3) float32
        From :func:`similarity_warp`.
    sim_scale : float

    Returns
    -------
    (..., 68, 2) float32
    """
    lm = np.asarray(landmarks_2d, _F)
    warp = np.asarray(warp, _F)
    # one float64 matrix product per face, as np.matmul runs a stack
    dest = np.matmul(lm.astype(np.float64), np.swapaxes(warp[..., :2], -1, -2).astype(np.float64)).astype(_F)
    dest += warp[..., None, :, 2]
    lifted = dest[..., FOREHEAD_INDICES, 1].astype(np.float64) - (30 / 0.7) * sim_scale
    dest[..., FOREHEAD_INDICES, 1] = lifted.astype(_F)
    return dest


def face_mask(landmarks_2d: np.ndarray, warp: np.ndarray, triangulation: np.ndarray,
              sim_scale: float = AU_SCALE, width: int = AU_SIZE, height: int = AU_SIZE) -> np.ndarray:
    """Pixels of the aligned face covered by the (forehead-extended) face triangulation.

    Port of the masking part of ``AlignFaceMask`` (Face_utils.cpp) with the pixel mask of
    ``PAW::PAW`` (PAW.cpp) over the whole ``width`` x ``height`` face.

    Parameters
    ----------
    landmarks_2d : (68, 2) float
    warp : (2, 3) float32
        From :func:`similarity_warp`.
    triangulation : (T, 3) int
    sim_scale : float
    width, height : int

    Returns
    -------
    (height, width) uint8
        1 inside the face, 0 outside.
    """
    dest = mask_points(landmarks_2d, warp, sim_scale)
    return (triangle_map(dest, triangulation, 0.0, 0.0, width, height) != -1).astype(np.uint8)


def align_faces_mask(images, image_index: np.ndarray, landmarks_2d: np.ndarray, params_global: np.ndarray,
                     mean_shape: np.ndarray, triangulation: np.ndarray, sim_scale: float = AU_SCALE,
                     size: int = AU_SIZE, *, device="cpu"):
    """Aligned, masked faces of a batch, as OpenFace feeds them to FHOG (one fused warp-and-mask launch).

    The warp matrices and mask shapes are computed on the host (68 points per face, the whole batch
    at once); the pixels by
    ``backend.kernels.warp_affine_masked`` on ``device`` (the ``warp.cu`` kernel on ``cuda`` and
    ``emulated``, bit-identical to the Numba twin on ``cpu``).

    Port of ``AlignFaceMask`` (rigid points, masked), Face_utils.cpp.

    Parameters
    ----------
    images : (B, H, W, 3) uint8 BGR or (B, H, W) uint8
        Full frames (NumPy, or already on ``device``).
    image_index : (N,) int
        Frame of each face.
    landmarks_2d : (N, 68, 2) float
    params_global : (N, 6) float
        Global PDM parameters fitted to each face's landmarks with the AU PDM.
    mean_shape : (204,) float32
    triangulation : (T, 3) int
    sim_scale : float
    size : int
    device : str or Backend
        Where the pixels are computed.

    Returns
    -------
    (N, size, size, 3) uint8 (or (N, size, size) for greyscale frames), on ``device``'s array
    module (NumPy, or CuPy on ``cuda``)
    """
    backend = resolve_device(device)
    n = len(landmarks_2d)
    warps = _face_warps(landmarks_2d, params_global, mean_shape, sim_scale, size)
    # cv::warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) with OpenCV <= 4.10's fixed-point arithmetic
    inverse = invert_affine(warps)
    points = mask_points(np.asarray(landmarks_2d, _F).reshape(n, -1, 2), warps, sim_scale)
    # backend.asarray uploads to, and the kernel wrapper launches on, the backend's GPU (cuda:N)
    return backend.kernels.warp_affine_masked(
        backend.asarray(images), backend.asarray(np.asarray(image_index, np.int32)), backend.asarray(inverse),
        size, size, backend.asarray(points), np.asarray(triangulation, np.int32))


def _face_warps(landmarks_2d, params_global, mean_shape: np.ndarray, sim_scale: float, size: int) -> np.ndarray:
    """(N, 2, 3) similarity warps of N faces' rigid points onto the mean shape at ``sim_scale`` in a ``size`` square."""
    n = len(landmarks_2d)
    return similarity_warp(np.asarray(landmarks_2d, _F).reshape(n, -1, 2), np.asarray(params_global, _F).reshape(n, 6),
                           mean_shape, sim_scale, size, size)


def align_output_faces(au_faces, images, image_index: np.ndarray, landmarks_2d: np.ndarray, params_global: np.ndarray,
                       mean_shape: np.ndarray, triangulation: np.ndarray, output, *, device="cpu"):
    """The faces FeatureExtraction writes with ``output``'s options, in colour: ``au_faces`` themselves when they are
    the AU stage's (:attr:`gpuau.io.AlignedFaces.au_faces`), else warped again from the frames as ``FaceAnalyser`` does
    (``AlignFaceMask`` at ``output``'s scale and size, or without the mask ``AlignFace``: the same similarity and
    bilinear warp).

    Parameters
    ----------
    au_faces : (N, 112, 112, 3) uint8
        :func:`align_faces_mask` of the batch at the AU scale and size.
    images, image_index, landmarks_2d, params_global, mean_shape, triangulation
        As for :func:`align_faces_mask`.
    output : gpuau.io.AlignedFaces
    device : str or Backend

    Returns
    -------
    (N, size, size, 3) uint8, on ``device``'s array module
    """
    if output.au_faces:
        return au_faces
    if output.masked:
        return align_faces_mask(images, image_index, landmarks_2d, params_global, mean_shape, triangulation,
                                output.sim_scale, output.size, device=device)
    backend = resolve_device(device)
    warps = _face_warps(landmarks_2d, params_global, mean_shape, output.sim_scale, output.size)
    return backend.kernels.warp_affine(backend.asarray(images), backend.asarray(np.asarray(image_index, np.int32)),
                                       backend.asarray(invert_affine(warps)), output.size, output.size)


def align_face_mask(image: np.ndarray, landmarks_2d: np.ndarray, params_global: np.ndarray, mean_shape: np.ndarray,
                    triangulation: np.ndarray, sim_scale: float = AU_SCALE, size: int = AU_SIZE) -> np.ndarray:
    """One face of :func:`align_faces_mask` on the CPU: ``image`` (H, W, 3) uint8, ``landmarks_2d``
    (68, 2), ``params_global`` (6,) -> (size, size, 3) uint8.

    Port of ``AlignFaceMask`` (rigid points, masked), Face_utils.cpp.
    """
    return align_faces_mask(image[None], np.zeros(1, np.int64), np.asarray(landmarks_2d)[None],
                            np.asarray(params_global)[None], mean_shape, triangulation, sim_scale, size)[0]
