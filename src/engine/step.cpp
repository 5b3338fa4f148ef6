#include "ips/step.h"

#include <cmath>
#include <limits>

namespace ips {

Batch batch_make(IPSNet& net, const Config& cfg, const std::vector<Example>& examples,
                 const torch::Device& device, std::mt19937_64& rng, bool train, const SelectExtras& extras) {
    std::vector<torch::Tensor> patches, idx, valid, scores, logits;
    SelectTimes times;
    const auto group_size = static_cast<size_t>(cfg.train.B_seq);
    // B_seq images at a time: B_seq = B is eager (all on the device at once), 1 is eager sequential.
    for (size_t g = 0; g < examples.size(); g += group_size) {
        const size_t end = std::min(examples.size(), g + group_size);
        std::vector<PatchSourcePtr> held;  // keeps moved sources alive for this group only
        std::vector<PatchSource*> group;
        for (size_t i = g; i < end; ++i) {
            held.push_back(cfg.data.eager ? examples[i].source->to(device) : examples[i].source);
            group.push_back(held.back().get());
        }
        Selection sel = patches_select(net, group, cfg.select, train, device, rng, extras);
        logits.insert(logits.end(), sel.logits.begin(), sel.logits.end());
        times.total += sel.times.total, times.encode += sel.times.encode, times.read_wait += sel.times.read_wait;
        times.patches += sel.times.patches;
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
    batch.logits = std::move(logits);
    batch.times = times;
    if (!examples.empty() && !examples.front().targets.empty())
        for (auto& t : targets_stack(examples, cfg.model.tasks.size())) batch.targets.push_back(t.to(device));
    return batch;
}

torch::Tensor loss_compute(const std::vector<Task>& tasks, double eps, const std::vector<torch::Tensor>& logits,
                           const std::vector<torch::Tensor>& targets, std::vector<double>* per_task) {
    torch::Tensor total;
    if (per_task) per_task->clear();
    for (size_t t = 0; t < tasks.size(); ++t) {
        torch::Tensor loss;
        if (tasks[t].act_fn == ActFn::softmax) {
            // log(p + eps) as the reference does, rather than log_softmax: same optimum, same numbers.
            loss = torch::nll_loss(torch::log(torch::softmax(logits[t], -1) + eps), targets[t]);
        } else {
            const auto p = torch::sigmoid(logits[t]);
            // binary_cross_entropy refuses a NaN input with an error about its range; a NaN loss is
            // what the caller's finite check (stop or skip, naming the batch) is there for.
            if (!torch::isfinite(p).all().item<bool>())
                loss = p.sum() * std::numeric_limits<double>::quiet_NaN();
            else
                loss = torch::binary_cross_entropy(p, targets[t].to(logits[t].dtype()));
        }
        if (per_task) per_task->push_back(loss.item<double>());
        total = total.defined() ? total + loss : loss;
    }
    return total / static_cast<double>(tasks.size());
}

double lr_at(const TrainOptions& opt, int64_t step, int64_t steps_per_epoch) {
    const double warmup = static_cast<double>(opt.n_epoch_warmup * steps_per_epoch);
    const double total = static_cast<double>(opt.n_epoch * steps_per_epoch);
    // The reference's adjust_learning_rate is called with data_it + 1: the first optimizer step
    // already runs at lr / warmup_steps rather than 0.
    const double s = static_cast<double>(step + 1);
    if (s < warmup) return opt.lr * s / warmup;
    const double min_lr = 0.001 * opt.lr;
    const double progress = total > warmup ? std::min(1.0, (s - warmup) / (total - warmup)) : 1.0;
    return min_lr + 0.5 * (opt.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

std::unique_ptr<torch::optim::AdamW> optimizer_make(IPSNet& net, const TrainOptions& opt) {
    return std::make_unique<torch::optim::AdamW>(net->parameters(),
                                                 torch::optim::AdamWOptions(opt.lr).weight_decay(opt.wd));
}

void optimizer_lr_set(torch::optim::Optimizer& optimizer, double lr) {
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

double train_step(IPSNet& net, torch::optim::Optimizer& optimizer, const Config& cfg,
                  const std::vector<Example>& examples, const torch::Device& device, std::mt19937_64& rng,
                  StepCounter& counter, const StepShare& share) {
    net->train();
    const bool skip = cfg.train.nonfinite_loss == NonFinite::skip;
    // The forward pass moves BatchNorm's running statistics; a skipped batch must not have.
    std::vector<torch::Tensor> buffers_before;
    if (skip) {
        torch::NoGradGuard no_grad;
        for (const auto& b : net->buffers()) buffers_before.push_back(b.clone());
    }
    Batch batch = batch_make(net, cfg, examples, device, rng, /*train=*/true);
    auto logits = net->forward(batch.patches, batch.idx, batch.valid);
    auto loss = loss_compute(cfg.model.tasks, cfg.train.eps, logits, batch.targets);
    double value = loss.item<double>();
    const auto non_finite = [&]() -> double {
        if (!skip) {
            std::string names;
            for (const auto& e : examples) names += (names.empty() ? "" : ", ") + e.name;
            throw NonFiniteLoss("training loss is " + std::to_string(value) + " at step " +
                                std::to_string(counter.step + 1) + " (images: " + names + ")");
        }
        torch::NoGradGuard no_grad;
        auto now = net->buffers();
        for (size_t k = 0; k < now.size(); ++k) now[k].copy_(buffers_before[k]);
        optimizer.zero_grad();
        ++counter.step;  // the schedule counts batches, so it stays aligned with epochs
        return std::numeric_limits<double>::quiet_NaN();
    };
    if (!share.group && !std::isfinite(value)) return non_finite();
    optimizer_lr_set(optimizer, lr_at(cfg.train, counter.step, counter.steps_per_epoch));
    optimizer.zero_grad();
    if (share.group) {
        (loss * share.weight).backward();
        value = gradients_allreduce(*share.group, net->parameters(), value * share.weight);
        if (!std::isfinite(value)) return non_finite();
        if (!cfg.train.sync_bn) module_broadcast(*share.group, *net, /*parameters=*/false);
    } else {
        loss.backward();
    }
    optimizer.step();
    ++counter.step;
    return value;
}

Inference infer_step(IPSNet& net, const Config& cfg, const std::vector<Example>& examples,
                     const torch::Device& device, std::mt19937_64& rng, const SelectExtras& extras) {
    const bool was_training = net->is_training();
    net->eval();
    torch::NoGradGuard no_grad;
    Inference out;
    out.batch = batch_make(net, cfg, examples, device, rng, /*train=*/false, extras);
    out.logits = net->forward(out.batch.patches, out.batch.idx, out.batch.valid, &out.attn);
    out.probs = net->probabilities(out.logits);
    if (extras.logits) {
        const auto attn = attention_per_patch(out.attn).to(torch::kCPU);  // [B, M]
        const auto idx = out.batch.idx.to(torch::kCPU), valid = out.batch.valid.to(torch::kCPU);
        for (size_t b = 0; b < examples.size(); ++b) {
            const auto v = valid[int64_t(b)];
            out.patch_scores.push_back(patch_scores(out.batch.logits[b], examples[b].source->size(),
                                                    idx[int64_t(b)].index({v}), attn[int64_t(b)].index({v})));
        }
    }
    if (was_training) net->train();
    return out;
}

torch::Tensor attention_per_patch(const torch::Tensor& attn) { return attn.mean(1).mean(1); }

}  // namespace ips
