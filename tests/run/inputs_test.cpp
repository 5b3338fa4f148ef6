// Jobs over many inputs: a failure is reported and skipped, the rest still run, and the job fails
// at the end naming what failed; two inputs with one stem would overwrite each other's outputs.
#include <gtest/gtest.h>

#include <stdexcept>

#include "test_support.h"
#include "ips/inputs.h"

using namespace ips;
using test::error_of;

TEST(Inputs, ForEachContinuesPastAFailureAndCountsIt) {
    const std::vector<std::string> paths = {"a/one.svs", "b/two.svs", "c/three.svs"};
    std::vector<std::string> seen;
    testing::internal::CaptureStderr();
    const std::string e = error_of([&] {
        inputs_for_each("tiles", "slides", paths, [&](const std::string& p) {
            seen.push_back(p);
            if (p == "b/two.svs") throw std::runtime_error("cannot open slide");
        });
    });
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(seen, paths);  // the third input ran after the second failed
    EXPECT_EQ(err, "ips tiles: skipped b/two.svs: cannot open slide\n");
    EXPECT_EQ(e, "1 of 3 slides failed:\n  b/two.svs");

    seen.clear();
    testing::internal::CaptureStderr();
    const std::string two = error_of([&] {
        inputs_for_each("predict", "images", paths, [&](const std::string& p) {
            seen.push_back(p);
            if (p != "b/two.svs") throw std::invalid_argument("bad " + p);
        });
    });
    const std::string err2 = testing::internal::GetCapturedStderr();
    EXPECT_EQ(seen, paths);
    EXPECT_EQ(two, "2 of 3 images failed:\n  a/one.svs\n  c/three.svs");
    EXPECT_NE(err2.find("ips predict: skipped a/one.svs: bad a/one.svs\n"), std::string::npos) << err2;
    EXPECT_NE(err2.find("ips predict: skipped c/three.svs: bad c/three.svs\n"), std::string::npos) << err2;
}

TEST(Inputs, ForEachWithoutFailuresIsQuiet) {
    int calls = 0;
    testing::internal::CaptureStderr();
    EXPECT_EQ(error_of([&] { inputs_for_each("features", "slides", {"x.svs", "y.svs"}, [&](const std::string&) { ++calls; }); }),
              "(no exception)");
    EXPECT_EQ(error_of([&] { inputs_for_each("features", "slides", {}, [&](const std::string&) { ++calls; }); }),
              "(no exception)");
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
    EXPECT_EQ(calls, 2);
    // Whatever a job throws, the failure is reported as one of the inputs.
    testing::internal::CaptureStderr();
    EXPECT_THROW(inputs_for_each("tiles", "slides", {"x"}, [](const std::string&) { throw std::logic_error("no"); }),
                 std::runtime_error);
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "ips tiles: skipped x: no\n");
}

TEST(Inputs, StemsMustBeDistinct) {
    EXPECT_NO_THROW(inputs_stems_distinct({"a/one.svs", "a/two.svs", "b/three.tif"}));
    EXPECT_NO_THROW(inputs_stems_distinct({}));
    // Same stem in other folders or with other extensions: both would write one.csv, one.h5, ...
    const std::string e = error_of([] { inputs_stems_distinct({"a/one.svs", "b/two.svs", "c/one.tif"}); });
    EXPECT_NE(e.find("'a/one.svs' and 'c/one.tif' would write the same output files (one.*)"), std::string::npos) << e;
    EXPECT_THROW(inputs_stems_distinct({"x.svs", "x.svs"}), std::runtime_error);
}
