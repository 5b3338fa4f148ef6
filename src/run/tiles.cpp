#include "ips/tiles.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "ips/files.h"
#include "ips/image_io.h"
#include "ips/tissue.h"

namespace ips {

TilesResult tiles_write(const TilesOptions& opt, const std::string& out_dir, const std::string& slide_path) {
    auto slide = slide_open(slide_path);
    const auto& levels = slide_levels(*slide);
    const int64_t stride = opt.stride > 0 ? opt.stride : opt.patch;
    const int level = opt.mpp > 0 ? slide_level_for_mpp(*slide, opt.mpp) : opt.level;
    if (level >= int(levels.size()))
        throw std::runtime_error("has " + std::to_string(levels.size()) + " level(s), not level " + std::to_string(level));
    TissueMask tissue = tissue_mask_make(*slide, opt.thumb);
    TileGrid grid = tile_grid_tissue(*slide, tissue, level, opt.patch, stride, opt.min_tissue);

    TilesResult r;
    r.stem = (std::filesystem::path(out_dir) / std::filesystem::path(slide_path).stem()).string();
    r.tiles = grid.coords.size(0);
    r.grid_tiles = grid.rows * grid.cols;
    r.level = level;
    r.threshold = tissue.threshold;
    std::string csv = "x,y\n";
    const auto c = grid.coords.accessor<int64_t, 2>();
    for (int64_t n = 0; n < r.tiles; ++n) csv += std::to_string(c[n][0]) + "," + std::to_string(c[n][1]) + "\n";
    text_write_atomic(r.stem + ".csv", csv);
    png_write(r.stem + ".png", tissue_overlay(*slide, tissue, grid));
    const nlohmann::json j = {{"slide", slide_path},  {"width", levels[0].width},
                              {"height", levels[0].height}, {"levels", levels.size()},
                              {"mpp", slide_mpp(*slide)}, {"level", level},
                              {"downsample", levels[level].downsample}, {"patch_size", opt.patch},
                              {"stride", stride},        {"otsu_threshold", tissue.threshold},
                              {"min_tissue", opt.min_tissue}, {"tiles", r.tiles},
                              {"grid_tiles", r.grid_tiles}};
    text_write_atomic(r.stem + ".json", j.dump(2) + "\n");
    return r;
}

}  // namespace ips
