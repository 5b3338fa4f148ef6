// One training or evaluation step's parts: the network, batch assembly from per-image
// selections, the loss, the schedule and the metrics. Nothing here opens a data set, so the engine
// (this, selection, the model and `ips bench`) builds without the image and slide libraries.
#include <cmath>
#include <cstdio>
#include <numeric>

#include "ips/precision.h"
#include "ips/torch_file.h"
#include "ips/train.h"

namespace ips {

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

std::vector<torch::Tensor> targets_stack(const std::vector<Example>& examples, size_t n_tasks) {
    std::vector<torch::Tensor> out;
    for (size_t t = 0; t < n_tasks; ++t) {
        std::vector<torch::Tensor> col;
        for (const auto& ex : examples) col.push_back(ex.targets.at(t));
        out.push_back(torch::stack(col));
    }
    return out;
}

}  // namespace ips
