#include "ips/tiles.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "ips/files.h"
#include "ips/image_io.h"
#include "ips/tissue.h"

namespace ips {
namespace {
namespace fs = std::filesystem;

std::string stem_of(const std::string& out_dir, const std::string& slide_path) {
    return (fs::path(out_dir) / fs::path(slide_path).stem()).string();
}

// What a result is made from, as its JSON records it: a rerun asking for anything else makes it
// again. The level is compared separately: with --mpp it is resolved from the slide.
nlohmann::json settings_of(const TilesOptions& opt, const std::string& slide_path) {
    return {{"slide", slide_path},
            {"patch_size", opt.patch},
            {"stride", opt.stride > 0 ? opt.stride : opt.patch},
            {"min_tissue", opt.min_tissue},
            {"thumb", opt.thumb},
            {"target_mpp", opt.mpp}};
}

// tiles_check, also handing back the parsed manifest for a complete result.
OutputCheck check_of(const TilesOptions& opt, const std::string& stem, const std::string& slide_path,
                     nlohmann::json& manifest) {
    const std::string json_path = stem + ".json";
    std::error_code ec;
    if (!fs::exists(json_path, ec)) {
        for (const char* ext : {".csv", ".png"})
            if (fs::exists(stem + ext, ec))
                return {OutputCheck::incomplete,
                        json_path + ": missing beside " + stem + ext + " (an interrupted run)"};
        return {};
    }
    auto bad = [&](const std::string& why) { return OutputCheck{OutputCheck::incomplete, json_path + ": " + why}; };
    try {
        manifest = nlohmann::json::parse(file_read(json_path));
        const nlohmann::json settings = settings_of(opt, slide_path);
        for (const auto& [key, want] : settings.items())
            if (!manifest.contains(key) || manifest[key] != want)
                return bad("made with " + key + " " + (manifest.contains(key) ? manifest[key].dump() : "(none)") +
                           ", not " + want.dump());
        if (opt.mpp <= 0 && manifest.at("level").get<int>() != opt.level)
            return bad("made at level " + manifest["level"].dump() + ", not " + std::to_string(opt.level));
        const auto& files = manifest.at("files");
        const std::string name = fs::path(stem).filename().string();
        if (!files.is_object() || files.size() != 2 || !files.contains(name + ".csv") || !files.contains(name + ".png"))
            return bad("its manifest 'files' does not list exactly " + name + ".csv and " + name + ".png");
        for (const auto& [file, bytes] : files.items()) {
            const std::string path = (fs::path(stem).parent_path() / file).string();
            const auto size = fs::file_size(path, ec);
            if (ec) return bad("lists " + path + ", which cannot be read (" + ec.message() + ")");
            if (size != bytes.get<uintmax_t>())
                return bad("lists " + path + " with " + bytes.dump() + " bytes; it has " + std::to_string(size));
        }
        const std::string csv = file_read(stem + ".csv");
        const auto rows = std::count(csv.begin(), csv.end(), '\n');
        if (csv.rfind("x,y\n", 0) != 0 || rows != manifest.at("tiles").get<int64_t>() + 1)
            return bad(stem + ".csv does not hold the header and " + manifest["tiles"].dump() + " tiles");
    } catch (const std::exception& e) {
        return bad(e.what());
    }
    return {OutputCheck::complete, ""};
}

}  // namespace

OutputCheck tiles_check(const TilesOptions& opt, const std::string& out_dir, const std::string& slide_path) {
    nlohmann::json manifest;
    return check_of(opt, stem_of(out_dir, slide_path), slide_path, manifest);
}

TilesResult tiles_write(const TilesOptions& opt, const std::string& out_dir, const std::string& slide_path) {
    TilesResult r;
    r.stem = stem_of(out_dir, slide_path);
    nlohmann::json done;
    const OutputCheck before = check_of(opt, r.stem, slide_path, done);
    if (before.state == OutputCheck::complete) {
        r.already_done = true;
        r.tiles = done["tiles"].get<int64_t>();
        r.grid_tiles = done["grid_tiles"].get<int64_t>();
        r.level = done["level"].get<int>();
        r.threshold = done["otsu_threshold"].get<int>();
        return r;
    }
    r.redone_why = before.why;
    // The old manifest goes first: a kill while the files are replaced must not leave it vouching
    // for new files it did not list.
    std::error_code ec;
    if (before.state == OutputCheck::incomplete) fs::remove(r.stem + ".json", ec);

    auto slide = slide_open(slide_path);
    const auto& levels = slide_levels(*slide);
    const int64_t stride = opt.stride > 0 ? opt.stride : opt.patch;
    const int level = opt.mpp > 0 ? slide_level_for_mpp(*slide, opt.mpp) : opt.level;
    if (level >= int(levels.size()))
        throw std::runtime_error("has " + std::to_string(levels.size()) + " level(s), not level " + std::to_string(level));
    TissueMask tissue = tissue_mask_make(*slide, opt.thumb);
    TileGrid grid = tile_grid_tissue(*slide, tissue, level, opt.patch, stride, opt.min_tissue);

    r.tiles = grid.coords.size(0);
    r.grid_tiles = grid.rows * grid.cols;
    r.level = level;
    r.threshold = tissue.threshold;
    std::string csv = "x,y\n";
    const auto c = grid.coords.accessor<int64_t, 2>();
    for (int64_t n = 0; n < r.tiles; ++n) csv += std::to_string(c[n][0]) + "," + std::to_string(c[n][1]) + "\n";
    const torch::Tensor overlay = tissue_overlay(*slide, tissue, grid);
    // Only now, with everything read: a slide that cannot be read leaves no folder and no file.
    fs::create_directories(out_dir);
    text_write_atomic(r.stem + ".csv", csv);
    png_write(r.stem + ".png", overlay);
    nlohmann::json j = settings_of(opt, slide_path);
    j.update({{"width", levels[0].width},
              {"height", levels[0].height},
              {"levels", levels.size()},
              {"mpp", slide_mpp(*slide)},
              {"level", level},
              {"downsample", levels[level].downsample},
              {"otsu_threshold", tissue.threshold},
              {"tiles", r.tiles},
              {"grid_tiles", r.grid_tiles}});
    const std::string name = fs::path(r.stem).filename().string();
    for (const char* ext : {".csv", ".png"}) j["files"][name + ext] = fs::file_size(r.stem + ext);
    text_write_atomic(r.stem + ".json", j.dump(2) + "\n");
    return r;
}

}  // namespace ips
