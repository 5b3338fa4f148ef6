// Process-wide settings that make libtorch fast on CPUs; the CLI applies them at start-up.
#pragma once

#include <string>

namespace ips {

// Sets the intra-op thread count (0 = all cores) and keeps glibc from handing large tensor
// buffers back to the kernel on every free: by default every buffer over the mmap threshold is a
// fresh mmap, and the page faults on first touch cost more than the convolutions (measured 2.5x
// on selection of the Megapixel MNIST configuration, 2 cores; docs/BENCHMARKS.md).
void runtime_configure(int threads);

// The other side of runtime_configure's thresholds: hands the heap's free pages back to the kernel
// once. For memory freed that will not be needed again soon, such as the copy of a weight file
// after it is loaded into a module (a ViT-B's: 180 MB of resident memory).
void runtime_memory_release();

// What this build runs on, for `ips --version` and the first lines of a run: the ips version, the
// libtorch version with its CUDA and cuDNN versions (or "CPU only"), and the devices seen (CPU
// cores, CUDA devices by name and memory). Three lines, without a final newline.
std::string runtime_versions();

}  // namespace ips
