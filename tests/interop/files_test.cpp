// text_write_atomic: the whole text or nothing, never a temporary file left behind.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_support.h"
#include "ips/files.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::TempDir;

namespace {

std::string text_of(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

size_t entries(const fs::path& dir) {
    return size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST(Files, WritesTheTextAndLeavesNoTemporary) {
    TempDir dir;
    const std::string path = dir / "metrics.json";
    const std::string text = "{\"a\": 1}\nsecond line\n\xC3\xA9\n";
    text_write_atomic(path, text);
    EXPECT_EQ(text_of(path), text);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    EXPECT_EQ(entries(dir.path), 1u);

    // Rewriting replaces the whole file, also with shorter or empty text.
    text_write_atomic(path, "x");
    EXPECT_EQ(text_of(path), "x");
    text_write_atomic(path, "");
    EXPECT_TRUE(fs::exists(path));
    EXPECT_EQ(fs::file_size(path), 0u);
    EXPECT_EQ(entries(dir.path), 1u);

    // Large text arrives whole.
    std::string big(3 << 20, 'z');
    for (size_t k = 0; k < big.size(); k += 4096) big[k] = '\n';
    text_write_atomic(path, big);
    EXPECT_EQ(text_of(path), big);
}

TEST(Files, AFolderThatCannotBeWrittenIsNamed) {
    TempDir dir;
    // The folder does not exist.
    const std::string missing = dir / "no_such_folder/out.csv";
    std::string e = error_of([&] { text_write_atomic(missing, "x,y\n"); });
    EXPECT_NE(e.find(missing), std::string::npos) << e;
    EXPECT_NE(e.find("cannot write"), std::string::npos) << e;
    // The "folder" is a file.
    std::ofstream(dir / "plain") << "a file";
    const std::string under_file = dir / "plain/out.csv";
    e = error_of([&] { text_write_atomic(under_file, "x,y\n"); });
    EXPECT_NE(e.find(under_file), std::string::npos) << e;
    // The target is a folder: the rename fails, the temporary file is removed.
    fs::create_directory(dir / "taken");
    std::ofstream(dir.path / "taken" / "keep") << "k";
    const std::string taken = dir / "taken";
    e = error_of([&] { text_write_atomic(taken, "text"); });
    EXPECT_NE(e.find(taken), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(taken + ".tmp"));
    EXPECT_TRUE(fs::is_directory(taken));
    EXPECT_EQ(text_of(dir.path / "taken" / "keep"), "k");
    EXPECT_EQ(entries(dir.path), 2u);  // plain, taken
}
