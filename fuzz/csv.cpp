// `dataset: csv`: the CSV of `path,label[,label...]` rows (header, BOM, comments, CRLF, empty
// cells, label cells per task kind) and what the data set does with each row: the path's kind
// (image, slide, per-slide bag, FILE.h5#GROUP), opening it, its tile grid, and get() of the first
// rows with one patch read. The folder beside the CSV holds real files to name: a.png (RGB 40 x 40),
// g.png (grey 33 x 17), b.h5 (a per-slide bag of 5 rows) and r.h5 (the reference layout, groups
// s1 and s2). Inputs with '/' or '\' are skipped: rows name only files of that folder.
//
// Input: one byte of config, then the CSV text. The config byte, bit by bit: 0 is_image,
// 1 first task sigmoid, 2-3 n_class - 1, 4 a second (softmax) task, 5 tissue, 6 img_size 48 x 48
// (whole images), 7 grey (n_chan_in 1).
#include "fuzz_util.h"
#include "ips/csv_dataset.h"
#include "ips/feature_bag.h"
#include "ips/image_io.h"

#include <vips/vips.h>

using namespace ips;
using namespace ips_fuzz;

namespace {

std::string folder() { return scratch_dir() + "/csv"; }

void resources_make() {
    fs::create_directories(folder());
    torch::manual_seed(7);
    png_write(folder() + "/a.png", torch::randint(0, 256, {3, 40, 40}, torch::kUInt8));
    png_write(folder() + "/g.png", torch::randint(0, 256, {1, 17, 33}, torch::kUInt8));
    FeatureBag bag;
    bag.features = torch::rand({5, 4});
    bag.coords = torch::arange(10, torch::kLong).view({5, 2}) * 16;
    bag.patch_size = 16;
    feature_bag_write(folder() + "/b.h5", bag);
    feature_bag_group_write(folder() + "/r.h5", "s1", torch::rand({3, 4}), 1);
    feature_bag_group_write(folder() + "/r.h5", "s2", torch::rand({2, 4}).to(torch::kHalf), 0);
}

Config config_of(uint8_t bits) {
    Config cfg;
    cfg.data.dataset = "csv";
    cfg.data.data_dir = folder();
    cfg.model.is_image = bits & 1;
    cfg.model.n_class = 1 + ((bits >> 2) & 3);
    cfg.model.n_chan_in = cfg.model.is_image ? ((bits & 128) ? 1 : 3) : 4;
    cfg.data.patch_size = {16, 16};
    cfg.data.patch_stride = {16, 16};
    cfg.data.tissue = bits & 32;
    if (bits & 64) cfg.data.img_size = {48, 48};
    Task t;
    t.name = "task";
    t.act_fn = (bits & 2) ? ActFn::sigmoid : ActFn::softmax;
    cfg.model.tasks.push_back(t);
    if (bits & 16) {
        Task u;
        u.id = 0;
        u.name = "second";
        cfg.model.tasks.push_back(u);
    }
    return cfg;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    torch_quiet();
    vips_ensure_init();
    vips_cache_set_max(0);  // no state carried from one input to the next
    resources_make();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (text.find_first_of("/\\") != std::string::npos) return 0;
    const Config cfg = config_of(data[0]);
    file_write("csv/train.csv", text);
    if (verbose()) {
        std::string hex;
        for (size_t k = 0; k < size; ++k) hex += "0123456789abcdef"[data[k] >> 4], hex += "0123456789abcdef"[data[k] & 15];
        std::fprintf(stderr, "input %s\n", hex.c_str());
    }
    try {
        DatasetPtr ds = csv_dataset_make(cfg, "train");
        if (ds->size() < 1) fuzz_fail("csv_dataset_make returned an empty data set without an error");
        for (int64_t i = 0; i < std::min<int64_t>(ds->size(), 3); ++i) {
            Example ex = ds->get(i);
            if (ex.targets.size() != cfg.model.tasks.size()) fuzz_fail("an example with a target count other than the tasks'");
            for (const auto& t : ex.targets) tensor_touch(t);
            const int64_t n = ex.source->size();
            if (n > 0) {
                torch::Tensor p = ex.source->read(torch::tensor({int64_t{0}, n - 1}));
                tensor_touch(p);
            }
        }
    } catch (const std::exception& e) {
        note(e);
    }
    return 0;
}
