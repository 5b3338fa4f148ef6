#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ips/checkpoint.h"
#include "ips/torch_file.h"
#include "ips/torchvision.h"
#include "test_support.h"
#include "test_util.h"

using namespace ips;
namespace fs = std::filesystem;

TEST(Checkpoint, CheckpointRoundTripAndErrors) {
    test::TempDir tmp;
    const fs::path dir = tmp.path;
    Config cfg = test::tiny_bag_config();
    IPSNet a = net_make(cfg.model, cfg.compute, cfg.seed);
    torch::optim::AdamW opt(a->parameters(), torch::optim::AdamWOptions(1e-3));
    CheckpointMeta meta{3, 42, 0.5, config_to_yaml(cfg)};
    checkpoint_save((dir / "a.pt").string(), a, &opt, meta);
    EXPECT_FALSE(fs::exists(dir / "a.pt.tmp"));
    cfg.seed = 99;
    IPSNet b = net_make(cfg.model, cfg.compute, cfg.seed);
    CheckpointMeta got = checkpoint_load((dir / "a.pt").string(), b, nullptr);
    EXPECT_EQ(got.epoch, 3);
    EXPECT_EQ(got.step, 42);
    EXPECT_EQ(got.config_yaml, meta.config_yaml);
    for (const auto& item : a->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), b->named_parameters()[item.key()]));

    // A checkpoint of another architecture names the mismatched parameter and the file.
    Config other = test::tiny_bag_config();
    other.model.D = 32;
    IPSNet c = net_make(other.model, other.compute, other.seed);
    try {
        checkpoint_load((dir / "a.pt").string(), c, nullptr);
        FAIL();
    } catch (const std::runtime_error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("a.pt"), std::string::npos) << msg;
        EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
    }
    // Truncated and missing files.
    {
        std::ifstream in(dir / "a.pt", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), {});
        std::ofstream(dir / "cut.pt", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    EXPECT_THROW(checkpoint_load((dir / "cut.pt").string(), b, nullptr), std::runtime_error);
    try {
        checkpoint_load((dir / "none.pt").string(), b, nullptr);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("none.pt"), std::string::npos);
    }
}


TEST(Checkpoint, WeightsLoadTakesReferenceLayoutStateDicts) {
    test::TempDir tmp;
    const fs::path dir = tmp.path;
    Config cfg = test::tiny_bag_config();
    IPSNet a = net_make(cfg.model, cfg.compute, cfg.seed);
    // A state dict with the reference's key names, written as torch.save writes it.
    torch_file_write((dir / "ref.pt").string(), state_dict_of(*a));
    cfg.seed = 5;
    IPSNet b = net_make(cfg.model, cfg.compute, cfg.seed);
    weights_load((dir / "ref.pt").string(), b);
    for (const auto& item : a->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), b->named_parameters()[item.key()]));
    // Our own checkpoints go through the same entry point.
    checkpoint_save((dir / "ours.pt").string(), a, nullptr, CheckpointMeta{});
    IPSNet c = net_make(cfg.model, cfg.compute, cfg.seed);
    weights_load((dir / "ours.pt").string(), c);
    EXPECT_TRUE(torch::equal(a->named_parameters()["transf.crs_attn.q"], c->named_parameters()["transf.crs_attn.q"]));
    // Another architecture: the mismatched key is named.
    Config other = test::tiny_bag_config();
    other.model.D = 32;
    IPSNet d = net_make(other.model, other.compute, other.seed);
    try {
        weights_load((dir / "ref.pt").string(), d);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("transf.crs_attn.q"), std::string::npos) << e.what();
    }
    std::ofstream(dir / "junk.pt") << "junk";
    EXPECT_THROW(weights_load((dir / "junk.pt").string(), d), std::runtime_error);
}

TEST(Checkpoint, InitialWeightsComeFromTheEncoderWeightsFile) {
    test::TempDir tmp;
    Config cfg;
    cfg.model.encoder_width = 8;
    cfg.model.D = 16;
    cfg.model.tasks = {Task{0, "label", ActFn::softmax, Metric::accuracy}};
    IPSNet donor = net_make(cfg.model, cfg.compute, 1);
    trunk_save_torchvision(donor->encoder, tmp / "trunk.pth");
    cfg.model.encoder_weights = tmp / "trunk.pth";
    IPSNet net = net_make(cfg.model, cfg.compute, 2);
    initial_weights_apply(net);
    for (const auto& p : donor->encoder->named_parameters())
        EXPECT_TRUE(torch::equal(p.value(), net->encoder->named_parameters()[p.key()])) << p.key();
    // A head is not part of the trunk file: it keeps its own initialisation.
    EXPECT_FALSE(torch::equal(donor->heads[0]->parameters()[0], net->heads[0]->parameters()[0]));
}
