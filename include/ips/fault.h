// Fault injection for the reliability tests (docs/RELIABILITY.md): named points in the code where a
// test can have the process killed, so "killed while writing a checkpoint" is a case a test can
// name instead of a timing it hopes to hit. Off unless the environment asks for it.
#pragma once

namespace ips {

// With IPS_FAULT=NAME or IPS_FAULT=NAME@K in the environment, the K-th call (default: the first)
// of fault_point(NAME) in this process sends SIGKILL to itself: no handler, no clean-up, as a power
// cut or the kernel's OOM killer would. Without IPS_FAULT this is one branch on a cached flag.
void fault_point(const char* name);

}  // namespace ips
