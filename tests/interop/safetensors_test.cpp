// safetensors files without Python: round trips of every dtype, files made byte by byte by
// tests/peer/make_safetensors.py (compared with torch.save files of the same tensors), files we
// write decoded by hand in Python, and a table of damaged files whose errors must name the file
// and the problem.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "test_support.h"
#include "torch_peer.h"
#include "ips/safetensors.h"
#include "ips/torch_file.h"

namespace fs = std::filesystem;
using namespace ips;
using ips::test::bytes_read;
using ips::test::bytes_write;
using ips::test::error_of;
using ips::test::TempDir;

namespace {

std::string peer_safetensors() { return std::string(IPS_SOURCE_DIR) + "/tests/peer/make_safetensors.py"; }

test::CommandResult peer_run(const std::string& mode, const fs::path& dir) {
    return test::command_run("'" + test::torch_python() + "' '" + peer_safetensors() + "' " + mode + " '" +
                             dir.string() + "'");
}

#define ASSERT_PEER_RAN(r)                                                                                   \
    ASSERT_EQ((r).code, 0) << "the peer needs Python with torch (Debian python3-torch; IPS_TORCH_PYTHON "     \
                              "picks another interpreter):\n"                                                \
                           << (r).output

NamedTensors every_dtype() {
    return {
        {"f32", torch::arange(12, torch::kFloat).reshape({3, 4}) / 3},
        {"f16", (torch::arange(-4, 4) / 8).to(torch::kHalf)},
        {"bf16", (torch::arange(5) * 3 - 1).to(torch::kBFloat16)},
        {"i64", torch::tensor({-(int64_t(1) << 62), int64_t(7), int64_t(1) << 40})},
        {"u8", torch::arange(0, 256, 85).to(torch::kByte)},
        {"bool", torch::tensor({true, false, true})},
        {"f64_scalar", torch::tensor(2.25, torch::kDouble)},
        {"i32", torch::arange(-3, 3, torch::kInt).reshape({2, 3})},
        {"i16", torch::tensor({-32768, 32767}, torch::kShort)},
        {"i8", torch::tensor({-128, 127}, torch::kChar)},
        {"empty", torch::empty({0, 3})},
        {"transposed", torch::arange(6, torch::kFloat).reshape({2, 3}).t()},  // written contiguous
    };
}

void expect_same(const NamedTensors& got, const NamedTensors& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) {
        const std::string where = what + " '" + want[i].first + "'";
        EXPECT_EQ(got[i].first, want[i].first) << what << " entry " << i;
        EXPECT_EQ(got[i].second.scalar_type(), want[i].second.scalar_type()) << where;
        EXPECT_EQ(got[i].second.sizes(), want[i].second.sizes()) << where;
        EXPECT_TRUE(got[i].second.is_contiguous()) << where;
        EXPECT_TRUE(torch::equal(got[i].second, want[i].second)) << where;
    }
}

// A file of the given header text (padded to `pad` spaces) and data bytes; `length` replaces the
// 8-byte header length when set.
std::string file_of(const std::string& header, const std::string& data = "",
                    std::optional<uint64_t> length = std::nullopt) {
    std::string out(8, '\0');
    const uint64_t n = length.value_or(header.size());
    for (int i = 0; i < 8; ++i) out[i] = char(n >> (8 * i));
    return out + header + data;
}

}  // namespace

TEST(Safetensors, RoundTripKeepsOrderDtypesShapesValuesAndMetadata) {
    TempDir tmp;
    const std::string path = tmp / "w.safetensors";
    const auto want = every_dtype();
    const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "gr\xc3\xb6\xc3\x9f" "e"}, {"", ""}};
    safetensors_write(path, want, meta);

    std::map<std::string, std::string> got_meta = {{"stale", "x"}};
    const auto got = safetensors_read(path, &got_meta);
    expect_same(got, want, path);
    EXPECT_EQ(got_meta, meta);
    EXPECT_EQ(got[6].second.dim(), 0);
    EXPECT_TRUE(safetensors_is(path));

    // The header ends on a multiple of 8 (spaces), and the data section holds nothing else.
    const std::string bytes = bytes_read(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
    EXPECT_EQ(n % 8, 0u);
    int64_t data = 0;
    for (const auto& [k, t] : want) data += t.numel() * t.element_size();
    EXPECT_EQ(bytes.size(), 8 + n + uint64_t(data));

    // Nothing but the name of the file: no metadata, no tensors.
    safetensors_write(path, {});
    got_meta = {{"stale", "x"}};
    EXPECT_TRUE(safetensors_read(path, &got_meta).empty());
    EXPECT_TRUE(got_meta.empty());
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()), 1);  // no temporaries
}

// The tensors share one buffer of the data section: each must stay valid and independent after
// the reader returns and the file is gone.
TEST(Safetensors, TensorsOwnTheirMemoryAfterTheFileIsGone) {
    TempDir tmp;
    const std::string path = tmp / "w.safetensors";
    // "odd" is 3 bytes long, so "after" (F32) starts unaligned and takes the copying path.
    safetensors_write(path, {{"a", torch::ones({4})}, {"odd", torch::zeros({3}, torch::kByte)}, {"after", torch::ones({2})}});
    NamedTensors got = safetensors_read(path);
    fs::remove(path);
    got[0].second.fill_(5);
    got[1].second.fill_(9);
    EXPECT_TRUE(torch::equal(got[0].second, torch::full({4}, 5.0)));
    EXPECT_TRUE(torch::equal(got[1].second, torch::full({3}, 9, torch::kByte)));
    EXPECT_TRUE(torch::equal(got[2].second, torch::ones({2})));
    const torch::Tensor kept = got[2].second;
    got.clear();
    EXPECT_TRUE(torch::equal(kept, torch::ones({2})));
}

TEST(Safetensors, SniffsTheHeaderAndWeightsReadPicksTheReader) {
    TempDir tmp;
    const auto tensors = every_dtype();
    const std::string st = tmp / "w.bin", pt = tmp / "w.pt";
    safetensors_write(st, tensors);
    torch_file_write(pt, tensors);
    EXPECT_TRUE(safetensors_is(st));
    EXPECT_FALSE(safetensors_is(pt));
    EXPECT_FALSE(safetensors_is(tmp / "missing"));
    EXPECT_FALSE(safetensors_is(tmp.path.string()));
    bytes_write(tmp.path / "text", "just some text, long enough");
    EXPECT_FALSE(safetensors_is(tmp / "text"));
    bytes_write(tmp.path / "empty", "");
    EXPECT_FALSE(safetensors_is(tmp / "empty"));

    expect_same(weights_read(st), tensors, st);
    expect_same(weights_read(pt), tensors, pt);
    // A legacy torch.save file keeps the zip reader's advice; a damaged .safetensors file gets ours.
    bytes_write(tmp.path / "old.pt", std::string("\x80\x02", 2) + "the rest of an old pickle");
    EXPECT_NE(error_of([&] { weights_read(tmp / "old.pt"); }).find("legacy (PyTorch < 1.6) torch.save format"), std::string::npos);
    const std::string cut = tmp / "cut.safetensors";
    bytes_write(cut, "{\"a\"");
    const std::string e = error_of([&] { weights_read(cut); });
    EXPECT_NE(e.find("safetensors file '" + cut + "': too short"), std::string::npos) << e;
}

TEST(Safetensors, WriteRefusesWhatCannotBeReadBack) {
    TempDir tmp;
    const std::string path = tmp / "w.safetensors";
    const std::vector<std::pair<NamedTensors, std::string>> cases = {
        {{{"x", torch::ones({1})}, {"x", torch::ones({1})}}, "key 'x' appears twice"},
        {{{"__metadata__", torch::ones({1})}}, "'__metadata__' is reserved"},
        {{{"u", torch::Tensor()}}, "tensor 'u': undefined"},
        {{{"c", torch::ones({2}, torch::kComplexFloat)}}, "tensor 'c': dtype ComplexFloat has no safetensors code"},
        {{{std::string("bad\xff"), torch::ones({1})}}, "is not valid UTF-8"},
    };
    for (const auto& c : cases) {
        const NamedTensors& tensors = c.first;
        const std::string& why = c.second;
        const std::string e = error_of([&] { safetensors_write(path, tensors); });
        EXPECT_NE(e.find(path), std::string::npos) << why << ": " << e;
        EXPECT_NE(e.find(why), std::string::npos) << e;
    }
    const std::string e = error_of([&] { safetensors_write(path, {}, {{"k", "\xc3"}}); });
    EXPECT_NE(e.find("safetensors file '" + path + "': metadata value of 'k' is not valid UTF-8"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(path));
    const std::string bad = tmp / "no_dir/w.safetensors";
    EXPECT_NE(error_of([&] { safetensors_write(bad, every_dtype()); }).find(bad), std::string::npos);
}

// What make_safetensors.py wrote with struct and json equals what torch.save wrote beside it.
TEST(Safetensors, ReadsFilesPythonWroteByHand) {
    TempDir tmp;
    const auto r = peer_run("make", tmp.path);
    ASSERT_PEER_RAN(r);
    std::map<std::string, std::string> meta;
    const auto got = safetensors_read(tmp / "python.safetensors", &meta);
    expect_same(got, torch_file_read(tmp / "python.pt"), "python.safetensors");
    const auto want_meta = nlohmann::json::parse(bytes_read(tmp.path / "metadata.json"));
    EXPECT_EQ(nlohmann::json(meta), want_meta);
    EXPECT_TRUE(safetensors_is(tmp / "python.safetensors"));
}

TEST(Safetensors, FilesWeWriteDecodeByHandInPython) {
    TempDir tmp;
    const std::map<std::string, std::string> meta = {{"format", "pt"}, {"written_by", "ips"}};
    safetensors_write(tmp / "ours.safetensors", every_dtype(), meta);
    torch_file_write(tmp / "ours.pt", every_dtype());
    bytes_write(tmp.path / "ours_metadata.json", nlohmann::json(meta).dump());
    const auto r = peer_run("check", tmp.path);
    ASSERT_PEER_RAN(r);
    EXPECT_NE(r.output.find("checked 12 tensors: ok"), std::string::npos) << r.output;
}

// Tolerated on purpose (safetensors.h): gaps, bytes after the last tensor, spaces, unaligned
// ranges, an empty tensor inside another's range, fields we do not know.
TEST(Safetensors, ReadsGapsTrailingBytesAndUnalignedRanges) {
    TempDir tmp;
    const std::string path = tmp / "odd.safetensors";
    std::string data(3, 'x');
    const float values[2] = {1.5f, -2.0f};
    data.append(reinterpret_cast<const char*>(values), 8);  // little-endian hosts only, as every CI host
    data += std::string("\x01\x00", 2) + "trailing";
    bytes_write(path, file_of("  {\"b\": {\"dtype\": \"BOOL\", \"shape\": [2], \"data_offsets\": [11, 13], \"x\": 1},"
                              " \"f\": {\"dtype\": \"F32\", \"shape\": [1, 2], \"data_offsets\": [3, 11]},"
                              " \"e\": {\"dtype\": \"I64\", \"shape\": [0], \"data_offsets\": [5, 5]}}   ",
                              data));
    const auto got = safetensors_read(path);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].first, "f");
    EXPECT_EQ(got[1].first, "e");
    EXPECT_EQ(got[2].first, "b");
    EXPECT_TRUE(torch::equal(got[0].second, torch::tensor({{1.5f, -2.0f}})));
    EXPECT_EQ(got[1].second.numel(), 0);
    EXPECT_TRUE(torch::equal(got[2].second, torch::tensor({true, false})));
}

TEST(Safetensors, DamagedFilesNameTheFileAndTheProblem) {
    TempDir tmp;
    const std::string f4 = "{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}";
    const std::string four(4, '\0');
    struct Case {
        std::string name, bytes, why;
    };
    const std::vector<Case> cases = {
        {"truncated", "abc", "too short for a safetensors file (3 bytes"},
        {"empty", "", "too short for a safetensors file (0 bytes"},
        {"header_past_end", file_of("{}", "", 1000), "header length 1000 bytes reaches past the end of the file (10 bytes)"},
        {"header_huge", file_of("{}", "", uint64_t(1) << 40), "header length 1099511627776 bytes is implausible"},
        {"bad_json", file_of("{\"a\": "), "header (6 bytes) is not valid JSON"},
        {"not_object", file_of("[1, 2]"), "header is a JSON array, not an object"},
        {"entry_not_object", file_of("{\"w\": 3}"), "tensor 'w': entry is a JSON number, not an object"},
        {"no_dtype", file_of("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", four), "tensor 'w': no \"dtype\" field"},
        {"no_shape", file_of("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", four), "tensor 'w': no \"shape\" field"},
        {"no_offsets", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", four), "tensor 'w': no \"data_offsets\" field"},
        {"dtype_number", file_of("{\"w\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}", four),
         "tensor 'w': \"dtype\" is a JSON number, not a string"},
        {"unknown_dtype", file_of("{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]}}", "x"),
         "tensor 'w': unknown dtype 'F8_E4M3' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)"},
        {"shape_string", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}", four),
         "tensor 'w': \"shape\" is a JSON string, not an array"},
        {"shape_negative", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", four),
         "tensor 'w': shape entry 1 is negative (-1)"},
        {"shape_fraction", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", four),
         "tensor 'w': shape entry 0 is not a whole number below 2^64 (1.5)"},
        {"shape_overflow",
         file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", four),
         "tensor 'w': shape [4294967296,4294967296] is too large to address"},
        {"shape_overflow_with_zero",
         file_of("{\"w\": {\"dtype\": \"U8\", \"shape\": [0, 4294967296, 4294967296], \"data_offsets\": [0, 0]}}"),
         "tensor 'w': shape [0,4294967296,4294967296] is too large to address"},
        {"offsets_one", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4]}}", four),
         "tensor 'w': \"data_offsets\" is [4], not [begin, end]"},
        {"offsets_string", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", 4]}}", four),
         "tensor 'w': data_offsets begin is a JSON string, not a number"},
        {"offsets_reversed", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", four),
         "tensor 'w': data_offsets [4, 0] begin after they end"},
        {"offsets_past_end", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", four),
         "tensor 'w': data_offsets [0, 8] reach past the end of the data section (4 bytes)"},
        {"size_mismatch", file_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", four),
         "tensor 'w': data_offsets [0, 4] hold 4 bytes, shape [2] of F32 needs 8"},
        {"overlap",
         file_of("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                 "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                 std::string(12, '\0')),
         "tensors 'a' [0, 8] and 'b' [4, 12] overlap"},
        {"metadata_not_object", file_of("{\"__metadata__\": [\"x\"], \"w\": " + f4 + "}", four),
         "\"__metadata__\" is a JSON array, not an object"},
        {"metadata_number", file_of("{\"__metadata__\": {\"epoch\": 3}, \"w\": " + f4 + "}", four),
         "\"__metadata__\" entry 'epoch' is a JSON number, not a string"},
        {"bool_byte", file_of("{\"m\": {\"dtype\": \"BOOL\", \"shape\": [2], \"data_offsets\": [0, 2]}}", "\x01\x02"),
         "tensor 'm': BOOL element 1 is byte 2, not 0 or 1"},
    };
    for (const auto& c : cases) {
        const std::string path = tmp / (c.name + ".safetensors");
        bytes_write(path, c.bytes);
        const std::string e = error_of([&] { safetensors_read(path); });
        EXPECT_NE(e.find("safetensors file '" + path + "': "), std::string::npos) << c.name << ": " << e;
        EXPECT_NE(e.find(c.why), std::string::npos) << c.name << ": " << e;
    }
    const std::string missing = tmp / "missing.safetensors";
    EXPECT_NE(error_of([&] { safetensors_read(missing); }).find("'" + missing + "': no such file"), std::string::npos);
    EXPECT_NE(error_of([&] { safetensors_read(tmp.path.string()); }).find("is a directory"), std::string::npos);
}
