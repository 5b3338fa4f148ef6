// Files PyTorch itself wrote, for the interop tests: tests/peer/make_state_dicts.py, run with the
// system Python that has torch and torchvision, makes torchvision ResNet state dicts, files of
// every dtype, views, nested checkpoints, and the forward outputs they should give; it records
// what it wrote in expected.json and checks files we write with torch.load.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "ips/model.h"
#include "test_support.h"

namespace ips::test {

inline std::string peer_script() { return std::string(IPS_SOURCE_DIR) + "/tests/peer/make_state_dicts.py"; }

inline std::string bytes_read(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void bytes_write(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

// Runs the peer script; returns its exit status and leaves its output in `log`.
inline int peer_script_run(const std::string& mode, const std::filesystem::path& dir, const std::filesystem::path& log) {
    const std::string cmd = "'" + torch_python() + "' '" + peer_script() + "' " + mode + " '" + dir.string() + "' > '" +
                            log.string() + "' 2>&1";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// The peer files (about 150 MB, 10 s to make) are made once per script version and shared by
// the test processes ctest starts; a finished folder is renamed into place, so racing
// processes never see a half-written one.
struct PeerFiles {
    std::filesystem::path dir;
    std::string error;  // non-empty when the script could not run
};

inline const PeerFiles& peer() {
    namespace fs = std::filesystem;
    static const PeerFiles files = [] {
        PeerFiles f;
        const std::string text = bytes_read(peer_script());
        if (text.empty()) {
            f.error = "peer script " + peer_script() + " is missing";
            return f;
        }
        f.dir = fs::temp_directory_path() / ("ips_torch_file_peer_" + std::to_string(std::hash<std::string>{}(text)));
        if (fs::exists(f.dir / "expected.json")) return f;
        const fs::path work = f.dir.string() + ".tmp" + std::to_string(::getpid());
        fs::create_directories(work);
        const fs::path log = work.string() + ".log";
        const int rc = peer_script_run("make", work, log);
        if (rc != 0) {
            f.error = "'" + torch_python() + " " + peer_script() + " make' failed with exit code " + std::to_string(rc) +
                      " (these tests need Python with torch and torchvision; set IPS_TORCH_PYTHON to another "
                      "interpreter if /usr/bin/python3 lacks them):\n" + bytes_read(log);
        } else {
            std::error_code ec;
            fs::rename(work, f.dir, ec);  // fails harmlessly when another process got there first
        }
        fs::remove_all(work);
        fs::remove(log);
        return f;
    }();
    return files;
}

#define REQUIRE_PEER() ASSERT_TRUE(::ips::test::peer().error.empty()) << ::ips::test::peer().error

inline const nlohmann::json& peer_expected() {
    static const nlohmann::json j = nlohmann::json::parse(bytes_read(peer().dir / "expected.json"));
    return j;
}

// A raw little-endian float32 file the script wrote (inputs and outputs of forward passes).
inline torch::Tensor raw_floats(const std::filesystem::path& path, std::vector<int64_t> shape) {
    const std::string bytes = bytes_read(path);
    auto t = torch::empty(shape, torch::kFloat);
    EXPECT_EQ(bytes.size(), size_t(t.numel()) * 4) << path;
    std::memcpy(t.data_ptr(), bytes.data(), std::min<size_t>(bytes.size(), t.numel() * 4));
    return t;
}

// arch as torchvision names it: "resnet18", "resnet50".
inline torch::nn::Sequential trunk_make(const std::string& arch, int64_t n_chan_in, int n_res_blocks) {
    int64_t dim = 0;
    const EncoderType type = arch == "resnet50" ? EncoderType::resnet50 : EncoderType::resnet18;
    return resnet_trunk_make(type, n_chan_in, n_res_blocks, &dim);
}

}  // namespace ips::test
