// The ViT presets at full size against the peer's architecture (tests/peer/vit_peer.py shapes,
// computed from the published build arguments without weights): parameter names, shapes and
// counts; and one forward of the largest preset, built whole in memory with random weights.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>

#include "ips/model.h"
#include "ips/vit.h"
#include "test_support.h"

using namespace ips;

namespace {

std::map<std::string, std::vector<int64_t>> shapes_of(torch::nn::Module& m) {
    std::map<std::string, std::vector<int64_t>> out;
    for (const auto& p : m.named_parameters()) out[p.key()] = p.value().sizes().vec();  // a ViT has no buffers
    return out;
}

}  // namespace

TEST(VitPresets, FullSizeNamesShapesAndCountsEqualThePeers) {
    test::TempDir dir("ips_vit_presets");
    const auto listed = test::ips_run("encoders --json");
    ASSERT_EQ(listed.code, 0) << listed.output;
    std::ofstream(dir / "presets.jsonl") << listed.output;
    const auto peer = test::command_run("'" + test::torch_python() + "' '" + std::string(IPS_SOURCE_DIR) +
                                        "/tests/peer/vit_peer.py' shapes '" + (dir / "presets.jsonl") + "'");
    ASSERT_EQ(peer.code, 0) << peer.output;
    std::map<std::string, nlohmann::json> ours, theirs;
    std::istringstream a(listed.output), b(peer.output);
    for (std::string line; std::getline(a, line);) {
        auto j = nlohmann::json::parse(line);
        ours[j["name"]] = j;
    }
    for (std::string line; std::getline(b, line);) {
        auto j = nlohmann::json::parse(line);
        theirs[j["name"]] = j;
    }
    ASSERT_EQ(ours.size(), vit_presets().size());
    ASSERT_EQ(theirs.size(), ours.size());
    // Published sizes, as the models' cards give them (millions, rounded).
    const std::map<std::string, int64_t> millions{{"uni", 303}, {"uni2-h", 681}, {"virchow", 631}, {"virchow2", 631},
                                                  {"h-optimus-0", 1134}, {"gigapath", 1134}, {"kaiko-vits16", 22},
                                                  {"kaiko-vitb16", 86}, {"phikon", 86}, {"kaiko-vitl14", 304},
                                                  {"phikon-v2", 303}, {"hibou-b", 86}};
    for (const auto& p : vit_presets()) {
        SCOPED_TRACE(p.name);
        const int64_t count = ours.at(p.name)["params"];
        EXPECT_EQ(count, theirs.at(p.name)["params"].get<int64_t>());
        if (millions.count(p.name)) {
            EXPECT_NEAR(count / 1e6, double(millions.at(p.name)), 1.0);
        }
        // Names and shapes: the module with 2 blocks against the peer's list without blocks >= 2;
        // its count then extends to the full depth by the same per-block size.
        Vit two(vit_preset_options(p, 2));
        std::map<std::string, std::vector<int64_t>> want;
        for (const auto& [k, v] : theirs.at(p.name)["shapes"].items()) {
            const bool later = k.rfind("blocks.", 0) == 0 && std::stoi(k.substr(7)) >= 2;
            if (!later) want[k] = v.get<std::vector<int64_t>>();
        }
        EXPECT_EQ(shapes_of(*two), want);
        Vit one(vit_preset_options(p, 1));
        const int64_t per_block = parameter_count(*two) - parameter_count(*one);
        EXPECT_EQ(parameter_count(*one) + (p.vit.depth - 1) * per_block, count);
    }
}

// The largest preset whole: 1.1 billion float32 parameters (4.5 GB) and one 224 x 224 tile.
TEST(VitPresets, TheLargestRunsAFullSizeForwardOnTheCpu) {
    const VitPreset* largest = &vit_presets().front();
    for (const auto& p : vit_presets())
        if (p.vit.dim * p.vit.depth > largest->vit.dim * largest->vit.depth) largest = &p;
    SCOPED_TRACE(largest->name);
    torch::NoGradGuard no_grad;
    const auto t0 = std::chrono::steady_clock::now();
    Vit vit(largest->vit);
    vit->eval();
    const auto x = vit_preset_transform(*largest, torch::rand({1, 3, largest->resize, largest->resize}));
    const auto out = vit->forward(x);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, vit_out_dim(largest->vit)}));
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
    RecordProperty("seconds", std::to_string(s));
}
