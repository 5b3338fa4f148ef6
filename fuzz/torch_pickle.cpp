// Our unpickler (src/interop/pickle_read.cpp) through the public reader, behind a well-formed
// archive: the fuzzer's bytes become the data.pkl record of a torch.save zip (stored, so no CRC or
// offset stands between a mutation and the unpickler), next to storage records data/0 .. data/15
// (1024 bytes each, but data/14 holds 8 and data/15 none) and a byteorder record. The checks are
// fuzz_torch_file's: torch_file_read with and without a root, torch_file_load.
//
// Input: the pickle (data.pkl) of a torch.save file; keys "0".."15" name the storages.
#include <caffe2/serialize/inline_container.h>

#include "fuzz_util.h"
#include "torch_walk.h"

using namespace ips_fuzz;

namespace {

std::string archive_of(const uint8_t* pkl, size_t size) {
    std::string zip;
    std::function<size_t(const void*, size_t)> sink = [&zip](const void* buf, size_t n) -> size_t {
        zip.append(static_cast<const char*>(buf), n);
        return n;
    };
    caffe2::serialize::PyTorchStreamWriter writer(sink);
    static const uint8_t kEmpty = 0;
    writer.writeRecord("data.pkl", size ? static_cast<const void*>(pkl) : &kEmpty, size);
    writer.writeRecord("byteorder", "little", 6);
    // Bytes that are valid values of every dtype's neighbourhood: small integers, finite floats.
    static const std::vector<uint8_t> kStorage = [] {
        std::vector<uint8_t> b(1024);
        for (size_t k = 0; k < b.size(); ++k) b[k] = static_cast<uint8_t>((k * 37) % 61);
        return b;
    }();
    for (size_t k = 0; k < 16; ++k) {
        const size_t bytes = k < 14 ? kStorage.size() : k == 14 ? 8 : 0;
        writer.writeRecord("data/" + std::to_string(k), bytes ? kStorage.data() : &kEmpty, bytes);
    }
    writer.writeEndOfFile();
    return zip;
}

}  // namespace

IPS_FUZZ_INIT_QUIET

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string zip = archive_of(data, size);
    torch_file_check(file_write("model.pt", zip));
    return 0;
}
