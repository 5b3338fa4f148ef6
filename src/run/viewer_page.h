// The viewer's index.html: one static page, no server. The page's data (DeepZoom descriptors,
// top patches, prediction) is inlined as JSON, since browsers refuse to fetch files from a page
// opened as file://, while images (the tiles) they load.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace ips {

// page: {name, slide: {url, width, height, tile_size, overlap, format}, scores: {...}, top_score,
// top: [{rank, index, x, y, w, h, score, kept}], prediction: {task: [p...]}}.
std::string viewer_html(const nlohmann::json& page);

}  // namespace ips
