#include "ips/files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>

#include "ips/fault.h"

namespace ips {
namespace {

// Writes all n bytes, retrying short writes and signals; false with errno set on failure.
bool write_all(int fd, const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// The last step of every whole-file write: `tmp` (synced) becomes `path`, and the folder is synced
// so the rename itself survives a power cut. On failure removes `tmp` and throws naming `path`.
void rename_durably(const std::string& tmp, const std::string& path) {
    fault_point("atomic-before-rename");
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw std::runtime_error("cannot write '" + path + "': cannot rename '" + tmp + "' into place: " + why);
    }
    const std::string p = std::filesystem::path(path).parent_path().string();
    folder_sync(p.empty() ? "." : p);
    fault_point("atomic-after-rename");
}

// Whether process `pid` may still be writing a temporary last modified at `modified`. A killed
// writer whose parent died first stays a zombie where nothing reaps orphans (a container whose
// first process is not an init): kill(pid, 0) still succeeds on it. And a pid can be handed to a
// new process: one started after the file was last written is not its writer.
bool writer_may_be_alive(pid_t pid, time_t modified) {
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat_file, line)) return ::kill(pid, 0) == 0 || errno != ESRCH;  // no /proc
    // "pid (comm) state ppid ... starttime": comm may hold spaces and parentheses.
    const auto close = line.rfind(')');
    if (close == std::string::npos) return true;
    std::istringstream fields(line.substr(close + 1));
    std::string state;
    fields >> state;
    if (state == "Z" || state == "X" || state == "x") return false;
    std::string skip;
    for (int i = 0; i < 18; ++i) fields >> skip;  // ppid .. itrealvalue: fields 4 to 21
    unsigned long long start_ticks = 0;
    if (!(fields >> start_ticks)) return true;
    std::ifstream proc_stat("/proc/stat");
    long long boot = -1;
    for (std::string key; proc_stat >> key;) {
        if (key == "btime") {
            proc_stat >> boot;
            break;
        }
    }
    const long ticks = ::sysconf(_SC_CLK_TCK);
    if (boot < 0 || ticks <= 0) return true;
    const long long started = boot + static_cast<long long>(start_ticks / static_cast<unsigned long long>(ticks));
    // Two seconds of slack: btime and the tick count round down.
    return started <= static_cast<long long>(modified) + 2;
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
        const std::string why = std::strerror(errno);
        throw std::runtime_error("cannot write '" + path_ + "': cannot create '" + tmp_ + "': " + why);
    }
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) {
        ::close(fd_);
        ::unlink(tmp_.c_str());
    }
}

void AtomicFile::fail(const std::string& what) {
    const std::string why = what + ": " + std::strerror(errno);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_.c_str());
    throw std::runtime_error("cannot write '" + path_ + "' (" + why + "); the file there before, if any, is unchanged");
}

void AtomicFile::write(const void* data, size_t n) {
    if (fd_ < 0) throw std::runtime_error("cannot write '" + path_ + "': already committed or failed");
    if (!write_all(fd_, data, n)) fail("write failed");
}

// Some file systems report a full disk only at fsync or close: both are checked.
void AtomicFile::commit() {
    if (fd_ < 0) throw std::runtime_error("cannot write '" + path_ + "': already committed or failed");
    if (::fsync(fd_) != 0) fail("fsync failed");
    if (::close(fd_) != 0) fail("close failed");
    fd_ = -1;
    rename_durably(tmp_, path_);
}

void file_commit(const std::string& tmp, const std::string& path) {
    const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    const std::string why = synced ? "" : std::strerror(errno);
    if (fd >= 0) ::close(fd);
    if (!synced) {
        ::unlink(tmp.c_str());
        throw std::runtime_error("cannot write '" + path + "': cannot sync '" + tmp + "': " + why);
    }
    rename_durably(tmp, path);
}

void text_write_atomic(const std::string& path, const std::string& text) {
    AtomicFile f(path);
    f.write(text.data(), text.size());
    f.commit();
}

void text_append(const std::string& path, const std::string& text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot append to '" + path + "': " + std::strerror(errno));
    struct stat st {};
    const off_t before = ::fstat(fd, &st) == 0 ? st.st_size : -1;
    if (!write_all(fd, text.data(), text.size()) || ::fsync(fd) != 0) {
        const std::string why = std::strerror(errno);
        if (before >= 0 && ::ftruncate(fd, before) == 0) ::fsync(fd);
        ::close(fd);
        throw std::runtime_error("cannot append to '" + path + "': " + why + "; its earlier lines are unchanged");
    }
    ::close(fd);
}

int stale_temporaries_remove(const std::string& folder) {
    namespace fs = std::filesystem;
    std::error_code ec;
    int removed = 0;
    for (const auto& e : fs::directory_iterator(folder, ec)) {
        const std::string name = e.path().filename().string();
        const auto mark = name.rfind(".tmp.");
        if (mark == std::string::npos || !(e.is_regular_file(ec) || e.is_directory(ec))) continue;
        const std::string digits = name.substr(mark + 5);
        if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
        const pid_t pid = static_cast<pid_t>(std::stol(digits));
        if (pid == ::getpid()) continue;
        struct stat st {};
        if (::stat(e.path().c_str(), &st) != 0 || writer_may_be_alive(pid, st.st_mtime)) continue;
        if (fs::remove_all(e.path(), ec) > 0) ++removed;
    }
    return removed;
}

void folder_sync(const std::string& folder) {
    const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;  // nothing to make durable we could reach
    ::fsync(fd);
    ::close(fd);
}

std::string file_read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in.is_open()) throw std::runtime_error("cannot open '" + path + "'");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw std::runtime_error("cannot read '" + path + "'");
    return bytes;
}

}  // namespace ips
