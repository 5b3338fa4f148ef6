// Timing of full training steps or inference on synthetic inputs of a config's shapes.
#pragma once

#include "ips/config.h"

#include <torch/torch.h>

namespace ips {

struct BenchOptions {
    std::string mode = "train";  // train | eval
    int iters = 5;
    int warmup = 2;
    torch::Device device = torch::kCPU;
    // Feature bags: how the synthetic bag is stored. float16 is what `ips features` writes; the
    // reference's loader hands out float32.
    std::string bag_dtype = "float16";
};

struct BenchResult {
    double ms_per_batch = 0;  // median
    double img_per_s = 0;
    double peak_mem_gib = 0;  // CUDA allocator peak, or peak resident memory on CPU
    std::string device, mode, peak_mem_kind;
    int64_t B = 0, B_seq = 0, N = 0, M = 0, I = 0;
    bool eager = true;
    std::string precision, bag_dtype;
    std::vector<double> ms_all;
};

BenchResult bench_run(const Config& cfg, const BenchOptions& opt);
std::string bench_to_json(const BenchResult& r);

// Peak resident set size of this process in bytes.
int64_t peak_rss_bytes();

}  // namespace ips
