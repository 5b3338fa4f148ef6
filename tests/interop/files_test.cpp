// Atomic writes (the whole text or nothing, never a temporary file left behind), appends, and the
// clean-up of what killed writers leave.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

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

TEST(Files, AppendAddsWholeTextAndNamesTheFileOnFailure) {
    TempDir dir;
    const std::string path = dir / "metrics.jsonl";
    text_append(path, "{\"epoch\":1}\n");
    text_append(path, "{\"epoch\":2}\n");
    EXPECT_EQ(text_of(path), "{\"epoch\":1}\n{\"epoch\":2}\n");
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    const std::string e = error_of([&] { text_append("/dev/full", "line\n"); });
    EXPECT_NE(e.find("cannot append to '/dev/full': No space left on device"), std::string::npos) << e;
    const std::string missing = error_of([&] { text_append(dir / "no/such/folder.jsonl", "x\n"); });
    EXPECT_NE(missing.find(dir / "no/such/folder.jsonl"), std::string::npos) << missing;
}

TEST(Files, StaleTemporariesOfDeadWritersAreRemovedOthersKept) {
    TempDir dir;
    // A pid far above any live one (pid_max is at most 2^22) stands for a writer killed mid-write.
    std::ofstream(dir.path / "last.pt.tmp.9999999") << "half";
    std::ofstream(dir.path / ("best.pt.tmp." + std::to_string(::getpid()))) << "mine";  // being written
    std::ofstream(dir.path / "notes.tmp.txt") << "not ours";
    std::ofstream(dir.path / "last.pt") << "whole";
    EXPECT_EQ(stale_temporaries_remove(dir.path.string()), 1);
    EXPECT_FALSE(fs::exists(dir.path / "last.pt.tmp.9999999"));
    EXPECT_EQ(entries(dir.path), 3u);
}

// Where nothing reaps orphans (a container without an init), a writer killed after its parent
// stays a zombie, which kill(pid, 0) still finds; and a pid handed on to a process started later
// is not the writer. Both temporaries are stale.
TEST(Files, StaleTemporariesOfZombieWritersAndOfReusedPidsAreRemoved) {
    TempDir dir;
    const pid_t zombie = ::fork();
    ASSERT_GE(zombie, 0);
    if (zombie == 0) ::_exit(0);
    ::usleep(200 * 1000);  // until it has exited; it stays a zombie while unreaped
    ASSERT_EQ(::kill(zombie, 0), 0);
    const fs::path of_zombie = dir.path / ("last.pt.tmp." + std::to_string(zombie));
    std::ofstream(of_zombie) << "half";
    // This process started before now: a temporary dated an hour before it started is not its own.
    const pid_t sleeper = ::fork();
    ASSERT_GE(sleeper, 0);
    if (sleeper == 0) {
        ::pause();
        ::_exit(0);
    }
    const fs::path of_old_writer = dir.path / ("best.pt.tmp." + std::to_string(sleeper));
    std::ofstream(of_old_writer) << "half";
    fs::last_write_time(of_old_writer, fs::file_time_type::clock::now() - std::chrono::hours(1));
    const fs::path of_live_writer = dir.path / ("bag.h5.tmp." + std::to_string(sleeper));
    std::ofstream(of_live_writer) << "being written";
    EXPECT_EQ(stale_temporaries_remove(dir.path.string()), 2);
    EXPECT_FALSE(fs::exists(of_zombie));
    EXPECT_FALSE(fs::exists(of_old_writer));
    EXPECT_TRUE(fs::exists(of_live_writer));
    ::kill(sleeper, SIGKILL);
    ::waitpid(sleeper, nullptr, 0);
    ::waitpid(zombie, nullptr, 0);
}

TEST(Files, CommitMovesAnotherWritersFileIntoPlace) {
    TempDir dir;
    std::ofstream(dir.path / "bag.h5.tmp.1") << "bytes";
    file_commit(dir / "bag.h5.tmp.1", dir / "bag.h5");
    EXPECT_EQ(text_of(dir.path / "bag.h5"), "bytes");
    EXPECT_EQ(entries(dir.path), 1u);
    const std::string e = error_of([&] { file_commit(dir / "gone.tmp.1", dir / "gone.h5"); });
    EXPECT_NE(e.find("cannot write '" + dir / "gone.h5" + "'"), std::string::npos) << e;
}
