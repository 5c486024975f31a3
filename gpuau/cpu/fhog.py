"""Felzenszwalb HOG (FHOG) of aligned faces, Numba (serial; large batches split between the calling
thread and the helper thread, each face computed by the same serial code).

Port of dlib's ``impl_fhog::impl_extract_fhog_features`` (dlib/image_transforms/fhog.h) as OpenFace
calls it from ``Extract_FHOG_descriptor`` (Face_utils.cpp): 31 channels per cell (18
contrast-sensitive orientations, 9 contrast-insensitive, 4 texture energies), flattened cell row by
cell row, channel fastest.  Everything is computed in float32 in the order dlib's SIMD code computes it (dlib 19.x).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu import threads
from gpuau.kernels.fhog import NUM_CHANNELS, check_fhog_images, fhog_layout

# dlib's 9 unit vectors (4 decimals, as written in fhog.h) for snapping gradients to orientations.
_DIRECTIONS = np.array(
    [
        [1.0000, 0.0000],
        [0.9397, 0.3420],
        [0.7660, 0.6428],
        [0.500, 0.8660],
        [0.1736, 0.9848],
        [-0.1736, 0.9848],
        [-0.5000, 0.8660],
        [-0.7660, 0.6428],
        [-0.9397, 0.3420],
    ],
    dtype=np.float32,
)


PARALLEL_MIN_FACES = 64
"""Batch size from which faces are split between the calling thread and the helper thread
(:mod:`gpuau.cpu.threads`), each computing half of them (~45 ms of work on one core).  The
pipeline's per-step batches (a few faces, on the AU thread) stay on their thread: serial calls
release the GIL, so they overlap the landmark fit, and a split there would queue behind the fit's
own work on the helper."""


@nb.njit(cache=True, nogil=True, inline="always")
def _sum4(a0, a1, a2, a3):
    # dlib's horizontal sum of a simd4f on SSE2 (movehl + shuffle): (a0 + a2) + (a1 + a3), float32
    return np.float32(np.float32(a0 + a2) + np.float32(a1 + a3))


@nb.njit(cache=True, nogil=True)
def _fhog_one(img, cell_size, cells_nr, cells_nc, vis_nr, vis_nc, simd_end, directions, out):
    # img: (H, W, C) uint8 with C = 1 or 3 (BGR); out: (hog_nr * hog_nc * 31,) float32.
    # dlib computes 8 pixels of a row at a time in float32 SIMD lanes, then the last columns
    # (that do not fill 8 lanes) with scalar code; the two paths break ties between colour
    # channels differently and round the bilinear weights in a different order, so both are kept.
    f32 = np.float32
    nch = img.shape[2]
    cs = f32(cell_size)
    hog_nr = cells_nr - 2
    hog_nc = cells_nc - 2
    # histograms padded by one cell on each side, as dlib's
    hist = np.zeros((cells_nr + 2, cells_nc + 2, 18), np.float32)
    norm = np.zeros((cells_nr, cells_nc), np.float32)
    half = f32(0.5)
    one = f32(1.0)
    width = img.shape[1]
    gxs = np.empty(width, np.float32)
    gys = np.empty(width, np.float32)
    lengths = np.empty(width, np.float32)
    orientations = np.empty(width, np.int64)
    for y in range(1, vis_nr):
        yp = f32((float(f32(y)) + 0.5) / float(cs) - 0.5)
        iyp = int(np.floor(yp))
        vy0 = f32(yp - f32(iyp))
        vy1 = f32(1.0 - float(vy0))
        # a row's gradients, then their orientations, pixel by pixel without branches (the loops vectorise),
        # then the histogram votes in dlib's pixel order
        for x in range(1, vis_nc):
            simd = x < simd_end
            # gradient of the channel with the largest magnitude
            gx = np.int32(0)
            gy = np.int32(0)
            best_len = np.int32(-1)
            for k in range(nch):
                ch = nch - 1 - k  # red, green, blue in BGR storage
                dx = np.int32(img[y, x + 1, ch]) - np.int32(img[y, x - 1, ch])
                dy = np.int32(img[y + 1, x, ch]) - np.int32(img[y - 1, x, ch])
                ln = dx * dx + dy * dy
                # SIMD lanes keep the later channel on ties; the scalar tail keeps the earlier one
                better = ln > best_len or (simd and ln == best_len)
                best_len = ln if better else best_len
                gx = dx if better else gx
                gy = dy if better else gy
            gxs[x] = f32(gx)
            gys[x] = f32(gy)
            lengths[x] = np.sqrt(f32(best_len))
        for x in range(1, vis_nc):
            fgx = gxs[x]
            fgy = gys[x]
            best_dot = f32(0.0)
            best_o = 0
            for o in range(9):
                dot = f32(f32(fgx * directions[o, 0]) + f32(fgy * directions[o, 1]))
                positive = dot > best_dot
                negative = not positive and -dot > best_dot
                best_o = o if positive else (o + 9 if negative else best_o)
                best_dot = dot if positive else (-dot if negative else best_dot)
            orientations[x] = best_o
        for x in range(1, vis_nc):
            simd = x < simd_end
            v = lengths[x]
            best_o = orientations[x]
            if simd:
                xp = f32(f32(f32(x) + half) / cs + half)
                ixp = int(xp)  # truncation; xp > 0 (index into the padded histogram)
                vx0 = f32(xp - f32(ixp))
                vx1 = f32(one - vx0)
                vx1 = f32(vx1 * v)
                vx0 = f32(vx0 * v)
                w11 = f32(vy1 * vx1)
                w01 = f32(vy0 * vx1)
                w10 = f32(vy1 * vx0)
                w00 = f32(vy0 * vx0)
                c0 = ixp
            else:
                xp = f32((float(x) + 0.5) / float(cell_size) - 0.5)
                ixp = int(np.floor(xp))
                vx0 = f32(xp - f32(ixp))
                vx1 = f32(1.0 - float(vx0))
                w11 = f32(f32(vy1 * vx1) * v)
                w01 = f32(f32(vy0 * vx1) * v)
                w10 = f32(f32(vy1 * vx0) * v)
                w00 = f32(f32(vy0 * vx0) * v)
                c0 = ixp + 1
            r0 = iyp + 1
            hist[r0, c0, best_o] = f32(hist[r0, c0, best_o] + w11)
            hist[r0 + 1, c0, best_o] = f32(hist[r0 + 1, c0, best_o] + w01)
            hist[r0, c0 + 1, best_o] = f32(hist[r0, c0 + 1, best_o] + w10)
            hist[r0 + 1, c0 + 1, best_o] = f32(hist[r0 + 1, c0 + 1, best_o] + w00)

    for r in range(cells_nr):
        for c in range(cells_nc):
            acc = f32(0.0)
            for o in range(9):
                s = f32(hist[r + 1, c + 1, o] + hist[r + 1, c + 1, o + 9])
                acc = f32(acc + f32(s * s))
            norm[r, c] = acc

    eps = f32(0.0001)
    lo = f32(0.2)
    tenth = f32(0.1)
    tex = f32(2 * 0.2357)
    nn = np.empty(4, np.float32)
    n = np.empty(4, np.float32)
    t = np.empty(4, np.float32)
    h = np.empty(4, np.float32)
    for y in range(hog_nr):
        for x in range(hog_nc):
            # the 4 blocks around cell (y+1, x+1): lanes 0..3 of dlib's z1 + z2 + z3 + z4
            s0 = f32(f32(f32(norm[y + 1, x + 1] + norm[y + 1, x + 2]) + norm[y + 2, x + 1]) + norm[y + 2, x + 2])
            s1 = f32(f32(f32(norm[y, x + 1] + norm[y, x + 2]) + norm[y + 1, x + 1]) + norm[y + 1, x + 2])
            s2 = f32(f32(f32(norm[y + 1, x] + norm[y + 1, x + 1]) + norm[y + 2, x]) + norm[y + 2, x + 1])
            s3 = f32(f32(f32(norm[y, x] + norm[y, x + 1]) + norm[y + 1, x]) + norm[y + 1, x + 1])
            nn[0] = f32(lo * np.sqrt(f32(s0 + eps)))
            nn[1] = f32(lo * np.sqrt(f32(s1 + eps)))
            nn[2] = f32(lo * np.sqrt(f32(s2 + eps)))
            nn[3] = f32(lo * np.sqrt(f32(s3 + eps)))
            for k in range(4):
                n[k] = f32(tenth / nn[k])
                t[k] = f32(0.0)
            base = (y * hog_nc + x) * 31
            for o0 in range(0, 18, 3):
                # dlib adds the three orientations of a group before adding them to t
                for k in range(4):
                    h0 = f32(min(hist[y + 2, x + 2, o0], nn[k]) * n[k])
                    h1 = f32(min(hist[y + 2, x + 2, o0 + 1], nn[k]) * n[k])
                    h2 = f32(min(hist[y + 2, x + 2, o0 + 2], nn[k]) * n[k])
                    t[k] = f32(t[k] + f32(f32(h0 + h1) + h2))
                for o in range(o0, o0 + 3):
                    for k in range(4):
                        h[k] = f32(min(hist[y + 2, x + 2, o], nn[k]) * n[k])
                    out[base + o] = _sum4(h[0], h[1], h[2], h[3])
            for o in range(9):
                sm = f32(hist[y + 2, x + 2, o] + hist[y + 2, x + 2, o + 9])
                for k in range(4):
                    h[k] = f32(min(sm, nn[k]) * n[k])
                out[base + 18 + o] = _sum4(h[0], h[1], h[2], h[3])
            for k in range(4):
                out[base + 27 + k] = f32(t[k] * tex)


@nb.njit(cache=True, nogil=True)
def _fhog_range(images, layout, directions, out, start, stop):
    """FHOG of faces ``start`` to ``stop - 1``, one at a time: ``images`` (N, H, W, C) uint8, ``layout``
    (6,) int64 ``[cell_size, cells_nr, cells_nc, vis_nr, vis_nc, simd_end]``, ``out`` (N, R * C * 31) float32."""
    for i in range(start, stop):
        _fhog_one(images[i], layout[0], layout[1], layout[2], layout[3], layout[4], layout[5], directions, out[i])


def fhog(images: np.ndarray, cell_size: int = 8) -> np.ndarray:
    """FHOG descriptors of a batch of faces, as OpenFace's ``Extract_FHOG_descriptor``.

    Port of dlib::extract_fhog_features (dlib/image_transforms/fhog.h) and
    FaceAnalysis::Extract_FHOG_descriptor (Face_utils.cpp).

    Parameters
    ----------
    images : (N, H, W, 3) uint8 BGR, or (N, H, W) uint8 greyscale
        Aligned faces (112 x 112 in the AU stage).
    cell_size : int
        Cell side in pixels (OpenFace uses 8).

    Returns
    -------
    (N, R * C * 31) float32
        Cells row by row (``R, C`` = :func:`gpuau.kernels.fhog.fhog_layout`'s ``hog_nr, hog_nc``; 12 x 12 for 112 x 112), the 31
        channels of a cell contiguous: 4464 values for a 112 x 112 face.
    """
    images = check_fhog_images(np, images)
    lay = fhog_layout(images.shape[1], images.shape[2], cell_size)
    out = np.zeros((images.shape[0], lay.hog_nr * lay.hog_nc * NUM_CHANNELS), np.float32)
    if lay.hog_nr == 0 or lay.hog_nc == 0 or images.shape[0] == 0:
        return out
    layout = np.array([cell_size, lay.cells_nr, lay.cells_nc, lay.vis_nr, lay.vis_nc, lay.simd_end], np.int64)
    threads.run_range(_fhog_range, images.shape[0], images, layout, _DIRECTIONS, out,
                      split=images.shape[0] >= PARALLEL_MIN_FACES)
    return out
