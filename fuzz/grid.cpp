// Patch-grid and tissue maths fed with odd image sizes.
//  A: an image [C, H, W] (1..400 each side) cut by a config's patch_size / patch_stride / N, as
//     config_validate lets them through: the grid size, and every patch read (first, middle, last)
//     equals the image at its patch_origin and lies inside the image.
//  B: the same kind of image as a file (PNG, or one time in eight a pyramidal TIFF of up to
//     2600 x 2600 with 2..4 levels of odd sizes): tile_grid_make with a square patch, stride,
//     slide_level / slide_mpp, tissue and tissue_min; every tile lies inside its level, the grid
//     keeps the full grid's rows and columns; a PNG is its own thumbnail; the tissue mask, its
//     overlay, Otsu's threshold, and the first and last tile read through a slide source.
//
// Input: numbers for FuzzedDataProvider (sizes first, pixels last).
#include <fuzzer/FuzzedDataProvider.h>
#include <vips/vips.h>

#include <cmath>

#include "fuzz_util.h"
#include "ips/config.h"
#include "ips/image_io.h"
#include "ips/patch_source.h"
#include "ips/slide.h"
#include "ips/slide_source.h"
#include "ips/tissue.h"

using namespace ips;
using namespace ips_fuzz;
using torch::indexing::Slice;

namespace {

torch::Tensor image_of(FuzzedDataProvider& in, int64_t C, int64_t H, int64_t W) {
    std::vector<uint8_t> pattern = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(1, 97));
    if (pattern.empty()) pattern.push_back(200);
    auto img = torch::empty({C, H, W}, torch::kUInt8);
    auto* p = img.data_ptr<uint8_t>();
    for (int64_t k = 0; k < img.numel(); ++k) p[k] = pattern[size_t(k) % pattern.size()];
    return img;
}

void image_grid_check(FuzzedDataProvider& in) {
    const int64_t C = in.ConsumeBool() ? 3 : 1;
    const int64_t H = in.ConsumeIntegralInRange<int64_t>(1, 400), W = in.ConsumeIntegralInRange<int64_t>(1, 400);
    Config cfg;
    cfg.model.n_chan_in = int(C);
    cfg.data.img_size = {H, W};
    cfg.data.patch_size = {in.ConsumeIntegralInRange<int64_t>(-2, 420), in.ConsumeIntegralInRange<int64_t>(-2, 420)};
    cfg.data.patch_stride = {in.ConsumeIntegralInRange<int64_t>(-2, 420), in.ConsumeIntegralInRange<int64_t>(-2, 420)};
    if (in.ConsumeBool()) cfg.data.N = in.ConsumeIntegralInRange<int64_t>(0, 200000);
    if (C == 3 && in.ConsumeBool()) cfg.data.normalize = Normalize::imagenet;
    try {
        config_validate(cfg);
    } catch (const ConfigError&) {
        return;  // not a grid a config can ask for
    }
    if (verbose())
        std::fprintf(stderr, "image %lldx%lld C %lld: patch %lldx%lld stride %lldx%lld N %lld\n", (long long)H,
                     (long long)W, (long long)C, (long long)cfg.data.patch_size[0], (long long)cfg.data.patch_size[1],
                     (long long)cfg.data.patch_stride[0], (long long)cfg.data.patch_stride[1], (long long)cfg.data.N);
    const auto img = image_of(in, C, H, W);
    PatchSourcePtr src = image_source_make(img, cfg.data);
    const auto& P = cfg.data.patch_size;
    const auto& S = cfg.data.patch_stride;
    const int64_t rows = (H - P[0]) / S[0] + 1, cols = (W - P[1]) / S[1] + 1, n = src->size();
    if (n != rows * cols || src->grid_cols() != cols || (cfg.data.N > 0 && n != cfg.data.N))
        fuzz_fail("image grid of " + std::to_string(n) + " patches for " + std::to_string(H) + "x" + std::to_string(W));
    const std::vector<int64_t> picks = {0, n / 2, n - 1};
    torch::Tensor got = src->read_stored(torch::tensor(picks));
    if (got.sizes() != torch::IntArrayRef({3, C, P[0], P[1]})) fuzz_fail("patches of the wrong shape");
    for (size_t k = 0; k < picks.size(); ++k) {
        const auto [x, y] = src->patch_origin(picks[k]);
        if (x < 0 || y < 0 || x + P[1] > W || y + P[0] > H) fuzz_fail("a patch origin outside the image");
        if (!got[int64_t(k)].equal(img.index({Slice(), Slice(y, y + P[0]), Slice(x, x + P[1])})))
            fuzz_fail("patch " + std::to_string(picks[k]) + " is not the image at its origin");
    }
    tensor_touch(src->read(torch::tensor({n - 1})));
}

void slide_grid_check(FuzzedDataProvider& in, int64_t serial) {
    const bool pyramid = in.ConsumeIntegralInRange<int>(0, 7) == 0;
    const int64_t C = in.ConsumeBool() ? 3 : 1;
    const int64_t limit = pyramid ? 2600 : 400;
    const int64_t H = in.ConsumeIntegralInRange<int64_t>(1, limit), W = in.ConsumeIntegralInRange<int64_t>(1, limit);
    Config cfg;
    cfg.model.n_chan_in = int(C);
    const int64_t p = in.ConsumeIntegralInRange<int64_t>(1, 600), s = in.ConsumeIntegralInRange<int64_t>(1, 600);
    cfg.data.patch_size = {p, p};
    cfg.data.patch_stride = {s, s};
    cfg.data.slide_level = in.ConsumeIntegralInRange<int>(0, 4);
    if (in.ConsumeBool()) cfg.data.slide_mpp = in.ConsumeFloatingPointInRange<double>(0.05, 20.0);
    cfg.data.tissue = in.ConsumeBool();
    cfg.data.tissue_min = in.ConsumeProbability<double>();
    if (C == 3 && in.ConsumeBool()) cfg.data.normalize = Normalize::imagenet;
    try {
        config_validate(cfg);
    } catch (const ConfigError&) {
        return;
    }
    if (verbose())
        std::fprintf(stderr, "slide %s %lldx%lld C %lld: patch %lld stride %lld level %d mpp %g tissue %d min %g\n",
                     pyramid ? "pyramid" : "png", (long long)W, (long long)H, (long long)C, (long long)p, (long long)s,
                     cfg.data.slide_level, cfg.data.slide_mpp, int(cfg.data.tissue), cfg.data.tissue_min);
    const std::string path = scratch_dir() + "/slide-" + std::to_string(serial) + (pyramid ? ".tif" : ".png");
    struct Remove {
        std::string path;
        ~Remove() { std::remove(path.c_str()); }
    } remove{path};
    torch::Tensor img;
    if (pyramid) {
        pyramid_tiff_write(path, W, H, uint64_t(in.ConsumeIntegral<uint16_t>()), 60);
    } else {
        img = image_of(in, C, H, W);
        png_write(path, img);
        const int t = otsu_threshold(C == 3 ? luma(img.to(torch::kFloat32)).round().to(torch::kUInt8) : img);
        if (t < 0 || t > 255) fuzz_fail("Otsu threshold outside 0..255");
    }
    SlidePtr slide = slide_open(path);
    if (!pyramid) {
        // An image within the thumbnail size is its own thumbnail (grey repeated to RGB).
        const Thumbnail thumb = slide_thumbnail(*slide, 2048);
        if (thumb.downsample != 1.0 || !thumb.rgb.equal(C == 3 ? img : img.expand({3, H, W})))
            fuzz_fail("the thumbnail of a " + std::to_string(C) + "-channel " + std::to_string(W) + "x" + std::to_string(H) +
                      " PNG is not the image");
    }
    TileGrid grid;
    try {
        grid = tile_grid_make(*slide, cfg.data);
    } catch (const std::exception& e) {
        note(e);
        return;  // patch larger than the level, no such level, no resolution, no tissue: clear errors
    }
    const auto& levels = slide_levels(*slide);
    if (grid.level < 0 || grid.level >= int(levels.size())) fuzz_fail("tile grid at a level the slide lacks");
    const SlideLevel& L = levels[size_t(grid.level)];
    const int64_t N = grid.coords.size(0);
    if (verbose()) std::fprintf(stderr, "  grid level %d: %lld tiles of %lldx%lld\n", grid.level, (long long)N, (long long)grid.rows, (long long)grid.cols);
    if (grid.cols != (L.width - p) / s + 1 || grid.rows != (L.height - p) / s + 1 || N > grid.rows * grid.cols ||
        (!cfg.data.tissue && N != grid.rows * grid.cols))
        fuzz_fail("tile grid of " + std::to_string(grid.rows) + "x" + std::to_string(grid.cols) + " (" +
                  std::to_string(N) + " tiles) on a level of " + std::to_string(L.width) + "x" + std::to_string(L.height));
    const auto c = grid.coords.accessor<int64_t, 2>();
    for (int64_t k = 0; k < N; ++k) {
        // slide_read_region's inverse of the level-0 coordinates.
        const int64_t lx = std::llround(double(c[k][0]) / L.downsample), ly = std::llround(double(c[k][1]) / L.downsample);
        if (lx < 0 || ly < 0 || lx + p > L.width || ly + p > L.height || lx % s != 0 || ly % s != 0)
            fuzz_fail("tile (" + std::to_string(c[k][0]) + ", " + std::to_string(c[k][1]) + ") of side " + std::to_string(p) +
                      " crosses level " + std::to_string(grid.level) + " (" + std::to_string(L.width) + "x" +
                      std::to_string(L.height) + ", downsample " + std::to_string(L.downsample) + ")");
    }
    if (cfg.data.tissue) {
        TissueMask mask = tissue_mask_make(*slide);
        // The overlay outlines every tile: O(tiles x tile side) by design, so dense grids (stride 1)
        // take minutes under ASan; those are left out rather than reported as hangs.
        const double side = double(p) * L.downsample / mask.thumb.downsample;
        if (double(N) * 4.0 * (side + 1.0) <= 2e7) tensor_touch(tissue_overlay(*slide, mask, grid));
        TileGrid again = tile_grid_tissue(*slide, mask, grid.level, p, s, cfg.data.tissue_min);
        if (!again.coords.equal(grid.coords)) fuzz_fail("tile_grid_tissue differs from tile_grid_make's grid");
    }
    if (N > 0 && p <= 256) {
        PatchSourcePtr src = slide_source_make(slide, grid, C, normalization_of(cfg.data.normalize));
        torch::Tensor t = src->read(torch::tensor({int64_t{0}, N - 1}));
        if (t.sizes() != torch::IntArrayRef({2, C, p, p})) fuzz_fail("slide patches of the wrong shape");
        tensor_touch(t);
        if (!pyramid && cfg.data.normalize == Normalize::none && grid.level == 0) {
            // A one-level image: the tile is the image's pixels at its coordinates.
            const auto [x, y] = src->patch_origin(N - 1);
            auto want = img.index({Slice(), Slice(y, y + p), Slice(x, x + p)});
            auto tile = (t[1] * 255).round().to(torch::kUInt8);
            if (C == 1) want = luma(want.expand({3, p, p}).to(torch::kFloat32)).round().to(torch::kUInt8).unsqueeze(0);
            if ((tile.to(torch::kInt) - want.to(torch::kInt)).abs().max().item<int>() > 1)
                fuzz_fail("the last tile is not the image at its coordinates");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    torch_quiet();
    vips_ensure_init();
    vips_cache_set_max(0);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static int64_t serial = 0;
    FuzzedDataProvider in(data, size);
    const bool image = in.ConsumeBool();
    try {
        if (image) image_grid_check(in);
        else slide_grid_check(in, ++serial);
    } catch (const std::invalid_argument& e) {
        fuzz_fail(std::string("a grid config_validate accepted was refused: ") + e.what());
    } catch (const std::exception& e) {
        note(e);
    }
    return 0;
}
