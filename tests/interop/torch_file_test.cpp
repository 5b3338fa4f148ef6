// torch.save files without Python: real files written by PyTorch (tests/peer/make_state_dicts.py,
// run with the system Python that has torch) are read and compared with the values the script
// recorded; files we write are checked by the same script with torch.load. (Pickle programs on
// their own: pickle_read_test.cpp, pickle_write_test.cpp; torchvision weights in a trunk:
// torchvision_test.cpp.)
#include <gtest/gtest.h>
#include <caffe2/serialize/inline_container.h>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>

#include "test_support.h"
#include "torch_peer.h"
#include "ips/model.h"
#include "ips/torch_file.h"
#include "ips/torchvision.h"

namespace fs = std::filesystem;
using namespace ips;
using json = nlohmann::json;

using ips::test::error_of;

namespace {

using test::bytes_read;
using test::bytes_write;
using test::peer;
using test::TempDir;
using test::trunk_make;

const json& expected() { return test::peer_expected(); }

std::string py_dtype(torch::ScalarType t) {
    switch (t) {
        case torch::kFloat: return "float32";
        case torch::kDouble: return "float64";
        case torch::kHalf: return "float16";
        case torch::kBFloat16: return "bfloat16";
        case torch::kLong: return "int64";
        case torch::kInt: return "int32";
        case torch::kShort: return "int16";
        case torch::kChar: return "int8";
        case torch::kByte: return "uint8";
        case torch::kBool: return "bool";
        default: return c10::toString(t);
    }
}

void expect_close(double got, double want, const std::string& what) {
    EXPECT_LE(std::abs(got - want), 1e-6 * std::max(1.0, std::abs(want))) << what << ": " << got << " vs " << want;
}

// Compares tensors read by C++ with what the script recorded for that file.
void expect_matches(const NamedTensors& got, const std::string& file) {
    const json& want = expected().at(file);
    ASSERT_EQ(got.size(), want["keys"].size()) << file;
    std::map<std::string, const torch::Tensor*> by_key;
    for (size_t i = 0; i < got.size(); ++i) {
        const auto& [key, t] = got[i];
        by_key[key] = &t;
        ASSERT_EQ(key, want["keys"][i].get<std::string>()) << file << " entry " << i;
        const json& w = want["tensors"][key];
        const std::string where = file + " '" + key + "'";
        EXPECT_EQ(py_dtype(t.scalar_type()), w["dtype"].get<std::string>()) << where;
        EXPECT_EQ(t.sizes().vec(), w["shape"].get<std::vector<int64_t>>()) << where;
        EXPECT_EQ(t.strides().vec(), w["stride"].get<std::vector<int64_t>>()) << where;
        EXPECT_EQ(t.storage_offset(), w["offset"].get<int64_t>()) << where;
        EXPECT_FALSE(t.requires_grad()) << where;
        const auto d = t.to(torch::kDouble).contiguous().reshape(-1);
        const auto weight = torch::arange(d.numel(), torch::kDouble).remainder(7) + 1;
        expect_close(d.sum().item<double>(), w["sum"].get<double>(), where + " sum");
        expect_close((d * weight).sum().item<double>(), w["wsum"].get<double>(), where + " weighted sum");
        if (w.contains("values")) {
            const auto values = w["values"].get<std::vector<double>>();
            ASSERT_EQ(int64_t(values.size()), d.numel()) << where;
            for (size_t k = 0; k < values.size(); ++k)
                EXPECT_EQ(d[int64_t(k)].item<double>(), values[k]) << where << " [" << k << "]";
        }
    }
    for (const auto& [key, t] : got) {
        const std::string owner = want["tensors"][key]["shares_with"];
        if (owner == key || t.numel() == 0) continue;
        EXPECT_EQ(t.storage().data_ptr().get(), by_key.at(owner)->storage().data_ptr().get())
            << file << " '" << key << "' should share its storage with '" << owner << "'";
    }
}

// A zip archive laid out like torch.save's, with arbitrary records, to feed the reader bad pickles.
void archive_write(const fs::path& path, const std::vector<std::pair<std::string, std::string>>& records) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    std::function<size_t(const void*, size_t)> sink = [&out](const void* buf, size_t n) -> size_t {
        out.write(static_cast<const char*>(buf), std::streamsize(n));
        return n;
    };
    caffe2::serialize::PyTorchStreamWriter writer(sink);
    for (const auto& [name, data] : records) writer.writeRecord(name, data.data(), data.size());
    writer.writeEndOfFile();
}

std::vector<std::pair<std::string, std::string>> archive_records(const fs::path& path) {
    caffe2::serialize::PyTorchStreamReader reader(path.string());
    std::vector<std::pair<std::string, std::string>> out;
    for (const std::string& full : reader.getAllRecords()) {
        // Record names come without the archive prefix; strip one should a libtorch keep it.
        const std::string name = reader.hasRecord(full) ? full : full.substr(full.find('/') + 1);
        // The writer adds its own: version, and from libtorch 2.x on .data/serialization_id.
        if (name == "version" || name == ".data/version" || name == ".data/serialization_id") continue;
        auto [ptr, size] = reader.getRecord(name);
        out.emplace_back(name, std::string(static_cast<const char*>(ptr.get()), size));
    }
    return out;
}

using Records = std::vector<std::pair<std::string, std::string>>;

// A record by name: positions are no guide, libtorch 2.x writes .data/serialization_id last.
Records::iterator record_named(Records& records, const std::string& name) {
    auto it = std::find_if(records.begin(), records.end(), [&](const auto& r) { return r.first == name; });
    if (it == records.end()) throw std::runtime_error("test archive has no record '" + name + "'");
    return it;
}

void replace_once(std::string& s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    s.replace(at, from.size(), to);
}

}  // namespace

// ---- reading files PyTorch wrote ----

TEST(TorchFile, ReadsTorchvisionResNetStateDicts) {
    REQUIRE_PEER();
    for (const std::string file : {"resnet18.pth", "resnet50.pth"}) {
        SCOPED_TRACE(file);
        expect_matches(torch_file_read((peer().dir / file).string()), file);
    }
}

TEST(TorchFile, ReadsEveryCommonDtype) {
    REQUIRE_PEER();
    expect_matches(torch_file_read((peer().dir / "dtypes.pth").string()), "dtypes.pth");
}

TEST(TorchFile, KeepsViewsStridesOffsetsAndSharedStorage) {
    REQUIRE_PEER();
    const auto got = torch_file_read((peer().dir / "views.pth").string());
    expect_matches(got, "views.pth");
    // A write through one view shows in the others, as it would in Python.
    got[0].second.fill_(1);
    EXPECT_TRUE(torch::all(got[1].second == 1).item<bool>());
}

TEST(TorchFile, ReadsParametersAndProtocol4) {
    REQUIRE_PEER();
    expect_matches(torch_file_read((peer().dir / "param.pth").string()), "param.pth");
    expect_matches(torch_file_read((peer().dir / "proto4.pth").string()), "proto4.pth");
}

TEST(TorchFile, FlattensNestedContainersAndPicksASubDict) {
    REQUIRE_PEER();
    const std::string path = (peer().dir / "nested.pth").string();
    expect_matches(torch_file_read(path), "nested.pth");
    const auto model = torch_file_read(path, "model");
    ASSERT_EQ(model.size(), 7u);
    EXPECT_EQ(model[0].first, "0.weight");
    EXPECT_EQ(model[6].first, "1.num_batches_tracked");
    EXPECT_EQ(torch_file_read(path, "optimizer.state.0").at(0).first, "exp_avg");
    const std::string e = error_of([&] { torch_file_read(path, "net"); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("'net'"), std::string::npos) << e;
    EXPECT_NE(e.find("model, optimizer"), std::string::npos) << e;
}

// ---- bad input ----

TEST(TorchFile, RejectsLegacyMissingTextAndTruncatedFiles) {
    REQUIRE_PEER();
    TempDir tmp;
    const std::string legacy = (peer().dir / "legacy.pth").string();
    std::string e = error_of([&] { torch_file_read(legacy); });
    EXPECT_NE(e.find(legacy), std::string::npos) << e;
    EXPECT_NE(e.find("legacy"), std::string::npos) << e;

    const std::string missing = (tmp.path / "nope.pth").string();
    e = error_of([&] { torch_file_read(missing); });
    EXPECT_NE(e.find(missing), std::string::npos) << e;
    EXPECT_NE(e.find("no such file"), std::string::npos) << e;

    const fs::path text = tmp.path / "notes.txt";
    bytes_write(text, "these are not weights\n");
    e = error_of([&] { torch_file_read(text.string()); });
    EXPECT_NE(e.find(text.string()), std::string::npos) << e;
    EXPECT_NE(e.find("not a zip archive"), std::string::npos) << e;

    const fs::path empty = tmp.path / "empty.pth";
    bytes_write(empty, "");
    e = error_of([&] { torch_file_read(empty.string()); });
    EXPECT_NE(e.find("too short"), std::string::npos) << e;

    const std::string whole = bytes_read(peer().dir / "resnet18.pth");
    const fs::path half = tmp.path / "half.pth";
    bytes_write(half, whole.substr(0, whole.size() / 2));
    e = error_of([&] { torch_file_read(half.string()); });
    EXPECT_NE(e.find(half.string()), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;

    // Garbage over the pickle: caught by the zip CRC where libtorch checks it, else by the unpickler.
    std::string flipped = bytes_read(peer().dir / "views.pth");
    const size_t name_len = uint8_t(flipped[26]) | uint8_t(flipped[27]) << 8;
    const size_t extra_len = uint8_t(flipped[28]) | uint8_t(flipped[29]) << 8;
    ASSERT_NE(flipped.substr(30, name_len).find("data.pkl"), std::string::npos);
    for (size_t k = 0; k < 16; ++k) flipped[30 + name_len + extra_len + 2 + k] = char(0xFF);
    const fs::path corrupt = tmp.path / "corrupt.pth";
    bytes_write(corrupt, flipped);
    e = error_of([&] { torch_file_read(corrupt.string()); });
    EXPECT_NE(e.find(corrupt.string()), std::string::npos) << e;
}

// Records of the archive spoiled; the pickle program's own errors (pickle_read_test.cpp) reach the
// user with the file's name in front, as the spoiled opcode shows.
TEST(TorchFile, RejectsCorruptRecordsNamingTheFileAndTheReason) {
    TempDir tmp;
    const fs::path good = tmp.path / "good.pth";
    torch_file_write(good.string(), {{"w", torch::ones({2, 3})}});
    const auto records = archive_records(good);
    ASSERT_EQ(records[0].first, "data.pkl");

    struct Case {
        std::string name, why;
        std::function<void(std::vector<std::pair<std::string, std::string>>&)> spoil;
    };
    const std::vector<Case> cases = {
        {"opcode", "unknown or unsupported opcode", [](auto& r) { r[0].second.back() = char(0xFF); }},
        {"storage", "storage record 'data/0' is missing", [](auto& r) { r.erase(record_named(r, "data/0")); }},
        {"small", "holds 8 bytes, the pickle needs 6 x 4",
         [](auto& r) { record_named(r, "data/0")->second.resize(8); }},
        // Storage offset 0 -> 1 after the persistent id: the 2x3 view then needs a 7th element.
        {"view", "tensor view reaches past the end of its storage (6 elements)",
         [](auto& r) {
             replace_once(r[0].second, std::string("cpuK\x06tQK\x00", 9), std::string("cpuK\x06tQK\x01", 9));
         }},
        {"nopickle", "no data.pkl record", [](auto& r) { r[0].first = "other.pkl"; }},
        // 40 tuples, each of the one before twice: 84 bytes that expand to 2^40 objects (found
        // by fuzz/torch_pickle.cpp; it hung the reader).
        {"shared", "objects once shared containers are expanded",
         [](auto& r) {
             std::string p = "\x80\x02]2";
             for (int k = 0; k < 39; ++k) p += "\x86" "2";
             r[0].second = p + "\x86.";
         }},
    };
    for (const auto& c : cases) {
        auto spoiled = records;
        c.spoil(spoiled);
        const fs::path path = tmp.path / (c.name + ".pth");
        archive_write(path, spoiled);
        const std::string e = error_of([&] { torch_file_read(path.string()); });
        EXPECT_NE(e.find(path.string()), std::string::npos) << c.name << ": " << e;
        EXPECT_NE(e.find(c.why), std::string::npos) << c.name << ": " << e;
    }
}

// ---- writing files PyTorch reads ----

namespace {

NamedTensors misc_tensors() {  // the same formulas as misc_tensors() in the peer script
    using torch::indexing::Slice;
    return {
        {"a", torch::arange(24, torch::kFloat).reshape({2, 3, 4}).transpose(1, 2)},
        {"h", torch::arange(10).to(torch::kHalf) / 4},
        {"bf", torch::arange(10).to(torch::kBFloat16) * 3},
        {"l", torch::arange(5) * int64_t(1000000000000) - 7},
        {"b", torch::arange(6).remainder(2) == 0},
        {"u8", torch::arange(256).to(torch::kByte)},
        {"i8", torch::arange(-5, 5).to(torch::kChar)},
        {"d", torch::tensor(3.5, torch::kDouble)},
        {"empty", torch::empty({0, 3})},
        {"slice", torch::arange(20, torch::kFloat).reshape({4, 5}).index({Slice(), Slice(1, 4)})},
    };
}

}  // namespace

TEST(TorchFile, WrittenFilesReadBackInCpp) {
    TempDir tmp;
    const std::string path = (tmp.path / "misc.pth").string();
    const auto want = misc_tensors();
    torch_file_write(path, want);
    const auto got = torch_file_read(path);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].first, want[i].first);
        EXPECT_EQ(got[i].second.scalar_type(), want[i].second.scalar_type()) << want[i].first;
        EXPECT_TRUE(torch::equal(got[i].second, want[i].second)) << want[i].first;
    }
    torch_file_write(path, {});
    EXPECT_TRUE(torch_file_read(path).empty());
    // Rewriting replaces the file in one step and leaves no temporary behind.
    torch_file_write(path, {{"x", torch::zeros({1})}});
    EXPECT_EQ(torch_file_read(path).size(), 1u);
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()), 1);

    const std::string bad = (tmp.path / "no_dir" / "x.pth").string();
    std::string e = error_of([&] { torch_file_write(bad, want); });
    EXPECT_NE(e.find(bad), std::string::npos) << e;
    e = error_of([&] { torch_file_write(path, {{"x", torch::zeros({1})}, {"x", torch::ones({1})}}); });
    EXPECT_NE(e.find("'x' appears twice"), std::string::npos) << e;
}

TEST(TorchFile, WrittenFilesLoadInPyTorch) {
    REQUIRE_PEER();
    TempDir tmp;
    torch_file_write((tmp.path / "rt_misc.pth").string(), misc_tensors());
    fs::copy_file(peer().dir / "resnet18.pth", tmp.path / "resnet18.pth");
    const auto resnet = torch_file_read((peer().dir / "resnet18.pth").string());
    torch_file_write((tmp.path / "rt_resnet18.pth").string(), resnet);

    // Through the trunk and back to torchvision names: what a fine-tuned encoder export would write.
    auto trunk = trunk_make("resnet18", 3, 4);
    trunk_load_torchvision(trunk, (peer().dir / "resnet18.pth").string(), 4);
    NamedTensors back;
    const char* names[] = {"conv1", "bn1", "", "", "layer1", "layer2", "layer3", "layer4"};
    for (auto& [k, t] : state_dict_of(*trunk)) {
        const size_t dot = k.find('.');
        back.emplace_back(names[std::stoi(k.substr(0, dot))] + k.substr(dot), t);
    }
    torch_file_write((tmp.path / "rt_trunk.pth").string(), back);

    const fs::path log = tmp.path / "check.log";
    const int rc = test::peer_script_run("check", tmp.path, log);
    EXPECT_EQ(rc, 0) << bytes_read(log);
}

// ---- state dicts into modules ----

TEST(StateDict, OrderFollowsPyTorch) {
    REQUIRE_PEER();
    auto trunk = trunk_make("resnet18", 3, 4);
    std::vector<std::string> want;
    for (const auto& k : expected()["resnet18.pth"]["keys"]) {
        const std::string mapped = trunk_key_from_torchvision(k.get<std::string>(), 4);
        if (!mapped.empty()) want.push_back(mapped);
    }
    std::vector<std::string> got;
    for (const auto& [k, t] : state_dict_of(*trunk)) got.push_back(k);
    EXPECT_EQ(got, want);
}

TEST(StateDict, ApplyReportsAndConverts) {
    torch::nn::Sequential net(torch::nn::Linear(3, 2), torch::nn::BatchNorm1d(2));
    NamedTensors sd = {
        {"0.weight", torch::full({2, 3}, 0.5, torch::kDouble)},  // dtype converted on copy
        {"0.bias", torch::ones({2})},
        {"1.weight", torch::full({2}, 2.0)},
        {"1.bias", torch::zeros({2})},
        {"1.running_mean", torch::full({2}, 0.25)},
        {"1.running_var", torch::full({2}, 4.0)},
    };  // no num_batches_tracked, as in old torchvision files: accepted
    auto report = state_dict_apply(*net, sd);
    EXPECT_TRUE(report.missing.empty() && report.unexpected.empty() && report.shape_mismatch.empty());
    EXPECT_TRUE(torch::allclose(net[0]->as<torch::nn::Linear>()->weight, torch::full({2, 3}, 0.5)));
    EXPECT_TRUE(net[0]->as<torch::nn::Linear>()->weight.requires_grad());
    EXPECT_TRUE(torch::allclose(net[1]->as<torch::nn::BatchNorm1d>()->running_var, torch::full({2}, 4.0)));

    NamedTensors bad = sd;
    bad[1].second = torch::ones({3});
    bad.erase(bad.begin() + 2);
    bad.emplace_back("2.weight", torch::ones({1}));
    const std::string e = error_of([&] { state_dict_apply(*net, bad, "", true, "weights.pth"); });
    EXPECT_NE(e.find("weights.pth"), std::string::npos) << e;
    EXPECT_NE(e.find("0.bias (file [3], module [2])"), std::string::npos) << e;
    EXPECT_NE(e.find("1 missing: 1.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("1 unexpected: 2.weight"), std::string::npos) << e;
    // A failed strict load changes nothing.
    EXPECT_TRUE(torch::allclose(net[1]->as<torch::nn::BatchNorm1d>()->weight, torch::full({2}, 2.0)));

    report = state_dict_apply(*net, bad, "", /*strict=*/false);
    EXPECT_EQ(report.shape_mismatch, std::vector<std::string>{"0.bias"});
    EXPECT_EQ(report.missing, std::vector<std::string>{"1.weight"});
    EXPECT_EQ(report.unexpected, std::vector<std::string>{"2.weight"});
    EXPECT_TRUE(torch::allclose(net[1]->as<torch::nn::BatchNorm1d>()->running_mean, torch::full({2}, 0.25)));

    // Under a prefix: the entries of one submodule of a bigger module.
    torch::nn::Module outer;
    outer.register_module("0", torch::nn::Linear(4, 4));
    outer.register_module("1", net);
    const NamedTensors inner = state_dict_of(*net);
    report = state_dict_apply(outer, inner, "1.");
    EXPECT_TRUE(report.missing.empty() && report.unexpected.empty());
}
