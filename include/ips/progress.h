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
    // Count n as done before this run of the bar (a resumed epoch): not part of the rate.
    void skip(int64_t n);

    // Work after this bar (later epochs): at this bar's rate, plus a known time. When either is set
    // the line also shows the ETA of the whole run.
    double after_units = 0;
    double after_seconds = 0;

    std::string label, unit;
    int64_t total, done = 0, skipped = 0;
    std::chrono::steady_clock::time_point start, last_draw;
    bool tty;
    bool finished = false;
};

std::string format_duration(double seconds);

}  // namespace ips
