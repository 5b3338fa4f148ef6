// Writing small text files so that a reader never sees half of one.
#pragma once

#include <string>

namespace ips {

// Writes `text` to PATH.tmp, checks the write (a full disk shows at close), renames it to `path`;
// on failure removes the temporary file and throws std::runtime_error naming `path`.
void text_write_atomic(const std::string& path, const std::string& text);

}  // namespace ips
