// IDX digit files, plain or gzip-compressed (zlib tells them apart): idx_read, and
// idx_digits_load on the same file as images and as labels (the header checks of both kinds).
//
// Input: the file's bytes.
#include "fuzz_util.h"
#include "ips/mnist.h"

using namespace ips;
using namespace ips_fuzz;

IPS_FUZZ_INIT_QUIET

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = file_write("digits-idx-ubyte", data, size);
    try {
        torch::Tensor t = idx_read(path);
        if (t.scalar_type() != torch::kUInt8 || t.dim() < 1 || t.dim() > 4 || !t.is_contiguous())
            fuzz_fail("idx_read returned a tensor that is not contiguous uint8 of 1..4 dimensions");
        tensor_touch(t);
    } catch (const std::exception& e) {
        note(e);
    }
    try {
        // The image checks (3 dimensions) pass for an image file, then the label checks reject it.
        DigitSet d = idx_digits_load(path, path);
        if (d.images.dim() != 3 || d.labels.dim() != 1 || d.labels.size(0) != d.images.size(0))
            fuzz_fail("idx_digits_load returned mismatched images and labels");
        tensor_touch(d.images);
        tensor_touch(d.labels);
    } catch (const std::exception& e) {
        note(e);
    }
    return 0;
}
