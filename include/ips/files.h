// Whole files in and out: written so that a reader never sees half of one.
#pragma once

#include <string>

namespace ips {

// Writes `text` to PATH.tmp, checks the write (a full disk shows at close), renames it to `path`;
// on failure removes the temporary file and throws std::runtime_error naming `path`.
void text_write_atomic(const std::string& path, const std::string& text);

// The bytes of the file at `path`; throws std::runtime_error naming it when it cannot be read.
std::string file_read(const std::string& path);

}  // namespace ips
