#include "ips/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ips {

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

}  // namespace ips
