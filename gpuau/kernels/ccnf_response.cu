// CCNF patch expert response maps of a batch of landmarks; twin of gpuau/cpu/ccnf_response.py.
// Port of CCNF_patch_expert::ResponseOpenBlas and im2colContrastNormBias, CCNF_patch_expert.cpp.
//
// One block per landmark, one thread per response-map position (y * RESP_W + x):
//   1. the area of interest, the neuron rows and the neuron gains (2 alpha, 0 for alpha <= 1e-4)
//      go to shared memory;
//   2. each thread normalises its PATCH_H x PATCH_W window as the twin's im2col does (float32 sum in
//      row-major order, mean, sum of squares in column-major order, 1 / L2 norm rounded from double)
//      and evaluates every neuron: the bias, then + v_t * w_t over the column-major window taps t
//      (float32, product and sum each rounded: no fmaf; all neurons advance together, one
//      normalised value at a time), then adds 2 alpha / (1 + exp(-x)) in double, rounded to float32
//      after each neuron (neurons with alpha <= 1e-4 skipped);
//   3. the map is multiplied by the expert's CCNF covariance Sigma (0, then + Sigma[p][q] * map[q]
//      over q ascending, float32, no fmaf; Sigma goes through shared memory in coalesced column
//      tiles) and shifted by min(min(map), 0) (a shared-memory min reduction).
// These are the twin's summation orders, so the maps equal the twin's bit for bit where exp(double)
// rounds as the host's libm does (the emulator; CUDA's exp is within 1 ulp of it).
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

#define SIGMA_TILE 32

// areas (n, AREA_H, AREA_W) float32; the experts, n_experts of them, cycling over the areas (area f
// is expert f % n_experts: one per area, one for all, or the k visible landmarks of several faces):
// weights (n_experts, NEURONS, ROW) float32, alphas (n_experts, NEURONS) float64, sigmas
// (n_experts, N_RESP, N_RESP) float32; out (n, RESP_H, RESP_W) float32.
extern "C" __global__ void __launch_bounds__(THREADS)
    ccnf_response(const float* areas, const float* weights, const double* alphas, const float* sigmas,
                  int n_experts, int n, float* out) {
    __shared__ float area[AREA_SIZE];
    __shared__ float w[NEURONS * ROW];
    __shared__ double gain[NEURONS];
    __shared__ float resp[N_RESP];
    __shared__ float tile[N_RESP][SIGMA_TILE + 1];  // + 1: row t of the tile in bank (t + c) % 32
    __shared__ float lo[THREADS];

    const int f = blockIdx.x;
    const int t = threadIdx.x;
    if (f >= n) return;  // whole block: no barrier is left waiting
    const float* a_src = areas + (long long)f * AREA_SIZE;
    for (int i = t; i < AREA_SIZE; i += THREADS) area[i] = a_src[i];
    const int e = f % n_experts;
    const float* w_src = weights + (long long)e * NEURONS * ROW;
    for (int i = t; i < NEURONS * ROW; i += THREADS) w[i] = w_src[i];
    if (t < NEURONS) {
        const double alpha = alphas[(long long)e * NEURONS + t];
        gain[t] = alpha > 1e-4 ? 2.0 * alpha : 0.0;
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
        for (int xx = 0; xx < PATCH_W; ++xx)
            for (int yy = 0; yy < PATCH_H; ++yy) {
                const float d = win[yy * AREA_W + xx] - mean;
                sq += d * d;
            }
        float norm = sqrtf(sq);
        if (norm == 0.0f) norm = 1.0f;
        norm = (float)(1.0 / (double)norm);
        float x[NEURONS];  // neuron activations, each a chain over the window in column-major order
        for (int k = 0; k < NEURONS; ++k) x[k] = w[k * ROW];  // the constant 1 of the window row times the bias
        int i = 1;
        for (int xx = 0; xx < PATCH_W; ++xx)
            for (int yy = 0; yy < PATCH_H; ++yy, ++i) {
                const float v = (win[yy * AREA_W + xx] - mean) * norm;
                for (int k = 0; k < NEURONS; ++k) x[k] = x[k] + v * w[k * ROW + i];
            }
        float r = 0.0f;
        for (int k = 0; k < NEURONS; ++k)
            if (gain[k] != 0.0) r = (float)((double)r + gain[k] / (1.0 + exp(-(double)x[k])));
        resp[t] = r;
    }
    __syncthreads();

    // Sigma product, Sigma staged through shared memory SIGMA_TILE columns at a time (coalesced reads)
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
            for (int c = 0; c < cols; ++c) v = v + tile[t][c] * resp[q0 + c];
        __syncthreads();
    }
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
