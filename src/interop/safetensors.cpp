// safetensors files: every header entry is checked before a byte of data is read, then the data
// section arrives in one read into a buffer the tensors share.
#include "ips/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>
#include <tuple>

#include "ips/config.h"
#include "ips/files.h"

namespace ips {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The reference implementation's limit; real headers take about 100 bytes per tensor.
constexpr uint64_t kHeaderMostBytes = 100'000'000;
// Far beyond any real tensor; bounds the work a hostile shape can ask for.
constexpr size_t kMostDims = 64;

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

std::string file_error(const std::string& path, const std::string& what) {
    return "safetensors file '" + path + "': " + what;
}

struct DtypeCode {
    const char* name;
    torch::ScalarType type;
};

constexpr DtypeCode kDtypes[] = {
    {"F64", torch::kDouble}, {"F32", torch::kFloat}, {"F16", torch::kHalf}, {"BF16", torch::kBFloat16},
    {"I64", torch::kLong},   {"I32", torch::kInt},   {"I16", torch::kShort}, {"I8", torch::kChar},
    {"U8", torch::kByte},    {"BOOL", torch::kBool},
};

const DtypeCode* dtype_named(const std::string& name) {
    for (const auto& d : kDtypes)
        if (name == d.name) return &d;
    return nullptr;
}

const char* dtype_code(torch::ScalarType type) {
    for (const auto& d : kDtypes)
        if (type == d.type) return d.name;
    return nullptr;
}

std::string dtypes_known() {
    std::string s;
    for (const auto& d : kDtypes) s += (s.empty() ? "" : " ") + std::string(d.name);
    return s;
}

bool host_is_little_endian() {
    const uint16_t one = 1;
    uint8_t first = 0;
    std::memcpy(&first, &one, 1);
    return first == 1;
}

// The file's byte order is little-endian whatever the machine's; a big-endian host turns it round.
void swap_units(void* data, size_t bytes, size_t unit) {
    if (unit < 2) return;
    auto* p = static_cast<uint8_t*>(data);
    for (size_t k = 0; k + unit <= bytes; k += unit) std::reverse(p + k, p + k + unit);
}

uint64_t le64_decode(const unsigned char* b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
    return v;
}

void le64_encode(uint64_t v, unsigned char* b) {
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
}

std::string shape_text(const std::vector<int64_t>& shape) { return c10::str(c10::IntArrayRef(shape)); }

std::string range_text(uint64_t begin, uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// JSON integers that are not negative arrive as number_unsigned; everything else is refused.
uint64_t whole_number(const json& v, const std::string& what) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer()) fail(what + " is negative (" + v.dump() + ")");
    if (v.is_number()) fail(what + " is not a whole number below 2^64 (" + v.dump() + ")");
    fail(what + " is a JSON " + v.type_name() + ", not a number");
}

struct Entry {
    std::string key;
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
};

Entry entry_parse(const std::string& key, const json& v, uint64_t data_bytes) {
    const std::string where = "tensor '" + key + "': ";
    if (!v.is_object()) fail(where + "entry is a JSON " + v.type_name() + ", not an object");
    auto field = [&](const char* name) -> const json& {
        const auto it = v.find(name);
        if (it == v.end()) fail(where + "no \"" + name + "\" field");
        return *it;
    };
    Entry e;
    e.key = key;

    const json& dtype = field("dtype");
    if (!dtype.is_string()) fail(where + "\"dtype\" is a JSON " + dtype.type_name() + ", not a string");
    const DtypeCode* code = dtype_named(dtype.get<std::string>());
    if (!code) fail(where + "unknown dtype '" + dtype.get<std::string>() + "' (known: " + dtypes_known() + ")");
    e.dtype = code->type;

    const json& shape = field("shape");
    if (!shape.is_array()) fail(where + "\"shape\" is a JSON " + shape.type_name() + ", not an array");
    if (shape.size() > kMostDims)
        fail(where + "shape has " + std::to_string(shape.size()) + " dimensions (at most " +
             std::to_string(kMostDims) + ")");
    // Each size counted as at least 1: that bound also keeps the strides libtorch derives in int64.
    const uint64_t elem = c10::elementSize(e.dtype);
    uint64_t bound = elem, count = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
        const uint64_t n = whole_number(shape[d], where + "shape entry " + std::to_string(d));
        if (n > uint64_t(std::numeric_limits<int64_t>::max()) ||
            __builtin_mul_overflow(bound, std::max<uint64_t>(n, 1), &bound) ||
            bound > uint64_t(std::numeric_limits<int64_t>::max()))
            fail(where + "shape " + shape.dump() + " is too large to address");
        e.shape.push_back(int64_t(n));
        count *= n;  // cannot overflow: bounded by `bound`
    }

    const json& offsets = field("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2)
        fail(where + "\"data_offsets\" is " + offsets.dump() + ", not [begin, end]");
    e.begin = whole_number(offsets[0], where + "data_offsets begin");
    e.end = whole_number(offsets[1], where + "data_offsets end");
    if (e.begin > e.end) fail(where + "data_offsets " + range_text(e.begin, e.end) + " begin after they end");
    if (e.end > data_bytes)
        fail(where + "data_offsets " + range_text(e.begin, e.end) + " reach past the end of the data section (" +
             std::to_string(data_bytes) + " bytes)");
    if (e.end - e.begin != count * elem)
        fail(where + "data_offsets " + range_text(e.begin, e.end) + " hold " + std::to_string(e.end - e.begin) +
             " bytes, shape " + shape_text(e.shape) + " of " + code->name + " needs " + std::to_string(count * elem));
    return e;
}

struct Header {
    std::vector<Entry> entries;  // by byte range
    std::map<std::string, std::string> metadata;
};

Header header_parse(const std::string& text, uint64_t data_bytes) {
    const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("header (" + std::to_string(text.size()) + " bytes) is not valid JSON");
    if (!j.is_object()) fail(std::string("header is a JSON ") + j.type_name() + ", not an object");
    Header h;
    for (const auto& [key, v] : j.items()) {
        if (key != "__metadata__") {
            h.entries.push_back(entry_parse(key, v, data_bytes));
            continue;
        }
        if (!v.is_object()) fail(std::string("\"__metadata__\" is a JSON ") + v.type_name() + ", not an object");
        for (const auto& [name, value] : v.items()) {
            if (!value.is_string())
                fail("\"__metadata__\" entry '" + name + "' is a JSON " + value.type_name() + ", not a string");
            h.metadata[name] = value.get<std::string>();
        }
    }
    std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
        return std::tie(a.begin, a.end, a.key) < std::tie(b.begin, b.end, b.key);
    });
    // Sorted by begin, a range overlaps an earlier one exactly when it starts before the end of the
    // last non-empty range.
    const Entry* last = nullptr;
    for (const Entry& e : h.entries) {
        if (e.begin == e.end) continue;
        if (last && e.begin < last->end)
            fail("tensors '" + last->key + "' " + range_text(last->begin, last->end) + " and '" + e.key + "' " +
                 range_text(e.begin, e.end) + " overlap");
        last = &e;
    }
    return h;
}

torch::Tensor tensor_make(const Entry& e, const torch::Tensor& buffer) {
    const auto options = torch::TensorOptions().dtype(e.dtype);
    const size_t bytes = e.end - e.begin;
    if (bytes == 0) return torch::empty(e.shape, options);
    auto* src = static_cast<uint8_t*>(buffer.data_ptr()) + e.begin;
    // Any other byte in a bool is undefined behaviour in every kernel that reads it.
    if (e.dtype == torch::kBool) {
        const auto* bad = std::find_if(src, src + bytes, [](uint8_t b) { return b > 1; });
        if (bad != src + bytes)
            fail("tensor '" + e.key + "': BOOL element " + std::to_string(bad - src) + " is byte " +
                 std::to_string(*bad) + ", not 0 or 1");
    }
    const size_t elem = c10::elementSize(e.dtype);
    torch::Tensor t;
    if (e.begin % elem == 0) {
        // The deleter's copy of `buffer` keeps the whole data section alive while this tensor lives.
        t = torch::from_blob(src, e.shape, [buffer](void*) {}, options);
    } else {
        t = torch::empty(e.shape, options);  // kernels may assume aligned elements
        std::memcpy(t.data_ptr(), src, bytes);
    }
    if (!host_is_little_endian()) swap_units(t.data_ptr(), bytes, elem);
    return t;
}

NamedTensors tensors_read(std::ifstream& in, uint64_t file_bytes, std::map<std::string, std::string>* metadata) {
    unsigned char length[8];
    in.read(reinterpret_cast<char*>(length), 8);
    if (in.gcount() < 8)
        fail("too short for a safetensors file (" + std::to_string(in.gcount()) +
             " bytes; the header length alone takes 8)");
    const uint64_t header_bytes = le64_decode(length);
    if (header_bytes > kHeaderMostBytes)
        fail("header length " + std::to_string(header_bytes) + " bytes is implausible (the limit is " +
             std::to_string(kHeaderMostBytes) + ")");
    if (header_bytes > file_bytes - 8)
        fail("header length " + std::to_string(header_bytes) + " bytes reaches past the end of the file (" +
             std::to_string(file_bytes) + " bytes)");
    std::string text(header_bytes, '\0');
    in.read(text.data(), std::streamsize(header_bytes));
    if (uint64_t(in.gcount()) != header_bytes) fail("the file ended inside the header");

    Header h = header_parse(text, file_bytes - 8 - header_bytes);
    uint64_t used = 0;
    for (const Entry& e : h.entries) used = std::max(used, e.end);
    // Bytes past the last range (or in gaps before it) are never looked at, but gaps are read along.
    auto buffer = torch::empty({int64_t(used)}, torch::kByte);
    in.read(static_cast<char*>(buffer.data_ptr()), std::streamsize(used));
    if (uint64_t(in.gcount()) != used) fail("the file ended inside the data section (it shrank while read?)");

    NamedTensors out;
    out.reserve(h.entries.size());
    for (const Entry& e : h.entries) out.emplace_back(e.key, tensor_make(e, buffer));
    if (metadata) *metadata = std::move(h.metadata);
    return out;
}

// Whether `text` can go into the JSON header (the dump refuses anything but UTF-8).
bool utf8_is(const std::string& text) {
    try {
        (void)json(text).dump();
        return true;
    } catch (const json::exception&) {
        return false;
    }
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

NamedTensors safetensors_read(const std::string& path, std::map<std::string, std::string>* metadata) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw FileNotFound(file_error(path, "no such file"));
    if (fs::is_directory(path, ec)) fail(file_error(path, "is a directory"));
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(file_error(path, std::string("cannot open: ") + std::strerror(errno)));
    const uint64_t file_bytes = fs::file_size(path, ec);
    if (ec) fail(file_error(path, "cannot tell its size: " + ec.message()));
    try {
        return tensors_read(in, file_bytes, metadata);
    } catch (const c10::Error& e) {
        fail(file_error(path, e.what_without_backtrace()));  // an allocation the machine cannot serve
    } catch (const std::exception& e) {
        fail(file_error(path, e.what()));
    }
}

bool safetensors_is(const std::string& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return false;
    const uint64_t file_bytes = fs::file_size(path, ec);
    if (ec || file_bytes < 10) return false;  // 8 bytes of length and at least "{}"
    std::ifstream in(path, std::ios::binary);
    unsigned char head[9];
    in.read(reinterpret_cast<char*>(head), 9);
    if (in.gcount() < 9) return false;
    const uint64_t header_bytes = le64_decode(head);
    return header_bytes >= 2 && header_bytes <= kHeaderMostBytes && header_bytes <= file_bytes - 8 && head[8] == '{';
}

void safetensors_write(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
    // ordered_json: the header lists the tensors as they lie in the file, for whoever reads it.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    for (const auto& [name, value] : metadata) {
        if (!utf8_is(name)) fail(file_error(path, "metadata name '" + name + "' is not valid UTF-8"));
        if (!utf8_is(value)) fail(file_error(path, "metadata value of '" + name + "' is not valid UTF-8"));
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;

    std::vector<torch::Tensor> blocks;
    std::set<std::string> seen;
    uint64_t offset = 0;
    for (const auto& [key, t] : tensors) {
        const std::string where = "tensor '" + key + "': ";
        if (key == "__metadata__") fail(file_error(path, "the name '__metadata__' is reserved for the metadata"));
        if (!seen.insert(key).second) fail(file_error(path, "key '" + key + "' appears twice"));
        if (!t.defined()) fail(file_error(path, where + "undefined"));
        const char* code = dtype_code(t.scalar_type());
        if (!code)
            fail(file_error(path, where + "dtype " + c10::toString(t.scalar_type()) +
                                      " has no safetensors code here (known: " + dtypes_known() + ")"));
        if (!utf8_is(key)) fail(file_error(path, "tensor name '" + key + "' is not valid UTF-8"));
        torch::Tensor block = t.detach().to(torch::kCPU).contiguous();
        const uint64_t bytes = uint64_t(block.numel()) * block.element_size();
        if (!host_is_little_endian()) {
            block = block.clone();
            swap_units(block.data_ptr(), bytes, block.element_size());
        }
        header[key] = {{"dtype", code},
                       {"shape", block.sizes().vec()},
                       {"data_offsets", nlohmann::ordered_json::array({offset, offset + bytes})}};
        offset += bytes;
        blocks.push_back(block);
    }
    std::string text = header.dump();
    // Padding to a multiple of 8 keeps the data section, and so 8-byte elements, aligned.
    text.append((8 - text.size() % 8) % 8, ' ');
    unsigned char length[8];
    le64_encode(text.size(), length);

    AtomicFile out(path);
    out.write(length, 8);
    out.write(text.data(), text.size());
    for (const auto& block : blocks) {
        const size_t bytes = block.numel() * block.element_size();
        if (bytes) out.write(block.data_ptr(), bytes);
    }
    out.commit();
}

NamedTensors weights_read(const std::string& path) {
    if (ends_with(path, ".safetensors") || safetensors_is(path)) return safetensors_read(path);
    return torch_file_read(path);
}

}  // namespace ips
