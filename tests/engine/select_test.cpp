#include <gtest/gtest.h>

#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <random>

#include "ips/select.h"
#include "ips/torch_compat.h"
#include "ips/step.h"
#include "test_util.h"

using namespace ips;
using torch::indexing::Slice;

namespace {

std::vector<int64_t> sorted_valid(const Selection& sel, int64_t b) {
    std::vector<int64_t> out;
    auto idx = sel.idx[b];
    for (int64_t m = 0; m < idx.size(0); ++m)
        if (sel.valid[b][m].item<bool>()) out.push_back(idx[m].item<int64_t>());
    std::sort(out.begin(), out.end());
    return out;
}

// Global top-M of the single-head, single-token attention logits q·k over all N patches.
std::vector<int64_t> global_top_m(IPSNet& net, const torch::Tensor& data, int64_t M) {
    torch::NoGradGuard no_grad;
    net->eval();
    auto emb = net->embed(data);  // [N, D]
    auto& a = net->transf->crs_attn;
    auto logits = torch::matmul(a->k_w(emb), a->q_w(a->q).view({-1}));  // [N]
    auto top = std::get<1>(torch::topk(logits, std::min(M, data.size(0))));
    std::vector<int64_t> out(top.data_ptr<int64_t>(), top.data_ptr<int64_t>() + top.numel());
    std::sort(out.begin(), out.end());
    return out;
}

// SPEC §1.1 written out plainly: per iteration, per head and token, a softmax over the M + I rows,
// scores averaged over heads then tokens, top-M kept. Returns indices best first.
std::vector<int64_t> plain_select(IPSNet& net, const torch::Tensor& data, int64_t M, int64_t I) {
    torch::NoGradGuard no_grad;
    net->eval();
    const int64_t N = data.size(0);
    auto& a = net->transf->crs_attn;
    const int64_t H = a->H, T = a->n_token, Dk = a->D_k;
    auto emb_all = net->embed(data);                                                      // [N, D]
    auto q = a->q_w(a->q).view({T, H, Dk}).to(torch::kFloat64);                           // [T, H, Dk]
    std::vector<int64_t> mem(static_cast<size_t>(M));
    std::iota(mem.begin(), mem.end(), 0);
    for (int64_t start = M; start < N; start += I) {
        std::vector<int64_t> rows = mem;
        for (int64_t n = start; n < std::min(N, start + I); ++n) rows.push_back(n);
        auto idx = torch::tensor(rows, torch::kLong);
        auto x = emb_all.index_select(0, idx);
        if (net->opt.use_pos) x = x + pos_enc_1d(idx, net->D);
        auto k = a->k_w(x).view({-1, H, Dk}).to(torch::kFloat64);  // [R, H, Dk]
        const int64_t R = k.size(0);
        std::vector<double> score(static_cast<size_t>(R), 0.0);
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t h = 0; h < H; ++h) {
                std::vector<double> logit(static_cast<size_t>(R));
                double mx = -1e300;
                for (int64_t r = 0; r < R; ++r) {
                    logit[r] = (q[t][h] * k[r][h]).sum().item<double>() / std::sqrt(static_cast<double>(Dk));
                    mx = std::max(mx, logit[r]);
                }
                double z = 0;
                for (auto& l : logit) z += std::exp(l - mx);
                for (int64_t r = 0; r < R; ++r) score[r] += std::exp(logit[r] - mx) / z / static_cast<double>(H * T);
            }
        }
        std::vector<int64_t> order(static_cast<size_t>(R));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t x1, int64_t x2) { return score[x1] > score[x2]; });
        for (int64_t m = 0; m < M; ++m) mem[m] = rows[order[m]];
    }
    return mem;
}

}  // namespace

TEST(Select, OneHeadOneTokenEqualsGlobalTopM) {
    std::mt19937_64 rng(1);
    struct Case {
        int64_t N, M, I;
    };
    std::vector<Case> cases = {{3, 5, 2}, {5, 5, 2}, {6, 5, 2}, {10, 3, 50}, {1, 1, 1}, {100, 10, 7}, {64, 1, 1}};
    for (int r = 0; r < 12; ++r)
        cases.push_back({static_cast<int64_t>(1 + rng() % 120), static_cast<int64_t>(1 + rng() % 20),
                         static_cast<int64_t>(1 + rng() % 30)});
    for (const auto& c : cases) {
        SCOPED_TRACE("N=" + std::to_string(c.N) + " M=" + std::to_string(c.M) + " I=" + std::to_string(c.I));
        torch::manual_seed(static_cast<uint64_t>(c.N * 131 + c.M));
        IPSNet net = test::net_of(test::tiny_bag_config(c.N, c.M, c.I, /*H=*/1, /*n_token=*/1));
        auto data = torch::randn({c.N, 8});
        auto src = tensor_source_make(data);
        SelectOptions opt = test::select_options(0, 0);
        opt.M = c.M;
        opt.I = c.I;
        Selection sel = patches_select(net, {src.get()}, opt, /*train=*/true, torch::kCPU, rng);
        ASSERT_EQ(sel.idx.sizes(), (std::vector<int64_t>{1, c.M}));
        EXPECT_EQ(sorted_valid(sel, 0), global_top_m(net, data, c.M));
        EXPECT_EQ(sel.valid.sum().item<int64_t>(), std::min(c.N, c.M));
        if (c.N < c.M) {
            EXPECT_EQ(sel.idx[0][c.M - 1].item<int64_t>(), -1);
        }
    }
}

TEST(Select, MultiHeadMultiTokenEqualsPlainRecomputation) {
    std::mt19937_64 rng(2);
    for (bool use_pos : {false, true}) {
        for (auto [N, M, I] : std::vector<std::array<int64_t, 3>>{{50, 6, 7}, {40, 10, 30}, {33, 4, 4}}) {
            SCOPED_TRACE("N=" + std::to_string(N) + " pos=" + std::to_string(use_pos));
            Config cfg = test::tiny_bag_config(N, M, I, /*H=*/8, /*n_token=*/3);
            cfg.model.D_k = 4;
            cfg.model.use_pos = use_pos;
            torch::manual_seed(static_cast<uint64_t>(N));
            IPSNet net = test::net_of(cfg);
            auto data = torch::randn({N, 8});
            auto src = tensor_source_make(data);
            SelectOptions opt = test::select_options(0, 0);
            opt.M = M;
            opt.I = I;
            Selection sel = patches_select(net, {src.get()}, opt, /*train=*/true, torch::kCPU, rng);
            auto expected = plain_select(net, data, M, I);
            std::vector<int64_t> got(sel.idx.data_ptr<int64_t>(), sel.idx.data_ptr<int64_t>() + M);
            EXPECT_EQ(got, expected);  // same patches, best first
        }
    }
}

TEST(Select, LockstepBatchEqualsOneImageAtATime) {
    std::mt19937_64 rng(3);
    IPSNet net = test::net_of(test::tiny_bag_config(40, 5, 6, 4, 2));
    std::vector<PatchSourcePtr> srcs;
    std::vector<PatchSource*> ptrs;
    for (int b = 0; b < 3; ++b) {
        srcs.push_back(tensor_source_make(torch::randn({b == 2 ? 17 : 40, 8})));  // one image of another N
        ptrs.push_back(srcs.back().get());
    }
    SelectOptions opt = test::select_options(0, 0);
    opt.M = 5;
    opt.I = 6;
    Selection together = patches_select(net, ptrs, opt, /*train=*/true, torch::kCPU, rng);
    for (int b = 0; b < 3; ++b) {
        Selection alone = patches_select(net, {ptrs[b]}, opt, /*train=*/true, torch::kCPU, rng);
        EXPECT_TRUE(torch::equal(together.idx[b], alone.idx[0]));
        EXPECT_TRUE(torch::allclose(together.scores[b], alone.scores[0], 1e-5, 1e-6));
    }
}

TEST(Select, ShuffleStylesBreakTiesAsSpecified) {
    // All patches identical: scores tie everywhere, so the order decides what is kept.
    const int64_t N = 60, M = 5;
    IPSNet net = test::net_of(test::tiny_bag_config(N, M, 10));
    auto same = tensor_source_make(torch::ones({N, 8}));
    std::vector<PatchSource*> batch = {same.get(), same.get(), same.get()};
    SelectOptions opt = test::select_options(0, 0);
    opt.M = M;
    opt.I = 10;
    std::mt19937_64 rng(4);
    Selection plain = patches_select(net, batch, opt, /*train=*/true, torch::kCPU, rng);
    // Without a shuffle, ties resolve the same way every time.
    EXPECT_EQ(sorted_valid(plain, 0), sorted_valid(plain, 1));
    EXPECT_TRUE(torch::equal(plain.idx, patches_select(net, batch, opt, /*train=*/true, torch::kCPU, rng).idx));
    opt.shuffle = true;
    opt.shuffle_style = ShuffleStyle::batch;
    Selection b = patches_select(net, batch, opt, /*train=*/true, torch::kCPU, rng);
    EXPECT_EQ(sorted_valid(b, 0), sorted_valid(b, 1));
    EXPECT_EQ(sorted_valid(b, 1), sorted_valid(b, 2));
    EXPECT_NE(sorted_valid(b, 0), sorted_valid(plain, 0));
    opt.shuffle_style = ShuffleStyle::instance;
    Selection inst = patches_select(net, batch, opt, /*train=*/true, torch::kCPU, rng);
    EXPECT_FALSE(sorted_valid(inst, 0) == sorted_valid(inst, 1) && sorted_valid(inst, 1) == sorted_valid(inst, 2));
}

TEST(Select, RestoresTrainingMode) {
    IPSNet net = test::net_of(test::tiny_bag_config(20, 4, 4));
    net->train();
    auto src = tensor_source_make(torch::randn({20, 8}));
    std::mt19937_64 rng(5);
    patches_select(net, {src.get()}, test::select_options(4, 4), /*train=*/true, torch::kCPU, rng);
    EXPECT_TRUE(net->is_training());
    EXPECT_TRUE(net->encoder->is_training());
}

namespace {

// Counts live bytes of every CPU tensor allocation, to show that selection memory does not grow
// with N when patches come from a source that holds no data (as a file read on demand does).
struct CountingAllocator final : c10::Allocator {
    c10::Allocator* base = nullptr;
    mutable std::atomic<int64_t> live{0}, peak{0};
    struct Ctx {
        c10::DataPtr inner;
        size_t n;
        const CountingAllocator* self;
    };
    static void release(void* p) {
        auto* ctx = static_cast<Ctx*>(p);
        ctx->self->live -= static_cast<int64_t>(ctx->n);
        delete ctx;
    }
// libtorch 2.3 made allocate() non-const and added copy_data().
#if IPS_TORCH_AT_LEAST(2, 3)
    c10::DataPtr allocate(size_t n) override {
#else
    c10::DataPtr allocate(size_t n) const override {
#endif
        auto inner = base->allocate(n);
        void* data = inner.get();
        int64_t now = (live += static_cast<int64_t>(n));
        int64_t prev = peak.load();
        while (now > prev && !peak.compare_exchange_weak(prev, now)) {
        }
        return {data, new Ctx{std::move(inner), n, this}, &release, c10::Device(c10::kCPU)};
    }
    c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
#if IPS_TORCH_AT_LEAST(2, 3)
    void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
#endif
};

struct GeneratedSource : PatchSource {
    GeneratedSource(int64_t n, int64_t f) : N(n), F(f) {}
    int64_t size() const override { return N; }
    std::vector<int64_t> patch_shape() const override { return {F}; }
    torch::Tensor read(const torch::Tensor& idx) override {
        auto cols = torch::arange(F, torch::kFloat32);
        return torch::sin(idx.to(torch::kFloat32).unsqueeze(1) * 0.37 + cols * 0.11);  // [K, F]
    }
    torch::Device device() const override { return torch::kCPU; }
    std::shared_ptr<PatchSource> to(const torch::Device&) override { return nullptr; }
    int64_t N, F;
};

int64_t selection_peak_bytes(IPSNet& net, int64_t N, CountingAllocator& counter) {
    GeneratedSource src(N, 512);
    std::mt19937_64 rng(6);
    counter.peak = counter.live.load();
    const int64_t before = counter.live.load();
    patches_select(net, {&src}, test::select_options(16, 64), /*train=*/true, torch::kCPU, rng);
    return counter.peak.load() - before;
}

}  // namespace

TEST(Select, LazySelectionMemoryDoesNotGrowWithN) {
    Config cfg = test::tiny_bag_config(0, 16, 64);
    cfg.model.n_chan_in = 512;
    IPSNet net = test::net_of(cfg);
    CountingAllocator counter;
    counter.base = c10::GetCPUAllocator();
    c10::SetCPUAllocator(&counter, /*priority=*/100);
    const int64_t small = selection_peak_bytes(net, 1000, counter);
    const int64_t large = selection_peak_bytes(net, 16000, counter);
    c10::SetCPUAllocator(counter.base, /*priority=*/100);
    // Holding all patches would add 15000 * 512 * 4 bytes = 29 MiB; only the order of indices
    // (8 bytes per patch) may grow.
    EXPECT_GT(small, 0);
    EXPECT_LT(large - small, 16 * 15000) << "small " << small << " large " << large;
}

TEST(Select, GradientsFlowOnlyThroughSelectedPatches) {
    Config cfg = test::tiny_bag_config(24, 4, 5);
    IPSNet net = test::net_of(cfg);
    net->train();
    auto data = torch::randn({24, 8}).requires_grad_(true);
    auto src = tensor_source_make(data);
    std::mt19937_64 rng(7);
    Selection sel = patches_select(net, {src.get()}, test::select_options(4, 5), /*train=*/true, torch::kCPU, rng);
    auto patches = patches_gather({src.get()}, sel, torch::kCPU);
    auto logits = net->forward(patches, sel.idx, sel.valid);
    loss_compute(cfg.model.tasks, cfg.train.eps, logits, {torch::tensor({1}, torch::kLong)}).backward();
    auto row_has_grad = data.grad().abs().sum(1).gt(0);
    auto selected = torch::zeros({24}, torch::kBool).index_put_({sel.idx[0]}, true);
    EXPECT_TRUE(torch::equal(row_has_grad, selected));
}

TEST(Select, BatchNormStatisticsComeOnlyFromSelectedPatches) {
    Config cfg;
    cfg.data.N = 16;
    cfg.select.M = 3;
    cfg.select.I = 5;
    cfg.train.B = cfg.train.B_seq = 2;
    cfg.data.patch_size = cfg.data.patch_stride = {16, 16};
    cfg.data.img_size = {64, 64};
    cfg.select.shuffle = false;
    cfg.model.tasks = {Task{0, "label", ActFn::softmax, Metric::accuracy}};
    torch::manual_seed(8);
    IPSNet with_selection = test::net_of(cfg);
    torch::manual_seed(8);
    IPSNet direct = test::net_of(cfg);
    std::vector<Example> examples;
    for (int b = 0; b < 2; ++b)
        examples.push_back({image_grid_source_make(torch::randint(0, 256, {1, 64, 64}, torch::kUInt8), {16, 16},
                                                   {16, 16}),
                            {torch::tensor(int64_t{1})}, ""});
    std::mt19937_64 rng(9);
    with_selection->train();
    Batch batch = batch_make(with_selection, cfg, examples, torch::kCPU, rng, true);
    auto mean_before = direct->named_buffers()["encoder.1.running_mean"].clone();
    with_selection->forward(batch.patches, batch.idx, batch.valid);
    direct->train();
    direct->forward(batch.patches, batch.idx, batch.valid);  // the same M patches, no selection pass
    for (const auto& item : direct->named_buffers()) {
        SCOPED_TRACE(item.key());
        EXPECT_TRUE(torch::allclose(item.value().to(torch::kFloat64),
                                    with_selection->named_buffers()[item.key()].to(torch::kFloat64), 1e-5, 1e-7));
    }
    EXPECT_FALSE(torch::allclose(mean_before, direct->named_buffers()["encoder.1.running_mean"]));
}
