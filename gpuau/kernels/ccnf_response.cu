// CCNF patch expert response maps of a batch of landmarks; twin of gpuau/cpu/ccnf_response.py.
// Port of CCNF_patch_expert::ResponseOpenBlas and im2colContrastNormBias, CCNF_patch_expert.cpp.
//
// One block per landmark, one thread per response-map position (y * RESP_W + x):
//   1. the area of interest, the neuron rows and the neuron gains (2 alpha, 0 for alpha <= 1e-4)
//      go to shared memory;
//   2. each thread normalises its PATCH_H x PATCH_W window as OpenFace's build does (float32 sum in
//      row-major order, mean, sum of squares in column-major order with the last FUSED_SQUARES..N_IN
//      squares fused, 1 / L2 norm rounded from double) and evaluates every neuron as OpenBLAS's sgemm
//      does: one fmaf chain from 0 over [1, window taps column-major] x [bias, filter], or, for the
//      positions of its dot-product path, 16 such chains over the taps k = l (mod 16) summed by
//      lane_sum; then adds 2 alpha / (1 + expf(-x)) in double (glibc's expf), rounded to float32
//      after each neuron (neurons with alpha <= 1e-4 skipped);
//   3. the map is multiplied by the expert's CCNF covariance Sigma as sgemm does with one row (16
//      fmaf chains over q = l (mod 16) summed by lane_sum from 32 values on, one chain below), Sigma
//      through shared memory in coalesced column tiles, and shifted by min(min(map), 0) (a
//      shared-memory min reduction).
// These are the twin's orders (its docstring gives OpenBLAS's rules), so the maps equal the twin's
// bit for bit.
//
// defines: RESP_H=11 RESP_W=11 PATCH_H=11 PATCH_W=11 NEURONS=7
// defines: RESP_H=15 RESP_W=15 PATCH_H=11 PATCH_W=11 NEURONS=7
// defines: RESP_H=3 RESP_W=3 PATCH_H=11 PATCH_W=11 NEURONS=7

#define AREA_H (RESP_H + PATCH_H - 1)
#define AREA_W (RESP_W + PATCH_W - 1)
#define AREA_SIZE (AREA_H * AREA_W)
#define N_IN (PATCH_H * PATCH_W)
#define ROW (N_IN + 1)
#define N_RESP (RESP_H * RESP_W)
// threads per block: the next power of two >= N_RESP (at least one warp), for the min reduction;
// N_RESP <= 256 (windows up to 16 x 16) keeps the Sigma tile within 48 KB of shared memory
#define THREADS (N_RESP <= 32 ? 32 : N_RESP <= 64 ? 64 : N_RESP <= 128 ? 128 : 256)

#include "sgemm_order.cuh"

#define SIGMA_TILE 32  // a multiple of LANES
// the first of OpenFace's positions (m = x * RESP_H + y) and of the Sigma product's values that its
// sgemm computes by the dot-product path
#define DOT_ROWS DOT_FROM(N_RESP, N_IN + 1)
#define SIGMA_DOT (DOT_FROM(1, N_RESP) == 0)
// first column-major tap whose square GCC's vectorised sum (16, then 8 taps at a time) leaves fused
#define FUSED_SQUARES (N_IN / 16 * 16 + (N_IN % 16 >= 8 ? 8 : 0))

// glibc's expf (2.28 and later, its x86-64 FMA build): 2^(k/32) from a table times a cubic, in double
__constant__ unsigned long long EXP2_TABLE[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull};

__device__ float glibc_expf(float x) {
    // constants by their bits (C++14 has no hexadecimal floating literals): 32 / ln 2, 1.5 * 2^52 (adding
    // it rounds to an integer), the cubic's coefficients, the overflow and underflow bounds
    const double inv_ln2 = __longlong_as_double(0x40471547652b82fell);
    const double shift = __longlong_as_double(0x4338000000000000ll);
    const double c0 = __longlong_as_double(0x3ebc6af84b912394ll);
    const double c1 = __longlong_as_double(0x3f2ebfce50fac4f3ll);
    const double c2 = __longlong_as_double(0x3f962e42ff0c52d6ll);
    if (x > __int_as_float(0x42b17217)) return __int_as_float(0x7f800000);  // +inf
    if (x < __int_as_float(0xc2cff1b4)) return 0.0f;
    const double xd = (double)x;
    double kd = inv_ln2 * xd + shift;
    const unsigned long long ki = (unsigned long long)__double_as_longlong(kd);
    kd = kd - shift;
    const double r = fma(inv_ln2, xd, -kd);
    const double s = __longlong_as_double((long long)(EXP2_TABLE[ki % 32] + (ki << 47)));
    return (float)(fma(fma(c0, r, c1), r * r, fma(c2, r, 1.0)) * s);
}

// areas (n, AREA_H, AREA_W) float32; the experts, n_experts of them: weights (n_experts, NEURONS, ROW) float32,
// alphas (n_experts, NEURONS) float64, sigmas (n_experts, N_RESP, N_RESP) float32; area f is expert experts[f]
// (int32; outside [0, n_experts), e.g. -1 for an invisible landmark: a map of zeros); out (n, RESP_H, RESP_W).
extern "C" __global__ void __launch_bounds__(THREADS)
    ccnf_response(const float* areas, const float* weights, const double* alphas, const float* sigmas,
                  const int* experts, int n_experts, int n, float* out) {
    __shared__ float area[AREA_SIZE];
    __shared__ float w[NEURONS * ROW];
    __shared__ double gain[NEURONS];
    __shared__ float resp[N_RESP];
    __shared__ float tile[N_RESP][SIGMA_TILE + 1];  // + 1: row t of the tile in bank (t + c) % 32
    __shared__ float lo[THREADS];

    const int f = blockIdx.x;
    const int t = threadIdx.x;
    if (f >= n) return;  // whole block: no barrier is left waiting
    const int e = experts[f];
    if (e < 0 || e >= n_experts) {  // no expert: a zero map (the whole block returns)
        for (int i = t; i < N_RESP; i += THREADS) out[(long long)f * N_RESP + i] = 0.0f;
        return;
    }
    const float* a_src = areas + (long long)f * AREA_SIZE;
    for (int i = t; i < AREA_SIZE; i += THREADS) area[i] = a_src[i];
    const float* w_src = weights + (long long)e * NEURONS * ROW;
    for (int i = t; i < NEURONS * ROW; i += THREADS) w[i] = w_src[i];
    for (int i = t; i < NEURONS; i += THREADS) {
        const double alpha = alphas[(long long)e * NEURONS + i];
        gain[i] = alpha > 1e-4 ? 2.0 * alpha : 0.0;
    }
    __syncthreads();

    const bool active = t < N_RESP;
    if (active) {
        const float* win = area + (t / RESP_W) * AREA_W + t % RESP_W;
        float s = 0.0f;
        for (int yy = 0; yy < PATCH_H; ++yy)
            for (int xx = 0; xx < PATCH_W; ++xx) s += win[yy * AREA_W + xx];
        const float mean = s / (float)N_IN;
        float sq = 0.0f;
        int i = 0;
        for (int xx = 0; xx < PATCH_W; ++xx)
            for (int yy = 0; yy < PATCH_H; ++yy, ++i) {
                const float d = win[yy * AREA_W + xx] - mean;
                sq = i < FUSED_SQUARES ? sq + d * d : fmaf(d, d, sq);
            }
        float norm = sqrtf(sq);
        if (norm == 0.0f) norm = 1.0f;
        norm = (float)(1.0 / (double)norm);
        float x[NEURONS];  // neuron activations
        const int m = (t % RESP_W) * RESP_H + t / RESP_W;  // OpenFace's position index
        if (m < DOT_ROWS) {
            // one chain each, the constant 1 of the window row times the bias first
            for (int k = 0; k < NEURONS; ++k) x[k] = fmaf(1.0f, w[k * ROW], 0.0f);
            i = 1;
            for (int xx = 0; xx < PATCH_W; ++xx)
                for (int yy = 0; yy < PATCH_H; ++yy, ++i) {
                    const float v = (win[yy * AREA_W + xx] - mean) * norm;
                    for (int k = 0; k < NEURONS; ++k) x[k] = fmaf(v, w[k * ROW + i], x[k]);
                }
        } else {
            const bool adjacent_rows = m - DOT_ROWS < (N_RESP - DOT_ROWS) / 4 * 4;
            for (int k = 0; k < NEURONS; ++k) {
                float lanes[LANES];
#pragma unroll
                for (int l = 0; l < LANES; ++l) lanes[l] = 0.0f;
                // k-index i: 0 the constant 1 times the bias, then the taps t = i - 1 column-major
                for (int i0 = 0; i0 <= N_IN; i0 += LANES)
#pragma unroll
                    for (int l = 0; l < LANES; ++l) {
                        const int i = i0 + l;
                        if (i == 0) {
                            lanes[l] = fmaf(1.0f, w[k * ROW], 0.0f);
                        } else if (i <= N_IN) {
                            const int tap = i - 1;
                            const float v = (win[(tap % PATCH_H) * AREA_W + tap / PATCH_H] - mean) * norm;
                            lanes[l] = fmaf(v, w[k * ROW + i], lanes[l]);
                        }
                    }
                x[k] = lane_sum(lanes, adjacent_rows || k < NEURONS / 4 * 4);
            }
        }
        float r = 0.0f;
        for (int k = 0; k < NEURONS; ++k)
            if (gain[k] != 0.0) r = (float)((double)r + gain[k] / (1.0 + (double)glibc_expf(-x[k])));
        resp[t] = r;
    }
    __syncthreads();

    // Sigma product, Sigma staged through shared memory SIGMA_TILE columns at a time (coalesced reads)
    float lanes[LANES];  // dot-product path: lane l sums q = l (mod 16)
#pragma unroll
    for (int l = 0; l < LANES; ++l) lanes[l] = 0.0f;
    float v = 0.0f;  // idle threads hold 0: the reduction below gives min(min(map), 0)
    const float* sig = sigmas + (long long)e * N_RESP * N_RESP;
    for (int q0 = 0; q0 < N_RESP; q0 += SIGMA_TILE) {
        const int cols = N_RESP - q0 < SIGMA_TILE ? N_RESP - q0 : SIGMA_TILE;
        for (int e = t; e < N_RESP * SIGMA_TILE; e += THREADS) {
            const int p = e / SIGMA_TILE, c = e % SIGMA_TILE;
            if (c < cols) tile[p][c] = sig[p * N_RESP + q0 + c];
        }
        __syncthreads();
        if (active)
#pragma unroll
            for (int c = 0; c < SIGMA_TILE; ++c) {
                if (c >= cols) break;
                if (SIGMA_DOT)
                    lanes[c % LANES] = fmaf(resp[q0 + c], tile[t][c], lanes[c % LANES]);
                else
                    v = fmaf(resp[q0 + c], tile[t][c], v);
            }
        __syncthreads();
    }
    if (active && SIGMA_DOT) v = lane_sum(lanes, t < N_RESP / 4 * 4);
    lo[t] = v;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half >>= 1) {
        if (t < half && lo[t + half] < lo[t]) lo[t] = lo[t + half];
        __syncthreads();
    }
    float shift = lo[0];
    if (shift > 0.0f) shift = 0.0f;
    if (active) out[(long long)f * N_RESP + t] = v - shift;
}
