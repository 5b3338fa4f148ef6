#include "ips/train.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

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

EvalResult evaluate(IPSNet& net, const Config& cfg, Dataset& data, const torch::Device& device, bool progress) {
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed) + 7919);
    const auto& tasks = cfg.model.tasks;
    std::vector<std::vector<torch::Tensor>> probs(tasks.size()), targets(tasks.size());
    double loss_sum = 0;
    std::vector<double> task_loss_sum(tasks.size(), 0);
    const int64_t n = data.size();
    const auto order = identity_order(n);
    Progress bar("eval", n, "img");
    for (int64_t start = 0; start < n; start += cfg.train.B) {
        const auto examples = examples_get(data, order, start, cfg.train.B);
        Inference inf = infer_step(net, cfg, examples, device, rng);
        std::vector<double> per_task;
        const double bsz = static_cast<double>(examples.size());
        loss_sum += loss_compute(tasks, cfg.train.eps, inf.logits, inf.batch.targets, &per_task).item<double>() * bsz;
        for (size_t t = 0; t < tasks.size(); ++t) {
            task_loss_sum[t] += per_task[t] * bsz;
            probs[t].push_back(inf.probs[t].to(torch::kCPU));
            targets[t].push_back(inf.batch.targets[t].to(torch::kCPU));
        }
        if (progress) bar.update(static_cast<int64_t>(examples.size()));
    }
    if (progress) bar.finish();
    EvalResult r;
    r.n = n;
    if (n == 0) return r;
    r.loss = loss_sum / static_cast<double>(n);
    for (size_t t = 0; t < tasks.size(); ++t) {
        r.task_loss.push_back(task_loss_sum[t] / static_cast<double>(n));
        r.task_metric.push_back(metric_compute(tasks[t], torch::cat(probs[t]), torch::cat(targets[t])));
    }
    return r;
}

namespace {

std::string metrics_line(const std::vector<Task>& tasks, int epoch, double train_loss, const EvalResult& test,
                         double lr, double seconds) {
    nlohmann::json j;
    j["epoch"] = epoch;
    j["train_loss"] = train_loss;
    j["test_loss"] = test.loss;
    j["lr"] = lr;
    j["seconds"] = seconds;
    for (size_t t = 0; t < tasks.size() && t < test.task_metric.size(); ++t) {
        const double m = test.task_metric[t];
        j["test"][tasks[t].name] = {{"loss", test.task_loss[t]},
                                    {metric_name(tasks[t].metric), std::isnan(m) ? nlohmann::json() : nlohmann::json(m)}};
    }
    return j.dump();
}

// Everything a run carries from epoch to epoch.
struct Run {
    Run(const Config& c, const RunOptions& o) : cfg(c), opt(o), dir(o.out_dir) {}
    const Config& cfg;
    const RunOptions& opt;
    fs::path dir;
    std::string config_yaml;
    DatasetPtr train_data, test_data;
    IPSNet net{nullptr};
    std::unique_ptr<torch::optim::AdamW> optimizer;
    StepCounter counter;
    int start_epoch = 0;
    double best = -1;
};

void run_open(Run& run) {
    const Config& cfg = run.cfg;
    fs::create_directories(run.dir);
    run.config_yaml = config_to_yaml(cfg);
    text_write_atomic((run.dir / "config.yaml").string(), run.config_yaml);
    run.train_data = dataset_open(cfg, "train");
    run.test_data = dataset_open(cfg, "test");
    if (run.train_data->size() == 0)
        throw std::runtime_error("the training split of '" + cfg.data.dataset + "' is empty");
    run.net = net_make(cfg.model, cfg.compute, cfg.seed);
    // A resumed run's last.pt holds everything the initial weights became.
    if (run.opt.resume) {
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
    if (run.opt.resume) {
        const fs::path last = run.dir / "last.pt";
        CheckpointMeta meta = checkpoint_load(last.string(), run.net, run.optimizer.get());
        run.start_epoch = static_cast<int>(meta.epoch);
        run.counter.step = meta.step;
        run.best = meta.best_score;
        std::fprintf(stderr, "resuming from %s after epoch %d (step %lld)\n", last.c_str(), run.start_epoch,
                     static_cast<long long>(run.counter.step));
    } else {
        std::ofstream(run.dir / "metrics.jsonl", std::ios::trunc);
    }
}

// One pass over the training split in an order drawn from (seed, epoch); returns the mean loss.
double train_epoch(Run& run, int epoch) {
    const Config& cfg = run.cfg;
    // Everything random in an epoch derives from (seed, epoch): a resumed run replays it exactly.
    const uint64_t epoch_seed = static_cast<uint64_t>(cfg.seed) * 1000003ULL + static_cast<uint64_t>(epoch);
    std::mt19937_64 rng(epoch_seed);
    torch::manual_seed(epoch_seed);
    const int64_t n = run.train_data->size();
    auto order = identity_order(n);
    std::shuffle(order.begin(), order.end(), rng);
    Progress bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(cfg.train.n_epoch), n, "img");
    double loss_sum = 0;
    for (int64_t start = 0; start < n; start += cfg.train.B) {
        const auto examples = examples_get(*run.train_data, order, start, cfg.train.B);
        double loss = 0;
        try {
            loss = train_step(run.net, *run.optimizer, cfg, examples, run.opt.device, rng, run.counter);
        } catch (const NonFiniteLoss& e) {
            throw std::runtime_error(std::string(e.what()) + " (epoch " + std::to_string(epoch + 1) +
                                     "); the last good checkpoint is " + (run.dir / "last.pt").string() +
                                     " (try a lower 'lr')");
        }
        loss_sum += loss * static_cast<double>(examples.size());
        if (run.opt.progress) bar.update(static_cast<int64_t>(examples.size()), loss_text(loss));
    }
    const double mean = loss_sum / static_cast<double>(n);
    if (run.opt.progress) bar.finish(loss_text(mean));
    return mean;
}

// Metrics line, best.pt when the test score improved, last.pt always (with the optimizer).
void epoch_close(Run& run, int epoch, double train_loss, const EvalResult& test, double seconds) {
    const double lr = lr_at(run.cfg.train, run.counter.step - 1, run.counter.steps_per_epoch);
    const std::string line = metrics_line(run.cfg.model.tasks, epoch + 1, train_loss, test, lr, seconds);
    std::ofstream(run.dir / "metrics.jsonl", std::ios::app) << line << "\n";
    std::fprintf(stderr, "%s\n", line.c_str());
    const CheckpointMeta meta{epoch + 1, run.counter.step, std::max(run.best, test.score()), run.config_yaml};
    if (test.n > 0 && test.score() > run.best) {
        run.best = test.score();
        checkpoint_save((run.dir / "best.pt").string(), run.net, nullptr, meta);
    }
    checkpoint_save((run.dir / "last.pt").string(), run.net, run.optimizer.get(), meta);
}

}  // namespace

std::vector<EpochRecord> train_run(const Config& cfg, const RunOptions& opt) {
    Run run(cfg, opt);
    run_open(run);
    std::vector<EpochRecord> records;
    for (int epoch = run.start_epoch; epoch < cfg.train.n_epoch; ++epoch) {
        const auto t0 = std::chrono::steady_clock::now();
        const double train_loss = train_epoch(run, epoch);
        EvalResult test = evaluate(run.net, cfg, *run.test_data, opt.device, opt.progress);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        epoch_close(run, epoch, train_loss, test, seconds);
        records.push_back({epoch + 1, train_loss, test});
        if (opt.stop_after_epoch > 0 && epoch + 1 >= opt.stop_after_epoch) break;
    }
    return records;
}

}  // namespace ips
