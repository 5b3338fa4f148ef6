#include "ips/train.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

#include "ips/checkpoint.h"
#include "ips/files.h"
#include "ips/progress.h"
#include "ips/torch_file.h"

namespace ips {
namespace fs = std::filesystem;

double EvalResult::score() const {
    if (task_metric.empty()) return 0;
    double s = 0;
    for (double m : task_metric) s += std::isnan(m) ? 0 : m;
    return s / static_cast<double>(task_metric.size());
}

EvalResult evaluate(IPSNet& net, const Config& cfg, Dataset& data, const torch::Device& device, bool progress) {
    const bool was_training = net->is_training();
    net->eval();
    torch::NoGradGuard no_grad;
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed) + 7919);
    const size_t n_tasks = cfg.tasks.size();
    std::vector<std::vector<torch::Tensor>> probs(n_tasks), targets(n_tasks);
    double loss_sum = 0;
    std::vector<double> task_loss_sum(n_tasks, 0);
    const int64_t n = data.size();
    Progress bar("eval", n, "img");
    for (int64_t start = 0; start < n; start += cfg.B) {
        std::vector<Example> examples;
        for (int64_t i = start; i < std::min(n, start + cfg.B); ++i) examples.push_back(data.get(i));
        Batch batch = batch_make(net, cfg, examples, device, rng, /*train=*/false);
        auto logits = net->forward(batch.patches, batch.idx, batch.valid);
        std::vector<double> per_task;
        const double bsz = static_cast<double>(examples.size());
        loss_sum += loss_compute(cfg, logits, batch.targets, &per_task).item<double>() * bsz;
        auto p = net->probabilities(logits);
        for (size_t t = 0; t < n_tasks; ++t) {
            task_loss_sum[t] += per_task[t] * bsz;
            probs[t].push_back(p[t].to(torch::kCPU));
            targets[t].push_back(batch.targets[t].to(torch::kCPU));
        }
        if (progress) bar.update(static_cast<int64_t>(examples.size()));
    }
    if (progress) bar.finish();
    EvalResult r;
    r.n = n;
    if (n > 0) {
        r.loss = loss_sum / static_cast<double>(n);
        for (size_t t = 0; t < n_tasks; ++t) {
            r.task_loss.push_back(task_loss_sum[t] / static_cast<double>(n));
            r.task_metric.push_back(metric_compute(cfg.tasks[t], torch::cat(probs[t]), torch::cat(targets[t])));
        }
    }
    if (was_training) net->train();
    return r;
}

namespace {

std::string metrics_line(const Config& cfg, int epoch, double train_loss, const EvalResult& test, double lr,
                         double seconds) {
    nlohmann::json j;
    j["epoch"] = epoch;
    j["train_loss"] = train_loss;
    j["test_loss"] = test.loss;
    j["lr"] = lr;
    j["seconds"] = seconds;
    for (size_t t = 0; t < cfg.tasks.size() && t < test.task_metric.size(); ++t) {
        const auto& task = cfg.tasks[t];
        const char* metric = metric_name(task.metric);
        j["test"][task.name] = {{"loss", test.task_loss[t]},
                                {metric, std::isnan(test.task_metric[t]) ? nlohmann::json() : nlohmann::json(test.task_metric[t])}};
    }
    return j.dump();
}

}  // namespace

std::vector<EpochRecord> train_run(const Config& cfg, const TrainOptions& opt) {
    fs::create_directories(opt.out_dir);
    const fs::path dir(opt.out_dir);
    const std::string config_yaml = config_to_yaml(cfg);
    text_write_atomic((dir / "config.yaml").string(), config_yaml);

    DatasetPtr train_data = dataset_open(cfg, "train");
    DatasetPtr test_data = dataset_open(cfg, "test");
    if (train_data->size() == 0) throw std::runtime_error("the training split of '" + cfg.dataset + "' is empty");
    // A resumed run's last.pt holds everything the initial weights became.
    const bool whole_model_follows = opt.resume || !opt.init_weights.empty();
    IPSNet net = net_make(cfg, !whole_model_follows);
    if (!opt.init_weights.empty() && !opt.resume) weights_load(opt.init_weights, net);
    net_to(net, opt.device);
    torch::optim::AdamW optimizer(net->parameters(), torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.wd));

    const int64_t n_train = train_data->size();
    const int64_t steps_per_epoch = (n_train + cfg.B - 1) / cfg.B;  // a partial last batch is trained on
    int start_epoch = 0;
    int64_t step = 0;
    double best = -1;
    if (opt.resume) {
        const fs::path last = dir / "last.pt";
        CheckpointMeta meta = checkpoint_load(last.string(), net, &optimizer);
        start_epoch = static_cast<int>(meta.epoch);
        step = meta.step;
        best = meta.best_score;
        std::fprintf(stderr, "resuming from %s after epoch %d (step %lld)\n", last.c_str(), start_epoch,
                     static_cast<long long>(step));
    } else {
        std::ofstream(dir / "metrics.jsonl", std::ios::trunc);
    }

    std::vector<EpochRecord> records;
    for (int epoch = start_epoch; epoch < cfg.n_epoch; ++epoch) {
        // Everything random in an epoch derives from (seed, epoch): a resumed run replays it exactly.
        std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed) * 1000003ULL + static_cast<uint64_t>(epoch));
        torch::manual_seed(static_cast<uint64_t>(cfg.seed) * 1000003ULL + static_cast<uint64_t>(epoch));
        std::vector<int64_t> order(static_cast<size_t>(n_train));
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);

        net->train();
        auto t0 = std::chrono::steady_clock::now();
        Progress bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(cfg.n_epoch), n_train, "img");
        double loss_sum = 0;
        double lr = cfg.lr;
        for (int64_t start = 0; start < n_train; start += cfg.B) {
            std::vector<Example> examples;
            for (int64_t i = start; i < std::min(n_train, start + cfg.B); ++i)
                examples.push_back(train_data->get(order[static_cast<size_t>(i)]));
            Batch batch = batch_make(net, cfg, examples, opt.device, rng, /*train=*/true);
            auto logits = net->forward(batch.patches, batch.idx, batch.valid);
            auto loss = loss_compute(cfg, logits, batch.targets);
            const double loss_value = loss.item<double>();
            if (!std::isfinite(loss_value))
                throw std::runtime_error("training loss is " + std::to_string(loss_value) + " at epoch " +
                                         std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) +
                                         "; the last good checkpoint is " + (dir / "last.pt").string() +
                                         " (try a lower 'lr')");
            lr = lr_at(cfg, step, steps_per_epoch);
            for (auto& group : optimizer.param_groups())
                static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            ++step;
            loss_sum += loss_value * static_cast<double>(examples.size());
            if (opt.progress) {
                char info[64];
                std::snprintf(info, sizeof info, "loss %.4f", loss_value);
                bar.update(static_cast<int64_t>(examples.size()), info);
            }
        }
        const double train_loss = loss_sum / static_cast<double>(n_train);
        if (opt.progress) {
            char info[64];
            std::snprintf(info, sizeof info, "loss %.4f", train_loss);
            bar.finish(info);
        }
        EvalResult test = evaluate(net, cfg, *test_data, opt.device, opt.progress);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        std::string line = metrics_line(cfg, epoch + 1, train_loss, test, lr, seconds);
        std::ofstream(dir / "metrics.jsonl", std::ios::app) << line << "\n";
        std::fprintf(stderr, "%s\n", line.c_str());

        CheckpointMeta meta{epoch + 1, step, std::max(best, test.score()), config_yaml};
        if (test.n > 0 && test.score() > best) {
            best = test.score();
            checkpoint_save((dir / "best.pt").string(), net, nullptr, meta);
        }
        checkpoint_save((dir / "last.pt").string(), net, &optimizer, meta);
        records.push_back({epoch + 1, train_loss, test});
        if (opt.stop_after_epoch > 0 && epoch + 1 >= opt.stop_after_epoch) break;
    }
    return records;
}

}  // namespace ips
