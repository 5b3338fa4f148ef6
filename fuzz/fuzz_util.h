// What the harnesses share: a scratch folder in /dev/shm for readers that only take a path, quiet
// single-threaded libraries, and a way to report a broken invariant as a crash.
//
// The rule of every harness: a std::exception out of our reader is a clear error, so it is fine;
// what counts is a crash, a sanitizer report, a hang, a leak, an exception of another type, or an
// invariant the harness checks (fuzz_fail).
#pragma once

#include <sanitizer/common_interface_defs.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ips_fuzz {

namespace fs = std::filesystem;

// /dev/shm/ips-fuzz-<pid>/, made on first use and removed at exit (libFuzzer exits through exit()).
// The name lives on the heap for good: the exit handler runs after static destructors.
inline const std::string& scratch_dir() {
    static const std::string* dir = [] {
        const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        const fs::path d = base / ("ips-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(d);
        return new std::string(d.string());
    }();
    static const int cleanup = std::atexit([] {
        std::error_code ec;
        fs::remove_all(fs::path(*dir), ec);
    });
    (void)cleanup;
    return *dir;
}

// Writes the bytes to scratch_dir()/name (folders made as needed) and returns the path.
inline std::string file_write(const std::string& name, const void* data, size_t size) {
    const fs::path p = fs::path(scratch_dir()) / name;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    if (!out) {
        std::fprintf(stderr, "fuzz harness: cannot write %s\n", p.c_str());
        std::abort();
    }
    return p.string();
}

inline std::string file_write(const std::string& name, const std::string& text) {
    return file_write(name, text.data(), text.size());
}

// A broken invariant: printed where libFuzzer prints (stderr may be closed with -close_fd_mask=2),
// then a crash, so libFuzzer saves the input.
[[noreturn]] inline void fuzz_fail(const std::string& what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what.c_str());
    __sanitizer_report_error_summary(("fuzz invariant broken: " + what).c_str());
    std::abort();
}

// IPS_FUZZ_VERBOSE=1: the harnesses say what they do (to see what seeds reach, to read a crash).
inline bool verbose() {
    static const bool on = std::getenv("IPS_FUZZ_VERBOSE") != nullptr;
    return on;
}

// Inputs that reach a known, unfixed finding (fuzz/README.md) are skipped, so one run goes on past
// it; IPS_FUZZ_KNOWN=1 lets them through (fuzz/crashes/ keeps an input for each).
inline bool skip_known() {
    static const bool skip = std::getenv("IPS_FUZZ_KNOWN") == nullptr;
    return skip;
}

// A clear error from a reader: fine; printed when verbose().
inline void note(const std::exception& e) {
    if (verbose()) std::fprintf(stderr, "clear error: %s\n", e.what());
}

// One intra-op thread: runs are comparable, and a shared machine stays usable.
inline void torch_quiet() {
    torch::set_num_threads(1);
}

// The libFuzzer set-up of a harness that needs nothing beyond torch_quiet (a macro: the entry
// point must be defined once per harness binary, in its own source).
#define IPS_FUZZ_INIT_QUIET                                   \
    extern "C" int LLVMFuzzerInitialize(int*, char***) {      \
        ips_fuzz::torch_quiet();                              \
        return 0;                                             \
    }

// The parts of `s` between '\0' bytes (at least one part).
inline std::vector<std::string> split_nul(const std::string& s, size_t max_parts) {
    std::vector<std::string> parts;
    size_t from = 0;
    while (parts.size() + 1 < max_parts) {
        const size_t z = s.find('\0', from);
        if (z == std::string::npos) break;
        parts.push_back(s.substr(from, z - from));
        from = z + 1;
    }
    parts.push_back(s.substr(from));
    return parts;
}

// Reads every byte of a CPU tensor's view (its first and last element, in instrumented code), so
// a view that reaches outside its storage is an ASan report here rather than silence.
inline void tensor_touch(const torch::Tensor& t) {
    if (!t.defined() || t.numel() == 0 || !t.device().is_cpu()) return;
    const auto* base = static_cast<const volatile uint8_t*>(t.data_ptr());
    int64_t last = 0;
    for (int64_t d = 0; d < t.dim(); ++d) {
        int64_t reach = 0;
        if (t.stride(d) < 0 || __builtin_mul_overflow(t.size(d) - 1, t.stride(d), &reach) ||
            __builtin_add_overflow(last, reach, &last))
            fuzz_fail("tensor view with a negative stride or an offset beyond int64");
    }
    const auto elem = static_cast<int64_t>(t.element_size());
    uint8_t sink = 0;
    for (int64_t b = 0; b < elem; ++b) sink ^= base[b] ^ base[last * elem + b];
    (void)sink;
}

}  // namespace ips_fuzz
