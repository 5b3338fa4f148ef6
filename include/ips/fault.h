// Fault injection for the reliability tests (docs/RELIABILITY.md): named points in the code where a
// test can have the process killed, so "killed while writing a checkpoint" is a case a test can
// name instead of a timing it hopes to hit. Off unless the environment asks for it.
#pragma once

namespace ips {

// With IPS_FAULT=NAME[@K][:SIGNAL] in the environment, the K-th call (default: the first) of
// fault_point(NAME) in this process sends SIGNAL to itself: KILL by default (no handler, no
// clean-up, as a power cut or the kernel's OOM killer would), or TERM or INT (what a scheduler or
// Ctrl-C sends, at an exact point). Without IPS_FAULT this is one comparison on a cached name.
//
// The points: "train-step" (after each training step), "eval-batch" (after each batch of a test
// pass), "epoch-end" (between an epoch's metrics line and its checkpoints), "atomic-before-rename"
// and "atomic-after-rename" (every AtomicFile: config.yaml, metrics.jsonl, checkpoints, ...),
// "torch-file-record-written" (inside a checkpoint being written).
void fault_point(const char* name);

}  // namespace ips
