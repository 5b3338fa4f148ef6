// Durations as a person reads them, and the progress bar a log gets when stderr is not a terminal:
// no redraws, one final line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "ips/progress.h"

using namespace ips;

TEST(Progress, FormatDuration) {
    EXPECT_EQ(format_duration(0), "00:00");
    EXPECT_EQ(format_duration(0.4), "00:00");
    EXPECT_EQ(format_duration(0.5), "00:01");  // rounded to the nearest second
    EXPECT_EQ(format_duration(59.4), "00:59");
    EXPECT_EQ(format_duration(59.5), "01:00");
    EXPECT_EQ(format_duration(61), "01:01");
    EXPECT_EQ(format_duration(3599), "59:59");
    EXPECT_EQ(format_duration(3600), "1:00:00");
    EXPECT_EQ(format_duration(3661), "1:01:01");
    EXPECT_EQ(format_duration(36000 * 2.5), "25:00:00");
    // Unknown or absurd: placeholders, not garbage.
    EXPECT_EQ(format_duration(-1), "--:--");
    EXPECT_EQ(format_duration(std::nan("")), "--:--");
    EXPECT_EQ(format_duration(INFINITY), "--:--");
    EXPECT_EQ(format_duration(1e8), "--:--");
}

TEST(Progress, ToANonTerminalItWritesOneFinalLine) {
    testing::internal::CaptureStderr();  // stderr is a file now, whatever runs the test
    Progress bar("reading", 10, "tile");
    EXPECT_FALSE(bar.tty);
    for (int k = 0; k < 10; ++k) bar.update(1, "loss 0.5");
    const std::string during = testing::internal::GetCapturedStderr();
    EXPECT_EQ(during, "");  // a log gets a line every 30 seconds, not a redraw per update
    EXPECT_EQ(bar.done, 10);

    testing::internal::CaptureStderr();
    bar.finish("done");
    bar.finish("again");  // once only
    const std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    EXPECT_EQ(out.find('\r'), std::string::npos) << out;   // no terminal control
    EXPECT_EQ(out.find("\033"), std::string::npos) << out;
    EXPECT_EQ(out.rfind("reading [########################] 10/10 ", 0), 0u) << out;
    EXPECT_NE(out.find(" tile/s "), std::string::npos) << out;
    EXPECT_EQ(out.substr(out.size() - 6), " done\n") << out;
    EXPECT_TRUE(bar.finished);
}

TEST(Progress, PartialAndEmptyBars) {
    testing::internal::CaptureStderr();
    Progress half("epoch 1", 8, "step");
    half.update(4);
    half.finish();
    Progress none("nothing", 0);
    none.finish();
    const std::string out = testing::internal::GetCapturedStderr();
    EXPECT_NE(out.find("epoch 1 [############............] 4/8 "), std::string::npos) << out;
    EXPECT_NE(out.find(" step/s "), std::string::npos) << out;
    EXPECT_NE(out.find("nothing [########################] 0/0 "), std::string::npos) << out;
    EXPECT_NE(out.find(" it/s "), std::string::npos) << out;  // the default unit
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
}

TEST(Progress, ShowsTheWholeRunsEtaAfterTheEpochs) {
    testing::internal::CaptureStderr();
    Progress bar("epoch 2/3", 10, "img");
    bar.skip(4);  // a resumed epoch: counted as done, not in the rate
    bar.start -= std::chrono::seconds(3);
    bar.update(6);  // 6 images in 3 s: 2 img/s, nothing left in this epoch
    bar.after_units = 10;     // one more epoch: 5 s at that rate
    bar.after_seconds = 20;   // and its test passes
    bar.finish();
    const std::string out = testing::internal::GetCapturedStderr();
    EXPECT_NE(out.find(" 10/10 2.0 img/s 00:03<00:00 run<00:25 "), std::string::npos) << out;

    testing::internal::CaptureStderr();
    Progress plain("eval", 4, "img");
    plain.finish();
    EXPECT_EQ(testing::internal::GetCapturedStderr().find("run<"), std::string::npos);
}
