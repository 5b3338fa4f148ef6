// Whole files in and out: written so that a reader never sees half of one, and a power cut or a
// full disk never leaves a half-written file under the final name.
#pragma once

#include <cstddef>
#include <string>

namespace ips {

// A file written under PATH.tmp.<pid> and moved to PATH by commit(): the bytes and the temporary
// file are fsync'ed before the rename, the folder after it, so after commit() returns PATH holds
// the new bytes even across a power cut, and before it PATH still holds the old ones. Every
// failure (a full disk: "No space left on device") throws std::runtime_error naming PATH and
// removes the temporary file; so does destruction without commit().
class AtomicFile {
public:
    explicit AtomicFile(std::string path);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* data, size_t n);
    void commit();
    const std::string& path() const { return path_; }

private:
    [[noreturn]] void fail(const std::string& what);
    std::string path_, tmp_;
    int fd_ = -1;
};

// For files another library writes (HDF5) under `tmp`: fsyncs it, renames it to `path` and fsyncs
// the folder, as AtomicFile::commit does. On failure removes `tmp` and throws naming `path`.
void file_commit(const std::string& tmp, const std::string& path);

// AtomicFile with `text` as its whole content.
void text_write_atomic(const std::string& path, const std::string& text);

// Appends `text` to PATH (created if missing) and fsyncs it. When the write fails part-way (a full
// disk) the file is cut back to its old length, so it never ends in half a line; throws
// std::runtime_error naming PATH.
void text_append(const std::string& path, const std::string& text);

// Removes the temporary files and folders (NAME.tmp.<pid>) that writers killed mid-write left in
// `folder` (AtomicFile's files, `ips predict`'s output folders), where process <pid> is gone, a
// zombie, or a newer process than the temporary's last write.
// Returns how many.
int stale_temporaries_remove(const std::string& folder);

// fsync of a folder: makes a rename or a new file in it survive a power cut.
void folder_sync(const std::string& folder);

// The bytes of the file at `path`; throws std::runtime_error naming it when it cannot be read.
std::string file_read(const std::string& path);

}  // namespace ips
