#include "ips/files.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace ips {

void text_write_atomic(const std::string& path, const std::string& text) {
    namespace fs = std::filesystem;
    const fs::path tmp = path + ".tmp";
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    std::error_code ec;
    if (out.fail() || (fs::rename(tmp, path, ec), ec)) {
        fs::remove(tmp, ec);
        throw std::runtime_error("cannot write '" + path + "'");
    }
}

}  // namespace ips
