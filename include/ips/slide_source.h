// The tiles of a slide as a patch source: regions decoded on demand, in parallel.
#pragma once

#include "ips/patch_source.h"
#include "ips/slide.h"

namespace ips {

// A patch source reading the grid's tiles on demand: read() returns float32
// [K, channels, out, out] in [0, 1] then normalised; `out` = 0 takes the grid's `out` (0 there too:
// the tile size), otherwise tiles are resized (area averaging when shrinking). channels: 3 (RGB) or 1 (grey, ITU-R 601 luma).
// read_stored() gives RGB tiles of their own size as uint8, as the slide has them (the Python
// module's tiles, and a quarter of the bytes for selection to copy to a device); grey or resized
// ones as read() does.
PatchSourcePtr slide_source_make(SlidePtr slide, TileGrid grid, int64_t channels = 3, Normalization norm = {},
                                 int64_t out = 0);

}  // namespace ips
