// Jobs over many inputs: a failure is reported and skipped, the rest still run, and the job fails
// at the end naming what failed; two inputs with one stem would overwrite each other's outputs;
// several ranks each take a disjoint share, in the order given, and say which rank they are.
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
    EXPECT_EQ(e, "1 of 3 slides failed:\n  b/two.svs: cannot open slide");

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
    EXPECT_EQ(two, "2 of 3 images failed:\n  a/one.svs: bad a/one.svs\n  c/three.svs: bad c/three.svs");
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

TEST(Inputs, SharesAreContiguousDisjointAndCoverEveryInputOnce) {
    const std::vector<std::string> paths = {"a", "b", "c", "d", "e"};
    EXPECT_EQ(inputs_share(paths, 0, 1), paths);
    // Earlier ranks take one more; the order on the command line is kept.
    EXPECT_EQ(inputs_share(paths, 0, 2), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(inputs_share(paths, 1, 2), (std::vector<std::string>{"d", "e"}));
    for (int world = 1; world <= 7; ++world) {
        std::vector<std::string> all;
        for (int rank = 0; rank < world; ++rank) {
            const auto mine = inputs_share(paths, rank, world);
            all.insert(all.end(), mine.begin(), mine.end());
        }
        EXPECT_EQ(all, paths) << "world " << world;
    }
    EXPECT_TRUE(inputs_share(paths, 6, 7).empty());  // more ranks than inputs: the last ones idle
    EXPECT_TRUE(inputs_share({}, 0, 2).empty());
    EXPECT_THROW(inputs_share(paths, 2, 2), std::invalid_argument);
    EXPECT_THROW(inputs_share(paths, 0, 0), std::invalid_argument);
}

TEST(Inputs, ForEachShareRunsThisRanksShareAndNamesTheRank) {
    const std::vector<std::string> paths = {"a.svs", "b.svs", "c.svs", "d.svs", "e.svs"};
    std::vector<std::string> seen;
    testing::internal::CaptureStderr();
    const std::string e = error_of([&] {
        inputs_for_each_share("tiles", "slides", paths, 1, 2, [&](const std::string& p) {
            seen.push_back(p);
            if (p == "d.svs") throw std::runtime_error("cannot open slide");
        });
    });
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(seen, (std::vector<std::string>{"d.svs", "e.svs"}));
    EXPECT_EQ(err, "ips tiles: rank 1/2: 2 of 5 slides\nips tiles: rank 1/2: skipped d.svs: cannot open slide\n");
    EXPECT_EQ(e, "rank 1/2: 1 of 2 slides failed:\n  d.svs: cannot open slide");

    // One process: every input, and the messages of inputs_for_each.
    seen.clear();
    testing::internal::CaptureStderr();
    const std::string one = error_of([&] {
        inputs_for_each_share("features", "slides", paths, 0, 1, [&](const std::string& p) {
            seen.push_back(p);
            if (p == "a.svs") throw std::runtime_error("bad");
        });
    });
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "ips features: skipped a.svs: bad\n");
    EXPECT_EQ(seen, paths);
    EXPECT_EQ(one, "1 of 5 slides failed:\n  a.svs: bad");
}
