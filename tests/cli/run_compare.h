// Comparing two training runs' folders (last.pt and metrics.jsonl): the same training carried out
// two ways (ranks, interruptions) must give the same model and metrics.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "ips/torch_file.h"
#include "test_support.h"

namespace ips::test {

// Largest ||a - b|| / ||b|| over the tensors of two checkpoints' models, and the largest |a - b|.
// `noise` names tensors left out: the feature projector's Linear bias feeds BatchNorm, which
// removes it, so its exact gradient is 0 and each process computes rounding noise that Adam scales
// to steps of ±lr; the running mean after it follows it. Those are checked to stay within
// lr x steps of each other.
inline std::pair<double, double> model_distance(const std::string& a_path, const std::string& b_path,
                                         const std::vector<std::string>& noise = {}, double noise_bound = 0) {
    const auto a = ips::torch_file_read(a_path, "model"), b = ips::torch_file_read(b_path, "model");
    EXPECT_EQ(a.size(), b.size());
    double rel = 0, abs = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        EXPECT_EQ(a[i].first, b[i].first);
        if (!a[i].second.is_floating_point()) {
            EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
            continue;
        }
        const auto d = (a[i].second - b[i].second).to(torch::kDouble);
        if (std::find(noise.begin(), noise.end(), a[i].first) != noise.end()) {
            EXPECT_LE(d.abs().max().item<double>(), noise_bound) << a[i].first;
            continue;
        }
        const double r = d.norm().item<double>() / std::max(1e-12, b[i].second.to(torch::kDouble).norm().item<double>());
        if (r > rel) std::printf("[compare] %s: relative difference %.3g\n", a[i].first.c_str(), r);
        rel = std::max(rel, r);
        abs = std::max(abs, d.abs().max().item<double>());
    }
    return {rel, abs};
}

// The numbers of two metrics.jsonl files agree within `tol` (relative), ignoring times.
inline void metrics_expect_close(const std::filesystem::path& a, const std::filesystem::path& b, double tol) {
    const auto la = lines_of(a), lb = lines_of(b);
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) {
        const auto ja = nlohmann::json::parse(la[i]).flatten(), jb = nlohmann::json::parse(lb[i]).flatten();
        for (const auto& [key, va] : ja.items()) {
            if (key == "/seconds" || key == "/comm_seconds" || key == "/world_size") continue;
            ASSERT_TRUE(jb.contains(key)) << key;
            if (!va.is_number()) continue;
            const double x = va.get<double>(), y = jb[key].get<double>();
            EXPECT_LE(std::abs(x - y), tol * std::max(1.0, std::abs(y))) << key << " in line " << i + 1;
        }
    }
}

inline void runs_expect_equal(const std::filesystem::path& one, const std::filesystem::path& many, const std::vector<std::string>& noise = {},
                       double noise_bound = 0, double metrics_tol = 1e-5, double model_tol = 1e-5) {
    const auto [rel, abs] = model_distance((one / "last.pt").string(), (many / "last.pt").string(), noise, noise_bound);
    EXPECT_LE(rel, model_tol) << "largest |difference| " << abs;
    metrics_expect_close(one / "metrics.jsonl", many / "metrics.jsonl", metrics_tol);
}

// Bit for bit: every tensor of the two last.pt models equal, every metrics.jsonl value equal but
// the wall-clock ones. What one process gets from the same command, however often it was stopped.
inline void runs_expect_identical(const std::filesystem::path& a, const std::filesystem::path& b) {
    const auto ta = torch_file_read((a / "last.pt").string(), "model"), tb = torch_file_read((b / "last.pt").string(), "model");
    ASSERT_EQ(ta.size(), tb.size());
    for (size_t i = 0; i < ta.size(); ++i) {
        EXPECT_EQ(ta[i].first, tb[i].first);
        EXPECT_TRUE(torch::equal(ta[i].second, tb[i].second)) << ta[i].first;
    }
    const auto la = lines_of(a / "metrics.jsonl"), lb = lines_of(b / "metrics.jsonl");
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) {
        auto ja = nlohmann::json::parse(la[i]), jb = nlohmann::json::parse(lb[i]);
        for (auto* j : {&ja, &jb}) {
            j->erase("seconds");
            j->erase("comm_seconds");
        }
        EXPECT_EQ(ja, jb) << "line " << i + 1;
    }
}

}  // namespace ips::test
