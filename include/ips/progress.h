// A one-line progress bar on stderr with rate and ETA. When stderr is not a terminal it writes a
// plain line every 30 seconds and one at the end, so logs stay readable.
#pragma once

#include <chrono>
#include <string>

namespace ips {

struct Progress {
    Progress(std::string label, int64_t total, std::string unit = "it");
    // Advance by n and show `info` (e.g. "loss 0.42") after the bar.
    void update(int64_t n, const std::string& info = "");
    void finish(const std::string& info = "");

    std::string label, unit;
    int64_t total, done = 0;
    std::chrono::steady_clock::time_point start, last_draw;
    bool tty;
    bool finished = false;
};

std::string format_duration(double seconds);

}  // namespace ips
