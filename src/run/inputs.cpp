#include "ips/inputs.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>

#include "ips/distributed.h"
#include "ips/interrupt.h"
#include "ips/input_open.h"

namespace ips {
namespace {

// `prefix` is "" for one process, "rank R/W: " for one of several, so that interleaved stderr of
// the ranks says whose line is whose.
void for_each_named(const char* command, const char* noun, const std::vector<std::string>& paths,
                    const std::string& prefix, const std::function<void(const std::string&)>& one) {
    std::vector<std::string> failed;  // each with why: the error a caller gets says it too (Python has no stderr to read)
    for (const auto& path : paths) {
        try {
            one(path);
        } catch (const Interrupted&) {
            throw;  // a request to stop the job, not a failure of this input
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ips %s: %sskipped %s: %s\n", command, prefix.c_str(), path.c_str(), e.what());
            failed.push_back(path + ": " + e.what());
        }
    }
    if (failed.empty()) return;
    std::string list;
    for (const auto& f : failed) list += "\n  " + f;
    throw std::runtime_error(prefix + std::to_string(failed.size()) + " of " + std::to_string(paths.size()) + " " +
                             noun + " failed:" + list);
}

}  // namespace

void inputs_for_each(const char* command, const char* noun, const std::vector<std::string>& paths,
                     const std::function<void(const std::string&)>& one) {
    for_each_named(command, noun, paths, "", one);
}

std::vector<std::string> inputs_share(const std::vector<std::string>& paths, int rank, int world) {
    if (world < 1 || rank < 0 || rank >= world)
        throw std::invalid_argument("rank " + std::to_string(rank) + " is not in a world of " + std::to_string(world));
    const Share s = share_of(static_cast<int64_t>(paths.size()), rank, world);
    return {paths.begin() + s.begin, paths.begin() + s.begin + s.count};
}

void inputs_for_each_share(const char* command, const char* noun, const std::vector<std::string>& paths, int rank,
                           int world, const std::function<void(const std::string&)>& one) {
    const auto mine = inputs_share(paths, rank, world);
    if (world == 1) return for_each_named(command, noun, mine, "", one);
    const std::string prefix = "rank " + std::to_string(rank) + "/" + std::to_string(world) + ": ";
    std::fprintf(stderr, "ips %s: %s%zu of %zu %s\n", command, prefix.c_str(), mine.size(), paths.size(), noun);
    for_each_named(command, noun, mine, prefix, one);
}

void inputs_stems_distinct(const std::vector<std::string>& paths) {
    std::map<std::string, std::string> seen;
    for (const auto& p : paths) {
        auto [it, fresh] = seen.emplace(input_stem(p), p);
        if (!fresh)
            throw std::runtime_error("'" + it->second + "' and '" + p + "' would write the same output files (" +
                                     it->first + ".*); rename one or run them separately");
    }
}

}  // namespace ips
