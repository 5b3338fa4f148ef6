// Region reads from real files: the Aperio slide in ../shared/data, pyramidal TIFFs written by
// libvips, an RGBA PNG; regions equal the same pixels of a whole-image decode; bad files are
// named. (The lazy patch source over a slide: slide_source_test.cpp; tissue and tile grids from a
// config: tissue_test.cpp.)
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vips/vips8>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "io/test_images.h"
#include "ips/image_io.h"
#include "ips/slide.h"
#include "ips/slide_source.h"

namespace fs = std::filesystem;
using namespace ips;
using namespace ips::test;

TEST(Slide, ReadsTheAperioSlideThroughOpenSlide) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    EXPECT_EQ(slide_loader(*slide).rfind("openslideload", 0), 0u) << slide_loader(*slide);
    ASSERT_EQ(slide_levels(*slide).size(), 1u);
    EXPECT_EQ(slide_levels(*slide)[0].width, 2220);
    EXPECT_EQ(slide_levels(*slide)[0].height, 2967);
    EXPECT_NEAR(slide_mpp(*slide), 0.499, 1e-3);
    EXPECT_EQ(slide_level_for_mpp(*slide, 0.5), 0);

    // A region equals the same pixels of a whole-image decode (OpenSlide's RGBA on white).
    auto whole = image_read(svs_path(), 3);  // [3, 2967, 2220]
    auto region = slide_read_region(*slide, 0, 1000, 1500, 256, 200);
    ASSERT_EQ(region.sizes(), (std::vector<int64_t>{3, 200, 256}));
    auto crop = whole.slice(1, 1500, 1700).slice(2, 1000, 1256);
    EXPECT_LE((region.to(torch::kInt) - crop.to(torch::kInt)).abs().max().item<int>(), 1);
    // Beyond the border: white.
    auto edge = slide_read_region(*slide, 0, 2100, 2900, 256, 256);
    EXPECT_TRUE(edge.slice(1, 67).eq(255).all().item<bool>());
    EXPECT_TRUE(edge.slice(2, 120).eq(255).all().item<bool>());
}

TEST(Slide, PyramidalTiffLevels) {
    TempDir dir("ips_slide");
    const auto [image, tif] = pattern_pyramid_write(dir);
    auto slide = slide_open(tif);
    const auto& L = slide_levels(*slide);
    ASSERT_GE(L.size(), 3u) << slide_loader(*slide);
    EXPECT_EQ(L[0].width, 1700);
    EXPECT_EQ(L[0].height, 1100);
    EXPECT_EQ(L[1].width, 850);
    EXPECT_NEAR(L[1].downsample, 2.0, 1e-9);
    EXPECT_NEAR(L[2].downsample, 4.0, 1e-9);
    // Lossless: a level-0 region is exactly the same pixels of the whole decode.
    auto region = slide_read_region(*slide, 0, 300, 200, 100, 100);
    EXPECT_TRUE(torch::equal(region, image.slice(1, 200, 300).slice(2, 300, 400)));
    // Level 1 is the 2x2 average of level 0 (libvips builds its pyramid that way).
    auto l1 = slide_read_region(*slide, 1, 400, 200, 64, 64).to(torch::kFloat);
    auto l0 = slide_read_region(*slide, 0, 400, 200, 128, 128).to(torch::kFloat);
    auto pooled = torch::avg_pool2d(l0.unsqueeze(0), 2)[0];
    EXPECT_LE((l1 - pooled).abs().max().item<float>(), 1.0f);
    // The full grid of a level: whole tiles only, row-major.
    TileGrid grid = tile_grid_full(*slide, 0, 100, 100);
    EXPECT_EQ(grid.cols, 17);
    EXPECT_EQ(grid.rows, 11);
    ASSERT_EQ(grid.coords.size(0), 11 * 17);
    EXPECT_EQ(grid.coords[18][0].item<int64_t>(), 100);
    EXPECT_EQ(grid.coords[18][1].item<int64_t>(), 100);
}
TEST(Slide, AlphaIsCompositedOnWhite) {
    TempDir dir("ips_slide_alpha");
    auto rgb = pattern_image(64, 64);
    auto alpha = torch::full({1, 64, 64}, 255, torch::kUInt8);
    alpha.slice(2, 32).fill_(0);
    alpha.slice(1, 48).slice(2, 0, 32).fill_(128);  // half transparent: blended with white
    const std::string png = dir / "a.png";
    vips_write(torch::cat({rgb, alpha}), png);
    auto slide = slide_open(png);
    auto r = slide_read_region(*slide, 0, 0, 0, 64, 64);
    EXPECT_TRUE(torch::equal(r.slice(1, 0, 48).slice(2, 0, 32), rgb.slice(1, 0, 48).slice(2, 0, 32)));
    EXPECT_TRUE(r.slice(2, 32).eq(255).all().item<bool>());
    auto half = (rgb.slice(1, 48).slice(2, 0, 32).to(torch::kInt) * 128 + 255 * 127 + 127) / 255;
    EXPECT_LE((r.slice(1, 48).slice(2, 0, 32).to(torch::kInt) - half).abs().max().item<int>(), 1);
}

// A one-band image's thumbnail is its grey in all three channels (it once had two bands, read as
// three: a heap over-read, found by fuzz/grid.cpp).
TEST(Slide, GreyImageThumbnailRepeatsTheGrey) {
    ips::test::TempDir dir;
    const auto grey = torch::randint(0, 256, {1, 40, 56}, torch::kUInt8);
    ips::png_write(dir / "grey.png", grey);
    auto slide = ips::slide_open(dir / "grey.png");
    const ips::Thumbnail thumb = ips::slide_thumbnail(*slide, 64);
    ASSERT_EQ(thumb.rgb.sizes(), (std::vector<int64_t>{3, 40, 56}));
    for (int c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(thumb.rgb[c], grey[0])) << "channel " << c;
}

TEST(Slide, BadFilesAreNamed) {
    TempDir dir("ips_slide_bad");
    std::ofstream(dir / "text.svs") << "not a slide";
    std::string e = error_of([&] { slide_open(dir / "text.svs"); });
    EXPECT_NE(e.find("text.svs"), std::string::npos) << e;
    e = error_of([&] { slide_open(dir / "missing.tif"); });
    EXPECT_NE(e.find("missing.tif"), std::string::npos) << e;
    EXPECT_NE(e.find("no such file"), std::string::npos) << e;
    // A truncated tiled TIFF: opening or reading the lost tiles fails, naming the file.
    const std::string tif = dir / "cut.tif";
    vips_write(pattern_image(512, 512), dir / "full.tif[tile,tile-width=128,tile-height=128,compression=deflate]");
    {
        std::ifstream in(dir / "full.tif", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), {});
        std::ofstream(tif, std::ios::binary) << bytes.substr(0, bytes.size() / 3);
    }
    e = error_of([&] {
        auto s = slide_open(tif);
        slide_read_region(*s, 0, 0, 0, 512, 512);
    });
    EXPECT_NE(e.find("cut.tif"), std::string::npos) << e;
}

// One case per format: the lazy region equals the whole-image decode of the same file.
struct FormatCase {
    const char* file;     // name with libvips save options
    int tolerance;        // grey levels; a lossy file still decodes the same way both times
};

TEST(Slide, EveryFormatReadsRegionsEqualToTheWholeDecode) {
    const FormatCase cases[] = {
        {"img.png", 0},
        {"img.jpg[Q=90]", 0},
        {"img.webp[lossless]", 0},
        {"img.jp2[lossless]", 0},
        {"img.tif[tile,tile-width=64,tile-height=64,compression=jpeg,Q=90]", 0},
        {"img.tif[compression=lzw]", 0},
    };
    TempDir dir("ips_slide_formats");
    auto image = pattern_image(300, 420);
    for (const auto& c : cases) {
        SCOPED_TRACE(c.file);
        const std::string spec = dir / c.file;
        vips_write(image, spec);
        const std::string path = spec.substr(0, spec.find('['));
        auto slide = slide_open(path);
        auto whole = image_read(path, 3);
        ASSERT_EQ(whole.size(1), 300);
        auto region = slide_read_region(*slide, 0, 130, 70, 150, 120);
        auto crop = whole.slice(1, 70, 190).slice(2, 130, 280);
        EXPECT_LE((region.to(torch::kInt) - crop.to(torch::kInt)).abs().max().item<int>(), c.tolerance);
        fs::remove(path);
    }
}

// Odd sizes make the downsample fractional (1001 / 500 = 2.002): level-1 tiles of the grid must
// be exactly the level-1 image's own tiles, not one pixel off.
TEST(Slide, TilesOfACoarseLevelWithAFractionalDownsample) {
    TempDir dir("ips_slide_odd");
    const std::string tif = dir / "odd.tif";
    vips_pyramid_write(pattern_image(777, 1001), tif, 64);
    auto slide = slide_open(tif);
    ASSERT_GE(slide_levels(*slide).size(), 2u);
    const auto& L1 = slide_levels(*slide)[1];
    EXPECT_NE(L1.downsample, 2.0);
    auto page = vips::VImage::new_from_file(tif.c_str(), vips::VImage::option()->set("page", 1));
    size_t bytes = 0;
    void* mem = page.write_to_memory(&bytes);
    auto level1 = torch::from_blob(mem, {page.height(), page.width(), page.bands()}, [](void* p) { g_free(p); }, torch::kUInt8)
                      .permute({2, 0, 1})
                      .contiguous();
    TileGrid grid = tile_grid_full(*slide, 1, 50, 50);
    auto source = slide_source_make(slide, grid, 3);
    auto want = image_grid_source_make(level1, {50, 50}, {50, 50});
    ASSERT_EQ(source->size(), want->size());
    auto all = torch::arange(source->size(), torch::kLong);
    EXPECT_TRUE(torch::equal(source->read(all), want->read(all)));
}

// Processes forked from one that has a slide open (a DataLoader's workers) read it as the parent
// does, all at once: libvips' files are opened anew in a child, since the descriptors a child
// inherits share their file offsets with the parent's. Without that, two children and the
// parent reading a JPEG pyramid together decoded garbage ("Not a JPEG file").
TEST(Slide, ForkedProcessesReadTheSlideTheParentHasOpen) {
    TempDir dir("ips_slide_fork");
    pyramid_tiff_write(dir / "p.tif", 4096, 4096, 3);
    auto slide = slide_open(dir / "p.tif");
    const int64_t n = 64;
    std::vector<torch::Tensor> want;
    for (int64_t k = 0; k < n; ++k)
        want.push_back(slide_read_region(*slide, 0, (k * 997) % 3840, (k * 613) % 3840, 256, 256).clone());
    // Each process reads every region, in its own order, at the same time as the others.
    const auto read_all = [&](int64_t offset) {
        int wrong = 0;
        for (int64_t j = 0; j < n; ++j) {
            const int64_t k = (j + offset) % n;
            try {
                if (!torch::equal(slide_read_region(*slide, 0, (k * 997) % 3840, (k * 613) % 3840, 256, 256), want[k])) ++wrong;
            } catch (const std::exception&) {
                ++wrong;
            }
        }
        return wrong;
    };
    std::vector<pid_t> children;
    for (int c = 1; c <= 2; ++c) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            // A fresh Slide of the same file, as an unpickled dataset makes, and the inherited one.
            auto again = slide_open(dir / "p.tif");
            const bool same = torch::equal(slide_read_region(*again, 0, 0, 0, 256, 256), want[0]);
            ::_exit(read_all(c * 21) == 0 && same ? 0 : 1);
        }
        children.push_back(pid);
    }
    EXPECT_EQ(read_all(0), 0);
    for (pid_t pid : children) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a child read other pixels than the parent";
    }
}
