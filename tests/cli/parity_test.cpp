// Parity with an independent PyTorch implementation of SPEC §1 (tests/peer/ips_peer.py): the
// peer writes reference-layout weights and an image, and records its own selection and
// probabilities; `ips predict --weights` on the same files must select the same patches and give
// the same probabilities within 1e-4, for the Megapixel MNIST and the traffic-sign configurations.
// Also our checkpoints in Python: torch.load, strict load_state_dict, re-save, and back.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "test_support.h"
#include "ips/checkpoint.h"
#include "ips/config.h"
#include "ips/torch_file.h"
#include "ips/train.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using ips::test::TempDir;

namespace {

std::string peer_script() { return std::string(IPS_SOURCE_DIR) + "/tests/peer/ips_peer.py"; }
std::string config_path(const std::string& name) { return std::string(IPS_SOURCE_DIR) + "/configs/" + name; }

ips::test::CommandResult peer_run(const std::string& args) {
    return ips::test::command_run("'" + ips::test::torch_python() + "' '" + peer_script() + "' " + args);
}

// The last line of a command's output that is a JSON object (notes on stderr come before it).
json json_line(const std::string& output) {
    std::istringstream lines(output);
    std::string line, last;
    while (std::getline(lines, line))
        if (!line.empty() && line[0] == '{') last = line;
    return json::parse(last);
}

json json_read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return json::parse(s.str());
}

struct ParityCase {
    const char* peer_config;  // the peer's name for the SPEC §1.5 configuration
    const char* our_config;   // ours, under configs/
    int64_t N, M;
};

void parity_check(const ParityCase& c) {
    TempDir dir("ips_parity");
    auto made = peer_run(std::string("make '") + dir.path.string() + "' " + c.peer_config);
    ASSERT_EQ(made.code, 0) << "the peer needs Python with torch and torchvision (Debian python3-torch, "
                               "python3-torchvision; IPS_TORCH_PYTHON picks another interpreter):\n"
                            << made.output;
    const json want = json_read(dir / "expected.json");
    // --set encoder_weights= : the traffic config's ImageNet trunk comes with the whole model here.
    auto ours = ips::test::ips_run("predict " + config_path(c.our_config) + " " + (dir / "image.png") + " --weights " +
                                   (dir / "weights.pth") + " --json --device cpu --threads 2 --set shuffle=false " +
                                   "--set encoder_weights=");
    ASSERT_EQ(ours.code, 0) << ours.output;
    const json got = json_line(ours.output);

    EXPECT_EQ(got["N"].get<int64_t>(), c.N);
    EXPECT_EQ(want["N"].get<int64_t>(), c.N);
    const auto want_sel = want["selected"].get<std::vector<int64_t>>();
    const auto got_sel = got["selected"].get<std::vector<int64_t>>();
    ASSERT_EQ(got_sel.size(), size_t(c.M));
    EXPECT_EQ(std::set<int64_t>(got_sel.begin(), got_sel.end()), std::set<int64_t>(want_sel.begin(), want_sel.end()))
        << "smallest relative score margin at a selection boundary in the peer: " << want["min_relative_margin"];

    double max_prob = 0, max_score = 0;
    for (const auto& [task, p] : want["predictions"].items()) {
        ASSERT_TRUE(got["predictions"].contains(task)) << task;
        const auto a = p.get<std::vector<double>>(), b = got["predictions"][task].get<std::vector<double>>();
        ASSERT_EQ(a.size(), b.size()) << task;
        for (size_t k = 0; k < a.size(); ++k) max_prob = std::max(max_prob, std::abs(a[k] - b[k]));
    }
    std::map<int64_t, double> want_score;
    for (size_t k = 0; k < want_sel.size(); ++k) want_score[want_sel[k]] = want["scores"][k].get<double>();
    const auto got_scores = got["scores"].get<std::vector<double>>();
    for (size_t k = 0; k < got_sel.size(); ++k)
        if (want_score.count(got_sel[k])) max_score = std::max(max_score, std::abs(want_score[got_sel[k]] - got_scores[k]));
    EXPECT_LT(max_prob, 1e-4);
    EXPECT_LT(max_score, 1e-4);
    // The figures the closing note quotes; ctest -V shows them.
    std::printf("[parity] %s: N %lld, M %lld, same selection %s, max |dp| %.3g, max |d attention| %.3g, "
                "peer's smallest boundary margin %.3g (relative)\n",
                c.peer_config, static_cast<long long>(c.N), static_cast<long long>(c.M),
                std::set<int64_t>(got_sel.begin(), got_sel.end()) == std::set<int64_t>(want_sel.begin(), want_sel.end())
                    ? "yes" : "NO",
                max_prob, max_score, want["min_relative_margin"].get<double>());
    // The peer's model has the SPEC's exact parameter count, so both sides build the same network.
    EXPECT_GT(want["parameters"].get<int64_t>(), 0);
}

}  // namespace

TEST(Parity, MegapixelMnistConfigMatchesTheIndependentPeer) {
    parity_check({"mnist", "megapixel_mnist.yaml", 900, 100});
}

TEST(Parity, TrafficConfigMatchesTheIndependentPeer) {
    parity_check({"traffic", "traffic_signs.yaml", 192, 10});
}

TEST(Parity, OurCheckpointLoadsInPyTorchAndComesBack) {
    TempDir dir("ips_parity_ckpt");
    std::vector<std::string> ignored;
    ips::Config cfg = ips::config_load(config_path("megapixel_mnist.yaml"), {}, &ignored);
    ips::IPSNet net = ips::net_make(cfg.model, cfg.compute, cfg.seed);
    // One optimizer step so the checkpoint carries real optimizer state beside the model.
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-3));
    for (auto& p : net->parameters()) p.mutable_grad() = torch::ones_like(p);
    opt.step();
    ips::checkpoint_save(dir / "last.pt", net, &opt, ips::CheckpointMeta{2, 17, 0.5, ips::config_to_yaml(cfg)});

    auto py = peer_run("checkpoint '" + (dir / "last.pt") + "' mnist '" + (dir / "resaved.pth") + "'");
    ASSERT_EQ(py.code, 0) << py.output;
    const json info = json_line(py.output);
    EXPECT_EQ(info["epoch"].get<int64_t>(), 2);
    EXPECT_EQ(info["step"].get<int64_t>(), 17);
    EXPECT_GT(info["optimizer_bytes"].get<int64_t>(), 0);
    EXPECT_EQ(info["keys"].get<size_t>(), ips::state_dict_of(*net).size());

    // Python's torch.save of what load_state_dict took comes back equal, buffers included.
    cfg.seed += 1;
    ips::IPSNet back = ips::net_make(cfg.model, cfg.compute, cfg.seed);
    ips::weights_load(dir / "resaved.pth", back);
    const auto a = ips::state_dict_of(*net), b = ips::state_dict_of(*back);
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) {
        EXPECT_EQ(a[k].first, b[k].first);
        EXPECT_TRUE(torch::equal(a[k].second, b[k].second)) << a[k].first;
    }
    // And the optimizer resumes from our file.
    torch::optim::AdamW opt2(back->parameters(), torch::optim::AdamWOptions(1e-3));
    ips::checkpoint_load(dir / "last.pt", back, &opt2);
    EXPECT_EQ(opt2.state().size(), opt.state().size());
}

TEST(Parity, WrongArchitectureWeightsAreNamed) {
    TempDir dir("ips_parity_wrong");
    auto made = peer_run(std::string("make '") + dir.path.string() + "' traffic");
    ASSERT_EQ(made.code, 0) << made.output;
    // Traffic weights (3-channel ResNet-18, D 512) into the MNIST config (1 channel, D 128).
    auto r = ips::test::ips_run("predict " + config_path("megapixel_mnist.yaml") + " " + (dir / "image.png") +
                                " --weights " + (dir / "weights.pth") + " --device cpu");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("weights.pth"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("encoder.0.weight"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("encoder.6"), std::string::npos) << "layer3 keys are unexpected: " << r.output;
}

TEST(Parity, TrainStartsFromTheGivenWeights) {
    TempDir dir("ips_parity_train");
    const std::string cfg_path = std::string(IPS_SOURCE_DIR) + "/tests/fixtures/tiny_synthetic.yaml";
    std::vector<std::string> ignored;
    ips::Config cfg = ips::config_load(cfg_path, {"seed=123"}, &ignored);
    ips::IPSNet start = ips::net_make(cfg.model, cfg.compute, cfg.seed);
    ips::torch_file_write(dir / "start.pth", ips::state_dict_of(*start));

    // A vanishing lr leaves the parameters where they started, so last.pt shows what training began from.
    auto r = ips::test::ips_run("train " + cfg_path + " --device cpu --quiet --set lr=1e-30 --weights " + (dir / "start.pth") +
                                " --out " + (dir / "run"));
    ASSERT_EQ(r.code, 0) << r.output;
    cfg.seed = 0;
    ips::IPSNet trained = ips::net_make(cfg.model, cfg.compute, cfg.seed);
    ips::weights_load(dir / "run/last.pt", trained);
    for (const auto& p : start->named_parameters())
        EXPECT_TRUE(torch::allclose(p.value(), trained->named_parameters()[p.key()], 0, 1e-20)) << p.key();

    // Weights of another shape stop the run before anything is written, naming the key.
    auto bad = ips::test::ips_run("train " + cfg_path + " --device cpu --quiet --set D_inner=32 --weights " +
                                  (dir / "start.pth") + " --out " + (dir / "bad"));
    EXPECT_NE(bad.code, 0);
    EXPECT_NE(bad.output.find("transf.mlp.w_1.weight"), std::string::npos) << bad.output;
    EXPECT_FALSE(fs::exists(dir / "bad/last.pt"));
}
