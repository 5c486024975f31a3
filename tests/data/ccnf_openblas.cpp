// Oracle for tests/data/ccnf_openblas.npz (see make_ccnf_openblas.py): OpenFace's own
// CCNF_patch_expert::ResponseOpenBlas (its im2col, OpenBLAS sgemm for the neurons and for Sigma, glibc's expf),
// linked from OpenFace's compiled objects, on synthetic experts.  Arguments: input, output.  Input: int32
// count, then per case int32 window, the area ((window + 10)^2 float32), the neuron rows (7 x 122 float32),
// the alphas (7 float64) and Sigma (window^4 float32).  Output: per case the map (window^2 float32, row = y).
#include "CCNF_patch_expert.h"
#include "oracle_io.h"
#include <vector>

int main(int argc, char** argv)
{
    OracleFiles files;
    if (const int status = open_oracle_files(argc, argv, 2, "IN OUT", files)) return status;
    FILE *in = files.in, *out = files.out;
    for (int c = 0; c < files.count; ++c) {
        int w = 0;
        if (fread(&w, 4, 1, in) != 1) return 1;
        const int a = w + 10, p = w * w;
        cv::Mat_<float> area(a, a), weights(7, 122), sigma(p, p);
        double alphas[7];
        if (fread(area.data, 4, a * a, in) != (size_t)(a * a) || fread(weights.data, 4, 7 * 122, in) != 7 * 122 ||
            fread(alphas, 8, 7, in) != 7 || fread(sigma.data, 4, p * p, in) != (size_t)(p * p)) return 1;
        LandmarkDetector::CCNF_patch_expert expert;
        expert.width = expert.height = 11;
        expert.neurons.resize(7);
        for (int i = 0; i < 7; ++i) {
            expert.neurons[i].weights = cv::Mat_<float>::zeros(11, 11);
            expert.neurons[i].alpha = alphas[i];
        }
        expert.weight_matrix = weights;
        expert.window_sizes = {w};
        expert.Sigmas = {sigma};
        cv::Mat_<float> response, im2col;
        expert.ResponseOpenBlas(area, response, im2col);
        fwrite(response.data, 4, p, out);
    }
    return 0;
}
