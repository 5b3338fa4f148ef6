#include "ips/bench.h"

#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>

#include "ips/precision.h"
#include "ips/step.h"
#include "ips/torch_compat.h"


namespace ips {
namespace {

void device_sync(const torch::Device& d) {
    if (d.is_cuda()) torch::cuda::synchronize();
}

// B examples of the configured shapes: uint8 patches [N, C, P_h, P_w] or one shared float bag
// [N, F] (a 250k x 2048 bag is 2 GB: the B images of a batch reuse it rather than hold B copies).
std::vector<Example> bench_examples(const Config& cfg, const BenchOptions& opt) {
    const DataOptions& data = cfg.data;
    const ModelOptions& model = cfg.model;
    torch::manual_seed(static_cast<uint64_t>(cfg.seed));
    torch::Tensor bag;
    if (!model.is_image) {
        // Filled in blocks: a float32 temporary of the whole bag would be counted in peak memory.
        bag = torch::empty({data.N, model.n_chan_in}, opt.bag_dtype);
        for (int64_t start = 0; start < data.N; start += 8192) {
            const int64_t n = std::min<int64_t>(8192, data.N - start);
            bag.narrow(0, start, n).copy_(torch::randn({n, model.n_chan_in}));
        }
        // Lazy on a GPU: the bag stays in page-locked host memory so chunks copy asynchronously.
        if (!data.eager && opt.device.is_cuda()) bag = bag.pin_memory();
    }
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed));
    std::vector<Example> out;
    for (int b = 0; b < cfg.train.B; ++b) {
        Example ex;
        ex.source = model.is_image ? tensor_source_make(torch::randint(
                                         0, 256, {data.N, model.n_chan_in, data.patch_size[0], data.patch_size[1]},
                                         torch::kUInt8))
                                   : tensor_source_make(bag);
        ex.targets = targets_random(model, rng);
        ex.name = "bench/" + std::to_string(b);
        out.push_back(ex);
    }
    return out;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int64_t peak_rss_bytes() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

BenchSession bench_session_make(const Config& cfg, const BenchOptions& opt) {
    if (cfg.data.N < 1) throw ConfigError("config key 'N': bench needs the number of patches per image");
    if (opt.bag_dtype != torch::kHalf && opt.bag_dtype != torch::kFloat32)
        throw std::invalid_argument("bench: feature bags are stored as float16 or float32");
    BenchSession s;
    s.cfg = cfg;
    s.opt = opt;
    const int world = opt.dist ? dist_world_size(*opt.dist) : 1;
    if (cfg.train.B % world != 0)
        throw ConfigError("config key 'B': " + std::to_string(cfg.train.B) + " does not divide by the world size " +
                          std::to_string(world));
    // This rank's share of the global batch.
    s.cfg.train.B = cfg.train.B / world;
    s.cfg.train.B_seq = std::min(cfg.train.B_seq, s.cfg.train.B);
    s.examples = bench_examples(s.cfg, opt);
    s.cfg = cfg;
    s.net = net_make(cfg.model, cfg.compute, cfg.seed);
    net_to(s.net, opt.device);
    if (opt.dist) {
        module_broadcast(*opt.dist, *s.net);
        if (cfg.train.sync_bn) {
            s.bn_sync = std::make_shared<BatchNormSync>();
            s.bn_sync->group = opt.dist.get();
            module_batchnorm_sync(*s.net, s.bn_sync);
        }
    }
    s.optimizer = optimizer_make(s.net, cfg.train);
    // Every iteration counts as an epoch of one step: the schedule moves as in a short run.
    s.counter = StepCounter{0, 1};
    s.rng.seed(static_cast<uint64_t>(cfg.seed));
    return s;
}

double bench_iteration(BenchSession& s) {
    double loss = std::nan("");
    if (s.opt.mode == BenchMode::train)
        loss = train_step(s.net, *s.optimizer, s.cfg, s.examples, s.opt.device, s.rng, s.counter,
                          StepShare{s.opt.dist.get(), s.opt.dist ? 1.0 / dist_world_size(*s.opt.dist) : 1.0});
    else
        infer_step(s.net, s.cfg, s.examples, s.opt.device, s.rng);
    device_sync(s.opt.device);
    return loss;
}

BenchResult bench_run(const Config& cfg, const BenchOptions& opt) {
    BenchSession session = bench_session_make(cfg, opt);
    for (int i = 0; i < opt.warmup; ++i) bench_iteration(session);
    compat::cuda_peak_reset(opt.device);
    BenchResult r;
    const double comm0 = opt.dist ? dist_comm_seconds(*opt.dist) : 0;
    for (int i = 0; i < std::max(1, opt.iters); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        bench_iteration(session);
        r.ms_all.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    if (opt.dist) {
        r.world_size = dist_world_size(*opt.dist);
        double total_ms = 0;
        for (double ms : r.ms_all) total_ms += ms;
        r.comm_share = (dist_comm_seconds(*opt.dist) - comm0) * 1000.0 / total_ms;
    }
    r.ms_per_batch = median(r.ms_all);
    r.img_per_s = 1000.0 * cfg.train.B / r.ms_per_batch;
    r.device = opt.device.str();
    r.mode = opt.mode == BenchMode::train ? "train" : "eval";
    r.B = cfg.train.B;
    r.B_seq = cfg.train.B_seq;
    r.eager = cfg.data.eager;
    r.precision = precision_name(session.net->precision);
    r.input_dtype = cfg.model.is_image ? "uint8" : opt.bag_dtype == torch::kHalf ? "float16" : "float32";
    r.N = cfg.data.N;
    r.M = cfg.select.M;
    r.I = cfg.select.I;
    const int64_t cuda_peak = compat::cuda_peak_bytes(opt.device);
    if (cuda_peak >= 0) {
        r.peak_mem_gib = static_cast<double>(cuda_peak) / (1024.0 * 1024.0 * 1024.0);
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
    j["input_dtype"] = r.input_dtype;
    j["impl"] = "ips";
    j["N"] = r.N;
    j["M"] = r.M;
    j["I"] = r.I;
    j["ms_all"] = r.ms_all;
    j["world_size"] = r.world_size;
    j["comm_share"] = r.comm_share;
    j["threads"] = torch::get_num_threads();
    j["torch_version"] = TORCH_VERSION;
    return j.dump();
}

CommBenchResult bench_comm_run(const Config& cfg, DistGroup& group, const torch::Device& device, int iters,
                               const std::vector<double>& bucket_mib) {
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    net_to(net, device);
    auto params = net->parameters();
    CommBenchResult r;
    r.world_size = dist_world_size(group);
    for (auto& p : params) {
        p.mutable_grad() = torch::randn_like(p);
        r.parameters += p.numel();
        r.gradient_mib += static_cast<double>(p.numel() * static_cast<int64_t>(p.element_size())) / (1024.0 * 1024.0);
    }
    const auto time_median = [&](const std::function<void()>& step) {
        step();  // warm-up: connections and buffers
        std::vector<double> ms;
        for (int i = 0; i < std::max(1, iters); ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            step();
            device_sync(device);
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        return median(ms);
    };
    for (double mib : bucket_mib)
        r.bucketed_ms.emplace_back(mib, time_median([&] {
                                       gradients_allreduce(group, params, 0.0, static_cast<int64_t>(mib * 1024 * 1024));
                                   }));
    r.per_tensor_ms = time_median([&] { gradients_allreduce_per_tensor(group, params, 0.0); });
    return r;
}

std::string bench_comm_to_json(const CommBenchResult& r) {
    nlohmann::json j;
    j["parameters"] = r.parameters;
    j["gradient_mib"] = r.gradient_mib;
    j["world_size"] = r.world_size;
    for (const auto& [mib, ms] : r.bucketed_ms) j["bucketed"].push_back({{"bucket_mib", mib}, {"ms", ms}});
    j["per_tensor_ms"] = r.per_tensor_ms;
    j["threads"] = torch::get_num_threads();
    j["torch_version"] = TORCH_VERSION;
    return j.dump();
}

}  // namespace ips
