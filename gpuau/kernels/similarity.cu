// Similarity (scale x rotation) between shape pairs and its inverse, one thread per pair: similarity.cuh's
// similarity_pair.  Twin: gpuau/cpu/similarity.py.

#include "similarity.cuh"

#define MAX_POINTS 68

// src (F, n, 2), dst (G, n, 2) with G = F or 1, out (F, 2, 2, 2): [f][0] the similarity, [f][1] its inverse.
extern "C" __global__ void similarity(const float* src, const float* dst, float* out, int faces, int n, int dst_count)
{
    const int f = blockIdx.x * blockDim.x + threadIdx.x;
    if (f >= faces) return;
    float bs[2 * MAX_POINTS], bd[2 * MAX_POINTS];
    similarity_pair(src + (size_t)f * n * 2, dst + (size_t)(dst_count > 1 ? f : 0) * n * 2, n, bs, bd,
                    out + (size_t)f * 8);
}
