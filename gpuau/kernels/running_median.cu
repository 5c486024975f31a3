// Running medians of per-dimension histograms (the person's neutral face of the AU stage), batched
// over streams. Port of FaceAnalyser::UpdateRunningMedian, FaceAnalyser.cpp.
//
// Launch: grid (ceil(D / blockDim.x), S), block (128): one thread per (stream, dimension). A thread
// owns one histogram row of one stream, so there is no race and no shared memory; each stream's
// arrays are reached through tables of device addresses (streams keep separate allocations).
//
// The median bin of a row is the first bin whose cumulative count reaches cutoff = (count + 1) / 2.
// Counting one value and moving the cut-off by at most one per update moves that bin by a few bins,
// so it is tracked (with the count strictly below it) instead of rescanning the row; the result is
// the full scan's. Same arithmetic, in double and without FMA, as gpuau/cpu/running_median.py.

#ifdef __CUDACC_RTC__
typedef unsigned long long uint64_t;
#endif

extern "C" __global__ void running_median_update(
    const uint64_t* histograms,   // (S,) address of each stream's (D, num_bins) int histogram
    const uint64_t* median_bins,  // (S,) address of (D,) int: first bin reaching the cut-off
    const uint64_t* belows,       // (S,) address of (D,) int: count in the bins before it
    const uint64_t* medians,      // (S,) address of (D,) double: the median (output)
    const double* descriptors,    // (S, D) this frame's descriptor of each stream
    const int* counts,            // (S,) descriptors counted so far, this one included
    const int* add,               // (S,) 1: count this descriptor
    int n_streams, int d, int num_bins, double min_val, double max_val, int nonnegative)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int s = blockIdx.y;
    if (i >= d || s >= n_streams) return;
    int* row = (int*)histograms[s] + (long long)i * num_bins;
    int* median_bin = (int*)median_bins[s];
    int* below = (int*)belows[s];
    double* median = (double*)medians[s];
    const double x = descriptors[(long long)s * d + i];
    const double length = max_val - min_val < 0.0 ? min_val - max_val : max_val - min_val;
    const int count = counts[s];
    const int cutoff = (count + 1) / 2;

    int j = median_bin[i];
    int n = below[i];
    if (add[s]) {
        double c = (x - min_val) * (double)num_bins / length;
        if (c > (double)(num_bins - 1)) c = (double)(num_bins - 1);
        if (!(c >= 0.0)) c = 0.0;  // a NaN too (its bin would be (int)NaN)
        const int b = (int)c;
        row[b] += 1;
        if (b < j) n += 1;
    }
    if (cutoff <= 0) {
        j = 0;
        n = 0;
    } else {
        while (j > 0 && n >= cutoff) {  // the bins below already hold the cut-off: move left
            j -= 1;
            n -= row[j];
        }
        while (n + row[j] < cutoff) {  // bin j does not reach it yet: move right
            n += row[j];
            j += 1;
        }
    }
    median_bin[i] = j;
    below[i] = n;
    // one descriptor counted: OpenFace's median is the current descriptor (even when not added)
    double m = count == 1 ? x : min_val + (double)j * (length / (double)num_bins) + 0.5 * length / (double)num_bins;
    if (nonnegative && m < 0.0) m = 0.0;
    median[i] = m;
}
