#include <gtest/gtest.h>

#include <cmath>

#include "ips/bench.h"
#include "test_util.h"

using namespace ips;

// `ips bench` times exactly what `ips train` runs: one bench iteration from a state equals one
// train_step from the same state, in loss and in every parameter afterwards.
TEST(Bench, AnIterationIsOneTrainingStep) {
    Config cfg = test::tiny_bag_config(/*N=*/40, /*M=*/6, /*I=*/9);
    cfg.select.shuffle = true;
    cfg.train.n_epoch_warmup = 0;
    BenchOptions opt;
    opt.bag_dtype = torch::kFloat32;
    BenchSession session = bench_session_make(cfg, opt);
    // The same state, built by hand as train_run builds it.
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    net_to(net, torch::kCPU);
    auto optimizer = optimizer_make(net, cfg.train);
    StepCounter counter = session.counter;
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed));
    for (int i = 0; i < 2; ++i) {
        const double bench_loss = bench_iteration(session);
        const double train_loss = train_step(net, *optimizer, cfg, session.examples, torch::kCPU, rng, counter);
        EXPECT_DOUBLE_EQ(bench_loss, train_loss) << "iteration " << i;
        for (const auto& p : net->named_parameters())
            EXPECT_TRUE(torch::equal(p.value(), session.net->named_parameters()[p.key()])) << p.key();
    }
    EXPECT_EQ(session.counter.step, 2);
}

TEST(Bench, RunReportsTheConfigAndAMedian) {
    Config cfg = test::tiny_bag_config(/*N=*/64, /*M=*/8, /*I=*/16);
    BenchOptions opt;
    opt.iters = 3;
    opt.warmup = 1;
    opt.mode = BenchMode::eval;
    BenchResult r = bench_run(cfg, opt);
    ASSERT_EQ(r.ms_all.size(), 3u);
    EXPECT_GT(r.ms_per_batch, 0);
    EXPECT_EQ(r.mode, "eval");
    EXPECT_EQ(r.N, 64);
    EXPECT_EQ(r.input_dtype, "float16");
    EXPECT_EQ(r.peak_mem_kind, "peak_rss");
    cfg.data.N = 0;
    EXPECT_THROW(bench_run(cfg, opt), ConfigError);
}
