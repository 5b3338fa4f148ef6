#include "ips/fault.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ips {
namespace {

struct FaultPlan {
    std::string name;  // empty: no fault asked for
    long at = 1;
    int signal = SIGKILL;
    std::atomic<long> seen{0};
};

FaultPlan& plan() {
    static FaultPlan p;
    static const bool read = [] {
        const char* env = std::getenv("IPS_FAULT");
        if (!env || !*env) return true;
        std::string spec = env;
        const auto colon = spec.find(':');
        if (colon != std::string::npos) {
            const std::string sig = spec.substr(colon + 1);
            p.signal = sig == "TERM" ? SIGTERM : sig == "INT" ? SIGINT : SIGKILL;
            spec.resize(colon);
        }
        const auto at = spec.find('@');
        if (at != std::string::npos) {
            p.at = std::max(1L, std::strtol(spec.c_str() + at + 1, nullptr, 10));
            spec.resize(at);
        }
        p.name = spec;
        return true;
    }();
    (void)read;
    return p;
}

}  // namespace

void fault_point(const char* name) {
    FaultPlan& p = plan();
    if (p.name.empty() || p.name != name) return;
    if (++p.seen == p.at) kill(getpid(), p.signal);
}

}  // namespace ips
