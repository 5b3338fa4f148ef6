// Region reads through libvips regions: a VipsRegion asks the loader for just the tiles it covers,
// and no vips operation is built per patch (an operation per patch would fill vips' cache).
#include "ips/slide.h"

#include <unistd.h>
#include <vips/vips8>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <memory>
#include <mutex>

#include "ips/config.h"
#include "ips/image_io.h"

namespace ips {

struct Slide {
    std::string path, loader;
    std::vector<SlideLevel> levels;
    double mpp = 0;
    std::mutex mutex;                  // guards `images` and `images_pid`
    std::vector<vips::VImage> images;  // per level, opened on first use
    pid_t images_pid = 0;              // the process that opened them
};

namespace {

// A process forked from one that had files open through libvips (a DataLoader's workers) shares
// their descriptors, file offsets included: reads from both interleave and decode garbage ("Not a
// JPEG file", seen with two workers on a pyramidal TIFF). Such a child forgets libvips' cache of
// the parent's open files once, before it opens any, so that it opens its own.
std::atomic<pid_t> g_first_pid{0}, g_cache_dropped_in{0};
vips::VOption* open_options() {
    const pid_t me = ::getpid();
    pid_t none = 0;
    g_first_pid.compare_exchange_strong(none, me);
    if (g_first_pid.load() != me && g_cache_dropped_in.exchange(me) != me) {
        const int most = vips_cache_get_max();
        vips_cache_set_max(0);  // trims every cached operation
        vips_cache_set_max(most);
    }
    return vips::VImage::option()->set("access", VIPS_ACCESS_RANDOM);
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error("image '" + path + "': " + what);
}

std::string vips_message(const vips::VError& e) {
    std::string msg = e.what();
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return msg;
}

bool has_field(const vips::VImage& img, const char* name) {
    return vips_image_get_typeof(img.get_image(), name) != 0;
}

// OpenSlide properties are strings; a missing or unparsable one is 0.
double property_number(const vips::VImage& img, const std::string& name) {
    if (!has_field(img, name.c_str())) return 0;
    const char* s = img.get_string(name.c_str());
    return s ? std::atof(s) : 0;
}

vips::VImage level_open(const Slide& s, int level) {
    auto opt = open_options()->set("fail", true);
    if (s.loader.rfind("openslideload", 0) == 0) opt->set("level", level);
    else if (s.loader.rfind("tiffload", 0) == 0) opt->set("page", level);
    vips::VImage img = vips::VImage::new_from_file(s.path.c_str(), opt);
    // 8-bit RGB(A) or grey(A) from here on, whatever the file stores: colour space first (LAB and
    // CMYK are not 8-bit RGB), then the 16-bit to 8-bit shift.
    const auto interp = img.interpretation();
    if (interp == VIPS_INTERPRETATION_CMYK || interp == VIPS_INTERPRETATION_LAB || interp == VIPS_INTERPRETATION_LABQ ||
        interp == VIPS_INTERPRETATION_LABS || interp == VIPS_INTERPRETATION_XYZ)
        img = img.colourspace(VIPS_INTERPRETATION_sRGB);
    if (img.format() == VIPS_FORMAT_USHORT) img = img.cast(VIPS_FORMAT_UCHAR, vips::VImage::option()->set("shift", true));
    else if (img.format() == VIPS_FORMAT_FLOAT || img.format() == VIPS_FORMAT_DOUBLE) img = (img * 255).cast(VIPS_FORMAT_UCHAR);
    else if (img.format() != VIPS_FORMAT_UCHAR) img = img.cast(VIPS_FORMAT_UCHAR);
    if (img.bands() > 4) img = img.extract_band(0, vips::VImage::option()->set("n", 4));
    return img;
}

vips::VImage level_image(Slide& s, int level) {
    if (level < 0 || level >= int(s.levels.size()))
        fail(s.path, "level " + std::to_string(level) + " does not exist (the image has " +
                         std::to_string(s.levels.size()) + ")");
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.images_pid != ::getpid()) {
        // Opened in the parent (or not yet): those images are left alone, not released, since
        // releasing them in a child could wait on a lock a thread of the parent held at the fork.
        if (!s.images.empty()) new std::vector<vips::VImage>(std::move(s.images));
        s.images.assign(s.levels.size(), vips::VImage());
        s.images_pid = ::getpid();
    }
    if (!s.images[level].get_image()) {
        try {
            s.images[level] = level_open(s, level);
        } catch (const vips::VError& e) {
            fail(s.path, "cannot open level " + std::to_string(level) + ": " + vips_message(e));
        }
    }
    return s.images[level];
}

void levels_read(Slide& s, const vips::VImage& first) {
    s.levels.push_back({first.width(), first.height(), 1.0});
    if (s.loader.rfind("openslideload", 0) == 0) {
        const int n = int(property_number(first, "openslide.level-count"));
        for (int k = 1; k < n; ++k) {
            const std::string p = "openslide.level[" + std::to_string(k) + "].";
            s.levels.push_back({int64_t(property_number(first, p + "width")), int64_t(property_number(first, p + "height")),
                                property_number(first, p + "downsample")});
        }
        s.mpp = property_number(first, "openslide.mpp-x");
    } else if (s.loader.rfind("tiffload", 0) == 0) {
        // A pyramidal TIFF keeps its levels as pages (or as one page per level in a BigTIFF),
        // each smaller than the last; anything else after page 0 is not a level.
        const int pages = has_field(first, "n-pages") ? first.get_int("n-pages") : 1;
        for (int k = 1; k < pages; ++k) {
            vips::VImage page = vips::VImage::new_from_file(s.path.c_str(), open_options()->set("page", k));
            const auto& prev = s.levels.back();
            if (page.width() >= prev.width || page.height() >= prev.height || page.bands() != first.bands()) break;
            s.levels.push_back({page.width(), page.height(), double(first.width()) / page.width()});
        }
        // libvips reports TIFF resolution in pixels per millimetre; 1 means the file gave none.
        if (first.xres() > 1.01) s.mpp = 1000.0 / first.xres();
    }
}

// Grey, grey + alpha, RGB or RGBA pixels to RGB on white.
inline void pixel_to_rgb(const uint8_t* p, int bands, uint8_t* rgb) {
    if (bands >= 3) {
        for (int c = 0; c < 3; ++c) rgb[c] = p[c];
    } else {
        rgb[0] = rgb[1] = rgb[2] = p[0];
    }
    if (bands == 2 || bands == 4) {
        const int a = p[bands - 1];
        for (int c = 0; c < 3; ++c) rgb[c] = uint8_t((rgb[c] * a + 255 * (255 - a) + 127) / 255);
    }
}

}  // namespace

SlidePtr slide_open(const std::string& path) {
    vips_ensure_init();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw FileNotFound("image '" + path + "': no such file");
    if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory");
    const char* loader = vips_foreign_find_load(path.c_str());
    if (!loader) {
        vips_error_clear();
        fail(path, "not an image format libvips can read (or the file is damaged)");
    }
    auto s = std::make_shared<Slide>();
    s->path = path;
    // vips names the class ("VipsForeignLoadOpenslideFile"); its nickname is the loader's name.
    const char* nickname = vips_nickname_find(g_type_from_name(loader));
    s->loader = nickname ? nickname : loader;
    try {
        levels_read(*s, vips::VImage::new_from_file(path.c_str(), open_options()));
    } catch (const vips::VError& e) {
        fail(path, "cannot read: " + vips_message(e));
    }
    if (s->levels[0].width < 1 || s->levels[0].height < 1) fail(path, "the image is empty");
    return s;
}

const std::string& slide_path(const Slide& slide) { return slide.path; }
const std::vector<SlideLevel>& slide_levels(const Slide& slide) { return slide.levels; }
double slide_mpp(const Slide& slide) { return slide.mpp; }
const std::string& slide_loader(const Slide& slide) { return slide.loader; }

int slide_level_for_mpp(const Slide& slide, double mpp) {
    if (slide.mpp <= 0) fail(slide.path, "the file states no resolution (µm per pixel); choose a level instead");
    int best = 0;
    for (size_t k = 0; k < slide.levels.size(); ++k)
        if (slide.mpp * slide.levels[k].downsample <= mpp * 1.1) best = int(k);
    return best;
}

torch::Tensor slide_read_region(Slide& slide, int level, int64_t x, int64_t y, int64_t w, int64_t h) {
    if (w < 1 || h < 1) fail(slide.path, "empty region requested");
    vips::VImage img = level_image(slide, level);
    const double ds = slide.levels[level].downsample;
    // Rounded, not floored: tile_grid_full rounds level pixels up to level 0, and this must invert
    // it exactly when the downsample is not a whole number (Aperio's 4.0002, odd-sized pyramids).
    const int64_t lx = int64_t(std::llround(x / ds)), ly = int64_t(std::llround(y / ds));
    auto out = torch::full({h, w, 3}, 255, torch::kUInt8);  // white outside the image
    const int64_t x0 = std::max<int64_t>(lx, 0), y0 = std::max<int64_t>(ly, 0);
    const int64_t x1 = std::min<int64_t>(lx + w, img.width()), y1 = std::min<int64_t>(ly + h, img.height());
    if (x1 > x0 && y1 > y0) {
        // Regions are per call, so threads never share one; the error buffer is process-wide, so
        // it is copied and cleared in one call.
        std::unique_ptr<VipsRegion, void (*)(VipsRegion*)> holder(vips_region_new(img.get_image()),
                                                                  [](VipsRegion* r) { if (r) g_object_unref(r); });
        VipsRegion* region = holder.get();
        VipsRect rect{int(x0), int(y0), int(x1 - x0), int(y1 - y0)};
        if (!region || vips_region_prepare(region, &rect)) {
            char* msg = vips_error_buffer_copy();
            std::string text = msg ? msg : "";
            g_free(msg);
            while (!text.empty() && text.back() == '\n') text.pop_back();
            fail(slide.path, "cannot read region at level " + std::to_string(level) + ": " + text);
        }
        const int bands = img.bands();
        auto* dst = out.data_ptr<uint8_t>();
        for (int64_t row = y0; row < y1; ++row) {
            const auto* src = reinterpret_cast<const uint8_t*>(VIPS_REGION_ADDR(region, int(x0), int(row)));
            uint8_t* line = dst + ((row - ly) * w + (x0 - lx)) * 3;
            for (int64_t col = 0; col < x1 - x0; ++col) pixel_to_rgb(src + col * bands, bands, line + col * 3);
        }
    }
    return out.permute({2, 0, 1}).contiguous();
}

Thumbnail slide_thumbnail(Slide& slide, int64_t max_side) {
    // The coarsest level at least max_side wide or high, then one shrink.
    int level = 0;
    for (size_t k = 0; k < slide.levels.size(); ++k)
        if (std::max(slide.levels[k].width, slide.levels[k].height) >= max_side) level = int(k);
    vips::VImage img = level_image(slide, level);
    try {
        if (img.has_alpha()) img = img.flatten(vips::VImage::option()->set("background", std::vector<double>{255.0}));
        // The static bandjoin of all three: `img.bandjoin({img, img})` picks the static overload
        // with two images and gives two bands (found by fuzz/grid.cpp).
        if (img.bands() == 1) img = vips::VImage::bandjoin({img, img, img});
        if (img.bands() > 3) img = img.extract_band(0, vips::VImage::option()->set("n", 3));
        const double scale = std::min(1.0, double(max_side) / std::max(img.width(), img.height()));
        if (scale < 1.0) img = img.resize(scale);
        if (img.format() != VIPS_FORMAT_UCHAR) img = img.cast(VIPS_FORMAT_UCHAR);
        size_t size = 0;
        void* mem = img.write_to_memory(&size);
        const int64_t H = img.height(), W = img.width();
        if (size != size_t(H * W * 3)) {
            g_free(mem);
            fail(slide.path, "cannot make a thumbnail: " + std::to_string(img.bands()) + " bands, not 3");
        }
        auto hwc = torch::from_blob(mem, {H, W, 3}, [](void* p) { g_free(p); }, torch::kUInt8);
        return {hwc.permute({2, 0, 1}).contiguous(), double(slide.levels[0].width) / W};
    } catch (const vips::VError& e) {
        fail(slide.path, "cannot make a thumbnail: " + vips_message(e));
    }
}

TileGrid tile_grid_full(const Slide& slide, int level, int64_t patch, int64_t stride) {
    if (level < 0 || level >= int(slide.levels.size()))
        fail(slide.path, "level " + std::to_string(level) + " does not exist");
    const auto& L = slide.levels[level];
    TileGrid g;
    g.level = level;
    g.patch = patch;
    g.stride = stride;
    std::array<int64_t, 2> shape;
    try {
        shape = grid_shape(L.height, L.width, {patch, patch}, {stride, stride});
    } catch (const std::invalid_argument& e) {
        fail(slide.path, std::string(e.what()) + " (level " + std::to_string(level) + ")");
    }
    g.rows = shape[0];
    g.cols = shape[1];
    g.coords = torch::empty({g.rows * g.cols, 2}, torch::kLong);
    auto c = g.coords.accessor<int64_t, 2>();
    for (int64_t r = 0; r < g.rows; ++r)
        for (int64_t k = 0; k < g.cols; ++k) {
            c[r * g.cols + k][0] = int64_t(std::llround(k * stride * L.downsample));
            c[r * g.cols + k][1] = int64_t(std::llround(r * stride * L.downsample));
        }
    return g;
}

void pyramid_tiff_write(const std::string& path, int64_t width, int64_t height, uint64_t seed, int quality,
                        const std::vector<NeedleBox>& needles) {
    vips_ensure_init();
    if (width < 1 || height < 1) fail(path, "pyramid size must be positive");
    // One 1024 x 1024 texture tile: smooth pink and purple blobs with grain, as H&E tissue looks.
    torch::manual_seed(seed);
    namespace F = torch::nn::functional;
    auto blobs = F::interpolate(torch::rand({1, 1, 16, 16}),
                                F::InterpolateFuncOptions().size(std::vector<int64_t>{1024, 1024}).mode(torch::kBicubic).align_corners(false))[0][0];
    auto base = torch::tensor({235.0f, 180.0f, 215.0f}).view({3, 1, 1});
    auto dark = torch::tensor({120.0f, 60.0f, 150.0f}).view({3, 1, 1});
    auto t = blobs.clamp(0, 1).unsqueeze(0);
    auto tile = (base * (1 - t) + dark * t + torch::randn({3, 1024, 1024}) * 8).clamp(0, 255).to(torch::kUInt8);
    auto hwc = tile.permute({1, 2, 0}).contiguous();
    const std::string tmp = path + ".tmp.tif";
    try {
        vips::VImage img =
            vips::VImage::new_from_memory(hwc.data_ptr(), size_t(hwc.numel()), 1024, 1024, 3, VIPS_FORMAT_UCHAR).copy_memory();
        img = img.replicate(int((width + 1023) / 1024), int((height + 1023) / 1024)).crop(0, 0, int(width), int(height));
        for (const auto& n : needles) {
            if (n.w < 1 || n.h < 1 || n.x < 0 || n.y < 0 || n.x + n.w > width || n.y + n.h > height)
                fail(path, "needle " + std::to_string(n.w) + "x" + std::to_string(n.h) + " at (" + std::to_string(n.x) +
                               ", " + std::to_string(n.y) + ") is not inside the image");
            // Lazy like the rest: a constant image inserted, not pixels drawn into memory.
            vips::VImage patch = (vips::VImage::black(int(n.w), int(n.h)) + std::vector<double>{40, 30, 110})
                                     .cast(VIPS_FORMAT_UCHAR);
            img = img.insert(patch, int(n.x), int(n.y));
        }
        img = img.copy(vips::VImage::option()->set("xres", 4000.0)->set("yres", 4000.0)->set("interpretation", VIPS_INTERPRETATION_sRGB));
        img.tiffsave(tmp.c_str(), vips::VImage::option()
                                      ->set("tile", true)
                                      ->set("tile_width", 256)
                                      ->set("tile_height", 256)
                                      ->set("pyramid", true)
                                      ->set("compression", VIPS_FOREIGN_TIFF_COMPRESSION_JPEG)
                                      ->set("Q", quality)
                                      ->set("bigtiff", true)
                                      ->set("resunit", VIPS_FOREIGN_TIFF_RESUNIT_CM));
    } catch (const vips::VError& e) {
        std::remove(tmp.c_str());
        fail(path, "cannot write the pyramid: " + vips_message(e));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        fail(path, "cannot move the written file into place");
    }
}

}  // namespace ips
