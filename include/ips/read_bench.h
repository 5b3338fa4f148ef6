// `ips bench-read`: how fast a slide's tiles can be read, and in how much memory.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace ips {

struct ReadBenchOptions {
    int64_t patch = 256;   // tile side
    int level = 0;
    int64_t tiles = 2000;  // tiles to read, in random order
    int64_t chunk = 256;   // tiles per read call
    bool progress = true;
};

// Reads random tiles (random order defeats read-ahead and tile caches, as a shuffled selection
// does) and returns patches_per_s, seconds, peak_rss_gib (and before reading), the slide's size.
nlohmann::json read_bench_run(const std::string& slide_path, const ReadBenchOptions& opt);

}  // namespace ips
