// Examples' targets: stacking per-example targets into per-task batches, and random targets of
// the kinds each task takes.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "ips/example.h"

using namespace ips;

namespace {

ModelOptions two_task_model(int n_class) {
    ModelOptions m;
    m.n_class = n_class;
    m.tasks = {Task{0, "kind", ActFn::softmax, Metric::accuracy},
               Task{0, "tags", ActFn::sigmoid, Metric::multilabel_accuracy}};
    return m;
}

Example example_of(int64_t cls, std::vector<float> tags) {
    Example ex;
    ex.source = tensor_source_make(torch::zeros({2, 3}));
    ex.targets = {torch::tensor(cls, torch::kLong), torch::tensor(tags)};
    return ex;
}

}  // namespace

TEST(Example, TargetsStackPerTaskInExampleOrder) {
    const std::vector<Example> batch = {example_of(2, {1, 0, 1}), example_of(0, {0, 0, 0}), example_of(1, {0, 1, 1})};
    const auto t = targets_stack(batch, 2);
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].scalar_type(), torch::kLong);
    EXPECT_EQ(t[0].sizes(), (std::vector<int64_t>{3}));
    EXPECT_TRUE(torch::equal(t[0], torch::tensor({2, 0, 1}, torch::kLong)));
    EXPECT_EQ(t[1].scalar_type(), torch::kFloat32);
    EXPECT_EQ(t[1].sizes(), (std::vector<int64_t>{3, 3}));
    EXPECT_TRUE(torch::equal(t[1], torch::tensor({{1.f, 0.f, 1.f}, {0.f, 0.f, 0.f}, {0.f, 1.f, 1.f}})));
    // Fewer tasks than targets: only the first ones; none: nothing.
    EXPECT_EQ(targets_stack(batch, 1).size(), 1u);
    EXPECT_TRUE(targets_stack(batch, 0).empty());
    // An example without a target for a task (an unlabelled input) cannot be stacked.
    std::vector<Example> unlabelled = batch;
    unlabelled[1].targets.clear();
    EXPECT_THROW(targets_stack(unlabelled, 2), std::out_of_range);
}

TEST(Example, TargetsRandomFollowTheTaskKinds) {
    const ModelOptions m = two_task_model(4);
    std::mt19937_64 rng(5);
    std::set<int64_t> classes;
    double ones = 0, cells = 0;
    for (int k = 0; k < 200; ++k) {
        const auto t = targets_random(m, rng);
        ASSERT_EQ(t.size(), 2u);
        EXPECT_EQ(t[0].dim(), 0);
        EXPECT_EQ(t[0].scalar_type(), torch::kLong);
        const int64_t c = t[0].item<int64_t>();
        EXPECT_GE(c, 0);
        EXPECT_LT(c, 4);
        classes.insert(c);
        EXPECT_EQ(t[1].sizes(), (std::vector<int64_t>{4}));
        EXPECT_EQ(t[1].scalar_type(), torch::kFloat32);
        EXPECT_TRUE(((t[1] == 0) | (t[1] == 1)).all().item<bool>());
        ones += t[1].sum().item<double>();
        cells += 4;
    }
    EXPECT_EQ(classes.size(), 4u);  // every class is drawn
    EXPECT_GT(ones / cells, 0.4);   // about half the multi-hot cells are set
    EXPECT_LT(ones / cells, 0.6);
    // Stackable as a batch, as the synthetic data set and the benchmark use them.
    std::vector<Example> batch(3);
    for (auto& ex : batch) ex.targets = targets_random(m, rng);
    const auto stacked = targets_stack(batch, 2);
    EXPECT_EQ(stacked[1].sizes(), (std::vector<int64_t>{3, 4}));
}

TEST(Example, TargetsRandomAreAFunctionOfTheGenerator) {
    const ModelOptions m = two_task_model(10);
    std::mt19937_64 a(42), b(42), c(43);
    bool any_differs = false;
    for (int k = 0; k < 20; ++k) {
        const auto ta = targets_random(m, a), tb = targets_random(m, b), tc = targets_random(m, c);
        EXPECT_TRUE(torch::equal(ta[0], tb[0]));
        EXPECT_TRUE(torch::equal(ta[1], tb[1]));
        any_differs = any_differs || !torch::equal(ta[0], tc[0]) || !torch::equal(ta[1], tc[1]);
    }
    EXPECT_TRUE(any_differs);
    // No tasks: no targets, and the generator is not advanced.
    ModelOptions none;
    none.tasks.clear();
    std::mt19937_64 d(7), e(7);
    EXPECT_TRUE(targets_random(none, d).empty());
    EXPECT_EQ(d(), e());
}
