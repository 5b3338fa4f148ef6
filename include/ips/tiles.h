// `ips tiles`: where the tissue is on a slide, as files a person or another tool reads.
#pragma once

#include <string>

#include "ips/inputs.h"

namespace ips {

struct TilesOptions {
    int64_t patch = 256;       // tile side in pixels of the level
    int64_t stride = 0;        // 0: the tile side
    int level = 0;
    double mpp = 0;            // > 0: the coarsest level no coarser than this many µm per pixel
    double min_tissue = 0.01;  // fraction of a tile that must be tissue
    int64_t thumb = 2048;      // longer side of the thumbnail Otsu runs on
};

struct TilesResult {
    std::string stem;          // OUT/<slide stem>: .csv (level-0 x,y), .png (thumbnail), .json
    int64_t tiles = 0, grid_tiles = 0;
    int level = 0;
    int threshold = 0;         // Otsu's threshold on 8-bit grey
    bool already_done = false; // a complete result of these options was there and was kept
    std::string redone_why;    // an incomplete one was there and was made again: what was wrong
};

// Whether OUT/<stem>.* is a finished result of `opt` for this slide. The JSON is written last and
// is the manifest: complete when it parses, names this slide and these settings, and lists the
// .csv and .png with the sizes they have now, the CSV holding its `tiles` rows. Each file is
// renamed into place whole, so what fails this was damaged, cut short by a kill between files,
// or made with other settings.
OutputCheck tiles_check(const TilesOptions& opt, const std::string& out_dir, const std::string& slide_path);

// Writes OUT/<stem>.csv, .png (thumbnail with the tissue tinted and the tiles outlined) and .json
// (slide geometry, tile and tissue settings, counts, the manifest of the other two), each
// atomically, unless tiles_check finds them complete. OUT is made only once the slide has been
// read, so a slide that fails leaves nothing behind. Throws naming the problem.
TilesResult tiles_write(const TilesOptions& opt, const std::string& out_dir, const std::string& slide_path);

}  // namespace ips
