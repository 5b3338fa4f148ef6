// safetensors files as they arrive: the length prefix, our JSON header checks (nlohmann-json's
// parser underneath), the byte ranges and the shared data buffer (src/interop/safetensors.cpp),
// through safetensors_is, safetensors_read and weights_read. Every tensor handed out is touched at
// both ends; what was read must survive safetensors_write and read back byte for byte equal.
//
// Input: the file's bytes.
#include <cstring>
#include <map>
#include <set>

#include "fuzz_util.h"
#include "ips/safetensors.h"

using namespace ips;
using namespace ips_fuzz;

IPS_FUZZ_INIT_QUIET

namespace {

bool dtype_readable(torch::ScalarType t) {
    switch (t) {
        case torch::kDouble: case torch::kFloat: case torch::kHalf: case torch::kBFloat16: case torch::kLong:
        case torch::kInt: case torch::kShort: case torch::kChar: case torch::kByte: case torch::kBool: return true;
        default: return false;
    }
}

void tensors_check(const NamedTensors& all) {
    std::set<std::string> names;
    for (const auto& [k, t] : all) {
        if (!t.defined()) fuzz_fail("safetensors_read returned an undefined tensor for '" + k + "'");
        if (!t.device().is_cpu() || !t.is_contiguous())
            fuzz_fail("safetensors_read returned '" + k + "' off the CPU or not contiguous");
        if (!dtype_readable(t.scalar_type())) fuzz_fail("safetensors_read returned a dtype it does not list");
        if (!names.insert(k).second) fuzz_fail("safetensors_read returned '" + k + "' twice");
        if (t.scalar_type() == torch::kBool && t.numel() > 0) {
            const auto* b = static_cast<const uint8_t*>(t.data_ptr());
            for (int64_t i = 0; i < t.numel(); ++i)
                if (b[i] > 1) fuzz_fail("safetensors_read returned a BOOL byte other than 0 or 1");
        }
        tensor_touch(t);
    }
}

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
    if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
    const size_t n = a.numel() * a.element_size();
    return n == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), n) == 0;
}

// Whatever the reader accepted, the writer must write, and the reader must read back unchanged
// (NaN payloads included, hence bytes and not torch::equal).
void round_trip_check(const NamedTensors& all, const std::map<std::string, std::string>& metadata) {
    const std::string again = scratch_dir() + "/again.safetensors";
    try {
        safetensors_write(again, all, metadata);
    } catch (const std::exception& e) {
        fuzz_fail(std::string("safetensors_write refused what safetensors_read returned: ") + e.what());
    }
    std::map<std::string, std::string> metadata_again;
    NamedTensors back;
    try {
        back = safetensors_read(again, &metadata_again);
    } catch (const std::exception& e) {
        fuzz_fail(std::string("safetensors_read refused what safetensors_write wrote: ") + e.what());
    }
    if (!safetensors_is(again)) fuzz_fail("safetensors_is does not know a file safetensors_write wrote");
    if (metadata_again != metadata) fuzz_fail("the metadata changed in a write and read");
    // Order may change only among empty tensors (they share offsets and come by name).
    std::map<std::string, const torch::Tensor*> by_name;
    for (const auto& [k, t] : back) by_name[k] = &t;
    if (by_name.size() != all.size()) fuzz_fail("a write and read changed the number of tensors");
    for (const auto& [k, t] : all) {
        const auto it = by_name.find(k);
        if (it == by_name.end() || !same_bytes(t, *it->second)) fuzz_fail("'" + k + "' changed in a write and read");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = file_write("model.safetensors", data, size);
    const bool sniffed = safetensors_is(path);
    std::map<std::string, std::string> metadata;
    NamedTensors all;
    bool read = false;
    try {
        all = safetensors_read(path, &metadata);
        read = true;
    } catch (const std::exception& e) {
        note(e);
    }
    if (verbose()) std::fprintf(stderr, "sniffed %d, read %d: %zu tensors\n", int(sniffed), int(read), all.size());
    if (!read) return 0;
    tensors_check(all);
    round_trip_check(all, metadata);
    // The name ends in .safetensors, so weights_read takes the same reader whatever the sniff says.
    try {
        if (weights_read(path).size() != all.size()) fuzz_fail("weights_read and safetensors_read disagree");
    } catch (const std::exception& e) {
        fuzz_fail(std::string("weights_read refused what safetensors_read read: ") + e.what());
    }
    return 0;
}
