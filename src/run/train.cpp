#include "ips/train.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "ips/batchnorm.h"
#include "ips/checkpoint.h"
#include "ips/files.h"
#include "ips/metrics.h"
#include "ips/progress.h"
#include "ips/step.h"

namespace ips {
namespace fs = std::filesystem;

double EvalResult::score() const {
    if (task_metric.empty()) return 0;
    double s = 0;
    for (double m : task_metric) s += std::isnan(m) ? 0 : m;
    return s / static_cast<double>(task_metric.size());
}

std::string eval_summary(const std::vector<Task>& tasks, const EvalResult& r) {
    std::string s = "test loss " + std::to_string(r.loss);
    for (size_t t = 0; t < tasks.size() && t < r.task_metric.size(); ++t) {
        char buf[160];
        std::snprintf(buf, sizeof buf, ", %s %s %.4f", tasks[t].name.c_str(), metric_name(tasks[t].metric),
                      r.task_metric[t]);
        s += buf;
    }
    return s;
}

namespace {

std::vector<Example> examples_get(Dataset& data, const std::vector<int64_t>& order, int64_t start, int64_t count) {
    std::vector<Example> examples;
    for (int64_t i = start; i < std::min<int64_t>(static_cast<int64_t>(order.size()), start + count); ++i)
        examples.push_back(data.get(order[static_cast<size_t>(i)]));
    return examples;
}

std::string loss_text(double loss) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "loss %.4f", loss);
    return buf;
}

std::vector<int64_t> identity_order(int64_t n) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    return order;
}

}  // namespace

namespace {

// Rows [count, width] of every rank's share, in rank order, through one all-gather of rows padded
// to the largest share (shares differ by at most one row).
torch::Tensor rows_gather(DistGroup& g, const torch::Tensor& rows, int64_t n, int64_t width) {
    const int world = dist_world_size(g);
    const int64_t most = share_of(n, 0, world).count;
    auto padded = torch::zeros({most, width}, torch::kFloat64);
    if (rows.size(0) > 0) padded.narrow(0, 0, rows.size(0)).copy_(rows.reshape({rows.size(0), width}));
    const auto all = dist_allgather(g, padded);
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < world; ++r) parts.push_back(all[static_cast<size_t>(r)].narrow(0, 0, share_of(n, r, world).count));
    return torch::cat(parts);
}

}  // namespace

EvalResult evaluate(IPSNet& net, const Config& cfg, Dataset& data, const torch::Device& device, bool progress,
                    DistGroup* group) {
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed) + 7919);
    const auto& tasks = cfg.model.tasks;
    std::vector<std::vector<torch::Tensor>> probs(tasks.size()), targets(tasks.size());
    const int64_t n = data.size();
    const Share mine = group ? share_of(n, dist_rank(*group), dist_world_size(*group)) : Share{0, n};
    // [0] the loss summed over examples, [1 + t] task t's
    auto loss_sums = torch::zeros({static_cast<int64_t>(tasks.size()) + 1}, torch::kFloat64);
    const auto order = identity_order(n);
    Progress bar("eval", n, "img");
    const int64_t step = group ? std::max<int64_t>(1, cfg.train.B / dist_world_size(*group)) : cfg.train.B;
    for (int64_t start = mine.begin; start < mine.begin + mine.count; start += step) {
        const auto examples = examples_get(data, order, start, std::min(step, mine.begin + mine.count - start));
        Inference inf = infer_step(net, cfg, examples, device, rng);
        std::vector<double> per_task;
        const double bsz = static_cast<double>(examples.size());
        loss_sums[0] += loss_compute(tasks, cfg.train.eps, inf.logits, inf.batch.targets, &per_task).item<double>() * bsz;
        for (size_t t = 0; t < tasks.size(); ++t) {
            loss_sums[static_cast<int64_t>(t) + 1] += per_task[t] * bsz;
            probs[t].push_back(inf.probs[t].to(torch::kCPU));
            targets[t].push_back(inf.batch.targets[t].to(torch::kCPU));
        }
        if (progress) bar.update(static_cast<int64_t>(examples.size()) * (group ? dist_world_size(*group) : 1));
    }
    if (progress) bar.finish();
    EvalResult r;
    r.n = n;
    if (n == 0) return r;
    if (group) dist_allreduce_sum(*group, loss_sums);
    r.loss = loss_sums[0].item<double>() / static_cast<double>(n);
    for (size_t t = 0; t < tasks.size(); ++t) {
        r.task_loss.push_back(loss_sums[static_cast<int64_t>(t) + 1].item<double>() / static_cast<double>(n));
        const int64_t n_class = cfg.model.n_class;
        const bool label = tasks[t].act_fn == ActFn::softmax;  // targets [n] class ids, else [n, n_class]
        auto p = probs[t].empty() ? torch::zeros({0, n_class}) : torch::cat(probs[t]);
        auto y = targets[t].empty() ? torch::zeros({0, label ? 1 : n_class}) : torch::cat(targets[t]);
        if (group) {
            p = rows_gather(*group, p.to(torch::kFloat64), n, n_class).to(torch::kFloat32);
            y = rows_gather(*group, y.to(torch::kFloat64), n, label ? 1 : n_class);
            y = label ? y.reshape({-1}).to(torch::kLong) : y.to(torch::kFloat32);
        }
        r.task_metric.push_back(metric_compute(tasks[t], p, y));
    }
    return r;
}

namespace {

std::string metrics_line(const std::vector<Task>& tasks, int epoch, double train_loss, const EvalResult& test,
                         double lr, double seconds, const DistGroup* dist, double comm_seconds) {
    nlohmann::json j;
    j["epoch"] = epoch;
    j["train_loss"] = train_loss;
    j["test_loss"] = test.loss;
    j["lr"] = lr;
    j["seconds"] = seconds;
    if (dist) {
        j["world_size"] = dist_world_size(*dist);
        j["comm_seconds"] = comm_seconds;  // this epoch's time in collectives on rank 0
    }
    for (size_t t = 0; t < tasks.size() && t < test.task_metric.size(); ++t) {
        const double m = test.task_metric[t];
        j["test"][tasks[t].name] = {{"loss", test.task_loss[t]},
                                    {metric_name(tasks[t].metric), std::isnan(m) ? nlohmann::json() : nlohmann::json(m)}};
    }
    return j.dump();
}

// Everything a run carries from epoch to epoch.
struct Run {
    Run(const Config& c, const RunOptions& o) : cfg(c), opt(o), dir(o.out_dir), dist(o.dist.get()) {}
    const Config& cfg;
    const RunOptions& opt;
    fs::path dir;
    DistGroup* dist;  // null: one process
    std::string config_yaml;
    DatasetPtr train_data, test_data;
    IPSNet net{nullptr};
    std::unique_ptr<torch::optim::AdamW> optimizer;
    BatchNormSyncPtr bn_sync;
    StepCounter counter;
    bool resume = false;  // --resume and a last.pt to resume from
    int start_epoch = 0;
    double best = -1;
    int rank() const { return dist ? dist_rank(*dist) : 0; }
    int world() const { return dist ? dist_world_size(*dist) : 1; }
    bool writes() const { return rank() == 0; }  // rank 0 alone writes files and draws progress
};

// Loads last.pt into the net and optimizer. In a job rank 0 reads the file and hands its bytes to
// the others through the store, so only rank 0 needs to see the run folder.
CheckpointMeta resume_load(Run& run) {
    const fs::path last = run.dir / "last.pt";
    if (!run.dist) return checkpoint_load(last.string(), run.net, run.optimizer.get());
    std::string bytes;
    if (run.writes()) bytes = file_read(last.string());
    bytes = dist_bytes_broadcast(*run.dist, "resume", bytes);
    if (run.writes()) return checkpoint_load(last.string(), run.net, run.optimizer.get());
    const fs::path copy = fs::temp_directory_path() / ("ips-resume-rank" + std::to_string(run.rank()) + ".pt");
    text_write_atomic(copy.string(), bytes);
    CheckpointMeta meta = checkpoint_load(copy.string(), run.net, run.optimizer.get());
    fs::remove(copy);
    return meta;
}

// Whether OUT/last.pt exists (rank 0 looks, and tells the others).
bool checkpoint_present(Run& run) {
    const bool here = run.writes() && fs::exists(run.dir / "last.pt");
    if (!run.dist) return here;
    return dist_bytes_broadcast(*run.dist, "resume-present", here ? "1" : "0") == "1";
}

void run_open(Run& run) {
    const Config& cfg = run.cfg;
    if (cfg.train.B % run.world() != 0)
        throw std::runtime_error("B=" + std::to_string(cfg.train.B) + " does not divide by the world size " +
                                 std::to_string(run.world()) + ": the global batch is split evenly over the ranks");
    run.config_yaml = config_to_yaml(cfg);
    if (run.writes()) {
        fs::create_directories(run.dir);
        text_write_atomic((run.dir / "config.yaml").string(), run.config_yaml);
    }
    run.train_data = dataset_open(cfg, "train");
    run.test_data = dataset_open(cfg, "test");
    if (run.train_data->size() == 0)
        throw std::runtime_error("the training split of '" + cfg.data.dataset + "' is empty");
    // A job scheduler restarts a killed job with the same command line, --resume included, even
    // when it died before the first checkpoint: that run starts from the beginning.
    run.resume = run.opt.resume && checkpoint_present(run);
    if (run.opt.resume && !run.resume && run.writes())
        std::fprintf(stderr, "note: --resume: %s does not exist yet; starting from the beginning\n",
                     (run.dir / "last.pt").c_str());
    run.net = net_make(cfg.model, cfg.compute, cfg.seed);
    // A resumed run's last.pt holds everything the initial weights became.
    if (run.resume) {
        // Loaded from last.pt below, after the move to the device (with the optimizer state).
    } else if (!run.opt.init_weights.empty()) {
        weights_load(run.opt.init_weights, run.net);
    } else {
        initial_weights_apply(run.net);
    }
    net_to(run.net, run.opt.device);
    run.optimizer = optimizer_make(run.net, cfg.train);
    // A partial last batch is trained on.
    run.counter.steps_per_epoch = (run.train_data->size() + cfg.train.B - 1) / cfg.train.B;
    if (run.resume) {
        CheckpointMeta meta = resume_load(run);
        run.start_epoch = static_cast<int>(meta.epoch);
        run.counter.step = meta.step;
        run.best = meta.best_score;
        if (run.writes())
            std::fprintf(stderr, "resuming from %s after epoch %d (step %lld)\n", (run.dir / "last.pt").c_str(),
                         run.start_epoch, static_cast<long long>(run.counter.step));
    } else if (run.writes()) {
        std::ofstream(run.dir / "metrics.jsonl", std::ios::trunc);
    }
    if (run.dist) {
        module_broadcast(*run.dist, *run.net);
        if (cfg.train.sync_bn) {
            run.bn_sync = std::make_shared<BatchNormSync>();
            run.bn_sync->group = run.dist;
            module_batchnorm_sync(*run.net, run.bn_sync);
        }
    }
}

// One pass over the training split in an order drawn from (seed, epoch); returns the mean loss.
// In a job every rank draws the same order and takes its share of each global batch.
double train_epoch(Run& run, int epoch) {
    const Config& cfg = run.cfg;
    // Everything random in an epoch derives from (seed, epoch): a resumed run replays it exactly.
    const uint64_t epoch_seed = static_cast<uint64_t>(cfg.seed) * 1000003ULL + static_cast<uint64_t>(epoch);
    std::mt19937_64 rng(epoch_seed);
    const int64_t n = run.train_data->size();
    auto order = identity_order(n);
    std::shuffle(order.begin(), order.end(), rng);
    // Selection shuffles and dropout draw per rank; rank 0 continues the one-process streams.
    if (run.rank() > 0) rng.seed(epoch_seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(run.rank()));
    torch::manual_seed(epoch_seed + static_cast<uint64_t>(run.rank()));
    const bool bar_on = run.opt.progress && run.writes();
    Progress bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(cfg.train.n_epoch), n, "img");
    double loss_sum = 0;
    for (int64_t start = 0; start < n; start += cfg.train.B) {
        const int64_t batch_n = std::min<int64_t>(cfg.train.B, n - start);
        const Share mine = share_of(batch_n, run.rank(), run.world());
        StepShare share{run.dist, static_cast<double>(mine.count) / static_cast<double>(batch_n)};
        // A rank with no example in the epoch's last batch still joins the step's collectives: it
        // runs the batch's first example with weight 0, adding nothing to gradients or statistics.
        const bool stand_in = mine.count == 0;
        const auto examples = examples_get(*run.train_data, order, start + (stand_in ? 0 : mine.begin),
                                           stand_in ? 1 : mine.count);
        if (run.bn_sync) run.bn_sync->contributes = !stand_in;
        double loss = 0;
        try {
            loss = train_step(run.net, *run.optimizer, cfg, examples, run.opt.device, rng, run.counter, share);
        } catch (const NonFiniteLoss& e) {
            throw std::runtime_error(std::string(e.what()) + " (epoch " + std::to_string(epoch + 1) +
                                     "); the last good checkpoint is " + (run.dir / "last.pt").string() +
                                     " (try a lower 'lr')");
        }
        if (run.bn_sync) run.bn_sync->contributes = true;
        loss_sum += loss * static_cast<double>(batch_n);
        if (bar_on) bar.update(batch_n, loss_text(loss));
    }
    const double mean = loss_sum / static_cast<double>(n);
    if (bar_on) bar.finish(loss_text(mean));
    return mean;
}

// Metrics line, best.pt when the test score improved, last.pt always (with the optimizer).
void epoch_close(Run& run, int epoch, double train_loss, const EvalResult& test, double seconds, double comm_seconds) {
    const double lr = lr_at(run.cfg.train, run.counter.step - 1, run.counter.steps_per_epoch);
    const CheckpointMeta meta{epoch + 1, run.counter.step, std::max(run.best, test.score()), run.config_yaml};
    const bool improved = test.n > 0 && test.score() > run.best;
    if (improved) run.best = test.score();
    if (!run.writes()) return;
    const std::string line =
        metrics_line(run.cfg.model.tasks, epoch + 1, train_loss, test, lr, seconds, run.dist, comm_seconds);
    std::ofstream(run.dir / "metrics.jsonl", std::ios::app) << line << "\n";
    std::fprintf(stderr, "%s\n", line.c_str());
    if (improved) checkpoint_save((run.dir / "best.pt").string(), run.net, nullptr, meta);
    checkpoint_save((run.dir / "last.pt").string(), run.net, run.optimizer.get(), meta);
}

std::vector<EpochRecord> epochs_run(Run& run) {
    const Config& cfg = run.cfg;
    const RunOptions& opt = run.opt;
    std::vector<EpochRecord> records;
    for (int epoch = run.start_epoch; epoch < cfg.train.n_epoch; ++epoch) {
        const auto t0 = std::chrono::steady_clock::now();
        const double comm0 = run.dist ? dist_comm_seconds(*run.dist) : 0;
        const double train_loss = train_epoch(run, epoch);
        EvalResult test = evaluate(run.net, cfg, *run.test_data, opt.device, opt.progress && run.writes(), run.dist);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double comm = run.dist ? dist_comm_seconds(*run.dist) - comm0 : 0;
        epoch_close(run, epoch, train_loss, test, seconds, comm);
        records.push_back({epoch + 1, train_loss, test});
        if (opt.stop_after_epoch > 0 && epoch + 1 >= opt.stop_after_epoch) break;
    }
    return records;
}

}  // namespace

std::vector<EpochRecord> train_run(const Config& cfg, const RunOptions& opt) {
    Run run(cfg, opt);
    try {
        run_open(run);
        auto records = epochs_run(run);
        // Rank 0 serves the store: it leaves last, once every rank has finished.
        if (run.dist) dist_barrier(*run.dist);
        return records;
    } catch (const std::exception& e) {
        if (run.dist) dist_error_report(*run.dist, e.what());
        throw;
    }
}

}  // namespace ips
