// Timing of the training step or the inference step on synthetic inputs of a config's shapes.
// Each timed iteration is one call of train_step or infer_step (step.h): what `ips train` runs.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <random>

#include "ips/batchnorm.h"
#include "ips/config.h"
#include "ips/step.h"

namespace ips {

enum class BenchMode { train, eval };

struct BenchOptions {
    BenchMode mode = BenchMode::train;
    int iters = 5;
    int warmup = 2;
    torch::Device device = torch::kCPU;
    // Feature bags: how the synthetic bag is stored. float16 is what `ips features` writes; the
    // reference's loader hands out float32.
    torch::ScalarType bag_dtype = torch::kHalf;
    // A data-parallel job (dist_init): each rank times its B / world share of the global batch B
    // and the gradient all-reduce; null: one process.
    DistGroupPtr dist;
};

// What the timed iterations work on: B synthetic examples, the net on the device, its optimizer
// and schedule position, the selection's random generator.
struct BenchSession {
    Config cfg;
    BenchOptions opt;
    std::vector<Example> examples;
    IPSNet net{nullptr};
    std::unique_ptr<torch::optim::AdamW> optimizer;
    StepCounter counter;
    std::mt19937_64 rng;
    BatchNormSyncPtr bn_sync;  // with opt.dist and sync_bn
};

// B examples of the configured shapes (uint8 patches [N, C, P_h, P_w], or one shared bag [N, F]
// of opt.bag_dtype) with random targets, and a net built from cfg.seed on opt.device.
// Throws ConfigError naming 'N' when the config gives no number of patches.
BenchSession bench_session_make(const Config& cfg, const BenchOptions& opt);
// One iteration: train_step (returns its loss) or infer_step (returns NaN), device synchronised.
double bench_iteration(BenchSession& session);

struct BenchResult {
    double ms_per_batch = 0;  // median
    double img_per_s = 0;
    double peak_mem_gib = 0;  // CUDA allocator peak, or peak resident memory on CPU
    std::string device, mode, peak_mem_kind;
    int64_t B = 0, B_seq = 0, N = 0, M = 0, I = 0;
    bool eager = true;
    std::string precision, input_dtype;
    std::vector<double> ms_all;
    int world_size = 1;
    double comm_share = 0;  // of the timed iterations' wall time, spent in collectives (rank 0)
};

BenchResult bench_run(const Config& cfg, const BenchOptions& opt);
std::string bench_to_json(const BenchResult& r);

// The gradient all-reduce alone, on the gradients of cfg's model (random values), per step:
// bucketed at each of bucket_mib and one all-reduce per parameter. Needs a job (world >= 1).
struct CommBenchResult {
    int64_t parameters = 0;
    double gradient_mib = 0;
    int world_size = 1;
    std::vector<std::pair<double, double>> bucketed_ms;  // (bucket MiB, median ms per step)
    double per_tensor_ms = 0;                             // median ms per step
};
CommBenchResult bench_comm_run(const Config& cfg, DistGroup& group, const torch::Device& device, int iters,
                               const std::vector<double>& bucket_mib);
std::string bench_comm_to_json(const CommBenchResult& r);

// Peak resident set size of this process in bytes.
int64_t peak_rss_bytes();

}  // namespace ips
