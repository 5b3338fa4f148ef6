#include "ips/interrupt.h"

#include <signal.h>

#include <atomic>

namespace ips {
namespace {

std::atomic<int> g_signal{0};
// The handlers before interrupt_watch: the default actions in the CLI, Python's own in the Python
// module (where SIGINT must go on raising KeyboardInterrupt after a run).
struct sigaction g_before_int {}, g_before_term {};

void on_signal(int sig) {
    if (sig == SIGINT && g_signal.load() == SIGINT) {
        sigaction(SIGINT, &g_before_int, nullptr);
        raise(SIGINT);
        return;
    }
    g_signal.store(sig);
}

}  // namespace

void interrupt_watch() {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, &g_before_term);
    sigaction(SIGINT, &sa, &g_before_int);
}

int interrupt_pending() { return g_signal.load(); }

void interrupt_unwatch() {
    sigaction(SIGTERM, &g_before_term, nullptr);
    sigaction(SIGINT, &g_before_int, nullptr);
}

}  // namespace ips
