#include "ips/explain.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>

#include <unistd.h>

#include "ips/files.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"
#include "ips/overlay.h"
#include "viewer_page.h"

namespace ips {
namespace fs = std::filesystem;
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Enough digits that a float32 score reads back as the same float, and that level-0 coordinates
// stay integers written out in full.
std::string number(double v) {
    char s[32];
    std::snprintf(s, sizeof s, "%.9g", v);
    return s;
}

std::string coordinate(double v) {
    char s[32];
    std::snprintf(s, sizeof s, "%.12g", v);
    return s;
}

constexpr int64_t kHeatmapSideMax = 8192;  // --thumbnail-side's bound too (cli/predict.cpp)

double top_score(const ScoredPatches& sp) {
    return sp.scores.numel() ? std::max(0.0, sp.scores.max().item<double>()) : 0.0;
}

}  // namespace

void heatmap_png_write(const std::string& path, OpenedInput& in, const ScoredPatches& sp, const ExplainOptions& opt) {
    const PatchGeometry& g = in.geometry;
    torch::Tensor canvas;
    double ds = 1;
    if (in.slide) {
        int64_t side = opt.thumbnail_side;
        if (opt.heatmap_level >= 0) {
            const auto& levels = slide_levels(*in.slide);
            if (opt.heatmap_level >= int(levels.size()))
                throw std::runtime_error("--heatmap-level " + std::to_string(opt.heatmap_level) + ": '" + in.path + "' has " +
                                         std::to_string(levels.size()) + " level(s)");
            const auto& L = levels[size_t(opt.heatmap_level)];
            side = std::max(L.width, L.height);
            // The picture is made in memory: a level of a whole slide would not fit.
            if (side > kHeatmapSideMax)
                throw std::runtime_error("--heatmap-level " + std::to_string(opt.heatmap_level) + " of '" + in.path + "' is " +
                                         std::to_string(L.width) + " x " + std::to_string(L.height) +
                                         " pixels; a heat map picture is at most " + std::to_string(kHeatmapSideMax) +
                                         " on its longer side: choose a coarser level (the overlay TIFF has every pixel)");
        }
        const Thumbnail t = slide_thumbnail(*in.slide, side);
        canvas = t.rgb;
        ds = t.downsample;
    } else {
        ds = std::max(1.0, double(std::max(in.width, in.height)) / double(opt.thumbnail_side));
        canvas = torch::full({3, std::max<int64_t>(1, int64_t(in.height / ds)), std::max<int64_t>(1, int64_t(in.width / ds))},
                             255, torch::kUInt8);
    }
    const auto cells = score_cells(g.xy, g.step_w, g.step_h, sp.scores, in.width, in.height);
    std::vector<ScoredBox> kept;
    const auto xy = g.xy.accessor<int64_t, 2>();
    const auto kept_idx = sp.kept.nonzero().flatten().contiguous();
    for (int64_t k = 0; k < kept_idx.numel(); ++k) {
        const int64_t n = kept_idx[k].item<int64_t>();
        kept.push_back({double(xy[n][0]) / ds, double(xy[n][1]) / ds, g.w / ds, g.h / ds, sp.scores[n].item<double>(), true});
    }
    png_write(path, heatmap_thumbnail_render(canvas, cells, g.step_w / ds, g.step_h / ds, kept, top_score(sp), "patch score"));
}

namespace {

void gallery_write(const std::string& path, OpenedInput& in, const ScoredPatches& sp, const ExplainOptions& opt) {
    const PatchGeometry& g = in.geometry;
    const int64_t k = std::min<int64_t>(opt.top_k, sp.order.numel());
    std::vector<torch::Tensor> tiles;
    std::vector<std::string> captions;
    for (int64_t r = 0; r < k; ++r) {
        const int64_t n = sp.order[r].item<int64_t>();
        tiles.push_back(slide_read_region(*in.slide, g.level, g.xy[n][0].item<int64_t>(), g.xy[n][1].item<int64_t>(),
                                          g.w_level, g.h_level));
        char score[32];
        std::snprintf(score, sizeof score, "%.3g", sp.scores[n].item<double>());
        captions.push_back("#" + std::to_string(r + 1) + "  " + score +
                           (sp.kept[n].item<bool>() ? "  kept" : ""));
    }
    png_write(path, gallery_render(tiles, captions));
}

std::string osd_dir() {
    if (const char* env = std::getenv("IPS_OPENSEADRAGON_DIR")) return env;
    return IPS_OPENSEADRAGON_DIR;
}

nlohmann::json dzi_json(const DeepZoomInfo& d, const std::string& url) {
    return {{"url", url}, {"width", d.width}, {"height", d.height}, {"tile_size", d.tile_size},
            {"overlap", d.overlap}, {"format", d.format}};
}

fs::path osd_script() { return fs::path(osd_dir()) / "build" / "openseadragon" / "openseadragon.min.js"; }

// The viewer folder, inside the input's folder (which is renamed into place whole).
void viewer_write(const std::string& folder, OpenedInput& in, const ScoredPatches& sp, const ScoreLayer& layer,
                  const nlohmann::json& summary, const ExplainOptions& opt) {
    viewer_check();
    const fs::path osd = osd_script();
    std::error_code ec;
    const fs::path viewer = fs::path(folder) / "viewer";
    fs::create_directories(viewer);
    {
        const DeepZoomInfo slide = deepzoom_slide_write(*in.slide, (viewer / "slide").string());
        const DeepZoomInfo scores = deepzoom_layer_write(layer, (viewer / "scores").string());
        fs::copy_file(osd, viewer / "openseadragon.min.js");
        const fs::path license = fs::path(osd_dir()) / "LICENSE.txt";
        if (fs::exists(license, ec)) fs::copy_file(license, viewer / "openseadragon-LICENSE.txt");
        nlohmann::json top = nlohmann::json::array();
        const PatchGeometry& g = in.geometry;
        for (int64_t r = 0; r < std::min<int64_t>(opt.top_k, sp.order.numel()); ++r) {
            const int64_t n = sp.order[r].item<int64_t>();
            top.push_back({{"rank", r + 1}, {"index", n}, {"x", g.xy[n][0].item<int64_t>()}, {"y", g.xy[n][1].item<int64_t>()},
                           {"w", g.w}, {"h", g.h}, {"score", sp.scores[n].item<double>()}, {"kept", sp.kept[n].item<bool>()}});
        }
        const nlohmann::json page = {{"name", fs::path(in.path).filename().string()},
                                     {"slide", dzi_json(slide, "slide_files/")},
                                     {"scores", dzi_json(scores, "scores_files/")},
                                     {"top_score", top_score(sp)},
                                     {"top", top},
                                     {"prediction", summary.value("predictions", nlohmann::json::object())}};
        text_write_atomic((viewer / "index.html").string(), viewer_html(page));
    }
}

}  // namespace

void viewer_check() {
    std::error_code ec;
    if (!fs::exists(osd_script(), ec))
        throw std::runtime_error("the viewer needs OpenSeadragon (npm package openseadragon), not found at " +
                                 osd_script().string() +
                                 ": run scripts/setup.sh, set IPS_OPENSEADRAGON_DIR, or leave 'viewer' out of --outputs");
}

void explain_outputs_parse(const std::string& list, ExplainOptions& opt) {
    opt.heatmap = opt.overlay = opt.geojson = opt.gallery = opt.viewer = list == "all";
    if (list == "all" || list == "none") return;
    std::stringstream ss(list);
    for (std::string word; std::getline(ss, word, ',');) {
        if (word == "heatmap") opt.heatmap = true;
        else if (word == "overlay") opt.overlay = true;
        else if (word == "geojson") opt.geojson = true;
        else if (word == "gallery") opt.gallery = true;
        else if (word == "viewer") opt.viewer = true;
        else
            throw std::invalid_argument("--outputs: unknown output '" + word +
                                        "' (heatmap, overlay, geojson, gallery, viewer, all or none)");
    }
}

ScoredPatches scored_patches_make(const torch::Tensor& scores, const std::vector<int64_t>& kept) {
    ScoredPatches sp;
    sp.scores = scores.to(torch::kCPU, torch::kFloat32).contiguous();
    const int64_t N = sp.scores.numel();
    // Stable, so equal scores keep grid order and ranks are reproducible.
    sp.order = std::get<1>(sp.scores.sort(/*stable=*/true, 0, /*descending=*/true)).contiguous();
    sp.rank = torch::empty({N}, torch::kLong);
    sp.rank.index_put_({sp.order}, torch::arange(1, N + 1, torch::kLong));
    sp.kept = torch::zeros({N}, torch::kBool);
    if (!kept.empty()) sp.kept.index_put_({torch::tensor(kept, torch::kLong)}, true);
    return sp;
}

std::vector<std::string> explain_files(const ExplainOptions& opt, bool has_pixels, bool has_coords) {
    std::vector<std::string> files;
    if (!has_coords) return files;
    if (opt.heatmap) files.push_back("heatmap.png");
    if (opt.geojson) files.push_back("patches.geojson");
    if (!has_pixels) return files;
    if (opt.overlay) files.push_back("overlay.tif");
    if (opt.gallery) files.push_back("gallery.png");
    if (opt.viewer) files.push_back("viewer/index.html");
    return files;
}

void geojson_write(const std::string& path, const PatchGeometry& g, const ScoredPatches& sp) {
    TORCH_CHECK(g.xy.defined() && g.xy.size(0) == sp.scores.numel(), "geojson_write: one position per score");
    AtomicFile file(path);
    std::string buf = "{\"type\":\"FeatureCollection\",\"features\":[";
    const auto xy = g.xy.accessor<int64_t, 2>();
    const auto* s = sp.scores.data_ptr<float>();
    const auto* rank = sp.rank.data_ptr<int64_t>();
    const auto* kept = sp.kept.data_ptr<bool>();
    char line[1024];
    for (int64_t n = 0; n < g.xy.size(0); ++n) {
        const double x0 = double(xy[n][0]), y0 = double(xy[n][1]), x1 = x0 + g.w, y1 = y0 + g.h;
        const std::string score = number(double(s[n]));
        // Polygons close on their first point and run counter-clockwise in y-up axes (RFC 7946
        // 3.1.6), which is clockwise on screen where y grows downward.
        std::snprintf(line, sizeof line,
                      "%s\n{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[%s,%s],[%s,%s],"
                      "[%s,%s],[%s,%s],[%s,%s]]]},\"properties\":{\"objectType\":\"detection\",\"name\":\"patch %lld\","
                      "\"score\":%s,\"rank\":%lld,\"kept\":%s,\"index\":%lld,\"classification\":{\"name\":\"%s\","
                      "\"color\":[%d,%d,%d]},\"measurements\":{\"ips score\":%s,\"ips rank\":%lld}}}",
                      n ? "," : "", coordinate(x0).c_str(), coordinate(y0).c_str(), coordinate(x0).c_str(),
                      coordinate(y1).c_str(), coordinate(x1).c_str(), coordinate(y1).c_str(), coordinate(x1).c_str(),
                      coordinate(y0).c_str(), coordinate(x0).c_str(), coordinate(y0).c_str(), static_cast<long long>(n), score.c_str(), static_cast<long long>(rank[n]),
                      kept[n] ? "true" : "false", static_cast<long long>(n), kept[n] ? "IPS kept" : "IPS scored",
                      kept[n] ? 220 : 60, kept[n] ? 40 : 120, kept[n] ? 40 : 220, score.c_str(),
                      static_cast<long long>(rank[n]));
        buf += line;
        if (buf.size() > (1 << 20)) {
            file.write(buf.data(), buf.size());
            buf.clear();
        }
    }
    buf += "\n]}\n";
    file.write(buf.data(), buf.size());
    file.commit();
}

ExplainTimes explain_write(const std::string& folder, OpenedInput& in, const ScoredPatches& sp,
                           const nlohmann::json& summary, const ExplainOptions& opt) {
    ExplainTimes times;
    const bool has_coords = in.geometry.xy.defined();
    const auto files = explain_files(opt, in.slide != nullptr, has_coords);
    if (!has_coords && (opt.heatmap || opt.overlay || opt.geojson || opt.gallery || opt.viewer)) {
        static std::once_flag said;  // once per run, not once per bag of a cohort
        std::call_once(said, [&] {
            std::fprintf(stderr, "note: %s has no tile coordinates (a CLAM .pt bag or a group of the reference's "
                                 "file): predictions and scores only, no pictures or GeoJSON for such inputs\n",
                         in.path.c_str());
        });
    }
    if (files.empty()) return times;
    // Everything goes into FOLDER.tmp.<pid>, renamed to FOLDER at the end: an input that fails
    // leaves nothing, a killed one a temporary that the next run removes.
    const fs::path final_dir(folder);
    const fs::path dir = final_dir.string() + ".tmp." + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir);
    try {
        auto t0 = std::chrono::steady_clock::now();
        if (opt.heatmap) {
            heatmap_png_write((dir / "heatmap.png").string(), in, sp, opt);
            times.heatmap = seconds_since(t0);
        }
        if (opt.geojson) {
            t0 = std::chrono::steady_clock::now();
            geojson_write((dir / "patches.geojson").string(), in.geometry, sp);
            times.geojson = seconds_since(t0);
        }
        if (in.slide && opt.gallery) {
            t0 = std::chrono::steady_clock::now();
            gallery_write((dir / "gallery.png").string(), in, sp, opt);
            times.gallery = seconds_since(t0);
        }
        if (in.slide && (opt.overlay || opt.viewer)) {
            const PatchGeometry& g = in.geometry;
            // The grid's step: the stride where patches overlap, the patch where they tile.
            const ScoreLayer layer = score_layer_make(g.xy, g.step_w, g.step_h, sp.scores, top_score(sp), in.width, in.height);
            if (opt.overlay) {
                t0 = std::chrono::steady_clock::now();
                overlay_tiff_write((dir / "overlay.tif").string(), layer, slide_mpp(*in.slide));
                times.overlay = seconds_since(t0);
            }
            if (opt.viewer) {
                t0 = std::chrono::steady_clock::now();
                viewer_write(dir.string(), in, sp, layer, summary, opt);
                times.viewer = seconds_since(t0);
            }
        }
        fs::remove_all(final_dir, ec);
        fs::rename(dir, final_dir);
        folder_sync(final_dir.parent_path().string());
    } catch (...) {
        fs::remove_all(dir, ec);
        throw;
    }
    return times;
}

}  // namespace ips
