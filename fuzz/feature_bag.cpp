// HDF5 feature bags (small files): the per-slide layout through feature_bag_info, feature_bag_read
// and a lazy bag source (first and last row, a range, eager copy, patch origins), and the
// reference layout through feature_bag_groups and a source per group. HDF5 itself parses the
// file; what is ours is every check on what it reports (ranks, shapes, dtypes, attributes, coords
// rows) and every read sized from it.
//
// Input: the .h5 file's bytes.
#include "fuzz_util.h"
#include "ips/feature_bag.h"

using namespace ips;
using namespace ips_fuzz;

namespace {

// Rows and sizes come from the file; reading is capped so a large (sparse) dataset is no hang.
constexpr int64_t kMaxCells = int64_t(1) << 22;

void source_check(const PatchSourcePtr& src) {
    const int64_t n = src->size();
    const auto shape = src->patch_shape();
    if (n < 0 || shape.size() != 1 || shape[0] < 0) fuzz_fail("bag source with a negative size or another patch shape");
    if (n == 0 || shape[0] > kMaxCells) return;
    torch::Tensor rows = src->read(torch::tensor({n - 1, int64_t{0}, n - 1}));
    if (rows.dim() != 2 || rows.size(0) != 3 || rows.size(1) != shape[0]) fuzz_fail("bag rows of the wrong shape");
    tensor_touch(rows);
    tensor_touch(src->read_range(0, std::min<int64_t>(n, 2)));
    (void)src->patch_origin(n - 1);
    if (n * std::max<int64_t>(shape[0], 1) <= kMaxCells) tensor_touch(source_range_on(*src->to(torch::kCPU), 0, n, torch::kCPU));
}

}  // namespace

IPS_FUZZ_INIT_QUIET

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = file_write("bag.h5", data, size);
    bool small = false;
    try {
        FeatureBagInfo info = feature_bag_info(path);
        if (info.rows < 0 || info.dim < 0) fuzz_fail("feature_bag_info: negative shape");
        if (info.coords.defined() && (info.coords.dim() != 2 || info.coords.size(0) != info.rows || info.coords.size(1) != 2))
            fuzz_fail("feature_bag_info: coords of another shape than [rows, 2]");
        small = info.rows <= kMaxCells && info.rows * std::max<int64_t>(info.dim, 1) <= kMaxCells;
    } catch (const std::exception& e) {
        note(e);
    }
    if (small) {
        try {
            FeatureBag bag = feature_bag_read(path);
            tensor_touch(bag.features);
            tensor_touch(bag.coords);
        } catch (const std::exception& e) {
            note(e);
        }
    }
    try {
        source_check(feature_bag_source_open(path));
    } catch (const std::exception& e) {
        note(e);
    }
    try {
        const auto groups = feature_bag_groups(path);
        for (size_t g = 0; g < groups.size() && g < 4; ++g) source_check(feature_bag_source_open(path, groups[g].name));
    } catch (const std::exception& e) {
        note(e);
    }
    return 0;
}
