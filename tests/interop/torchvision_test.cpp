// torchvision ResNet state dicts and our numbered trunk: the key mapping both ways, our own files
// saved and loaded back, real torchvision weights (written by PyTorch, tests/peer) giving
// torchvision's forward output, and mismatches named by the torchvision key.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "test_support.h"
#include "torch_peer.h"
#include "ips/model.h"
#include "ips/torch_file.h"
#include "ips/torchvision.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::peer;
using test::TempDir;
using test::trunk_make;

namespace {

torch::nn::Sequential narrow_trunk(int64_t n_chan_in, int n_res_blocks, uint64_t seed) {
    torch::manual_seed(seed);
    int64_t dim = 0;
    return resnet_trunk_make(EncoderType::resnet18, n_chan_in, n_res_blocks, &dim, /*width=*/8);
}

// Parameters and buffers with distinct values, so that a load that swaps or skips one shows.
void fill_distinct(torch::nn::Sequential& trunk) {
    torch::NoGradGuard no_grad;
    double k = 1;
    for (auto& [key, t] : state_dict_of(*trunk)) {
        if (t.is_floating_point()) t.copy_(torch::rand_like(t) + k);
        else t.fill_(int64_t(k));
        k += 1;
    }
}

}  // namespace

TEST(Torchvision, KeyMappingFollowsTheTrunkNumbering) {
    struct Case {
        const char* torchvision;
        int n_res_blocks;
        const char* trunk;
    };
    const Case cases[] = {
        {"conv1.weight", 4, "0.weight"}, {"bn1.running_mean", 4, "1.running_mean"},
        {"bn1.num_batches_tracked", 2, "1.num_batches_tracked"}, {"layer1.0.conv1.weight", 2, "4.0.conv1.weight"},
        {"layer2.1.downsample.0.weight", 2, "5.1.downsample.0.weight"}, {"layer3.1.bn2.bias", 4, "6.1.bn2.bias"},
        {"layer4.0.downsample.1.weight", 4, "7.0.downsample.1.weight"},
        // Stages a two-stage trunk lacks, and the classifier, are not loaded.
        {"layer3.1.bn2.bias", 2, ""}, {"layer4.0.conv1.weight", 2, ""}, {"fc.weight", 4, ""}, {"fc.bias", 2, ""},
        // Not a ResNet key: kept, so that a strict load reports it as unexpected.
        {"classifier.weight", 4, "classifier.weight"}, {"layer10.weight", 4, "layer10.weight"},
    };
    for (const Case& c : cases)
        EXPECT_EQ(trunk_key_from_torchvision(c.torchvision, c.n_res_blocks), c.trunk)
            << c.torchvision << " with " << c.n_res_blocks << " stages";
}

TEST(Torchvision, SavedTrunkLoadsBackExactly) {
    TempDir tmp;
    for (int blocks : {2, 4}) {
        SCOPED_TRACE(blocks);
        auto saved = narrow_trunk(3, blocks, 1);
        fill_distinct(saved);
        const std::string path = tmp / ("trunk" + std::to_string(blocks) + ".pth");
        trunk_save_torchvision(saved, path);

        // The file speaks torchvision: conv1, bn1, layerN; no numbered keys, no fc.
        const NamedTensors file = torch_file_read(path);
        std::set<std::string> roots;
        for (const auto& [key, t] : file) roots.insert(key.substr(0, key.find('.')));
        std::set<std::string> want = {"conv1", "bn1", "layer1", "layer2"};
        if (blocks == 4) want.insert({"layer3", "layer4"});
        EXPECT_EQ(roots, want);
        EXPECT_EQ(file.size(), state_dict_of(*saved).size());
        EXPECT_EQ(file.front().first, "conv1.weight");

        auto loaded = narrow_trunk(3, blocks, 2);
        trunk_load_torchvision(loaded, path, blocks);
        const NamedTensors a = state_dict_of(*saved), b = state_dict_of(*loaded);
        ASSERT_EQ(a.size(), b.size());
        for (size_t i = 0; i < a.size(); ++i) {
            EXPECT_EQ(a[i].first, b[i].first);
            EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
        }
        saved->eval();
        loaded->eval();
        torch::NoGradGuard no_grad;
        const auto x = torch::rand({2, 3, 32, 32});
        EXPECT_TRUE(torch::equal(saved->forward(x), loaded->forward(x)));
    }
}

TEST(Torchvision, LoadSkipsFcAndLaterStagesAndUnwrapsDataParallel) {
    TempDir tmp;
    auto four = narrow_trunk(1, 4, 3);
    fill_distinct(four);
    // As torchvision and nn.DataParallel save it: every key under "module.", with a classifier.
    const std::string plain = tmp / "plain.pth";
    trunk_save_torchvision(four, plain);
    NamedTensors wrapped;
    for (const auto& [key, t] : torch_file_read(plain)) wrapped.emplace_back("module." + key, t);
    wrapped.emplace_back("module.fc.weight", torch::ones({10, 64}));
    wrapped.emplace_back("module.fc.bias", torch::zeros({10}));
    const std::string path = tmp / "wrapped.pth";
    torch_file_write(path, wrapped);

    auto two = narrow_trunk(1, 2, 4);
    trunk_load_torchvision(two, path, 2);  // layer3, layer4 and fc are left out
    const NamedTensors got = state_dict_of(*two);
    std::map<std::string, torch::Tensor> source;
    for (auto& [k, t] : state_dict_of(*four)) source[k] = t;
    for (const auto& [key, t] : got) EXPECT_TRUE(torch::equal(t, source.at(key))) << key;
}

TEST(Torchvision, MismatchIsNamedByTheTorchvisionKey) {
    TempDir tmp;
    const std::string rgb = tmp / "rgb.pth";
    auto colour = narrow_trunk(3, 2, 5);
    trunk_save_torchvision(colour, rgb);
    auto grey = narrow_trunk(1, 2, 6);
    const auto before = state_dict_of(*grey)[1].second.clone();  // bn1.weight, which would fit
    const std::string e = error_of([&] { trunk_load_torchvision(grey, rgb, 2); });
    EXPECT_NE(e.find(rgb), std::string::npos) << e;
    EXPECT_NE(e.find("conv1.weight [trunk 0.weight] (file [8, 3, 7, 7], module [8, 1, 7, 7])"), std::string::npos) << e;
    EXPECT_TRUE(torch::equal(state_dict_of(*grey)[1].second, before));  // nothing copied

    // A four-stage trunk from a two-stage file: layer3/layer4 are missing, named as torchvision does.
    const std::string two = tmp / "two.pth";
    auto small = narrow_trunk(3, 2, 7);
    trunk_save_torchvision(small, two);
    auto big = narrow_trunk(3, 4, 8);
    const std::string m = error_of([&] { trunk_load_torchvision(big, two, 4); });
    EXPECT_NE(m.find("missing"), std::string::npos) << m;
    EXPECT_NE(m.find("layer3.0.conv1.weight [trunk 6.0.conv1.weight]"), std::string::npos) << m;

    const std::string none = tmp / "absent.pth";
    const std::string n = error_of([&] { trunk_load_torchvision(big, none, 4); });
    EXPECT_NE(n.find(none), std::string::npos) << n;
}

// ---- real torchvision weights (moved from torch_file_test.cpp) ----

TEST(TrunkLoad, MatchesTorchvisionForward) {
    REQUIRE_PEER();
    torch::NoGradGuard no_grad;
    const auto x = test::raw_floats(peer().dir / "x.bin", {2, 3, 64, 64});
    struct Case {
        std::string arch;
        int blocks;
        int64_t dim;
    };
    for (const Case& c : {Case{"resnet18", 4, 512}, Case{"resnet18", 2, 128},
                          Case{"resnet50", 4, 2048}, Case{"resnet50", 2, 512}}) {
        SCOPED_TRACE(c.arch + " " + std::to_string(c.blocks));
        auto trunk = trunk_make(c.arch, 3, c.blocks);
        trunk_load_torchvision(trunk, (peer().dir / (c.arch + ".pth")).string(), c.blocks);
        trunk->eval();
        const auto y = trunk->forward(x);
        const auto want = test::raw_floats(peer().dir / (c.arch + "_y" + std::to_string(c.blocks) + ".bin"), {2, c.dim});
        EXPECT_LE((y - want).abs().max().item<double>(), 1e-4);
        EXPECT_GT(want.abs().max().item<double>(), 1e-2);  // the comparison is not between zeros
    }
}

TEST(TrunkLoad, NamesMismatchesByTorchvisionKey) {
    REQUIRE_PEER();
    const std::string r18 = (peer().dir / "resnet18.pth").string();
    auto gray = trunk_make("resnet18", 1, 4);
    std::string e = error_of([&] { trunk_load_torchvision(gray, r18, 4); });
    EXPECT_NE(e.find(r18), std::string::npos) << e;
    EXPECT_NE(e.find("1 shape mismatch: conv1.weight [trunk 0.weight] (file [64, 3, 7, 7], module [64, 1, 7, 7])"),
              std::string::npos) << e;

    auto r50 = trunk_make("resnet50", 3, 4);
    e = error_of([&] { trunk_load_torchvision(r50, r18, 4); });
    EXPECT_NE(e.find("layer1.0.conv3.weight [trunk 4.0.conv3.weight]"), std::string::npos) << e;

    EXPECT_EQ(trunk_key_from_torchvision("layer3.1.bn2.bias", 2), "");
    EXPECT_EQ(trunk_key_from_torchvision("layer3.1.bn2.bias", 4), "6.1.bn2.bias");
    EXPECT_EQ(trunk_key_from_torchvision("fc.weight", 4), "");
    EXPECT_EQ(trunk_key_from_torchvision("bn1.running_var", 2), "1.running_var");
}
