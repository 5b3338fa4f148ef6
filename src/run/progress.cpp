#include "ips/progress.h"

#include <unistd.h>

#include <cstdio>
#include <utility>

namespace ips {

std::string format_duration(double s) {
    if (!(s >= 0) || s > 1e7) return "--:--";
    auto t = static_cast<long>(s + 0.5);
    char buf[32];
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else std::snprintf(buf, sizeof buf, "%02ld:%02ld", t / 60, t % 60);
    return buf;
}

Progress::Progress(std::string label_, int64_t total_, std::string unit_)
    : label(std::move(label_)), unit(std::move(unit_)), total(total_),
      start(std::chrono::steady_clock::now()), last_draw(start), tty(isatty(fileno(stderr)) != 0) {}

namespace {
void draw(const Progress& p, const std::string& info, bool final_line) {
    using namespace std::chrono;
    double elapsed = duration<double>(steady_clock::now() - p.start).count();
    double rate = elapsed > 0 ? static_cast<double>(p.done - p.skipped) / elapsed : 0;
    double eta = rate > 0 ? static_cast<double>(p.total - p.done) / rate : -1;
    std::string run_eta;
    if (p.after_units > 0 || p.after_seconds > 0)
        run_eta = " run<" + format_duration(rate > 0 ? eta + p.after_units / rate + p.after_seconds : -1);
    const int width = 24;
    int filled = p.total > 0 ? static_cast<int>(width * p.done / p.total) : width;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "%s%s [%s] %lld/%lld %.1f %s/s %s<%s%s %s%s", p.tty ? "\r\033[K" : "", p.label.c_str(),
                 bar.c_str(), static_cast<long long>(p.done), static_cast<long long>(p.total), rate,
                 p.unit.c_str(), format_duration(elapsed).c_str(), format_duration(eta).c_str(), run_eta.c_str(),
                 info.c_str(), final_line || !p.tty ? "\n" : "");
    std::fflush(stderr);
}
}  // namespace

void Progress::update(int64_t n, const std::string& info) {
    done += n;
    auto now = std::chrono::steady_clock::now();
    // Terminals get a redraw at most 10 times a second; logs a line every 30 seconds.
    if ((tty && now - last_draw > std::chrono::milliseconds(100)) ||
        (!tty && now - last_draw > std::chrono::seconds(30))) {
        last_draw = now;
        draw(*this, info, false);
    }
}

void Progress::skip(int64_t n) {
    done += n;
    skipped += n;
}

void Progress::finish(const std::string& info) {
    if (finished) return;
    finished = true;
    draw(*this, info, true);
}

}  // namespace ips
