// SIGTERM and SIGINT as requests to stop at the next safe point. Cluster schedulers send SIGTERM
// before they kill a job, and Ctrl-C sends SIGINT: training answers both by finishing the current
// step and writing a checkpoint that resumes exactly there (docs/RELIABILITY.md).
#pragma once

#include <stdexcept>
#include <string>

namespace ips {

// Installs handlers for SIGTERM and SIGINT that only record the signal. A second SIGINT restores
// the handler before (the CLI's: the default action) and re-raises it, so a second Ctrl-C still
// stops the CLI at once.
void interrupt_watch();
// The signal received since interrupt_watch (SIGTERM or SIGINT), or 0.
int interrupt_pending();
// Restores the handlers that were there before interrupt_watch (the run has stopped listening).
void interrupt_unwatch();

// Thrown when a run stopped because of a signal, after it saved what it had. The process should
// end with 128 + signal, as if the signal had ended it, so schedulers and shells see why.
struct Interrupted : std::runtime_error {
    Interrupted(int sig, const std::string& what) : std::runtime_error(what), signal(sig) {}
    int signal;
};

}  // namespace ips
