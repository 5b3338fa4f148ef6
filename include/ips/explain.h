// Where the model looked, as files a person opens: for one predicted input, every patch's score
// (select.h patch_scores) drawn as a heat map over a thumbnail, a full-resolution pyramidal TIFF
// overlay, a GeoJSON of the patches for QuPath, a gallery of the top patches, and a static viewer
// page (OpenSeadragon over DeepZoom tiles of the slide and the scores). docs/SLIDES.md shows them.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "ips/input_open.h"

namespace ips {

// Which outputs to write (none unless asked; `ips predict --out` asks for all), and how.
struct ExplainOptions {
    bool heatmap = false, overlay = false, geojson = false, gallery = false, viewer = false;
    int64_t thumbnail_side = 2048;  // heat map: the longer side of the thumbnail, in pixels
    int heatmap_level = -1;         // or the pyramid level to draw it at (its size), when >= 0
    int64_t top_k = 16;             // patches in the gallery and in the viewer's list
};

// Parses "heatmap,overlay,geojson,gallery,viewer" (any subset), "all" or "none". Throws naming
// the unknown word.
void explain_outputs_parse(const std::string& list, ExplainOptions& opt);

// The patches of one input with their scores, best first by score.
struct ScoredPatches {
    torch::Tensor scores;        // [N] float32, patch_scores
    torch::Tensor rank;          // [N] int64, 1 = highest score
    torch::Tensor order;         // [N] int64, grid indices by descending score
    torch::Tensor kept;          // [N] bool, among the M the aggregator saw
};
ScoredPatches scored_patches_make(const torch::Tensor& scores, const std::vector<int64_t>& kept);

// The files written for one input, relative to its folder (what a rerun checks): what the options
// ask for that an input of this kind has (bags have no pixels to show; some have no coords).
std::vector<std::string> explain_files(const ExplainOptions& opt, bool has_pixels, bool has_coords);

// Time spent per output, in seconds (what `ips predict` reports as writing).
struct ExplainTimes {
    double heatmap = 0, overlay = 0, geojson = 0, gallery = 0, viewer = 0;
    double total() const { return heatmap + overlay + geojson + gallery + viewer; }
};

// Throws, saying how to get it, when the viewer's OpenSeadragon is not installed: checked before a
// job starts rather than after an input's other outputs are written.
void viewer_check();

// Writes the chosen outputs for `in` into `folder`, replacing it whole: they are written into
// FOLDER.tmp.<pid> and renamed, so a failed input leaves no folder and a killed one a temporary
// that stale_temporaries_remove (files.h) clears.
// `summary` is shown on the viewer page (the prediction, as the CLI's JSON). Inputs without
// pixels (feature bags) get a heat map on white and the GeoJSON, where their bag has coords.
ExplainTimes explain_write(const std::string& folder, OpenedInput& in, const ScoredPatches& sp,
                           const nlohmann::json& summary, const ExplainOptions& opt);

// The heat map alone (explain_write's heatmap.png) at PATH, written atomically: every scored patch
// over a thumbnail of the slide (or on white for a bag), kept patches outlined, with a legend.
void heatmap_png_write(const std::string& path, OpenedInput& in, const ScoredPatches& sp, const ExplainOptions& opt);

// The GeoJSON FeatureCollection of the scored patches: one Polygon per patch in level-0 pixels,
// properties {objectType: "detection", name, score, rank, kept, index, classification,
// measurements}. Streamed to the file, so a million patches cost no more memory than one.
void geojson_write(const std::string& path, const PatchGeometry& geometry, const ScoredPatches& sp);

}  // namespace ips
