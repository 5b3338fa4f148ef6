#include <gtest/gtest.h>

#include <cmath>

#include "ips/metrics.h"

using namespace ips;

TEST(Metrics, AccuracyMultilabelAndAucWithTies) {
    auto probs = torch::tensor({{0.9f, 0.1f}, {0.2f, 0.8f}, {0.6f, 0.4f}, {0.3f, 0.7f}});
    EXPECT_DOUBLE_EQ(metric_accuracy(probs, torch::tensor({0, 1, 1, 1})), 0.75);
    auto ml = torch::tensor({{0.9f, 0.2f}, {0.7f, 0.6f}});
    EXPECT_DOUBLE_EQ(metric_multilabel_accuracy(ml, torch::tensor({{1.f, 0.f}, {1.f, 0.f}})), 0.5);
    // AUC: 3 positives, 2 negatives; one tie between a positive and a negative counts half.
    auto s = torch::tensor({0.1, 0.4, 0.35, 0.8, 0.4});
    auto l = torch::tensor({0, 0, 1, 1, 1});
    EXPECT_NEAR(metric_auc(s, l), (1 + 2 + 1.5) / 6.0, 1e-12);  // pairs won by each positive
    EXPECT_DOUBLE_EQ(metric_auc(torch::tensor({0.2, 0.9}), torch::tensor({0, 1})), 1.0);
    EXPECT_TRUE(std::isnan(metric_auc(torch::tensor({0.2, 0.9}), torch::tensor({1, 1}))));
}

TEST(Metrics, ComputeFollowsTheTaskKind) {
    auto probs = torch::tensor({{0.9f, 0.1f}, {0.2f, 0.8f}, {0.6f, 0.4f}});
    EXPECT_NEAR(metric_compute(Task{0, "a", ActFn::softmax, Metric::accuracy}, probs, torch::tensor({0, 1, 1})),
                2.0 / 3.0, 1e-12);
    // Sigmoid outputs with plain accuracy: every output thresholded at 0.5 is compared on its own.
    auto multi = torch::tensor({{1.f, 0.f}, {1.f, 1.f}, {0.f, 0.f}});
    EXPECT_NEAR(metric_compute(Task{0, "m", ActFn::sigmoid, Metric::accuracy}, probs, multi), 4.0 / 6.0, 1e-12);
    EXPECT_NEAR(metric_compute(Task{0, "m", ActFn::sigmoid, Metric::multilabel_accuracy}, probs, multi), 1.0 / 3.0, 1e-12);
    // AUC of a softmax task: one-vs-rest, averaged over classes.
    EXPECT_DOUBLE_EQ(metric_compute(Task{0, "a", ActFn::softmax, Metric::auc}, probs, torch::tensor({0, 1, 0})), 1.0);
}
