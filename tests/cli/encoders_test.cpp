// ViT encoders end to end with the ips binary: `ips features --encoder NAME --weights FILE` on the
// real Aperio slide against a TRIDENT-style Python pipeline (tests/peer/vit_slide_peer.py: openslide
// reads, torchvision-style transforms, an independent ViT) from the same weights, as torch.save
// and as safetensors files; IPS trained and run on pixels with a ViT trunk, and freeze_encoder.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "ips/feature_bag.h"
#include "ips/safetensors.h"
#include "ips/torch_file.h"
#include "ips/vit.h"
#include "test_support.h"

namespace fs = std::filesystem;
using ips::test::ips_run;
using ips::test::TempDir;

namespace {

const std::string kDir = IPS_SOURCE_DIR;

// The peer's description of a preset (`ips encoders --json`, as bench_features.sh takes it), cut
// to `depth` blocks and read from tiles of `tile` pixels.
nlohmann::json arch_of(const std::string& preset, int depth, int tile) {
    const auto r = ips_run("encoders --json " + preset);
    EXPECT_EQ(r.code, 0) << r.output;
    auto arch = nlohmann::json::parse(r.output);
    arch["depth"] = depth;
    arch["tile"] = tile;
    return arch;
}

std::string peer_run(const std::string& args) {
    const auto r = ips::test::command_run("'" + ips::test::torch_python() + "' '" + kDir + "/tests/peer/vit_slide_peer.py' " +
                                          args + " 2>&1");
    EXPECT_EQ(r.code, 0) << r.output;
    return r.output;
}

// Random weights of the preset's layout from the peer, as a torch.save file.
std::string peer_weights(const TempDir& dir, const std::string& name, const nlohmann::json& arch) {
    const std::string json_path = dir / (name + ".json"), pt = dir / (name + ".bin");
    std::ofstream(json_path) << arch.dump();
    peer_run("weights '" + json_path + "' '" + pt + "'");
    return pt;
}

}  // namespace

TEST(Encoders, FeaturesOfSlideTilesEqualTheTridentStylePeers) {
    const std::string svs = ips::test::test_slide_path();
    ASSERT_TRUE(fs::exists(svs)) << svs;
    struct Case {
        std::string preset;
        int tile;  // the side read from the slide; the preset's transform resizes it to its input
        bool safetensors;
        int file_img = 0;  // a file whose pos_embed grid is of this side, not the preset's
    };
    // One case per family: plain (Kaiko S/16, also resized from 256), Hugging Face's layout
    // (Phikon), CONCH's pooler, SwiGLU + LayerScale with a bicubic resize and crop (GigaPath),
    // registers inside pos_embed with CLS + mean (Virchow2), registers outside it (UNI2-h), and
    // pos_embed resampled from 37 x 37 (Kaiko L/14); Dinov2Model's layout with registers (Hibou)
    // and with a file grid of 16 x 16 kept and resampled to 14 x 14 (Phikon-v2); CONCH v1.5's
    // pooler, its file's 28 x 28 fitted to 14 x 14 at load and resampled to 28 x 28 per tile.
    // Larger tiles keep the wide ones few.
    const std::vector<Case> cases{{"kaiko-vits16", 224, false}, {"kaiko-vits16", 256, true}, {"phikon", 224, true},
                                  {"conch-v1", 448, false},     {"gigapath", 512, true},     {"virchow2", 448, false},
                                  {"uni2-h", 448, true},        {"kaiko-vitl14", 448, false}, {"hibou-b", 448, true},
                                  {"phikon-v2", 448, false, 256}, {"conch-v1.5", 448, true, 448}};
    TempDir dir("ips_vit_features");
    // The peer runs twice in all (weights for every case, then every case's features): importing
    // torch once per case would cost more than the cases.
    const auto name_of = [&](size_t k) { return "case" + std::to_string(k); };
    std::string weight_jobs;
    for (size_t k = 0; k < cases.size(); ++k) {
        auto arch = arch_of(cases[k].preset, 1, cases[k].tile);
        if (cases[k].file_img > 0) arch["file_img"] = cases[k].file_img;
        std::ofstream(dir / (name_of(k) + ".json")) << arch.dump();
        weight_jobs += " '" + (dir / (name_of(k) + ".json")) + "' '" + (dir / (name_of(k) + ".bin")) + "'";
    }
    peer_run("weights" + weight_jobs);
    nlohmann::json jobs = nlohmann::json::array();
    for (size_t k = 0; k < cases.size(); ++k) {
        const Case& c = cases[k];
        std::string weights = dir / (name_of(k) + ".bin");
        if (c.safetensors) {
            const std::string st = dir / (name_of(k) + ".safetensors");
            ips::safetensors_write(st, ips::torch_file_read(weights));
            weights = st;
        }
        const std::string side = std::to_string(c.tile), out = dir / ("bags" + std::to_string(k));
        auto f = ips_run("features " + kDir + "/tests/fixtures/features_vit.yaml " + svs + " --encoder " + c.preset +
                         " --weights " + weights + " --set vit_depth=1 --set patch_size=" + side + " --set patch_stride=" +
                         side + " --dtype float32 --device cpu --threads 2 --out " + out);
        ASSERT_EQ(f.code, 0) << c.preset << "\n" << f.output;
        jobs.push_back({{"arch", dir / (name_of(k) + ".json")}, {"weights", dir / (name_of(k) + ".bin")}, {"slide", svs},
                        {"bag", out + "/CMU-1-Small-Region.h5"}, {"out", dir / (name_of(k) + "_peer.pt")}});
    }
    std::ofstream(dir / "jobs.json") << jobs.dump();
    peer_run("features-each '" + (dir / "jobs.json") + "'");
    for (size_t k = 0; k < cases.size(); ++k) {
        const Case& c = cases[k];
        const std::string side = std::to_string(c.tile);
        SCOPED_TRACE(c.preset + " from " + (c.safetensors ? "safetensors" : "torch.save") + ", " + side + " px tiles");
        const ips::FeatureBag bag = ips::feature_bag_read(jobs[k]["bag"].get<std::string>());
        EXPECT_EQ(bag.encoder, c.preset);
        EXPECT_EQ(bag.patch_size, c.tile);
        ASSERT_GT(bag.features.size(0), 10);  // 15-18 tissue tiles of 448-512 px, 55-75 of 224-256 px
        ASSERT_EQ(bag.features.size(1), ips::vit_out_dim(ips::vit_preset(c.preset).vit));
        const auto peer = ips::torch_file_read(dir / (name_of(k) + "_peer.pt"));
        ASSERT_EQ(peer.size(), 1u);
        const torch::Tensor want = peer[0].second;
        ASSERT_EQ(want.sizes(), bag.features.sizes());
        const double diff = (bag.features - want).abs().max().item<double>();
        EXPECT_LT(diff, 1e-4) << "max |ips - peer| " << diff << " over " << want.size(0) << " tiles";
        RecordProperty("max_abs_diff_" + c.preset + "_" + side, std::to_string(diff));
        RecordProperty("tiles_" + c.preset + "_" + side, std::to_string(want.size(0)));
    }
}

TEST(Encoders, FeaturesRefuseAnUnknownEncoderAndAFileOfAnotherModel) {
    TempDir dir("ips_vit_bad");
    auto unknown = ips_run("features " + kDir + "/tests/fixtures/features_vit.yaml " + ips::test::test_slide_path() +
                           " --encoder vit-huge-9000 --out " + (dir / "bags"));
    EXPECT_NE(unknown.code, 0);
    EXPECT_NE(unknown.output.find("unknown ViT encoder 'vit-huge-9000' (known: uni, uni2-h"), std::string::npos)
        << unknown.output;
    // Phikon's file given to a Kaiko ViT-S: its keys are named, and so is the file.
    const std::string phikon = peer_weights(dir, "phikon", arch_of("phikon", 1, 224));
    auto wrong = ips_run("features " + kDir + "/tests/fixtures/features_vit.yaml " + ips::test::test_slide_path() +
                         " --encoder kaiko-vits16 --set vit_depth=1 --weights " + phikon + " --out " + (dir / "bags"));
    EXPECT_NE(wrong.code, 0);
    EXPECT_NE(wrong.output.find(phikon), std::string::npos) << wrong.output;
    EXPECT_NE(wrong.output.find("shape mismatch"), std::string::npos) << wrong.output;
    EXPECT_FALSE(fs::exists(dir / "bags"));
}

// IPS on pixels with a ViT trunk, started from a weight file: with freeze_encoder 1 the first
// block ends as the file has it and the last one trains; the checkpoint then predicts on an image.
TEST(Encoders, IpsTrainsAndPredictsWithAViTTrunkAndFrozenBlocks) {
    TempDir dir("ips_vit_train");
    const std::string weights = peer_weights(dir, "w", arch_of("kaiko-vits16", 2, 224));
    const std::string cfg = kDir + "/tests/fixtures/vit_tiny.yaml";
    auto t = ips_run("train " + cfg + " --device cpu --threads 2 --quiet --set encoder_weights=" + weights +
                     " --set freeze_encoder=1 --out " + (dir / "run"));
    ASSERT_EQ(t.code, 0) << t.output;
    const auto file = ips::torch_file_read(weights);
    std::map<std::string, torch::Tensor> start(file.begin(), file.end());
    int same = 0, moved = 0;
    for (const auto& [name, value] : ips::torch_file_read(dir / "run/last.pt", "model")) {
        if (name.rfind("encoder.1.", 0) != 0) continue;
        const std::string key = name.substr(10);
        ASSERT_TRUE(start.count(key)) << key;
        const bool equal = torch::equal(value, start.at(key));
        const bool trains = key.rfind("blocks.1.", 0) == 0 || key.rfind("norm.", 0) == 0;
        EXPECT_EQ(equal, !trains) << key;
        (equal ? same : moved) += 1;
    }
    EXPECT_GT(same, 10);
    EXPECT_GT(moved, 10);
    // The checkpoint predicts on an image file, through the same ViT.
    const std::string png = dir / "x.png";
    ips::test::command_run("'" + ips::test::torch_python() + "' -c \"import torch, torchvision; "
                           "torchvision.io.write_png((torch.rand(3, 448, 448) * 255).to(torch.uint8), '" + png + "')\"");
    ASSERT_TRUE(fs::exists(png));
    auto p = ips_run("predict " + cfg + " --weights " + (dir / "run/last.pt") + " " + png + " --json --device cpu");
    ASSERT_EQ(p.code, 0) << p.output;
    EXPECT_NE(p.output.find("\"predictions\""), std::string::npos) << p.output;
}
