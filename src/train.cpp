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

IPSNet net_make(const Config& cfg, bool initial_weights) {
    torch::manual_seed(static_cast<uint64_t>(cfg.seed));
    IPSNet net(cfg);
    if (!initial_weights) return net;
    if (cfg.is_image && !cfg.encoder_weights.empty()) {
        trunk_load_torchvision(net->encoder, cfg.encoder_weights, cfg.n_res_blocks);
    } else if (cfg.is_image && cfg.pretrained) {
        // Nothing is downloaded here: ImageNet weights must be given as a file.
        std::fprintf(stderr, "warning: 'pretrained' is set but 'encoder_weights' names no file: the encoder "
                             "starts from random weights\n");
    }
    return net;
}

SelectOptions select_options(const Config& cfg, const torch::Device& device, bool train) {
    SelectOptions opt;
    opt.M = cfg.M;
    opt.I = cfg.I;
    opt.device = device;
    opt.shuffle = (train || cfg.shuffle_eval) ? shuffle_from_config(cfg.shuffle, cfg.shuffle_style)
                                              : Shuffle::none;
    return opt;
}

Batch batch_make(IPSNet& net, const Config& cfg, const std::vector<Example>& examples,
                 const torch::Device& device, std::mt19937_64& rng, bool train) {
    const SelectOptions opt = select_options(cfg, device, train);
    std::vector<torch::Tensor> patches, idx, valid, scores;
    // B_seq images at a time: B_seq = B is eager (all on the device at once), 1 is eager sequential.
    for (size_t g = 0; g < examples.size(); g += static_cast<size_t>(cfg.B_seq)) {
        const size_t end = std::min(examples.size(), g + static_cast<size_t>(cfg.B_seq));
        std::vector<PatchSourcePtr> held;  // keeps moved sources alive for this group only
        std::vector<PatchSource*> group;
        for (size_t i = g; i < end; ++i) {
            held.push_back(cfg.eager ? examples[i].source->to(device) : examples[i].source);
            group.push_back(held.back().get());
        }
        Selection sel = patches_select(net, group, opt, rng);
        patches.push_back(patches_gather(group, sel, device));
        idx.push_back(sel.idx);
        valid.push_back(sel.valid);
        scores.push_back(sel.scores);
    }
    Batch batch;
    batch.patches = torch::cat(patches, 0);
    batch.idx = torch::cat(idx, 0);
    batch.valid = torch::cat(valid, 0);
    batch.scores = torch::cat(scores, 0);
    for (auto& t : targets_stack(examples, cfg.tasks.size())) batch.targets.push_back(t.to(device));
    return batch;
}

torch::Tensor loss_compute(const Config& cfg, const std::vector<torch::Tensor>& logits,
                           const std::vector<torch::Tensor>& targets, std::vector<double>* per_task) {
    torch::Tensor total;
    if (per_task) per_task->clear();
    for (size_t t = 0; t < cfg.tasks.size(); ++t) {
        torch::Tensor loss;
        if (cfg.tasks[t].act_fn == ActFn::softmax) {
            // log(p + eps) as the reference does, rather than log_softmax: same optimum, same numbers.
            auto logp = torch::log(torch::softmax(logits[t], -1) + cfg.eps);
            loss = torch::nll_loss(logp, targets[t]);
        } else {
            loss = torch::binary_cross_entropy(torch::sigmoid(logits[t]), targets[t].to(logits[t].dtype()));
        }
        if (per_task) per_task->push_back(loss.item<double>());
        total = total.defined() ? total + loss : loss;
    }
    return total / static_cast<double>(cfg.tasks.size());
}

double lr_at(const Config& cfg, int64_t step, int64_t steps_per_epoch) {
    const double warmup = static_cast<double>(cfg.n_epoch_warmup * steps_per_epoch);
    const double total = static_cast<double>(cfg.n_epoch * steps_per_epoch);
    const double s = static_cast<double>(step);
    if (s < warmup) return cfg.lr * s / warmup;
    const double min_lr = 0.001 * cfg.lr;
    const double progress = total > warmup ? std::min(1.0, (s - warmup) / (total - warmup)) : 1.0;
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double metric_accuracy(const torch::Tensor& probs, const torch::Tensor& targets) {
    return probs.argmax(-1).eq(targets).to(torch::kFloat64).mean().item<double>();
}

double metric_multilabel_accuracy(const torch::Tensor& probs, const torch::Tensor& targets) {
    auto pred = probs.ge(0.5);
    return pred.eq(targets.ge(0.5)).all(-1).to(torch::kFloat64).mean().item<double>();
}

double metric_auc(const torch::Tensor& scores, const torch::Tensor& labels) {
    // Mann-Whitney U with average ranks for ties.
    auto s = scores.to(torch::kFloat64).flatten().contiguous();
    auto l = labels.to(torch::kFloat64).flatten().contiguous();
    const int64_t n = s.numel();
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    const double* sp = s.data_ptr<double>();
    const double* lp = l.data_ptr<double>();
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return sp[a] < sp[b]; });
    double rank_sum_pos = 0, n_pos = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && sp[order[j]] == sp[order[i]]) ++j;
        const double avg_rank = 0.5 * static_cast<double>(i + j + 1);  // ranks are 1-based
        for (int64_t k = i; k < j; ++k)
            if (lp[order[k]] > 0.5) rank_sum_pos += avg_rank, n_pos += 1;
        i = j;
    }
    const double n_neg = static_cast<double>(n) - n_pos;
    if (n_pos == 0 || n_neg == 0) return std::nan("");  // undefined with one class only
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg);
}

double metric_compute(const Task& task, const torch::Tensor& probs, const torch::Tensor& targets) {
    switch (task.metric) {
        case Metric::accuracy:
            if (task.act_fn == ActFn::sigmoid)  // per-output accuracy of thresholded sigmoids
                return probs.ge(0.5).eq(targets.ge(0.5)).to(torch::kFloat64).mean().item<double>();
            return metric_accuracy(probs, targets);
        case Metric::multilabel_accuracy:
            return metric_multilabel_accuracy(probs, targets);
        case Metric::auc: {
            if (task.act_fn == ActFn::sigmoid) {
                // Macro average over outputs (one output for a binary task).
                double sum = 0;
                for (int64_t c = 0; c < probs.size(1); ++c) sum += metric_auc(probs.select(1, c), targets.select(1, c));
                return sum / static_cast<double>(probs.size(1));
            }
            double sum = 0;  // one-vs-rest macro average
            for (int64_t c = 0; c < probs.size(1); ++c) sum += metric_auc(probs.select(1, c), targets.eq(c));
            return sum / static_cast<double>(probs.size(1));
        }
    }
    return std::nan("");
}

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
    net->to(opt.device);
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
