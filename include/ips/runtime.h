// Process-wide settings that make libtorch fast on CPUs; the CLI applies them at start-up.
#pragma once

#include <string>

namespace ips {

// Sets the intra-op thread count (0 = all cores), BLAS's too where it has threads of its own, and
// keeps glibc from handing large tensor buffers back to the kernel on every free: by default every
// buffer over the mmap threshold is a fresh mmap, and the page faults on first touch cost more than the convolutions (measured 2.5x
// on selection of the Megapixel MNIST configuration, 2 cores; docs/BENCHMARKS.md).
void runtime_configure(int threads);

// Whether BLAS keeps a pool of threads of its own beside torch's OpenMP team (OpenBLAS built with
// pthreads: Debian's libopenblas0-pthread). Then after each of torch's parallel regions its OpenMP
// workers spin, waiting for the next one, on the cores the BLAS threads want for the next GEMM.
bool runtime_blas_has_own_threads();

// For GEMM-bound work on the CPU (a ViT without gradients): while one lives, torch's own
// ops run on the calling thread alone where BLAS has its own threads, so that the two pools do
// not take turns on the same cores; it changes nothing elsewhere (MKL or an OpenMP OpenBLAS share
// torch's team). Results are the same: only elementwise and row-wise ops change threads.
// ViT-B/16 features, 2 cores: 19.6-22.8 s -> 17.2-18.6 s, the same bits (docs/BENCHMARKS.md).
class RuntimeGemmBound {
  public:
    RuntimeGemmBound();
    ~RuntimeGemmBound();
    RuntimeGemmBound(const RuntimeGemmBound&) = delete;
    RuntimeGemmBound& operator=(const RuntimeGemmBound&) = delete;

  private:
    int threads_ = 0;  // torch's count to restore; 0 when nothing was changed
};

// The other side of runtime_configure's thresholds: hands the heap's free pages back to the kernel
// once. For memory freed that will not be needed again soon, such as the copy of a weight file
// after it is loaded into a module (a ViT-B's: 180 MB of resident memory).
void runtime_memory_release();

// What this build runs on, for `ips --version` and the first lines of a run: the ips version, the
// libtorch version with its CUDA and cuDNN versions (or "CPU only"), and the devices seen (CPU
// cores, CUDA devices by name and memory). Three lines, without a final newline.
std::string runtime_versions();

}  // namespace ips
