// Jobs over many input files (tiles, features, predict): one bad file is reported and skipped, the
// others go on, and the job fails at the end naming the files that failed. Such a job may run as
// several processes (torchrun's RANK / WORLD_SIZE, or --nproc-per-node): each rank takes its own
// share of the inputs and writes their outputs; no rank waits for another.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ips {

// Runs `one` on every path; a failure is reported on stderr as "ips COMMAND: skipped PATH: why"
// and counted. Throws std::runtime_error "K of N <noun> failed:" listing the failed paths.
void inputs_for_each(const char* command, const char* noun, const std::vector<std::string>& paths,
                     const std::function<void(const std::string&)>& one);

// The inputs rank `rank` of `world` takes: share_of's contiguous part of `paths` in the order
// given. It depends on nothing but the list (not on which outputs exist), so the ranks' shares are
// disjoint and together every input once, whatever a previous run left behind.
std::vector<std::string> inputs_share(const std::vector<std::string>& paths, int rank, int world);

// inputs_for_each over this rank's share. With world > 1 it says on stderr which share it took
// ("ips tiles: rank 1/2: 2 of 5 slides"), and its messages and error name the rank.
void inputs_for_each_share(const char* command, const char* noun, const std::vector<std::string>& paths, int rank,
                           int world, const std::function<void(const std::string&)>& one);

// Outputs are named by the file's stem (input_stem of input_open.h: a bag group's name added): two inputs with one stem would overwrite each other (or,
// for resumable jobs, the second would be skipped as done). Throws naming both.
void inputs_stems_distinct(const std::vector<std::string>& paths);

// What a rerun finds where an input's output belongs. Resumable jobs skip `complete` outputs,
// make `absent` ones, and make `incomplete` ones again (a file under the final name whose content
// fails the check: truncated, another layout, made with other settings), saying `why`.
struct OutputCheck {
    enum State { absent, complete, incomplete } state = absent;
    std::string why;  // incomplete: what is wrong, naming the file
};

}  // namespace ips
