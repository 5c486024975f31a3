// Layers of the CNN landmark detection validator for a batch of faces; twins of
// gpuau/cpu/validator_cnn.py.  Port of convolution_direct_blas, max_pooling and fully_connected,
// CNN_utils.cpp, as DetectionValidator::CheckCNN (LandmarkDetectionValidator.cpp) uses them.
//
// One thread per output value, each summing its products in the twin's order (a convolution: the
// taps in im2col column order, input map, kernel column, kernel row; a fully connected output: the
// inputs in order), starting from 0 and adding the bias last, float32 without fused multiply-add
// (--fmad=false): the twins' bits.

// maps (B, n_in, h, w), kernels (n_out, n_in, kh, kw), biases (n_out) -> out (B, n_out, h - kh + 1, w - kw + 1)
extern "C" __global__ void convolution(const float* maps, const float* kernels, const float* biases, int n_batch,
                                       int n_in, int h, int w, int n_out, int kh, int kw, float* out) {
    const int yb = h - kh + 1, xb = w - kw + 1;
    const long long total = (long long)n_batch * n_out * yb * xb;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const int x = (int)(idx % xb), y = (int)((idx / xb) % yb);
    const int o = (int)((idx / ((long long)xb * yb)) % n_out), b = (int)(idx / ((long long)xb * yb * n_out));
    const float* src = maps + (long long)b * n_in * h * w;
    const float* k = kernels + (long long)o * n_in * kh * kw;
    float acc = 0.0f;
    for (int i = 0; i < n_in; ++i)
        for (int kx = 0; kx < kw; ++kx)
            for (int ky = 0; ky < kh; ++ky)
                acc = acc + k[(i * kh + ky) * kw + kx] * src[((long long)i * h + y + ky) * w + x + kx];
    out[idx] = acc + biases[o];
}

// maps (B, C, h, w) -> out (B, C, out_h, out_w): the maximum of each kernel x kernel window at
// stride steps, clipped to the map.
extern "C" __global__ void max_pooling(const float* maps, int n, int h, int w, int kernel, int stride, int out_h,
                                       int out_w, float* out) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * out_h * out_w) return;
    const int ox = (int)(idx % out_w), oy = (int)((idx / out_w) % out_h);
    const long long c = idx / ((long long)out_w * out_h);
    const float* m = maps + c * h * w;
    const int y = oy * stride, x = ox * stride;
    const int y_end = y + kernel < h ? y + kernel : h, x_end = x + kernel < w ? x + kernel : w;
    float best = -3.4028234663852886e38f;
    for (int yi = y; yi < y_end; ++yi)
        for (int xi = x; xi < x_end; ++xi)
            if (m[yi * w + xi] > best) best = m[yi * w + xi];
    out[idx] = best;
}

// x (B, n_in), weights (n_in, n_out), biases (n_out) -> out (B, n_out)
extern "C" __global__ void fully_connected(const float* x, const float* weights, const float* biases, int n_batch,
                                           int n_in, int n_out, float* out) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_batch * n_out) return;
    const int o = (int)(idx % n_out);
    const float* v = x + (idx / n_out) * n_in;
    float acc = 0.0f;
    for (int k = 0; k < n_in; ++k) acc += v[k] * weights[(long long)k * n_out + o];
    out[idx] = acc + biases[o];
}
