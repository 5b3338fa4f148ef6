#include "ips/bench.h"

#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "ips/precision.h"
#include "ips/train.h"

// The CUDA allocator's statistics exist only where libtorch was built with CUDA and its headers are
// installed; the CPU build measures peak resident memory instead.
#if __has_include(<cuda_runtime_api.h>) && __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define IPS_HAVE_CUDA_STATS 1
#endif

namespace ips {
namespace {

void device_sync(const torch::Device& d) {
    if (d.is_cuda()) torch::cuda::synchronize();
}

void cuda_peak_reset(const torch::Device& d) {
#ifdef IPS_HAVE_CUDA_STATS
    if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.has_index() ? d.index() : 0);
#endif
}

double cuda_peak_gib(const torch::Device& d) {
#ifdef IPS_HAVE_CUDA_STATS
    if (d.is_cuda()) {
        auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.has_index() ? d.index() : 0);
        return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);  // 0: aggregate
    }
#endif
    return -1;
}

// B examples of the configured shapes: uint8 patches [N, C, P_h, P_w] or one shared float bag
// [N, F] (a 250k x 2048 bag is 2 GB: the B images of a batch reuse it rather than hold B copies).
std::vector<Example> bench_examples(const Config& cfg, const BenchOptions& opt) {
    std::vector<Example> out;
    torch::manual_seed(static_cast<uint64_t>(cfg.seed));
    torch::Tensor bag;
    if (!cfg.is_image) {
        if (opt.bag_dtype != "float16" && opt.bag_dtype != "float32")
            throw std::invalid_argument("bench --bag-dtype must be float16 or float32, got '" + opt.bag_dtype + "'");
        // Filled in blocks: a float32 temporary of the whole bag would be counted in peak memory.
        bag = torch::empty({cfg.N, cfg.n_chan_in}, opt.bag_dtype == "float16" ? torch::kHalf : torch::kFloat32);
        for (int64_t start = 0; start < cfg.N; start += 8192) {
            const int64_t n = std::min<int64_t>(8192, cfg.N - start);
            bag.narrow(0, start, n).copy_(torch::randn({n, cfg.n_chan_in}));
        }
        // Lazy on a GPU: the bag stays in page-locked host memory so chunks copy asynchronously.
        if (!cfg.eager && opt.device.is_cuda()) bag = bag.pin_memory();
    }
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed));
    for (int b = 0; b < cfg.B; ++b) {
        Example ex;
        if (cfg.is_image)
            ex.source = tensor_source_make(
                torch::randint(0, 256, {cfg.N, cfg.n_chan_in, cfg.patch_size[0], cfg.patch_size[1]}, torch::kUInt8));
        else
            ex.source = tensor_source_make(bag);
        for (const auto& task : cfg.tasks) {
            if (task.act_fn == ActFn::softmax)
                ex.targets.push_back(torch::tensor(static_cast<int64_t>(rng() % cfg.n_class)));
            else
                ex.targets.push_back(torch::randint(0, 2, {cfg.n_class}).to(torch::kFloat32));
        }
        out.push_back(ex);
    }
    return out;
}

}  // namespace

int64_t peak_rss_bytes() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

BenchResult bench_run(const Config& cfg, const BenchOptions& opt) {
    if (cfg.N < 1) throw ConfigError("config key 'N': bench needs the number of patches per image");
    if (opt.mode != "train" && opt.mode != "eval")
        throw std::invalid_argument("bench mode must be train or eval, got '" + opt.mode + "'");
    const bool train = opt.mode == "train";
    auto examples = bench_examples(cfg, opt);
    IPSNet net = net_make(cfg);
    net_to(net, opt.device);
    torch::optim::AdamW optimizer(net->parameters(), torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.wd));
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed));

    auto step = [&] {
        if (train) {
            net->train();
            Batch batch = batch_make(net, cfg, examples, opt.device, rng, true);
            auto loss = loss_compute(cfg, net->forward(batch.patches, batch.idx, batch.valid), batch.targets);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        } else {
            net->eval();
            torch::NoGradGuard no_grad;
            Batch batch = batch_make(net, cfg, examples, opt.device, rng, false);
            net->probabilities(net->forward(batch.patches, batch.idx, batch.valid));
        }
        device_sync(opt.device);
    };

    for (int i = 0; i < opt.warmup; ++i) step();
    cuda_peak_reset(opt.device);
    BenchResult r;
    for (int i = 0; i < std::max(1, opt.iters); ++i) {
        auto t0 = std::chrono::steady_clock::now();
        step();
        r.ms_all.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    auto sorted = r.ms_all;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    r.ms_per_batch = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    r.img_per_s = 1000.0 * cfg.B / r.ms_per_batch;
    r.device = opt.device.str();
    r.mode = opt.mode;
    r.B = cfg.B;
    r.B_seq = cfg.B_seq;
    r.eager = cfg.eager;
    r.precision = precision_name(precision_resolve(cfg.precision, opt.device));
    r.bag_dtype = cfg.is_image ? "uint8" : opt.bag_dtype;
    r.N = cfg.N;
    r.M = cfg.M;
    r.I = cfg.I;
    const double cuda_peak = cuda_peak_gib(opt.device);
    if (cuda_peak >= 0) {
        r.peak_mem_gib = cuda_peak;
        r.peak_mem_kind = "cuda_allocator_peak";
    } else {
        r.peak_mem_gib = static_cast<double>(peak_rss_bytes()) / (1024.0 * 1024.0 * 1024.0);
        r.peak_mem_kind = "peak_rss";
    }
    return r;
}

std::string bench_to_json(const BenchResult& r) {
    nlohmann::json j;
    j["ms_per_batch"] = r.ms_per_batch;
    j["img_per_s"] = r.img_per_s;
    j["peak_mem_gib"] = r.peak_mem_gib;
    j["peak_mem_kind"] = r.peak_mem_kind;
    j["device"] = r.device;
    j["mode"] = r.mode;
    j["B"] = r.B;
    j["B_seq"] = r.B_seq;
    j["eager"] = r.eager;
    j["precision"] = r.precision;
    j["input_dtype"] = r.bag_dtype;
    j["impl"] = "ips";
    j["N"] = r.N;
    j["M"] = r.M;
    j["I"] = r.I;
    j["ms_all"] = r.ms_all;
    j["threads"] = torch::get_num_threads();
    j["torch_version"] = TORCH_VERSION;
    return j.dump();
}

}  // namespace ips
