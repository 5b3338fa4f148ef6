#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ips/step.h"
#include "test_util.h"

using namespace ips;

namespace {

// B bags of N random 8-d features with random labels.
std::vector<Example> random_examples(const Config& cfg, uint64_t seed) {
    std::mt19937_64 rng(seed);
    torch::manual_seed(seed);
    std::vector<Example> out;
    for (int b = 0; b < cfg.train.B; ++b)
        out.push_back({tensor_source_make(torch::randn({cfg.data.N, cfg.model.n_chan_in})), targets_random(cfg.model, rng),
                       "bag/" + std::to_string(b)});
    return out;
}

}  // namespace

TEST(Step, LearningRateFollowsTheReferenceSchedule) {
    // adjust_learning_rate(step = s) of the reference, s counted from 1 (SPEC §1.4): the first
    // optimizer step already moves the weights.
    Config c;
    c.train.lr = 1e-3;
    c.train.n_epoch = 10;
    c.train.n_epoch_warmup = 2;
    const int64_t spe = 5;  // 10 warm-up steps, 50 in all
    EXPECT_NEAR(lr_at(c.train, 0, spe), 1e-4, 1e-15);   // s = 1: lr * 1 / 10
    EXPECT_NEAR(lr_at(c.train, 4, spe), 0.5e-3, 1e-15);  // s = 5
    EXPECT_NEAR(lr_at(c.train, 8, spe), 0.9e-3, 1e-15);  // s = 9, the last warm-up step
    EXPECT_NEAR(lr_at(c.train, 9, spe), 1e-3, 1e-15);    // s = 10: the cosine starts at lr
    EXPECT_NEAR(lr_at(c.train, 29, spe), 0.5 * (1e-3 + 1e-6), 1e-15);  // s = 30: half way through the cosine
    EXPECT_NEAR(lr_at(c.train, 49, spe), 1e-6, 1e-15);                 // s = 50: 0.001 * lr at the end
    c.train.n_epoch_warmup = 0;
    const double q = 0.5 * (1 + std::cos(M_PI * 1 / 50.0));
    EXPECT_NEAR(lr_at(c.train, 0, spe), 1e-3 * q + 1e-6 * (1 - q), 1e-15);
}

TEST(Step, LossIsMeanOfTaskLosses) {
    Config c = test::tiny_bag_config();
    c.model.tasks.push_back(Task{0, "multi", ActFn::sigmoid, Metric::multilabel_accuracy});
    auto logits_a = torch::tensor({{2.f, -1.f}});
    auto logits_b = torch::tensor({{0.5f, -0.5f}});
    auto target_a = torch::tensor({1}, torch::kLong);
    auto target_b = torch::tensor({{1.f, 0.f}});
    std::vector<double> per_task;
    double loss = loss_compute(c.model.tasks, c.train.eps, {logits_a, logits_b}, {target_a, target_b}, &per_task).item<double>();
    double pa = std::exp(-1.0) / (std::exp(2.0) + std::exp(-1.0));
    double nll = -std::log(pa + 1e-6);
    double s1 = 1 / (1 + std::exp(-0.5)), s2 = 1 / (1 + std::exp(0.5));
    double bce = -(std::log(s1) + std::log(1 - s2)) / 2;
    EXPECT_NEAR(per_task[0], nll, 1e-5);
    EXPECT_NEAR(per_task[1], bce, 1e-5);
    EXPECT_NEAR(loss, (nll + bce) / 2, 1e-5);
}

TEST(Step, TrainStepFollowsTheScheduleAndCountsSteps) {
    Config cfg = test::tiny_bag_config(/*N=*/20, /*M=*/4, /*I=*/6);
    cfg.train.n_epoch_warmup = 1;
    IPSNet net = net_make(cfg.model, cfg.compute, 3);
    auto opt = optimizer_make(net, cfg.train);
    const auto examples = random_examples(cfg, 1);
    std::mt19937_64 rng(2);
    StepCounter counter{0, 4};
    const auto before = net->named_parameters()["transf.crs_attn.q"].clone();
    const auto lr_of = [&] { return static_cast<torch::optim::AdamWOptions&>(opt->param_groups()[0].options()).lr(); };
    // The first step of a warm-up of 4 steps runs at lr / 4, as the reference's (its step counts
    // from 1), so it already moves the weights.
    const double loss = train_step(net, *opt, cfg, examples, torch::kCPU, rng, counter);
    EXPECT_TRUE(std::isfinite(loss));
    EXPECT_EQ(counter.step, 1);
    EXPECT_DOUBLE_EQ(lr_of(), cfg.train.lr / 4);
    EXPECT_FALSE(torch::equal(before, net->named_parameters()["transf.crs_attn.q"]));
    train_step(net, *opt, cfg, examples, torch::kCPU, rng, counter);
    EXPECT_EQ(counter.step, 2);
    EXPECT_DOUBLE_EQ(lr_of(), cfg.train.lr / 2);
    EXPECT_TRUE(net->is_training());
}

// A batch of two whose second bag is all NaN, at step 8 of a schedule of 4 steps an epoch.
struct NanBatch {
    explicit NanBatch(NonFinite mode) {
        cfg.train.nonfinite_loss = mode;
        examples[1].source = tensor_source_make(torch::full({cfg.data.N, cfg.model.n_chan_in}, std::nan("")));
    }
    Config cfg = test::tiny_bag_config(/*N=*/12, /*M=*/4, /*I=*/4);
    IPSNet net = net_make(cfg.model, cfg.compute, 3);
    std::unique_ptr<torch::optim::AdamW> opt = optimizer_make(net, cfg.train);
    std::vector<Example> examples = random_examples(cfg, 1);
    std::mt19937_64 rng{2};
    StepCounter counter{7, 4};
    double step() { return train_step(net, *opt, cfg, examples, torch::kCPU, rng, counter); }
};

TEST(Step, NonFiniteLossStopsBeforeAnyWeightChanges) {
    NanBatch b(NonFinite::stop);
    auto& net = b.net;
    auto& counter = b.counter;
    const auto before = net->named_parameters()["transf.crs_attn.q"].clone();
    try {
        b.step();
        FAIL() << "a NaN loss was trained on";
    } catch (const NonFiniteLoss& e) {
        EXPECT_NE(std::string(e.what()).find("step 8"), std::string::npos) << e.what();
    }
    EXPECT_EQ(counter.step, 7);
    EXPECT_TRUE(torch::equal(before, net->named_parameters()["transf.crs_attn.q"]));
}

TEST(Step, SkippingANonFiniteLossLeavesWeightsAndStatisticsAsTheyWere) {
    NanBatch b(NonFinite::skip);
    auto& net = b.net;
    std::vector<torch::Tensor> before;
    for (const auto& t : net->parameters()) before.push_back(t.clone());
    for (const auto& t : net->buffers()) before.push_back(t.clone());
    ASSERT_FALSE(net->buffers().empty());  // BatchNorm's running statistics: the forward moved them
    EXPECT_TRUE(std::isnan(b.step()));
    EXPECT_EQ(b.counter.step, 8);  // the schedule counts the batch
    std::vector<torch::Tensor> after;
    for (const auto& t : net->parameters()) after.push_back(t);
    for (const auto& t : net->buffers()) after.push_back(t);
    ASSERT_EQ(before.size(), after.size());
    for (size_t k = 0; k < before.size(); ++k) EXPECT_TRUE(torch::equal(before[k], after[k])) << k;
    // The next finite batch trains as usual.
    b.examples[1] = random_examples(b.cfg, 2)[0];
    EXPECT_TRUE(std::isfinite(b.step()));
}

TEST(Step, InferStepIsTheForwardOfTheSelectionInEvalMode) {
    Config cfg = test::tiny_bag_config(/*N=*/30, /*M=*/5, /*I=*/7, /*H=*/2, /*n_token=*/1);
    IPSNet net = net_make(cfg.model, cfg.compute, 4);
    net->train();
    const auto examples = random_examples(cfg, 5);
    std::mt19937_64 rng_a(6), rng_b(6);
    Inference inf = infer_step(net, cfg, examples, torch::kCPU, rng_a);
    EXPECT_TRUE(net->is_training());  // mode restored
    EXPECT_FALSE(inf.probs[0].requires_grad());
    net->eval();
    torch::NoGradGuard no_grad;
    Batch batch = batch_make(net, cfg, examples, torch::kCPU, rng_b, /*train=*/false);
    torch::Tensor attn;
    auto logits = net->forward(batch.patches, batch.idx, batch.valid, &attn);
    EXPECT_TRUE(torch::equal(inf.batch.idx, batch.idx));
    EXPECT_TRUE(torch::allclose(inf.logits[0], logits[0]));
    EXPECT_TRUE(torch::allclose(inf.probs[0], torch::softmax(logits[0], -1)));
    // Per-patch attention: heads and tokens averaged, a distribution over the M selected patches.
    auto per_patch = attention_per_patch(inf.attn);
    EXPECT_EQ(per_patch.sizes(), (std::vector<int64_t>{cfg.train.B, cfg.select.M}));
    EXPECT_TRUE(torch::allclose(per_patch.sum(1), torch::ones({cfg.train.B})));
}

TEST(Step, EagerSequentialAndLazyAssembleTheSameBatch) {
    Config cfg = test::tiny_bag_config(/*N=*/26, /*M=*/5, /*I=*/6);
    IPSNet net = net_make(cfg.model, cfg.compute, 4);
    const auto examples = random_examples(cfg, 8);
    std::mt19937_64 rng(1);
    Batch eager = batch_make(net, cfg, examples, torch::kCPU, rng, false);
    cfg.train.B_seq = 1;
    Batch sequential = batch_make(net, cfg, examples, torch::kCPU, rng, false);
    cfg.data.eager = false;
    Batch lazy = batch_make(net, cfg, examples, torch::kCPU, rng, false);
    EXPECT_TRUE(torch::equal(eager.idx, sequential.idx));
    EXPECT_TRUE(torch::equal(eager.idx, lazy.idx));
    EXPECT_TRUE(torch::allclose(eager.patches, lazy.patches));
}
