// c10d groups with the ranks as threads of this process (Gloo on loopback): collectives,
// bucketed gradient sums, synchronised BatchNorm against one process's BatchNorm, and the
// rendezvous errors.
#include <gtest/gtest.h>


#include <cstdlib>
#include <functional>
#include <thread>

#include "ips/batchnorm.h"
#include "ips/distributed.h"
#include "test_support.h"

namespace ips {
namespace {
DistEnv env_of(int rank, int world, int port) {
    DistEnv e;
    e.rank = rank;
    e.world_size = world;
    e.local_rank = rank;
    e.local_world_size = world;
    e.master_port = port;
    e.launched = true;
    return e;
}

DistOptions options_of(int timeout_s, const std::string& fingerprint = "cfg") {
    DistOptions o;
    o.backend = DistBackend::gloo;
    o.timeout = std::chrono::seconds(timeout_s);
    o.fingerprint = fingerprint;
    return o;
}

// Runs body(rank, group) on `world` threads, one rank each; returns each rank's error text ("" if none).
std::vector<std::string> ranks_run(int world, const std::function<void(int, DistGroup&)>& body,
                                   const std::vector<int>& world_seen = {}) {
    const int port = ips::test::port_free();
    std::vector<std::string> errors(static_cast<size_t>(world));
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r)
        threads.emplace_back([&, r] {
            try {
                const int w = world_seen.empty() ? world : world_seen[static_cast<size_t>(r)];
                auto g = dist_init(env_of(r, w, port), options_of(5), torch::kCPU);
                body(r, *g);
                dist_barrier(*g);
            } catch (const std::exception& e) {
                errors[static_cast<size_t>(r)] = e.what();
            }
        });
    for (auto& t : threads) t.join();
    return errors;
}

TEST(Distributed, SharesAreDisjointContiguousAndCoverEverything) {
    for (int64_t n : {0, 1, 3, 7, 16}) {
        for (int world : {1, 2, 3, 5}) {
            int64_t next = 0;
            for (int r = 0; r < world; ++r) {
                const Share s = share_of(n, r, world);
                EXPECT_EQ(s.begin, next);
                EXPECT_LE(s.count, n / world + 1);
                EXPECT_GE(s.count, n / world);
                next += s.count;
            }
            EXPECT_EQ(next, n);
        }
    }
}

struct EnvGuard {
    ~EnvGuard() {
        for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT"}) unsetenv(k);
    }
};

TEST(Distributed, EnvironmentIsReadAndBadValuesAreNamed) {
    EnvGuard guard;
    EXPECT_FALSE(dist_env_read().launched);
    setenv("RANK", "1", 1);
    EXPECT_NE(test::error_of([] { dist_env_read(); }).find("WORLD_SIZE is not"), std::string::npos);
    setenv("WORLD_SIZE", "2", 1);
    setenv("MASTER_PORT", "29123", 1);
    const DistEnv env = dist_env_read();
    EXPECT_TRUE(env.launched);
    EXPECT_EQ(env.rank, 1);
    EXPECT_EQ(env.local_rank, 1);
    EXPECT_EQ(env.master_port, 29123);
    setenv("RANK", "2", 1);
    EXPECT_NE(test::error_of([] { dist_env_read(); }).find("outside WORLD_SIZE=2"), std::string::npos);
    setenv("RANK", "x", 1);
    EXPECT_NE(test::error_of([] { dist_env_read(); }).find("RANK='x'"), std::string::npos);
    EXPECT_NE(test::error_of([] { dist_backend_parse("mpi"); }).find("'mpi'"), std::string::npos);
}

TEST(Distributed, CollectivesAndGradientBucketsSumOverRanks) {
    const int world = 3;
    auto errors = ranks_run(world, [&](int r, DistGroup& g) {
        auto t = torch::full({4}, static_cast<float>(r + 1));
        dist_allreduce_sum(g, t);
        EXPECT_TRUE(torch::equal(t, torch::full({4}, 6.0f)));
        auto all = dist_allgather(g, torch::full({2}, static_cast<double>(r)));
        ASSERT_EQ(all.size(), 3u);
        for (int k = 0; k < world; ++k) EXPECT_EQ(all[static_cast<size_t>(k)][1].item<double>(), k);
        EXPECT_EQ(dist_bytes_broadcast(g, "hello", r == 0 ? std::string("from rank 0\0x", 13) : ""),
                  std::string("from rank 0\0x", 13));

        // Different weights and buffers per rank (not from the global generator, which the rank
        // threads share): the broadcast makes them rank 0's.
        torch::nn::Sequential net(torch::nn::Linear(5, 7), BatchNorm(7), torch::nn::Linear(7, 2));
        {
            torch::NoGradGuard no_grad;
            int k = 0;
            for (auto& p : net->parameters()) p.fill_(100.0 * r + k++);
            for (auto& b : net->buffers()) b.fill_(100 * r + k++);
        }
        module_broadcast(g, *net);
        int k = 0;
        for (const auto& p : net->parameters()) EXPECT_TRUE(torch::equal(p, torch::full_like(p, k++)));
        for (const auto& b : net->buffers()) EXPECT_TRUE(torch::equal(b, torch::full_like(b, k++)));

        // Gradients: rank r contributes (r + 1) x its own; buckets of 64 bytes split them up.
        auto params = net->parameters();
        std::vector<torch::Tensor> expected;
        for (auto& p : params) {
            p.mutable_grad() = torch::full_like(p, static_cast<float>(r + 1));
            expected.push_back(torch::full_like(p, 6.0f));
        }
        params.back().mutable_grad() = torch::Tensor();  // no gradient: left without one
        EXPECT_DOUBLE_EQ(gradients_allreduce(g, params, 0.5 * r, /*bucket_bytes=*/64), 1.5);
        for (size_t i = 0; i + 1 < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i].grad(), expected[i]));
        EXPECT_FALSE(params.back().grad().defined());
        for (auto& p : params) p.mutable_grad() = torch::full_like(p, static_cast<float>(r + 1));
        EXPECT_DOUBLE_EQ(gradients_allreduce_per_tensor(g, params, 1.0), 3.0);
        for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i].grad(), expected[i]));
        EXPECT_GT(dist_comm_seconds(g), 0.0);
    });
    for (const auto& e : errors) EXPECT_EQ(e, "");
}

// Two ranks with half a batch each give one process's BatchNorm over the whole batch: output,
// input and parameter gradients (summed over ranks), running statistics; a stand-in rank adds nothing.
TEST(Distributed, SynchronisedBatchNormEqualsOneProcess) {
    torch::manual_seed(3);
    const auto x = torch::randn({6, 4, 3, 3}) * 2 + 1;
    const auto r = torch::randn({6, 4, 3, 3});
    BatchNorm one(4);
    one->weight.data().uniform_(0.5, 1.5);
    auto x1 = x.clone().requires_grad_();
    auto y1 = one->forward(x1);
    (y1 * r).sum().backward();

    for (bool stand_in : {false, true}) {
        SCOPED_TRACE(stand_in ? "rank 2 stands in" : "two ranks");
        const int world = stand_in ? 3 : 2;
        auto errors = ranks_run(world, [&](int rank, DistGroup& g) {
            BatchNorm bn(4);
            bn->weight.data().copy_(one->weight.data());
            auto sync = std::make_shared<BatchNormSync>();
            sync->group = &g;
            sync->contributes = rank < 2;
            module_batchnorm_sync(*bn, sync);
            const int64_t lo = rank == 1 ? 4 : 0, n = rank == 0 ? 4 : 2;  // 4 + 2 rows; the stand-in repeats rows 0-1
            auto xr = x.narrow(0, lo, n).clone().requires_grad_();
            auto y = bn->forward(xr);
            (y * r.narrow(0, lo, n) * (sync->contributes ? 1.0 : 0.0)).sum().backward();
            auto grads = torch::cat({bn->weight.grad(), bn->bias.grad()});
            dist_allreduce_sum(g, grads);
            EXPECT_TRUE(torch::allclose(grads, torch::cat({one->weight.grad(), one->bias.grad()}), 1e-5, 1e-5));
            EXPECT_TRUE(torch::allclose(bn->running_mean, one->running_mean, 1e-6, 1e-6));
            EXPECT_TRUE(torch::allclose(bn->running_var, one->running_var, 1e-5, 1e-6));
            if (!sync->contributes) {
                EXPECT_EQ(xr.grad().abs().max().item<float>(), 0.0f);
                return;
            }
            EXPECT_TRUE(torch::allclose(y, y1.narrow(0, lo, n), 1e-5, 1e-5));
            EXPECT_TRUE(torch::allclose(xr.grad(), x1.grad().narrow(0, lo, n), 1e-5, 1e-5));
        });
        for (const auto& e : errors) EXPECT_EQ(e, "");
    }
}

TEST(Distributed, RendezvousErrorsNameTheCauseWithinTheTimeout) {
    // A rank that never joins: rank 0 waits `timeout`, then names it.
    const auto t0 = std::chrono::steady_clock::now();
    auto lonely = test::error_of([] { dist_init(env_of(0, 2, ips::test::port_free()), options_of(2), torch::kCPU); });
    EXPECT_NE(lonely.find("rank 1 of 2 never joined"), std::string::npos) << lonely;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));

    // The port is taken.
    const int port = ips::test::port_free();
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    listen(fd, 1);
    auto taken = test::error_of([&] { dist_init(env_of(0, 1, port), options_of(2), torch::kCPU); });
    close(fd);
    EXPECT_NE(taken.find("MASTER_PORT " + std::to_string(port) + " is in use"), std::string::npos) << taken;

    // World sizes that disagree: rank 1 names both, rank 0 hears why rank 1 stopped.
    auto errors = ranks_run(2, [](int, DistGroup&) {}, {2, 3});
    EXPECT_NE(errors[1].find("WORLD_SIZE is 3 on rank 1 but 2 on rank 0"), std::string::npos) << errors[1];
    EXPECT_NE(errors[0].find("rank 1 stopped while joining"), std::string::npos) << errors[0];
}

}  // namespace
}  // namespace ips
