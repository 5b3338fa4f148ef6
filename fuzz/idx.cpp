// IDX digit files, plain or gzip-compressed (zlib tells them apart): idx_read, and
// idx_digits_load on the same file as images and as labels (the header checks of both kinds).
//
// Input: the file's bytes.
#include <zlib.h>

#include "fuzz_util.h"
#include "ips/mnist.h"

using namespace ips;
using namespace ips_fuzz;

namespace {

// Known findings (fuzz/README.md), skipped here until idx_read is fixed so the fuzzer goes on past
// them; IPS_FUZZ_KNOWN=1 lets them through, fuzz/crashes/idx/ keeps an input for each.
//  F1: idx_read allocates what the header declares (up to 16 GiB) before it reads a byte of data,
//      so a 16-byte file costs a 16 GiB allocation: inputs declaring more than 64 MiB are skipped.
//  F2: the dimension product overflows int64 before the "implausible dimensions" check (UB):
//      inputs whose product overflows in the reader's order are skipped.
// Both mirror idx_read's own loop: a product above 16 GiB without overflow is its clear error.
bool known_finding(const std::string& path) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) return false;
    unsigned char head[20] = {};
    const int got = gzread(f, head, sizeof head);
    gzclose(f);
    if (got < 4) return false;
    const int ndim = head[3];
    if (ndim < 1 || ndim > 4 || got < 4 + 4 * ndim) return false;
    int64_t count = 1;
    for (int d = 0; d < ndim; ++d) {
        const unsigned char* b = head + 4 + 4 * d;
        const int64_t n = (int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | b[3];
        if (n != 0 && count > INT64_MAX / n) return true;   // F2
        count *= n;
        if (count > (int64_t(1) << 34)) return false;        // the reader's clear error
    }
    return count > (int64_t(64) << 20);                      // F1
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    torch_quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = file_write("digits-idx-ubyte", data, size);
    if (skip_known() && known_finding(path)) return 0;
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
