#include "ips/evaluate.h"

#include <cmath>
#include <cstdio>
#include <numeric>

#include "ips/fault.h"
#include "ips/metrics.h"
#include "ips/progress.h"
#include "ips/step.h"

namespace ips {

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
                    DistGroup* group, const std::function<bool()>& stop) {
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed) + 7919);
    const auto& tasks = cfg.model.tasks;
    std::vector<std::vector<torch::Tensor>> probs(tasks.size()), targets(tasks.size());
    const int64_t n = data.size();
    const Share mine = group ? share_of(n, dist_rank(*group), dist_world_size(*group)) : Share{0, n};
    // [0] the loss summed over examples, [1 + t] task t's
    auto loss_sums = torch::zeros({static_cast<int64_t>(tasks.size()) + 1}, torch::kFloat64);
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    Progress bar("eval", n, "img");
    const int64_t step = group ? std::max<int64_t>(1, cfg.train.B / dist_world_size(*group)) : cfg.train.B;
    for (int64_t start = mine.begin; start < mine.begin + mine.count; start += step) {
        const auto examples = dataset_examples(data, order, start, std::min(step, mine.begin + mine.count - start));
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
        fault_point("eval-batch");
        if (stop && stop()) throw EvalStopped();
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

}  // namespace ips
