#include "ips/interrupt.h"

#include <signal.h>

#include <atomic>

namespace ips {
namespace {

std::atomic<int> g_signal{0};

void on_signal(int sig) {
    if (sig == SIGINT && g_signal.load() == SIGINT) {
        signal(SIGINT, SIG_DFL);
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
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
}

int interrupt_pending() { return g_signal.load(); }

void interrupt_unwatch() {
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
}

}  // namespace ips
