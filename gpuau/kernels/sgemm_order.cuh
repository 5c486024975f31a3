// The float32 summation orders of OpenBLAS 0.3.21's AVX-512 small-matrix sgemm kernel, which OpenFace's
// CCNF products and PDM::CalcShape3D run through; twin of gpuau/cpu/sgemm_order.py (where the rules are
// described).  Included by ccnf_response.cu and pdm_fit.cu.

#define LANES 16  // OpenBLAS's AVX-512 float32 vector
// the first of the rows of an (M x K) . (K x n) product that the kernel computes by its dot-product path
// (M if none): the last M % 16 rows when 1 to 8 of them and K >= 32
#define DOT_FROM(M, K) ((M) % LANES >= 1 && (M) % LANES <= 8 && (K) >= 32 ? (M) - (M) % LANES : (M))

// The sum of LANES partial sums: adjacent pairs level by level (a value of a block of 4 rows or 4 columns),
// else the upper half onto the lower one level by level (_mm512_reduce_add_ps).  Unrolled, so that the
// lanes stay registers (every index a constant) in callers whose loops over lanes are unrolled too.
__device__ __forceinline__ float lane_sum(float* lanes, bool adjacent) {
#pragma unroll
    for (int n = LANES / 2; n >= 1; n /= 2)
#pragma unroll
        for (int i = 0; i < n; ++i)
            lanes[i] = adjacent ? lanes[2 * i] + lanes[2 * i + 1] : lanes[i] + lanes[i + n];
    return lanes[0];
}
